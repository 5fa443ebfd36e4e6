//! `[[budgets]]`: token budgets, validated against the groups, applications,
//! integrations and models they name; a generating model under a budget must
//! cap its completions (`defaults.max_tokens`), or a task that names no
//! `maxTokens` could not be reserved for.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::time::Duration;

use super::super::de::Spanned;
use super::super::raw::{RawBudget, RawCounts};
use super::{suggest, V};
use crate::access::{Subject, Target};
use crate::catalog::{Budget, Counts, Integration, TaskKind, Window};

/// The longest fixed window: a year.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

pub(super) fn budgets(
    v: &mut V<'_>,
    raw: Vec<Spanned<RawBudget>>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    integrations: &[Integration],
) -> Vec<Budget> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for rb in raw {
        let name = &rb.value.name;
        if let Some(first) = seen.get(&name.value) {
            let help = format!("first defined at {first}; budget names are unique");
            v.error(
                &name.loc,
                format!("budget `{}` is defined twice", name.value),
            )
            .help = Some(help);
            continue;
        }
        seen.insert(name.value.clone(), v.origin(&rb.loc).to_string());
        if let Some(b) = budget(v, rb, groups, apps, integrations) {
            out.push(b);
        }
    }
    out
}

fn budget(
    v: &mut V<'_>,
    rb: Spanned<RawBudget>,
    groups: &HashSet<&str>,
    apps: &HashSet<&str>,
    integrations: &[Integration],
) -> Option<Budget> {
    let r = rb.value;
    let mut ok = true;
    let name = r.name.value.trim();
    if name.is_empty() {
        v.error(&r.name.loc, "a budget's `name` is empty");
        ok = false;
    }
    let subject = match r.subject.value.parse::<Subject>() {
        Ok(Subject::Group(g)) if !groups.contains(&*g) => {
            v.error(&r.subject.loc, format!("budget names unknown group `{g}`"));
            None
        }
        Ok(Subject::App(a)) if !apps.contains(&*a) => {
            v.error(
                &r.subject.loc,
                format!("budget names unknown application `{a}`"),
            );
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            v.error(&r.subject.loc, e.to_string());
            None
        }
    };
    let each_member = r.each_member.as_ref().is_some_and(|e| e.value);
    if let (Some(e), Some(s)) = (&r.each_member, &subject) {
        if e.value && !matches!(s, Subject::Group(_)) {
            v.error(
                &e.loc,
                format!("`each_member` gives each member of a group a budget of its own; `{s}` is not a group"),
            );
            ok = false;
        }
    }
    let target = match &r.target {
        None => None,
        Some(t) => target(v, t, integrations, &mut ok),
    };
    let tokens = NonZeroU64::new(r.tokens.value);
    if tokens.is_none() {
        v.error(&r.tokens.loc, "`tokens` must be at least 1");
        ok = false;
    }
    let window = match window(&r.window.value) {
        Ok(w) => Some(w),
        Err(e) => {
            v.error(&r.window.loc, e).help = Some(
                "write `day` or `month` (calendar windows in UTC), or a span such as `90s`, `30m`, `1h` or `7d`".into(),
            );
            None
        }
    };
    let counts = match r.counts.as_ref().map(|c| c.value) {
        None | Some(RawCounts::All) => Counts::All,
        Some(RawCounts::Prompt) => Counts::Prompt,
        Some(RawCounts::Completion) => Counts::Completion,
    };
    let (subject, tokens, window) = (subject?, tokens?, window?);
    if !ok {
        return None;
    }
    let budget = Budget {
        name: name.into(),
        subject,
        each_member,
        target,
        tokens,
        window,
        counts,
        description: r.description,
        origin: v.origin(&rb.loc),
    };
    uncapped(v, &rb.loc, &budget, integrations);
    Some(budget)
}

