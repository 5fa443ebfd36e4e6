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

use base64::Engine;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::*;
use crate::provider::{EmbedRequest, Embeddings, TruncationDirection, Vectors};

/// The batch size used where the server does not say (pipelines, the
/// router, an OpenAI-style server without `/info`): TEI's own default.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 32;

/// The largest vector believed (the widest embedding models are 4096 wide).
const MAX_DIMENSIONS: usize = 65_536;

const X_COMPUTE_TOKENS: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("x-compute-tokens");

/// What one request of a batch brought back.
struct Part {
    vectors: Vectors,
    prompt_tokens: Option<u32>,
    request_id: Option<String>,
    timings: Timings,
    attempts: u32,
}

fn embeddings_url(base: &Url) -> Url {
    v1_url(base, "embeddings")
}

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

fn feature_extraction_url(model: &ModelEndpoint) -> Url {
    join(
        &model.base_url,
        &format!(
            "hf-inference/models/{}/pipeline/feature-extraction",
            model.upstream_model
        ),
    )
}

fn direction(d: TruncationDirection) -> &'static str {
    match d {
        TruncationDirection::Left => "Left",
        TruncationDirection::Right => "Right",
    }
}

/// TEI's `/embed` body: always the list form, answered by a list of vectors.
/// Written from borrowed texts, without building a JSON tree.
#[derive(Serialize)]
struct TeiBody<'a> {
    inputs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncation_direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// The OpenAI-style body. Vectors are asked for in base64: a quarter of the
/// bytes of decimal text, and the exact `f32`s the server computed.
#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// The `feature-extraction` pipeline's body; parameters only when one is
/// asked for (a pipeline that does not know one is retried without them).
fn pipeline_body(inputs: &[String], req: &EmbedRequest) -> Value {
    let mut params = serde_json::Map::new();
    if let Some(n) = req.normalize {
        params.insert("normalize".into(), n.into());
    }
    if let Some(t) = req.truncate {
        params.insert("truncate".into(), t.into());
    }
    if let Some(d) = req.truncation_direction {
        params.insert("truncation_direction".into(), direction(d).into());
    }
    let mut body = serde_json::Map::new();
    body.insert("inputs".into(), inputs.into());
    if !params.is_empty() {
        body.insert("parameters".into(), Value::Object(params));
    }
    Value::Object(body)
}

/// TEI's answer: a list of vectors, read straight into `f32` rows.
pub(crate) fn parse_tei(raw: &[u8]) -> Result<Vectors, String> {
    Vectors::from_json_slice(raw, MAX_DIMENSIONS)
}

/// One OpenAI-style embedding: a list of numbers, or base64 of `f32`s.
struct OpenAiEmbedding(Vec<f32>);

