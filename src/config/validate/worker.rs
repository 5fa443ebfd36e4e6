//! The `[worker]` section: the Conductor URL, task types, identity, the
//! Orkes key, and the numbers that bound polling and shutdown.

use std::collections::HashSet;

use super::super::de::Spanned;
use super::super::raw::{IdentityMode, RawWorker};
use super::super::secret;
use super::{at_least_one, parse_http_url, seconds, suggest, V};
use crate::catalog::TaskKind;
use crate::runtime::{ConductorAuth, EndpointTask, WorkerIdentity, WorkerSettings};
/// The `[worker]` section; `None` (after reporting) when it is invalid.
/// A task type as written, and what it runs: a task, or an endpoint task.
type Named<'a> = (&'a Option<Spanned<String>>, Result<TaskKind, EndpointTask>);

pub(super) fn worker(
    v: &mut V<'_>,
    rw: Spanned<RawWorker>,
    apps: &HashSet<&str>,
) -> Option<WorkerSettings> {
    let loc = rw.loc;
    let r = rw.value;
    let mut ok = true;
    let mode = r.identity.as_ref().map_or(IdentityMode::Fixed, |m| m.value);
    let identity = match (mode, &r.app) {
        (IdentityMode::Fixed, None) => {
            v.error(&loc, "`worker.identity = \"fixed\"` (the default) needs `worker.app`")
                .help = Some(
                "name the application the worker runs tasks as, or set `identity` to `task-input` or `workflow`"
                    .into(),
            );
            ok = false;
            None
        }
        (IdentityMode::Fixed, Some(app)) => {
            if apps.contains(app.value.as_str()) {
                Some(WorkerIdentity::Fixed(app.value.as_str().into()))
            } else {
                if !v.is_broken("applications", &app.value) {
                    let help = suggest(
                        &app.value,
                        apps.iter().copied(),
                        "applications are declared under `[[applications]]`",
                    );
                    v.error(
                        &app.loc,
                        format!("`worker.app` names unknown application `{}`", app.value),
                    )
                    .help = Some(help);
                }
                ok = false;
                None
            }
        }
        (other, app) => {
            if let Some(app) = app {
                v.warn(
                    &app.loc,
                    "`worker.app` is ignored: tasks run as the identity `worker.identity` finds",
                )
                .help = Some("remove `app`, or set `identity = \"fixed\"`".into());
            }
            Some(if other == IdentityMode::TaskInput {
                WorkerIdentity::TaskInput
            } else {
                WorkerIdentity::Workflow
            })
        }
    };

    let conductor_url = match &r.conductor_url {
        Some(u) => match parse_http_url(u.value.trim_end_matches('/')) {
            Ok(url) => Some(url),
            Err(e) => {
                v.error(&u.loc, format!("`worker.conductor_url` is {e}"));
                ok = false;
                None
            }
        },
        None => None,
    };

    let mut endpoint_task_types: Vec<(String, EndpointTask)> = Vec::new();
    let task_types = match &r.task_types {
        None => TaskKind::ALL
            .iter()
            .map(|k| (k.conductor_type().to_string(), *k))
            .collect(),
        Some(t) => {
            let mut out: Vec<(String, TaskKind)> = Vec::new();
            let named: [Named<'_>; 7] = [
                (&t.value.text_complete, Ok(TaskKind::TextGeneration)),
                (&t.value.chat_complete, Ok(TaskKind::Chat)),
                (&t.value.summarize, Ok(TaskKind::Summarization)),
                (&t.value.generate_embeddings, Ok(TaskKind::Embeddings)),
                (&t.value.endpoint_resume, Err(EndpointTask::Resume)),
                (&t.value.endpoint_pause, Err(EndpointTask::Pause)),
                (&t.value.endpoint_scale, Err(EndpointTask::Scale)),
            ];
            for (name, kind) in named {
                let Some(name) = name else { continue };
                let n = name.value.trim();
                if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '/') {
                    v.error(
                        &name.loc,
                        format!(
                            "task type `{}` is not a Conductor task type name",
                            name.value
                        ),
                    )
                    .help = Some("task type names hold no spaces or `/`".into());
                    ok = false;
                } else if out.iter().any(|(x, _)| x == n)
                    || endpoint_task_types.iter().any(|(x, _)| x == n)
                {
                    v.error(&name.loc, format!("task type `{n}` is listed twice"))
                        .help = Some("each task type runs one kind of task".into());
                    ok = false;
                } else {
                    match kind {
                        Ok(k) => out.push((n.to_string(), k)),
                        Err(e) => endpoint_task_types.push((n.to_string(), e)),
                    }
                }
            }
            if out.is_empty() && endpoint_task_types.is_empty() && ok {
                v.error(
                    &t.loc,
                    "`worker.task_types` lists no task type; the worker would poll nothing",
                )
                .help = Some(
                    "name at least one of `text_complete`, `chat_complete`, `summarize`, `generate_embeddings`, `endpoint_resume`, `endpoint_pause`, `endpoint_scale`".into(),
                );
                ok = false;
            }
            out
        }
    };

    let mut text = |field: &Option<Spanned<String>>, key: &str, ok: &mut bool| {
        let f = field.as_ref()?;
        let t = f.value.trim();
        if t.is_empty() {
            v.error(&f.loc, format!("`worker.{key}` is empty"));
            *ok = false;
            None
        } else {
            Some(t.to_string())
        }
    };
    let worker_id = text(&r.worker_id, "worker_id", &mut ok);
    let domain = text(&r.domain, "domain", &mut ok);
    let key_id = text(&r.key_id, "key_id", &mut ok);

    let defaults = WorkerSettings::new(WorkerIdentity::TaskInput);
    let concurrency = match &r.concurrency {
        Some(n) => at_least_one(v, n, "worker.concurrency", &mut ok),
        None => Some(defaults.concurrency),
    };
    let batch = match &r.batch {
        Some(n) => at_least_one(v, n, "worker.batch", &mut ok),
        None => concurrency,
    };
    let poll_timeout = seconds(v, &r.poll_timeout, "worker.poll_timeout", true, &mut ok)
        .unwrap_or(defaults.poll_timeout);
    let shutdown_grace = seconds(v, &r.shutdown_grace, "worker.shutdown_grace", true, &mut ok)
        .unwrap_or(defaults.shutdown_grace);

    let auth = match (key_id, r.key_secret) {
        (None, None) => None,
        (Some(_), None) => {
            v.error(
                &loc,
                "`worker.key_id` is set but `worker.key_secret` is not",
            )
            .help = Some("set both (Orkes application credentials) or neither".into());
            ok = false;
            None
        }
        (None, Some(s)) => {
            if r.key_id.is_none() {
                v.error(
                    &s.loc,
                    "`worker.key_secret` is set but `worker.key_id` is not",
                )
                .help = Some("set both (Orkes application credentials) or neither".into());
            }
            ok = false;
            None
        }
        (Some(key_id), Some(s)) => {
            if matches!(s.value, crate::config::secret::ApiKeyLocation::Huggingface) {
                v.error(
                    &s.loc,
                    "`worker.key_secret` cannot use the Hugging Face token lookup",
                )
                .help = Some("write `{ env = \"VAR\" }` or `{ file = \"path\" }`".into());
                ok = false;
                None
            } else {
                let base = v.dir_of(&s.loc).to_path_buf();
                let resolved = secret::resolve_secret(s.value, &base, v.env);
                if let Some(reason) = resolved.key.unavailable_reason() {
                    let reason = reason.to_string();
                    v.warn(
                        &s.loc,
                        format!("the worker's `key_secret` is not available: {reason}"),
                    )
                    .help =
                        Some("`hfconnect worker` will refuse to start until it can be read".into());
                }
                for w in resolved.warnings {
                    v.warn(&s.loc, w);
                }
                Some(ConductorAuth {
                    key_id,
                    key_secret: resolved.key,
                })
            }
        }
    };

    let (identity, concurrency, batch) = (identity?, concurrency?, batch?);
    ok.then_some(WorkerSettings {
        conductor_url,
        task_types,
        endpoint_task_types,
        identity,
        worker_id,
        domain,
        concurrency,
        batch,
        poll_timeout,
        shutdown_grace,
        auth,
    })
}
