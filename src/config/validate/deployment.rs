//! A model's `deployment` block, validated into the provider's
//! [`EndpointSpec`]: what `hfconnect endpoint create`, `plan` and `apply`
//! hold the live Inference Endpoint to.

use super::V;
use crate::config::de::Spanned;
use crate::config::raw::RawDeployment;
use crate::provider::huggingface::{looks_secret, EndpointImage, EndpointSpec};

fn env_name_ok(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && k.len() <= 128
}

pub(super) fn deployment(
    v: &mut V<'_>,
    model: &str,
    d: &Spanned<RawDeployment>,
    ok: &mut bool,
) -> EndpointSpec {
    let r = &d.value;
    let mut text = |v: &mut V<'_>, s: &Spanned<String>, key: &str| -> Option<String> {
        let t = s.value.trim();
        if t.is_empty() || t.chars().any(char::is_whitespace) {
            v.error(
                &s.loc,
                format!(
                    "`deployment.{key}` of model `{model}` is {}",
                    if t.is_empty() {
                        "empty".to_string()
                    } else {
                        format!("`{t}`, which holds white space")
                    }
                ),
            );
            *ok = false;
            return None;
        }
        Some(t.to_string())
    };
    let repository = text(v, &r.repository, "repository");
    let revision = r.revision.as_ref().and_then(|s| text(v, s, "revision"));
    let task = r.task.as_ref().and_then(|s| text(v, s, "task"));
    let framework = r.framework.as_ref().and_then(|s| text(v, s, "framework"));
    let accelerator = text(v, &r.accelerator, "accelerator");
    let vendor = text(v, &r.vendor, "vendor");
    let region = text(v, &r.region, "region");
    let instance_type = text(v, &r.instance_type, "instance_type");
    let instance_size = text(v, &r.instance_size, "instance_size");

    let image = match r.image.as_ref().and_then(|s| text(v, s, "image")) {
        None => EndpointImage::Huggingface,
        Some(i) => match i.as_str() {
            "huggingface" => EndpointImage::Huggingface,
            "tgi" => EndpointImage::Tgi,
            "tei" => EndpointImage::Tei,
            url => EndpointImage::Custom {
                url: url.to_string(),
                port: r.port.as_ref().map(|p| p.value),
                health_route: r.health_route.as_ref().map(|h| h.value.clone()),
            },
        },
    };
    if !matches!(image, EndpointImage::Custom { .. }) {
        for (key, loc) in [
            ("port", r.port.as_ref().map(|p| &p.loc)),
            ("health_route", r.health_route.as_ref().map(|h| &h.loc)),
        ] {
            if let Some(loc) = loc {
                v.error(
                    loc,
                    format!("`deployment.{key}` is only for a custom image, and model `{model}` has image `{}`", image.describe()),
                )
                .help = Some("set `image` to the custom image's URL, or remove the key".into());
                *ok = false;
            }
        }
    }
    if let Some(h) = &r.health_route {
        if !h.value.starts_with('/') {
            v.error(
                &h.loc,
                format!(
                    "`deployment.health_route` `{}` does not start with `/`",
                    h.value
                ),
            );
            *ok = false;
        }
    }

    let min_replica = r.min_replica.as_ref().map_or(1, |m| m.value);
    let max_replica = r
        .max_replica
        .as_ref()
        .map_or(min_replica.max(1), |m| m.value);
    if let Some(m) = &r.max_replica {
        if m.value == 0 {
            v.error(&m.loc, "`deployment.max_replica` must be at least 1");
            *ok = false;
        } else if m.value < min_replica {
            v.error(
                &m.loc,
                format!(
                    "`deployment.max_replica` ({}) is less than `min_replica` ({min_replica})",
                    m.value
                ),
            );
            *ok = false;
        }
    }
    if let Some(t) = &r.scale_to_zero_timeout {
        if t.value == 0 {
            v.error(
                &t.loc,
                "`deployment.scale_to_zero_timeout` must be at least 1 minute",
            );
            *ok = false;
        } else if min_replica > 0 {
            v.warn(
                &t.loc,
                format!("`deployment.scale_to_zero_timeout` is only used with `min_replica = 0`, and model `{model}` has `min_replica = {min_replica}`"),
            );
        }
    }

    let mut env = std::collections::BTreeMap::new();
    if let Some(e) = &r.env {
        for (k, value) in &e.value {
            let loc = e.loc.child_of(k);
            if !env_name_ok(k) {
                v.error(
                    &loc,
                    format!(
                        "`deployment.env` key `{}` is not an environment variable name",
                        crate::untrusted::Untrusted(k)
                    ),
                )
                .help = Some("names are letters, digits and `_`, not starting with a digit".into());
                *ok = false;
            } else if looks_secret(k, value) {
                // The value is not repeated: it may be the secret.
                v.error(
                    &loc,
                    format!("`deployment.env` key `{k}` of model `{model}` looks like a secret"),
                )
                .help = Some("`env` is shown by the management API to anyone who can read the endpoint: set secrets on the endpoint itself, not in the config".into());
                *ok = false;
            } else {
                env.insert(k.clone(), value.clone());
            }
        }
    }

    EndpointSpec {
        repository,
        revision,
        task,
        framework,
        image: Some(image),
        accelerator,
        vendor,
        region,
        instance_type,
        instance_size,
        min_replica: Some(min_replica),
        max_replica: Some(max_replica),
        scale_to_zero_timeout: r.scale_to_zero_timeout.as_ref().map(|t| t.value),
        visibility: None,
        env,
    }
}
