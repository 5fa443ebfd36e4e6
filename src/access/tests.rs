//! Decisions checked against a naive model of the rules (proptest) and by
//! example.

use super::*;
use proptest::prelude::*;

const INTEGRATIONS: [&str; 3] = ["i0", "i1", "i2"];
const MODELS: [&str; 2] = ["m0", "m1"];
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const APPS: [&str; 2] = ["a0", "a1"];
const PROMPTS: [&str; 2] = ["p0", "p1"];

#[derive(Debug, Clone)]
struct World {
    grants: Vec<(Subject, Target, AccessSet)>,
    memberships: Vec<Vec<bool>>, // group -> user
    app_groups: Vec<Vec<bool>>,  // app -> group
    admin_group: Option<usize>,
    inactive_integration: Option<usize>,
    inactive_model: Option<(usize, usize)>,
}

fn subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        (0..USERS.len()).prop_map(|i| Subject::User(USERS[i].into())),
        (0..GROUPS.len()).prop_map(|i| Subject::Group(GROUPS[i].into())),
        (0..APPS.len()).prop_map(|i| Subject::App(APPS[i].into())),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0..INTEGRATIONS.len()).prop_map(|i| Target::Integration(INTEGRATIONS[i].into())),
        (0..INTEGRATIONS.len(), 0..MODELS.len())
            .prop_map(|(i, m)| Target::model(INTEGRATIONS[i], MODELS[m])),
        (0..PROMPTS.len()).prop_map(|i| Target::Prompt(PROMPTS[i].into())),
    ]
}

fn access_set() -> impl Strategy<Value = AccessSet> {
    (1u8..32).prop_map(AccessSet)
}

fn access() -> impl Strategy<Value = Access> {
    (0..5usize).prop_map(|i| Access::ALL[i])
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((subject(), target(), access_set()), 0..24),
        prop::collection::vec(
            prop::collection::vec(any::<bool>(), USERS.len()),
            GROUPS.len(),
        ),
        prop::collection::vec(
            prop::collection::vec(any::<bool>(), GROUPS.len()),
            APPS.len(),
        ),
        prop::option::of(0..GROUPS.len()),
        prop::option::of(0..INTEGRATIONS.len()),
        prop::option::of((0..INTEGRATIONS.len(), 0..MODELS.len())),
    )
        .prop_map(
            |(
                grants,
                memberships,
                app_groups,
                admin_group,
                inactive_integration,
                inactive_model,
            )| World {
                grants,
                memberships,
                app_groups,
                admin_group,
                inactive_integration,
                inactive_model,
            },
        )
}

fn policy(w: &World, skip_grant: Option<usize>) -> Policy {
    let grants = w
        .grants
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != skip_grant)
        .map(|(_, (s, t, a))| Grant::new(s.clone(), t.clone(), *a, Origin::builtin("grants")))
        .collect();
    let groups = GROUPS
        .iter()
        .enumerate()
        .map(|(gi, g)| GroupInput {
            name: (*g).into(),
            members: USERS
                .iter()
                .enumerate()
                .filter(|(ui, _)| w.memberships[gi][*ui])
                .map(|(_, u)| (*u).into())
                .collect(),
            roles: if w.admin_group == Some(gi) {
                vec![Role::Admin]
            } else {
                vec![]
            },
        })
        .collect();
    let applications = APPS
        .iter()
        .enumerate()
        .map(|(ai, a)| {
            let gs = GROUPS
                .iter()
                .enumerate()
                .filter(|(gi, _)| w.app_groups[ai][*gi])
                .map(|(_, g)| (*g).into())
                .collect();
            ((*a).into(), gs)
        })
        .collect();
    let integrations = INTEGRATIONS
        .iter()
        .enumerate()
        .map(|(k, i)| ((*i).into(), w.inactive_integration != Some(k)))
        .collect();
    let models = INTEGRATIONS
        .iter()
        .enumerate()
        .flat_map(|(ik, i)| {
            MODELS
                .iter()
                .enumerate()
                .map(move |(mk, m)| ((*i).into(), (*m).into(), (ik, mk)))
        })
        .map(|(i, m, key)| (i, m, w.inactive_model != Some(key)))
        .collect();
    Policy::new(PolicyInput {
        grants,
        groups,
        applications,
        integrations,
        models,
        prompts: PROMPTS.iter().map(|p| (*p).into()).collect(),
    })
}

fn callers() -> Vec<Subject> {
    USERS
        .iter()
        .map(|u| Subject::User((*u).into()))
        .chain(APPS.iter().map(|a| Subject::App((*a).into())))
        .collect()
}

fn all_targets() -> Vec<Target> {
    let mut t: Vec<Target> = INTEGRATIONS
        .iter()
        .map(|i| Target::Integration((*i).into()))
        .collect();
    for i in INTEGRATIONS {
        for m in MODELS {
            t.push(Target::model(i, m));
        }
    }
    t.extend(PROMPTS.iter().map(|p| Target::Prompt((*p).into())));
    t
}

fn integration_of(t: &Target) -> Option<&str> {
    match t {
        Target::Integration(i) | Target::Model(i, _) => Some(i),
        Target::Prompt(_) => None,
    }
}