/// A budget's target: an integration or one of its models, never a prompt.
fn target(
    v: &mut V<'_>,
    t: &Spanned<String>,
    integrations: &[Integration],
    ok: &mut bool,
) -> Option<Target> {
    let parsed = match t.value.parse::<Target>() {
        Ok(p) => p,
        Err(e) => {
            v.error(&t.loc, e.to_string());
            *ok = false;
            return None;
        }
    };
    let find = |name: &str| integrations.iter().find(|i| i.name() == name);
    let known = match &parsed {
        Target::Prompt(_) => {
            v.error(
                &t.loc,
                format!("a budget counts tokens of models; `{}` is a prompt", t.value),
            )
            .help = Some("write `integration:NAME` or `model:INTEGRATION:MODEL`, or leave `target` out for everything".into());
            false
        }
        Target::Integration(i) if find(i).is_none() => {
            let help = suggest(
                i,
                integrations.iter().map(Integration::name),
                "integrations are declared under `[[integrations]]`",
            );
            v.error(&t.loc, format!("budget names unknown integration `{i}`"))
                .help = Some(help);
            false
        }
        Target::Model(i, m) => match find(i) {
            None => {
                v.error(&t.loc, format!("budget names unknown integration `{i}`"));
                false
            }
            Some(int) if int.model(m).is_none() => {
                let help = suggest(
                    m,
                    int.models().iter().map(|m| m.name()),
                    "models are declared under `[[integrations.models]]`",
                );
                v.error(
                    &t.loc,
                    format!("budget names unknown model `{m}` of integration `{i}`"),
                )
                .help = Some(help);
                false
            }
            Some(_) => true,
        },
        Target::Integration(_) => true,
    };
    if !known {
        *ok = false;
        return None;
    }
    Some(parsed)
}

/// A generating model under a budget with no completion cap: a task that
/// names no `maxTokens` has no worst case to reserve.
fn uncapped(v: &mut V<'_>, loc: &super::Loc, b: &Budget, integrations: &[Integration]) {
    for i in integrations {
        for m in i.models() {
            let generates = m.tasks().iter().any(|k| *k != TaskKind::Embeddings);
            if generates && m.defaults().max_tokens.is_none() && b.covers_model(i.name(), m.name())
            {
                v.error(
                    loc,
                    format!(
                        "budget `{}` covers model `{}` of integration `{}`, which has no `defaults.max_tokens`",
                        b.name(),
                        m.name(),
                        i.name()
                    ),
                )
                .help = Some(format!(
                    "a task that names no `maxTokens` could spend without bound before the budget saw it; give the model a cap (`defaults = {{ max_tokens = 512 }}` under it, {})",
                    m.origin()
                ));
            }
        }
    }
}

/// `day`, `month`, or a span: a whole number and `s`, `m`, `h` or `d`.
fn window(raw: &str) -> Result<Window, String> {
    let w = raw.trim();
    match w {
        "day" => return Ok(Window::Day),
        "month" => return Ok(Window::Month),
        _ => {}
    }
    let bad = || format!("`{}` is not a window", crate::untrusted::bounded(w));
    let split = w.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = w.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    let d = Duration::from_secs(secs);
    if secs == 0 || d > MAX_WINDOW {
        return Err(format!("a window lasts from 1s to 366d; `{w}` does not"));
    }
    Ok(Window::Every(d))
}

#[cfg(test)]
mod tests {
    use super::window;
    use crate::catalog::Window;
    use std::time::Duration;

    #[test]
    fn windows_are_calendar_names_or_spans() {
        assert_eq!(window("day"), Ok(Window::Day));
        assert_eq!(window("month"), Ok(Window::Month));
        assert_eq!(window("90s"), Ok(Window::Every(Duration::from_secs(90))));
        assert_eq!(window("1h"), Ok(Window::Every(Duration::from_secs(3_600))));
        assert_eq!(
            window("7d"),
            Ok(Window::Every(Duration::from_secs(604_800)))
        );
        for bad in [
            "",
            "h",
            "1",
            "1w",
            "0s",
            "367d",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(window(bad).is_err(), "`{bad}` is refused");
        }
    }
}
