//! The Hub side: `whoami-v2` (who owns the token) and the Inference Endpoints
//! management API (endpoint state, resume).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::untrusted::bounded;

/// A string field of an upstream answer, escaped and bounded.
fn count(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(bounded)
}

/// The fine-grained permission that manages Inference Endpoints.
pub const MANAGE_SCOPE: &str = "inference.endpoints.write";

/// What `GET {hub}/api/whoami-v2` says about a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WhoAmI {
    /// The user or organization name owning the token.
    pub name: String,
    /// `user` or `org`.
    pub kind: Option<String>,
    /// Organizations the user belongs to.
    pub orgs: Vec<String>,
    /// The token's display name.
    pub token_name: Option<String>,
    /// `read`, `write` or `fineGrained`.
    pub role: Option<String>,
    /// For a fine-grained token: the namespaces whose endpoints it may
    /// manage (`inference.endpoints.write`), and whether it may everywhere.
    pub manage_scoped: Vec<String>,
    pub manage_global: bool,
}

impl WhoAmI {
    pub(crate) fn from_json(v: &Value) -> Option<WhoAmI> {
        let name = text(v.get("name"))?;
        let token = v.get("auth").and_then(|a| a.get("accessToken"));
        Some(WhoAmI {
            name,
            kind: text(v.get("type")),
            orgs: v
                .get("orgs")
                .and_then(Value::as_array)
                .map(|o| {
                    o.iter()
                        .take(1000)
                        .filter_map(|x| text(x.get("name")))
                        .collect()
                })
                .unwrap_or_default(),
            token_name: text(token.and_then(|t| t.get("displayName"))),
            role: text(token.and_then(|t| t.get("role"))),
            manage_global: token
                .and_then(|t| t.pointer("/fineGrained/global"))
                .and_then(Value::as_array)
                .is_some_and(|g| g.iter().any(|p| p.as_str() == Some(MANAGE_SCOPE))),
            manage_scoped: token
                .and_then(|t| t.pointer("/fineGrained/scoped"))
                .and_then(Value::as_array)
                .map(|scoped| {
                    scoped
                        .iter()
                        .take(1000)
                        .filter(|s| {
                            s.get("permissions")
                                .and_then(Value::as_array)
                                .is_some_and(|p| p.iter().any(|p| p.as_str() == Some(MANAGE_SCOPE)))
                        })
                        .filter_map(|s| text(s.pointer("/entity/name")))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Whether the token may manage the endpoints of `namespace`: a `write`
    /// (or `admin`) token of the namespace or a member of it, or a
    /// fine-grained one with `inference.endpoints.write` there.
    pub fn may_manage(&self, namespace: &str) -> bool {
        match self.role.as_deref() {
            Some("write" | "admin") => self.covers(namespace),
            Some("fineGrained") => {
                self.covers(namespace)
                    && (self.manage_global || self.manage_scoped.iter().any(|n| n == namespace))
            }
            _ => false,
        }
    }

    /// Whether `namespace` is the owner or one of its organizations.
    pub fn covers(&self, namespace: &str) -> bool {
        self.name == namespace || self.orgs.iter().any(|o| o == namespace)
    }
}

/// An Inference Endpoint as the management API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManagedEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// `pending`, `initializing`, `updating`, `updateFailed`, `running`, `paused`, `failed`, `scaledToZero`.
    pub state: String,
    /// Its URL, once deployed.
    pub url: Option<String>,
    /// The platform's message about its state.
    pub message: Option<String>,
    /// The model repository it serves.
    pub repository: Option<String>,
    /// Replicas ready, and the number it is scaling to.
    pub ready_replica: Option<u32>,
    pub target_replica: Option<u32>,
    /// `compute.scaling`: the replicas it may run, and after how many idle
    /// minutes it scales to zero.
    pub min_replica: Option<u32>,
    pub max_replica: Option<u32>,
    pub scale_to_zero_timeout: Option<u32>,
    /// The route that answers 200 once it serves (`/health`).
    pub health_route: Option<String>,
    /// What it is deployed from and on.
    #[serde(default, skip_deserializing)]
    pub spec: super::EndpointSpec,
}

impl ManagedEndpoint {
    pub(crate) fn from_json(v: &Value) -> Option<ManagedEndpoint> {
        let status = v.get("status");
        Some(ManagedEndpoint {
            name: text(v.get("name"))?,
            state: text(status.and_then(|s| s.get("state"))).unwrap_or_else(|| "unknown".into()),
            url: text(status.and_then(|s| s.get("url"))),
            message: text(status.and_then(|s| s.get("message"))),
            repository: text(v.get("model").and_then(|m| m.get("repository"))),
            ready_replica: count(status.and_then(|s| s.get("readyReplica"))),
            target_replica: count(status.and_then(|s| s.get("targetReplica"))),
            min_replica: count(v.pointer("/compute/scaling/minReplica")),
            max_replica: count(v.pointer("/compute/scaling/maxReplica")),
            scale_to_zero_timeout: count(v.pointer("/compute/scaling/scaleToZeroTimeout")),
            health_route: text(v.get("healthRoute")),
            spec: super::EndpointSpec::from_json(v),
        })
    }

    /// The list answer: `{"items": [...]}` or a bare array.
    pub(crate) fn list_from_json(v: &Value) -> Vec<ManagedEndpoint> {
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .or_else(|| v.as_array());
        items
            .map(|i| i.iter().filter_map(ManagedEndpoint::from_json).collect())
            .unwrap_or_default()
    }

    /// Whether this endpoint serves `base_url`.
    pub fn serves(&self, base_url: &str) -> bool {
        self.url
            .as_deref()
            .is_some_and(|u| u.trim_end_matches('/') == base_url.trim_end_matches('/'))
    }
}