proptest! {
    #[test]
    fn deny_when_no_grant(mut w in world(), a in access()) {
        w.grants.clear();
        w.admin_group = None;
        let p = policy(&w, None);
        for c in callers() {
            let pr = p.principal(&c, None).unwrap();
            for t in all_targets() {
                prop_assert!(!p.decide(&pr, a, &t).allowed, "{c} {a} {t}");
            }
        }
    }

    #[test]
    fn never_allowed_by_a_grant_on_another_integration(w in world(), a in access()) {
        let p = policy(&w, None);
        for c in callers() {
            let pr = p.principal(&c, None).unwrap();
            for t in all_targets() {
                let d = p.decide(&pr, a, &t);
                if let Some(g) = d.reason.grant() {
                    prop_assert!(t.covering().contains(&g.target), "{t} allowed by grant on {}", g.target);
                    prop_assert_eq!(integration_of(&g.target), integration_of(&t));
                    prop_assert!(g.access.contains(a));
                }
            }
        }
    }

    #[test]
    fn group_scoping_never_widens_access(w in world(), a in access()) {
        let p = policy(&w, None);
        for c in callers() {
            let full = p.principal(&c, None).unwrap();
            for g in full.groups().to_vec() {
                let scoped = p.principal(&c, Some(&g)).unwrap();
                prop_assert!(scoped.groups().len() == 1);
                for t in all_targets() {
                    if p.decide(&scoped, a, &t).allowed {
                        prop_assert!(p.decide(&full, a, &t).allowed, "{c} as {g}: {a} {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn scoping_to_a_group_not_joined_is_an_error(w in world()) {
        let p = policy(&w, None);
        for c in callers() {
            let full = p.principal(&c, None).unwrap();
            for g in GROUPS {
                if !full.groups().iter().any(|x| &**x == g) {
                    let is_not_member = matches!(p.principal(&c, Some(g)), Err(PrincipalError::NotAMember { .. }));
                    prop_assert!(is_not_member);
                }
            }
        }
    }

    #[test]
    fn admin_always_allowed_on_active_targets(w in world(), a in access(), admin in 0..GROUPS.len()) {
        let mut w = w;
        w.admin_group = Some(admin);
        w.memberships[admin][0] = true;
        let p = policy(&w, None);
        let pr = p.principal(&Subject::User(USERS[0].into()), None).unwrap();
        for t in all_targets() {
            let d = p.decide(&pr, a, &t);
            let inactive = matches!(d.reason, Reason::IntegrationInactive { .. } | Reason::ModelInactive { .. });
            prop_assert!(d.allowed || inactive, "{t}: {}", d.reason);
            prop_assert!(!(d.allowed && inactive));
        }
    }

    #[test]
    fn removing_a_grant_never_widens_access(w in world(), a in access(), k in 0usize..24) {
        prop_assume!(k < w.grants.len());
        let with = policy(&w, None);
        let without = policy(&w, Some(k));
        for c in callers() {
            let p1 = with.principal(&c, None).unwrap();
            let p2 = without.principal(&c, None).unwrap();
            for t in all_targets() {
                if without.decide(&p2, a, &t).allowed {
                    prop_assert!(with.decide(&p1, a, &t).allowed, "{c} {a} {t}");
                }
            }
        }
    }

    #[test]
    fn inactive_targets_are_denied_before_grants(w in world(), a in access()) {
        let p = policy(&w, None);
        if let Some(ik) = w.inactive_integration {
            for c in callers() {
                let pr = p.principal(&c, None).unwrap();
                for t in all_targets().into_iter().filter(|t| integration_of(t) == Some(INTEGRATIONS[ik])) {
                    let d = p.decide(&pr, a, &t);
                    prop_assert!(!d.allowed);
                    let is_inactive = matches!(d.reason, Reason::IntegrationInactive { .. });
                    prop_assert!(is_inactive);
                }
            }
        }
    }
}

#[test]
fn denial_names_the_missing_grant_and_near_misses() {
    let w = World {
        grants: vec![(
            Subject::Group("g0".into()),
            Target::Integration("i0".into()),
            [Access::Read].into_iter().collect(),
        )],
        memberships: vec![
            vec![true, false, false, false],
            vec![false; 4],
            vec![false; 4],
            vec![false; 4],
        ],
        app_groups: vec![vec![false; 4]; 2],
        admin_group: None,
        inactive_integration: None,
        inactive_model: None,
    };
    let p = policy(&w, None);
    let pr = p.principal(&Subject::User("u0".into()), None).unwrap();
    let d = p.decide(&pr, Access::Execute, &Target::model("i0", "m0"));
    assert!(!d.allowed);
    let msg = d.reason.to_string();
    assert!(
        msg.contains("no grant gives `EXECUTE` on `model:i0:m0`"),
        "{msg}"
    );
    assert!(
        msg.contains("`group:g0` has only READ on `integration:i0`"),
        "{msg}"
    );
    assert!(msg.contains("needed: a grant of `EXECUTE` on `model:i0:m0` or `integration:i0` to `user:u0` or one of its groups"), "{msg}");
    let d = p.decide(&pr, Access::Read, &Target::model("i0", "m1"));
    assert!(d.allowed);
    assert_eq!(
        d.reason.grant().unwrap().target,
        Target::Integration("i0".into())
    );
}

#[test]
fn subjects_and_targets_parse_with_clear_errors() {
    assert_eq!(
        "group:x".parse::<Subject>().unwrap(),
        Subject::Group("x".into())
    );
    assert_eq!(
        "user:a@b.c".parse::<Subject>().unwrap(),
        Subject::User("a@b.c".into())
    );
    assert!("team:x"
        .parse::<Subject>()
        .unwrap_err()
        .to_string()
        .contains("write `group:NAME`"));
    assert!("group:"
        .parse::<Subject>()
        .unwrap_err()
        .to_string()
        .contains("empty group name"));
    assert_eq!(
        "model:i:org/m".parse::<Target>().unwrap(),
        Target::model("i", "org/m")
    );
    assert!("model:i"
        .parse::<Target>()
        .unwrap_err()
        .to_string()
        .contains("`model:INTEGRATION:MODEL`"));
    assert!("integration".parse::<Target>().is_err());
}
