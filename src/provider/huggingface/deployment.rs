//! What an Inference Endpoint is made of — repository, image, hardware,
//! scaling, environment — as the management API's create and update bodies
//! carry it (`huggingface_hub`'s `create_inference_endpoint` and
//! `update_inference_endpoint`), read back from a live endpoint, and the
//! differences between a wanted spec and a live one (drift).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::untrusted::bounded;

/// Words in an environment variable's name that say it holds a secret.
const SECRET_WORDS: [&str; 6] = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"];

/// What a live endpoint's variable that looks like a secret shows instead
/// of its value.
pub const HIDDEN: &str = "(hidden)";

/// Whether an environment variable looks like a secret: a secret word as a
/// `_`-separated part of its name (`HF_TOKEN`, `API_KEY`; not `MONKEY` or
/// `MAX_INPUT_TOKENS`) or a value shaped like a Hugging Face token.
pub fn looks_secret(name: &str, value: &str) -> bool {
    name.to_ascii_uppercase()
        .split('_')
        .any(|part| SECRET_WORDS.contains(&part))
        || value.trim().starts_with("hf_")
}

/// The container an endpoint runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndpointImage {
    /// The default Hugging Face container (`{"huggingface": {}}`).
    Huggingface,
    /// text-generation-inference (`{"tgi": {}}`).
    Tgi,
    /// text-embeddings-inference (`{"tei": {}}`).
    Tei,
    /// A custom container: its image URL, port and health route.
    Custom {
        url: String,
        port: Option<u16>,
        health_route: Option<String>,
    },
}

impl EndpointImage {
    fn to_json(&self) -> Value {
        match self {
            EndpointImage::Huggingface => json!({"huggingface": {}}),
            EndpointImage::Tgi => json!({"tgi": {}}),
            EndpointImage::Tei => json!({"tei": {}}),
            EndpointImage::Custom {
                url,
                port,
                health_route,
            } => {
                let mut c = Map::new();
                c.insert("url".into(), json!(url));
                if let Some(p) = port {
                    c.insert("port".into(), json!(p));
                }
                if let Some(h) = health_route {
                    c.insert("health_route".into(), json!(h));
                }
                json!({ "custom": c })
            }
        }
    }

    fn from_json(v: &Value) -> Option<EndpointImage> {
        let o = v.as_object()?;
        let (kind, inner) = o.iter().next()?;
        Some(match kind.as_str() {
            "huggingface" => EndpointImage::Huggingface,
            "tgi" => EndpointImage::Tgi,
            "tei" => EndpointImage::Tei,
            _ => EndpointImage::Custom {
                url: inner.get("url").and_then(Value::as_str).map(bounded)?,
                port: inner
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok()),
                health_route: inner
                    .get("health_route")
                    .or_else(|| inner.get("healthRoute"))
                    .and_then(Value::as_str)
                    .map(bounded),
            },
        })
    }

    /// Its name in a plan: `huggingface`, `tgi`, `tei` or the custom URL.
    pub fn describe(&self) -> String {
        match self {
            EndpointImage::Huggingface => "huggingface".into(),
            EndpointImage::Tgi => "tgi".into(),
            EndpointImage::Tei => "tei".into(),
            EndpointImage::Custom { url, port, .. } => match port {
                Some(p) => format!("{url} (port {p})"),
                None => url.clone(),
            },
        }
    }
}

/// An endpoint's deployment. Read back from a live endpoint, a field the
/// answer leaves out is `None`; in a wanted spec, `None` means "whatever it
/// is" and is not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EndpointSpec {
    pub repository: Option<String>,
    pub revision: Option<String>,
    pub task: Option<String>,
    pub framework: Option<String>,
    pub image: Option<EndpointImage>,
    pub accelerator: Option<String>,
    pub vendor: Option<String>,
    pub region: Option<String>,
    pub instance_type: Option<String>,
    pub instance_size: Option<String>,
    pub min_replica: Option<u32>,
    pub max_replica: Option<u32>,
    /// Idle minutes before it scales to zero.
    pub scale_to_zero_timeout: Option<u32>,
    /// `public`, `protected` or `private`.
    pub visibility: Option<String>,
    /// Environment variables of the container (never secrets).
    pub env: BTreeMap<String, String>,
}

/// One field where the live endpoint differs from its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Drift {
    /// The field, in the config's snake_case (`max_replica`, `env.MAX_INPUT_TOKENS`).
    pub field: String,
    /// What the endpoint has (`None`: nothing).
    pub live: Option<String>,
    /// What the spec wants (`None`: to remove it).
    pub wanted: Option<String>,
    /// Whether an update can change it (vendor and region it cannot).
    pub updatable: bool,
}

