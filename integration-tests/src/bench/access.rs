//! The access analysis at scale: a generated config of many users, groups,
//! models and grants, and an edit of it, for timing `hfconnect access
//! who-can` and `access diff` as processes (config loading included).

use std::fmt::Write;

/// The size of a generated config.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub users: usize,
    pub groups: usize,
    pub models: usize,
    pub grants: usize,
}

/// Models per integration.
const PER_INTEGRATION: usize = 100;

/// A config of `s`: users each in two groups, a hundred applications, and
/// grants from groups (mostly), users and applications on models and
/// integrations. `edited` adds a member, widens a grant to its
/// integration, drops one and switches a model off: what a review sees.
pub fn config(s: Scale, edited: bool) -> String {
    let mut t = String::with_capacity(s.grants * 120);
    let integrations = s.models.div_ceil(PER_INTEGRATION).max(1);
    for i in 0..integrations {
        let _ = write!(
            t,
            "[[integrations]]\nname = \"i{i}\"\napi_key = {{ env = \"HF_TOKEN\" }}\n\n"
        );
        for m in (i * PER_INTEGRATION)..((i + 1) * PER_INTEGRATION).min(s.models) {
            let off = edited && m == 7;
            let _ = write!(
                t,
                "[[integrations.models]]\nname = \"m{m}\"\nendpoint = \"http://127.0.0.1:9/\"\napi = \"tgi\"\ntasks = [\"text-generation\"]\nactive = {}\n\n",
                !off
            );
        }
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); s.groups];
    for u in 0..s.users {
        members[u % s.groups].push(u);
        let second = (u * 7 + 3) % s.groups;
        if second != u % s.groups {
            members[second].push(u);
        }
    }
    if edited {
        members[1].push(0);
    }
    for (g, ms) in members.iter().enumerate() {
        let list: Vec<String> = ms.iter().map(|u| format!("\"u{u}\"")).collect();
        let _ = write!(
            t,
            "[[groups]]\nname = \"g{g}\"\nmembers = [{}]\n{}\n",
            list.join(", "),
            if g == 0 { "roles = [\"ADMIN\"]\n" } else { "" }
        );
    }
    for a in 0..100 {
        let _ = write!(
            t,
            "[[applications]]\nname = \"a{a}\"\ngroups = [\"g{}\"]\n\n",
            (a * 11) % s.groups
        );
    }
    let model_of = |m: usize| format!("model:i{}:m{m}", m / PER_INTEGRATION);
    for k in 0..s.grants {
        if edited && k == 5 {
            continue;
        }
        let m = (k * 13) % s.models;
        let (subject, target) = match k % 100 {
            0 => (format!("user:u{}", k % s.users), model_of(m)),
            1 => (format!("app:a{}", k % 100), model_of(m)),
            2 if !(edited && k == 2) => (
                format!("group:g{}", k % s.groups),
                format!("integration:i{}", m / PER_INTEGRATION),
            ),
            _ if edited && k == 3 => (
                format!("group:g{}", k % s.groups),
                format!("integration:i{}", m / PER_INTEGRATION),
            ),
            _ => (format!("group:g{}", k % s.groups), model_of(m)),
        };
        let _ = write!(
            t,
            "[[grants]]\nsubject = \"{subject}\"\ntarget = \"{target}\"\naccess = [\"READ\", \"EXECUTE\"]\n\n"
        );
    }
    t
}
