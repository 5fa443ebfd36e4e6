//! The analysis is exact: for random configs and random edits, `diff` lists
//! exactly the (subject, access, target) triples whose runtime decision
//! changed, each asked of the policy one caller at a time.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::{diff, subjects, targets, Who};
use crate::access::{Access, Target};
use crate::catalog::Catalog;
use crate::config::{load, LoadOptions};

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const APPS: [&str; 2] = ["a0", "a1"];

#[derive(Debug, Clone)]
struct Spec {
    active: [bool; 2],
    models_active: [[bool; 2]; 2],
    members: [Vec<usize>; 3],
    admin: [bool; 3],
    apps: [Vec<usize>; 2],
    grants: Vec<(usize, usize, u8)>,
}

/// Subjects of grants: users, groups, apps; targets: integrations, models, the prompt.
fn subject_name(i: usize) -> String {
    match i {
        0..=3 => format!("user:{}", USERS[i]),
        4..=6 => format!("group:{}", GROUPS[i - 4]),
        _ => format!("app:{}", APPS[(i - 7) % 2]),
    }
}

fn target_name(i: usize) -> String {
    match i {
        0 | 1 => format!("integration:i{i}"),
        2..=5 => format!("model:i{}:m{}", (i - 2) / 2, (i - 2) % 2),
        _ => "prompt:p".into(),
    }
}

fn render(s: &Spec) -> String {
    let mut t = String::new();
    for i in 0..2 {
        t += &format!(
            "[[integrations]]\nname = \"i{i}\"\napi_key = {{ env = \"NONE\" }}\nactive = {}\n",
            s.active[i]
        );
        for m in 0..2 {
            t += &format!(
                "[[integrations.models]]\nname = \"m{m}\"\nendpoint = \"http://127.0.0.1:9/\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\nactive = {}\n",
                s.models_active[i][m]
            );
        }
    }
    t += "[[prompts]]\nname = \"p\"\ntemplate = \"x\"\nmodels = [\"i0:m0\"]\n";
    for (g, name) in GROUPS.iter().enumerate() {
        let members: Vec<String> = s.members[g]
            .iter()
            .map(|u| format!("\"{}\"", USERS[*u]))
            .collect();
        t += &format!(
            "[[groups]]\nname = \"{name}\"\nmembers = [{}]\nroles = [{}]\n",
            members.join(", "),
            if s.admin[g] { "\"ADMIN\"" } else { "" }
        );
    }
    for (a, name) in APPS.iter().enumerate() {
        let groups: Vec<String> = s.apps[a]
            .iter()
            .map(|g| format!("\"{}\"", GROUPS[*g]))
            .collect();
        t += &format!(
            "[[applications]]\nname = \"{name}\"\ngroups = [{}]\n",
            groups.join(", ")
        );
    }
    for (subject, target, bits) in &s.grants {
        let access: Vec<String> = Access::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, a)| format!("\"{a}\""))
            .collect();
        t += &format!(
            "[[grants]]\nsubject = \"{}\"\ntarget = \"{}\"\naccess = [{}]\n",
            subject_name(*subject),
            target_name(*target),
            access.join(", ")
        );
    }
    t
}

fn spec() -> impl Strategy<Value = Spec> {
    let set = |n: usize, k: usize| proptest::collection::btree_set(0..n, 0..=k);
    (
        any::<[bool; 2]>(),
        any::<[[bool; 2]; 2]>(),
        [set(4, 3), set(4, 3), set(4, 3)],
        any::<[bool; 3]>(),
        [set(3, 2), set(3, 2)],
        proptest::collection::vec((0usize..9, 0usize..7, 1u8..32), 0..8),
    )
        .prop_map(
            |(active, models_active, members, admin, apps, grants)| Spec {
                active,
                models_active,
                members: members.map(|m| m.into_iter().collect()),
                admin: admin.map(|a| a && rand_admin(&grants)),
                apps: apps.map(|a| a.into_iter().collect()),
                grants,
            },
        )
}

/// `ADMIN` rarely, so that most cases decide by grants.
fn rand_admin(grants: &[(usize, usize, u8)]) -> bool {
    grants.len().is_multiple_of(4)
}