impl EndpointSpec {
    /// The spec of a live endpoint's answer.
    pub(crate) fn from_json(v: &Value) -> EndpointSpec {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(bounded);
        let n = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let env = v
            .pointer("/model/env")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .take(256)
                    .filter_map(|(k, v)| {
                        let v = v.as_str()?;
                        // A secret set in the UI is never repeated: not in a
                        // plan, an answer or a log.
                        let shown = if looks_secret(k, v) {
                            HIDDEN.to_string()
                        } else {
                            bounded(v)
                        };
                        Some((bounded(k), shown))
                    })
                    .collect()
            })
            .unwrap_or_default();
        EndpointSpec {
            repository: s("/model/repository"),
            revision: s("/model/revision"),
            task: s("/model/task"),
            framework: s("/model/framework"),
            image: v.pointer("/model/image").and_then(EndpointImage::from_json),
            accelerator: s("/compute/accelerator"),
            vendor: s("/provider/vendor"),
            region: s("/provider/region"),
            instance_type: s("/compute/instanceType"),
            instance_size: s("/compute/instanceSize"),
            min_replica: n("/compute/scaling/minReplica"),
            max_replica: n("/compute/scaling/maxReplica"),
            scale_to_zero_timeout: n("/compute/scaling/scaleToZeroTimeout"),
            visibility: s("/type"),
            env,
        }
    }

    /// The body of `POST /endpoint/{namespace}` creating endpoint `name`.
    pub fn create_body(&self, name: &str) -> Value {
        let mut model = json!({
            "repository": self.repository,
            "revision": self.revision,
            "task": self.task,
            "framework": self.framework.as_deref().unwrap_or("pytorch"),
            "image": self.image.as_ref().unwrap_or(&EndpointImage::Huggingface).to_json(),
        });
        if !self.env.is_empty() {
            model["env"] = json!(self.env);
        }
        json!({
            "name": name,
            "type": self.visibility.as_deref().unwrap_or("protected"),
            "accountId": null,
            "provider": {"vendor": self.vendor, "region": self.region},
            "compute": {
                "accelerator": self.accelerator,
                "instanceType": self.instance_type,
                "instanceSize": self.instance_size,
                "scaling": self.scaling(),
            },
            "model": model,
        })
    }

    fn scaling(&self) -> Value {
        let mut s = Map::new();
        if let Some(n) = self.min_replica {
            s.insert("minReplica".into(), json!(n));
        }
        if let Some(n) = self.max_replica {
            s.insert("maxReplica".into(), json!(n));
        }
        if let Some(n) = self.scale_to_zero_timeout {
            s.insert("scaleToZeroTimeout".into(), json!(n));
        }
        Value::Object(s)
    }

    /// Where `live` differs from this wanted spec.
    pub fn drift(&self, live: &EndpointSpec) -> Vec<Drift> {
        let mut out = Vec::new();
        let mut cmp = |field: &str, wanted: Option<String>, have: Option<String>, updatable| {
            if wanted.is_some() && wanted != have {
                out.push(Drift {
                    field: field.into(),
                    live: have,
                    wanted,
                    updatable,
                });
            }
        };
        let c = |s: &Option<String>| s.clone();
        let n = |s: &Option<u32>| s.map(|n| n.to_string());
        cmp("repository", c(&self.repository), c(&live.repository), true);
        cmp("revision", c(&self.revision), c(&live.revision), true);
        cmp("task", c(&self.task), c(&live.task), true);
        cmp("framework", c(&self.framework), c(&live.framework), true);
        cmp(
            "image",
            self.image.as_ref().map(EndpointImage::describe),
            live.image.as_ref().map(EndpointImage::describe),
            true,
        );
        cmp(
            "accelerator",
            c(&self.accelerator),
            c(&live.accelerator),
            true,
        );
        cmp("vendor", c(&self.vendor), c(&live.vendor), false);
        cmp("region", c(&self.region), c(&live.region), false);
        cmp(
            "instance_type",
            c(&self.instance_type),
            c(&live.instance_type),
            true,
        );
        cmp(
            "instance_size",
            c(&self.instance_size),
            c(&live.instance_size),
            true,
        );
        cmp(
            "min_replica",
            n(&self.min_replica),
            n(&live.min_replica),
            true,
        );
        cmp(
            "max_replica",
            n(&self.max_replica),
            n(&live.max_replica),
            true,
        );
        cmp(
            "scale_to_zero_timeout",
            n(&self.scale_to_zero_timeout),
            n(&live.scale_to_zero_timeout),
            true,
        );
        cmp("type", c(&self.visibility), c(&live.visibility), false);
        // The spec's env is the whole env: a variable it does not list is
        // drift too, to be removed.
        for (k, v) in &self.env {
            if live.env.get(k) != Some(v) {
                out.push(Drift {
                    field: format!("env.{k}"),
                    live: live.env.get(k).cloned(),
                    wanted: Some(v.clone()),
                    updatable: true,
                });
            }
        }
        for (k, v) in &live.env {
            if !self.env.contains_key(k) {
                out.push(Drift {
                    field: format!("env.{k}"),
                    live: Some(v.clone()),
                    wanted: None,
                    updatable: true,
                });
            }
        }
        out
    }

    /// The body of `PUT /endpoint/{namespace}/{name}` that removes `drift`
    /// (only the sections that differ, as `update_inference_endpoint` sends).
    pub fn update_body(&self, drift: &[Drift]) -> Value {
        let has = |f: &str| drift.iter().any(|d| d.field == f);
        let mut body = Map::new();
        let mut compute = Map::new();
        for (field, key, v) in [
            ("accelerator", "accelerator", &self.accelerator),
            ("instance_type", "instanceType", &self.instance_type),
            ("instance_size", "instanceSize", &self.instance_size),
        ] {
            if has(field) {
                compute.insert(key.into(), json!(v));
            }
        }
        if has("min_replica") || has("max_replica") || has("scale_to_zero_timeout") {
            compute.insert("scaling".into(), self.scaling());
        }
        if !compute.is_empty() {
            body.insert("compute".into(), Value::Object(compute));
        }
        let mut model = Map::new();
        for (field, v) in [
            ("repository", &self.repository),
            ("revision", &self.revision),
            ("task", &self.task),
            ("framework", &self.framework),
        ] {
            if has(field) {
                model.insert(field.into(), json!(v));
            }
        }
        if has("image") {
            if let Some(i) = &self.image {
                model.insert("image".into(), i.to_json());
            }
        }
        if drift.iter().any(|d| d.field.starts_with("env.")) {
            model.insert("env".into(), json!(self.env));
        }
        if !model.is_empty() {
            body.insert("model".into(), Value::Object(model));
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> EndpointSpec {
        EndpointSpec {
            repository: Some("org/model".into()),
            task: Some("text-generation".into()),
            image: Some(EndpointImage::Tgi),
            accelerator: Some("gpu".into()),
            vendor: Some("aws".into()),
            region: Some("us-east-1".into()),
            instance_type: Some("nvidia-a10g".into()),
            instance_size: Some("x1".into()),
            min_replica: Some(0),
            max_replica: Some(2),
            scale_to_zero_timeout: Some(15),
            env: [("MAX_INPUT_TOKENS".to_string(), "4096".to_string())].into(),
            ..EndpointSpec::default()
        }
    }

    #[test]
    fn a_created_endpoint_reads_back_without_drift() {
        let w = wanted();
        let mut live = w.create_body("e");
        live["status"] = json!({"state": "running"});
        assert_eq!(w.drift(&EndpointSpec::from_json(&live)), vec![]);
    }

    #[test]
    fn drift_names_fields_and_the_update_carries_only_them() {
        let w = wanted();
        let mut live = w.create_body("e");
        live["compute"]["scaling"]["maxReplica"] = json!(1);
        live["model"]["env"] = json!({"MAX_INPUT_TOKENS": "4096", "OLD": "1"});
        live["provider"]["region"] = json!("eu-west-1");
        let d = w.drift(&EndpointSpec::from_json(&live));
        let fields: Vec<_> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["region", "max_replica", "env.OLD"]);
        assert!(!d[0].updatable);
        let body = w.update_body(&d);
        assert_eq!(
            body,
            json!({
                "compute": {"scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15}},
                "model": {"env": {"MAX_INPUT_TOKENS": "4096"}},
            })
        );
    }

    #[test]
    fn secrets_are_told_by_name_parts_and_token_shape_and_never_read_back() {
        assert!(looks_secret("HF_TOKEN", "x"));
        assert!(looks_secret("api_key", "x"));
        assert!(looks_secret("ANYTHING", "hf_abc"));
        assert!(!looks_secret("MONKEY", "banana"));
        assert!(!looks_secret("MAX_INPUT_TOKENS", "4096"));
        let live =
            json!({"name": "e", "model": {"env": {"API_KEY": "s3cret", "X": "hf_abc", "N": "1"}}});
        let spec = EndpointSpec::from_json(&live);
        assert_eq!(spec.env["API_KEY"], HIDDEN);
        assert_eq!(spec.env["X"], HIDDEN);
        assert_eq!(spec.env["N"], "1");
        assert!(!format!("{spec:?}").contains("s3cret"));
    }

    #[test]
    fn custom_images_round_trip() {
        let i = EndpointImage::Custom {
            url: "ghcr.io/org/server:1".into(),
            port: Some(8080),
            health_route: Some("/ready".into()),
        };
        assert_eq!(EndpointImage::from_json(&i.to_json()), Some(i));
    }
}
