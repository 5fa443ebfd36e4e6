//! The kinds of task, and every name each one goes by: in config files, in
//! the HTTP routes, as a Conductor task type. One table, so that a new kind
//! is one row.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of task a model may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TaskKind {
    /// Text completion (`LLM_TEXT_COMPLETE`).
    TextGeneration,
    /// Chat completion (`LLM_CHAT_COMPLETE`).
    Chat,
    /// Summarization.
    Summarization,
    /// Embeddings (`LLM_GENERATE_EMBEDDINGS`).
    Embeddings,
}

/// A kind's names: in config files, in the HTTP route, as a Conductor task type.
struct Names {
    config: &'static str,
    route: &'static str,
    conductor: &'static str,
}

/// Indexed by [`TaskKind::index`].
const NAMES: [Names; 4] = [
    Names {
        config: "text-generation",
        route: "text-complete",
        conductor: "LLM_TEXT_COMPLETE",
    },
    Names {
        config: "chat",
        route: "chat-complete",
        conductor: "LLM_CHAT_COMPLETE",
    },
    Names {
        config: "summarization",
        route: "summarize",
        conductor: "LLM_SUMMARIZE",
    },
    Names {
        config: "embeddings",
        route: "embed",
        conductor: "LLM_GENERATE_EMBEDDINGS",
    },
];

impl TaskKind {
    /// Every kind.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::TextGeneration,
        TaskKind::Chat,
        TaskKind::Summarization,
        TaskKind::Embeddings,
    ];

    /// Its position in [`TaskKind::ALL`] (a slot in per-kind tables).
    pub(crate) fn index(self) -> usize {
        match self {
            TaskKind::TextGeneration => 0,
            TaskKind::Chat => 1,
            TaskKind::Summarization => 2,
            TaskKind::Embeddings => 3,
        }
    }

    fn names(self) -> &'static Names {
        &NAMES[self.index()]
    }

    /// The name used in config files (`text-generation`).
    pub fn as_str(self) -> &'static str {
        self.names().config
    }

    /// The last segment of its HTTP route (`/v1/tasks/text-complete`).
    pub(crate) fn route(self) -> &'static str {
        self.names().route
    }

    /// The Conductor task type the worker polls for it by default (`LLM_TEXT_COMPLETE`).
    pub(crate) fn conductor_type(self) -> &'static str {
        self.names().conductor
    }

    /// The kind whose route segment is `route`.
    pub(crate) fn from_route(route: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.route() == route)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_index_order_and_names_are_unique() {
        for (i, k) in TaskKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(TaskKind::from_route(k.route()), Some(k));
            let json = serde_json::to_value(k).unwrap_or_default();
            assert_eq!(json, k.as_str(), "serde and the table agree");
        }
        let mut names: Vec<&str> = TaskKind::ALL
            .iter()
            .flat_map(|k| [k.route(), k.conductor_type()])
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 2 * TaskKind::ALL.len());
    }
}