impl<'de> Deserialize<'de> for OpenAiEmbedding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OpenAiEmbedding;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of numbers or base64 of 32-bit floats")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OpenAiEmbedding, E> {
                decode_base64(s)
                    .map(OpenAiEmbedding)
                    .ok_or_else(|| E::custom("an embedding is not valid base64 of 32-bit floats"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<OpenAiEmbedding, A::Error> {
                let mut out = Vec::new();
                serde::de::DeserializeSeed::deserialize(
                    crate::provider::vectors::RowSeed {
                        out: &mut out,
                        max_dim: MAX_DIMENSIONS,
                    },
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(OpenAiEmbedding(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: OpenAiEmbedding,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
    usage: Option<OpenAiUsage>,
}

/// Little-endian `f32`s, base64-encoded (OpenAI's `encoding_format: base64`).
pub(crate) fn decode_base64(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 4 != 0 || bytes.len() / 4 > MAX_DIMENSIONS {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The OpenAI-style answer: `data[]` in any order, each placed by its
/// `index`, every index once; base64 embeddings decoded.
pub(crate) fn parse_openai(raw: &[u8], n: usize) -> Result<(Vectors, Option<u32>), String> {
    let a: OpenAiAnswer = serde_json::from_slice(raw)
        .map_err(|_| "the answer has no `data` list of embeddings".to_string())?;
    if a.data.len() != n {
        return Err(format!(
            "the answer has {} embeddings for {n} inputs",
            a.data.len()
        ));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in a.data {
        match out.get_mut(item.index) {
            Some(slot @ None) => *slot = Some(item.embedding.0),
            _ => return Err(format!("embedding index {} is out of place", item.index)),
        }
    }
    let vectors = Vectors::from_rows(out.into_iter().flatten()).map_err(|e| e.to_string())?;
    Ok((vectors, a.usage.and_then(|u| u.prompt_tokens)))
}

/// The leaf vectors under `v` (a vector, or nested lists of them).
fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a [Value]>, depth: usize) -> Result<(), String> {
    let Some(items) = v.as_array() else {
        return Err("the answer holds something other than lists of numbers".into());
    };
    if depth > 4 {
        return Err("the answer is nested deeper than the pipeline's shapes".into());
    }
    match items.first() {
        Some(Value::Number(_)) => out.push(items),
        Some(_) => {
            for i in items {
                leaves(i, out, depth + 1)?;
            }
        }
        None => return Err("the answer holds an empty list".into()),
    }
    Ok(())
}

/// One input's answer reduced to one vector: a pooled vector as it is, a
/// vector per token (`[tokens][dim]`, or `[1][tokens][dim]`) averaged —
/// mean pooling, what sentence-transformers models use unless they say
/// otherwise.
pub(crate) fn pool(v: &Value) -> Result<Vec<f32>, String> {
    let mut rows = Vec::new();
    leaves(v, &mut rows, 0)?;
    let dim = rows.first().map_or(0, |r| r.len());
    if dim > MAX_DIMENSIONS {
        return Err(format!(
            "the answer's embeddings have {dim} dimensions, more than {MAX_DIMENSIONS}"
        ));
    }
    let mut sum = vec![0f64; dim];
    for r in &rows {
        if r.len() != dim {
            return Err("the answer's token vectors differ in size".into());
        }
        for (s, x) in sum.iter_mut().zip(r.iter()) {
            *s += x
                .as_f64()
                .ok_or("the answer holds something other than numbers")?;
        }
    }
    let n = rows.len().max(1) as f64;
    Ok(sum.into_iter().map(|s| (s / n) as f32).collect())
}

/// The `feature-extraction` pipeline's answer for `n` inputs: one entry per
/// input; a single input may come back as its bare vector.
pub(crate) fn parse_feature_extraction(v: &Value, n: usize) -> Result<Vectors, String> {
    let items = v
        .as_array()
        .ok_or("the answer is not a list of embeddings")?;
    let rows: Vec<Vec<f32>> = if n == 1 && items.first().is_some_and(Value::is_number) {
        vec![pool(v)?]
    } else {
        if items.len() != n {
            return Err(format!(
                "the answer has {} embeddings for {n} inputs",
                items.len()
            ));
        }
        items.iter().map(pool).collect::<Result<_, _>>()?
    };
    Vectors::from_rows(rows).map_err(|e| e.to_string())
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
fn finish_vectors(vectors: &mut Vectors, req: &EmbedRequest, api: Api) {
    let normalize_here = api != Api::Tei && req.normalize == Some(true);
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
        if !matches!(model.api, Api::Tei | Api::Chat) {
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

    /// One request of a batch.
    async fn embed_part(
        &self,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        let sent = match model.api {
            Api::Tei => {
                let body = TeiBody {
                    inputs,
                    normalize: req.normalize,
                    truncate: req.truncate,
                    truncation_direction: req.truncation_direction.map(direction),
                    dimensions: req.dimensions,
                };
                let url = join(&model.base_url, "embed");
                self.post_json(model, url, self.body_of(model, &body)?)
                    .await
            }
            Api::Chat => {
                let body = OpenAiBody {
                    model: &model.upstream_model,
                    input: inputs,
                    encoding_format: "base64",
                    dimensions: req.dimensions,
                };
                let url = embeddings_url(&model.base_url);
                self.post_json(model, url, self.body_of(model, &body)?)
                    .await
            }
            Api::Pipeline => {
                let url = join(&model.base_url, "");
                self.post_pipeline(model, url, &pipeline_body(inputs, req))
                    .await
            }
            Api::Router => {
                let url = feature_extraction_url(model);
                self.post_pipeline(model, url, &pipeline_body(inputs, req))
                    .await
            }
            Api::Tgi => Err(self.cannot_embed(model)),
        };
        let (headers, raw, attempts, start) = sent?;
        let bad = |what: String| self.invalid(Some(model), &headers, &what);
        let (vectors, prompt_tokens) = match model.api {
            Api::Tei => match parse_tei(&raw) {
                Ok(v) => (v, wire::header_u32(&headers, &X_COMPUTE_TOKENS)),
                Err(why) => {
                    self.json_of(Some(model), &headers, &raw)?;
                    return Err(bad(format!(
                        "the answer is not a list of embeddings ({why})"
                    )));
                }
            },
            Api::Chat => parse_openai(&raw, inputs.len()).map_err(bad)?,
            _ => {
                let v = self.json_of(Some(model), &headers, &raw)?;
                (
                    parse_feature_extraction(&v, inputs.len()).map_err(bad)?,
                    None,
                )
            }
        };
        if vectors.len() != inputs.len() {
            return Err(bad(format!(
                "the answer has {} embeddings for {} inputs",
                vectors.len(),
                inputs.len()
            )));
        }
        check(&vectors).map_err(bad)?;
        Ok(Part {
            vectors,
            prompt_tokens,
            request_id: wire::request_id(&headers),
            timings: Timings {
                total: start.elapsed(),
                ..wire::server_timings(&headers)
            },
            attempts,
        })
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
        if model.api == Api::Tgi {
            return Err(inner.cannot_embed(model));
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
    let recheck = parts.len() > 1
        || req.dimensions.is_some()
        || (model.api != Api::Tei && req.normalize == Some(true));
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
    finish_vectors(&mut vectors, req, model.api);
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
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            embeddings_url(&u("http://t/")).as_str(),
            "http://t/v1/embeddings"
        );
        assert_eq!(
            embeddings_url(&u("https://router.huggingface.co/v1")).as_str(),
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
        let run = |rows: &[&[f32]], api| {
            let mut v = Vectors::from_rows(rows).unwrap();
            finish_vectors(&mut v, &req, api);
            v.as_flat().to_vec()
        };
        assert_eq!(run(&[&[0.6, 0.0, 0.8]], Api::Pipeline), [1.0, 0.0]);
        assert_eq!(
            run(&[&[3.0, 4.0, 5.0]], Api::Pipeline),
            [3.0, 4.0],
            "not unit before: left as cut"
        );
        assert_eq!(run(&[&[3.0, 4.0]], Api::Tei), [3.0, 4.0], "nothing to do");
        assert!(check(&Vectors::from_rows([[f32::INFINITY]]).unwrap()).is_err());
        assert!(check(&Vectors::from_rows([[1.0f32], [2.0]]).unwrap()).is_ok());
        assert!(parse_tei(b"[[1.0], [1.0, 2.0]]").is_err());
    }
}
