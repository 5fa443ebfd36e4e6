//! Embeddings on Hugging Face servers: text-embeddings-inference's `/embed`
//! (`api = "tei"`), the OpenAI-style `/v1/embeddings` (`api = "chat"`: TEI's
//! own, the router's, any OpenAI-compatible server), and the
//! `feature-extraction` pipeline (`pipeline`, `router`).
//!
//! A list of inputs is split into requests no larger than the server takes
//! (`max_client_batch_size` of `/info`, read once per endpoint and kept),
//! sent at most `max_parallel` at a time, each with the retries and cold-start
//! waits of any call, and put back together in input order. Answers are
//! checked before they are believed: one vector per input, all of one size,
//! every number finite.

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use url::Url;

use super::dispatch::flavour;
use super::flavour::{Flavour, Part, MAX_DIMENSIONS};
use super::{join, HuggingFace, Inner};
use crate::provider::{
    EmbedRequest, Embeddings, ErrorKind, ModelEndpoint, ProviderError, Timings, Usage, Vectors,
};

/// The batch size used where the server does not say (pipelines, the
/// router, an OpenAI-style server without `/info`): TEI's own default.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 32;

/// Where `/info` is: beside `/v1`, not under it.
fn info_url(base: &Url) -> Url {
    let path = base.path().trim_end_matches('/');
    match path.strip_suffix("/v1") {
        Some(parent) => {
            let mut u = base.clone();
            u.set_path(parent);
            join(&u, "info")
        }
        None => join(base, "info"),
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn normalize(v: &mut [f32]) {
    let n = norm(v);
    if n > 0.0 {
        for x in v {
            *x = (f64::from(*x) / n) as f32;
        }
    }
}

/// What the request asked of the vectors that the server may not have done:
/// `dimensions` (a prefix, unit length again if it was) and `normalize`.
fn finish_vectors(vectors: &mut Vectors, req: &EmbedRequest, server_normalizes: bool) {
    let normalize_here = !server_normalizes && req.normalize == Some(true);
    let cut = req
        .dimensions
        .map(|d| d as usize)
        .filter(|&d| d < vectors.dimensions());
    if cut.is_none() && !normalize_here {
        return;
    }
    let was_unit: Vec<bool> = vectors
        .iter()
        .map(|r| (norm(r) - 1.0).abs() < 1e-3)
        .collect();
    if let Some(d) = cut {
        vectors.truncate_rows(d);
    }
    for (row, unit) in vectors.rows_mut().zip(was_unit) {
        if normalize_here || (cut.is_some() && unit) {
            normalize(row);
        }
    }
}

/// Every number finite; rows of one size, not empty, not too wide (the
/// parsers check the last two as they read).
fn check(vectors: &Vectors) -> Result<(), String> {
    if !vectors.all_finite() {
        return Err("the answer has an embedding with a number that is not finite".into());
    }
    match vectors.dimensions() {
        d if d > MAX_DIMENSIONS => Err(format!(
            "the answer's embeddings have {d} dimensions, more than {MAX_DIMENSIONS}"
        )),
        _ => Ok(()),
    }
}

impl Inner {
    /// How many inputs one request to `model` may carry: `/info`'s
    /// `max_client_batch_size` on TEI and OpenAI-style servers (kept once
    /// read, or once the server said it has no `/info`), else the default.
    pub(super) async fn batch_size(&self, model: &ModelEndpoint) -> usize {
        if !flavour!(model.api, f => f.has_info()) {
            return DEFAULT_BATCH_SIZE;
        }
        let key = model.base_url.as_str();
        if let Some(n) = self
            .batch_sizes
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
        {
            return n;
        }
        let (size, keep) = match self.get_json(Some(model), info_url(&model.base_url)).await {
            Ok((_, v)) => (
                v.get("max_client_batch_size")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_BATCH_SIZE),
                true,
            ),
            Err(e) if e.kind == ErrorKind::NotFound => (DEFAULT_BATCH_SIZE, true),
            // Loading, unreachable…: the embed call meets it and waits or fails.
            Err(_) => (DEFAULT_BATCH_SIZE, false),
        };
        if keep {
            if let Ok(mut m) = self.batch_sizes.lock() {
                m.insert(key.to_string(), size);
            }
        }
        size
    }

    /// One request of a batch, by the model's flavour, checked: one vector
    /// per input, every number finite, none too wide.
    async fn embed_part(
        &self,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        let part = flavour!(model.api, f => f.embed_part(self, model, inputs, req).await)?;
        let bad = |what: String| {
            let mut e = self
                .ctx(Some(model))
                .error(ErrorKind::InvalidResponse)
                .with_detail(what);
            e.text.request_id = part.request_id.clone();
            e
        };
        if part.vectors.len() != inputs.len() {
            return Err(bad(format!(
                "the answer has {} embeddings for {} inputs",
                part.vectors.len(),
                inputs.len()
            )));
        }
        check(&part.vectors).map_err(bad)?;
        Ok(part)
    }
}

impl HuggingFace {
    pub(super) async fn embed_unscrubbed(
        &self,
        model: &ModelEndpoint,
        req: &EmbedRequest,
    ) -> Result<Embeddings, ProviderError> {
        let inner = &self.inner;
        if req.inputs.is_empty() {
            return Err(inner
                .ctx(Some(model))
                .error(ErrorKind::InvalidRequest)
                .with_detail("there is nothing to embed"));
        }
        let start = Instant::now();
        let size = inner.batch_size(model).await;
        let n = req.inputs.len();
        let inputs = &req.inputs;
        if n <= size {
            // One request: no stream of parts to drive.
            let p = inner.embed_part(model, inputs, req).await?;
            return finish(inner, model, req, vec![p], start);
        }
        // Owned bounds rather than `chunks`: a future borrowing the closure's
        // argument is not `Send` for every lifetime.
        let parts: Vec<Part> = futures_util::stream::iter((0..n).step_by(size.max(1)))
            .map(move |at| {
                let chunk = inputs.get(at..(at + size).min(n)).unwrap_or(&[]);
                inner.embed_part(model, chunk, req)
            })
            .buffered(req.max_parallel.max(1))
            .try_collect()
            .await?;
        finish(inner, model, req, parts, start)
    }
}

/// The parts of a request put back together, in order.
fn finish(
    inner: &Inner,
    model: &ModelEndpoint,
    req: &EmbedRequest,
    parts: Vec<Part>,
    start: Instant,
) -> Result<Embeddings, ProviderError> {
    // Each part was checked; what joins them or changes them is checked again.
    let normalizes = flavour!(model.api, f => f.normalizes());
    let recheck =
        parts.len() > 1 || req.dimensions.is_some() || (!normalizes && req.normalize == Some(true));
    let mut vectors = Vectors::new();
    let mut tokens = Some(0u32);
    let mut attempts = 0;
    let mut request_id = None;
    let mut server = Timings::default();
    for p in parts {
        if let Err(e) = vectors.append(p.vectors) {
            return Err(inner
                .ctx(Some(model))
                .error(ErrorKind::InvalidResponse)
                .with_detail(e.to_string()));
        }
        tokens = tokens
            .zip(p.prompt_tokens)
            .map(|(a, b)| a.saturating_add(b));
        attempts += p.attempts;
        request_id = p.request_id.or(request_id);
        server.queue = p.timings.queue.or(server.queue);
        server.inference = p.timings.inference.or(server.inference);
    }
    finish_vectors(&mut vectors, req, normalizes);
    let checked = if recheck { check(&vectors) } else { Ok(()) };
    if let Err(why) = checked {
        return Err(inner
            .ctx(Some(model))
            .error(ErrorKind::InvalidResponse)
            .with_detail(why));
    }
    Ok(Embeddings {
        vectors,
        usage: Usage {
            prompt_tokens: tokens,
            completion_tokens: tokens.map(|_| 0),
        },
        request_id,
        timings: Timings {
            total: start.elapsed(),
            ..server
        },
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::super::chat_route::{decode_base64, parse_openai, v1_url};
    use super::super::pipeline::{parse_feature_extraction, pool};
    use super::super::tei::parse_tei;
    use super::*;
    use base64::Engine;
    use serde_json::json;

    #[test]
    fn urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            v1_url(&u("http://t/"), "embeddings").as_str(),
            "http://t/v1/embeddings"
        );
        assert_eq!(
            v1_url(&u("https://router.huggingface.co/v1"), "embeddings").as_str(),
            "https://router.huggingface.co/v1/embeddings"
        );
        assert_eq!(info_url(&u("http://t/v1/")).as_str(), "http://t/info");
        assert_eq!(info_url(&u("http://t/tei")).as_str(), "http://t/tei/info");
    }

    #[test]
    fn pooling_takes_every_shape_to_one_vector() {
        assert_eq!(pool(&json!([1.0, 2.0])).unwrap(), vec![1.0, 2.0]);
        assert_eq!(
            pool(&json!([[1.0, 2.0], [3.0, 6.0]])).unwrap(),
            vec![2.0, 4.0]
        );
        assert_eq!(
            pool(&json!([[[1.0, 2.0], [3.0, 6.0]]])).unwrap(),
            vec![2.0, 4.0]
        );
        assert!(pool(&json!([[1.0], [1.0, 2.0]])).is_err());
        assert!(pool(&json!([])).is_err());
        assert!(pool(&json!(["a"])).is_err());
        assert_eq!(
            parse_feature_extraction(&json!([0.5, 0.5]), 1).unwrap(),
            Vectors::from_rows([[0.5f32, 0.5]]).unwrap()
        );
        assert!(parse_feature_extraction(&json!([[0.5], [0.5]]), 3).is_err());
    }

    #[test]
    fn openai_answers_are_placed_by_index_and_decoded() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(
            [1.5f32, -2.0, 0.1]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let raw = json!({"object": "list", "data": [
            {"object": "embedding", "index": 1, "embedding": b64},
            {"object": "embedding", "index": 0, "embedding": [0.25, 0.5, 1.0]},
        ], "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        .to_string();
        let (v, t) = parse_openai(raw.as_bytes(), 2).unwrap();
        assert_eq!(v.get(0), Some(&[0.25f32, 0.5, 1.0][..]));
        assert_eq!(v.get(1), Some(&[1.5f32, -2.0, 0.1][..]));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[[0.25,0.5,1.0],[1.5,-2.0,0.1]]"
        );
        assert_eq!(t, Some(7));
        let twice = json!({"data": [
            {"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}
        ]})
        .to_string();
        assert!(parse_openai(twice.as_bytes(), 2).is_err());
        assert!(decode_base64("AAA=").is_none());
    }

    #[test]
    fn dimensions_cut_and_renormalize_unit_vectors() {
        let req = EmbedRequest {
            inputs: vec!["a".into()],
            normalize: None,
            truncate: None,
            truncation_direction: None,
            dimensions: Some(2),
            max_parallel: 1,
        };
        let run = |rows: &[&[f32]], normalizes: bool| {
            let mut v = Vectors::from_rows(rows).unwrap();
            finish_vectors(&mut v, &req, normalizes);
            v.as_flat().to_vec()
        };
        assert_eq!(run(&[&[0.6, 0.0, 0.8]], false), [1.0, 0.0]);
        assert_eq!(
            run(&[&[3.0, 4.0, 5.0]], false),
            [3.0, 4.0],
            "not unit before: left as cut"
        );
        assert_eq!(run(&[&[3.0, 4.0]], true), [3.0, 4.0], "nothing to do");
        assert!(check(&Vectors::from_rows([[f32::INFINITY]]).unwrap()).is_err());
        assert!(check(&Vectors::from_rows([[1.0f32], [2.0]]).unwrap()).is_ok());
        assert!(parse_tei(b"[[1.0], [1.0, 2.0]]").is_err());
    }
}