#[derive(Debug, Clone)]
enum Edit {
    Toggle(usize),
    ToggleModel(usize, usize),
    Member(usize, usize),
    Admin(usize),
    AppGroup(usize, usize),
    AddGrant(usize, usize, u8),
    DropGrant(usize),
    Widen(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0usize..2).prop_map(Edit::Toggle),
        (0usize..2, 0usize..2).prop_map(|(i, m)| Edit::ToggleModel(i, m)),
        (0usize..3, 0usize..4).prop_map(|(g, u)| Edit::Member(g, u)),
        (0usize..3).prop_map(Edit::Admin),
        (0usize..2, 0usize..3).prop_map(|(a, g)| Edit::AppGroup(a, g)),
        (0usize..9, 0usize..7, 1u8..32).prop_map(|(s, t, b)| Edit::AddGrant(s, t, b)),
        (0usize..8).prop_map(Edit::DropGrant),
        (0usize..8).prop_map(Edit::Widen),
    ]
}

fn apply(mut s: Spec, edits: &[Edit]) -> Spec {
    let flip = |v: &mut Vec<usize>, x: usize| match v.iter().position(|y| *y == x) {
        Some(i) => {
            v.remove(i);
        }
        None => v.push(x),
    };
    for e in edits {
        match *e {
            Edit::Toggle(i) => s.active[i] = !s.active[i],
            Edit::ToggleModel(i, m) => s.models_active[i][m] = !s.models_active[i][m],
            Edit::Member(g, u) => flip(&mut s.members[g], u),
            Edit::Admin(g) => s.admin[g] = !s.admin[g],
            Edit::AppGroup(a, g) => flip(&mut s.apps[a], g),
            Edit::AddGrant(a, t, b) => s.grants.push((a, t, b)),
            Edit::DropGrant(i) if i < s.grants.len() => {
                s.grants.remove(i);
            }
            // A grant on a model widened to its integration.
            Edit::Widen(i) => {
                if let Some(g) = s.grants.get_mut(i) {
                    if (2..=5).contains(&g.1) {
                        g.1 = (g.1 - 2) / 2;
                    }
                }
            }
            Edit::DropGrant(_) => {}
        }
    }
    s
}

fn catalog(dir: &tempfile::TempDir, name: &str, text: &str) -> Catalog {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    match load(&path, &LoadOptions::new()) {
        Ok(l) => l.catalog,
        Err(e) => panic!("{text}\n{e:?}"),
    }
}

/// Every triple whose decision differs, each asked on its own.
fn changed_one_by_one(old: &Catalog, new: &Catalog) -> BTreeSet<(Who, Access, String)> {
    let mut who: BTreeSet<Who> = subjects(old).into_iter().collect();
    who.extend(subjects(new));
    let mut all: BTreeSet<Target> = targets(old).into_iter().collect();
    all.extend(targets(new));
    let mut out = BTreeSet::new();
    for w in &who {
        for t in &all {
            for a in Access::ALL {
                let ask = |c: &Catalog| {
                    c.policy()
                        .principal(&w.subject(), None)
                        .is_ok_and(|p| c.policy().decide(&p, a, t).allowed)
                };
                if ask(old) != ask(new) {
                    out.insert((w.clone(), a, t.to_string()));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn diff_lists_exactly_the_decisions_that_changed(
        base in spec(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let old = catalog(&dir, "old.toml", &render(&base));
        let new = catalog(&dir, "new.toml", &render(&apply(base.clone(), &edits)));
        let d = diff(&old, &new);
        let listed: BTreeSet<(Who, Access, String)> = d
            .changes
            .iter()
            .map(|c| (c.subject.clone(), c.access, c.target.clone()))
            .collect();
        prop_assert_eq!(listed.len(), d.changes.len(), "listed once each");
        prop_assert_eq!(&listed, &changed_one_by_one(&old, &new));
        for c in &d.changes {
            let allowed = |p: &super::Path| matches!(p.kind, "grant" | "admin");
            prop_assert_eq!(allowed(&c.after), c.gained, "{:?}", c);
            prop_assert_eq!(allowed(&c.before), !c.gained, "{:?}", c);
        }
        // And a config compared with itself changes nothing.
        prop_assert!(diff(&new, &new).changes.is_empty());
    }
}
