//! The fake's embedding servers.
//!
//! text-embeddings-inference under `/tei`: `POST /tei/embed`, `GET
//! /tei/info`, `GET /tei/health`, and the OpenAI-style `POST
//! …/v1/embeddings` (TEI's own under `/tei`, or anywhere else, as the
//! router's). What was checked against TEI's `docs/openapi.json` and its
//! router source, and is spoken here:
//! - `/embed` takes `inputs` (a string or a list), `normalize` (default
//!   true), `truncate` (default false), `truncation_direction` (`Left`/
//!   `Right`, any case), `dimensions`, `prompt_name`; it answers a list of
//!   vectors (one per input, a list of one for a string), with
//!   `x-compute-tokens`, `x-compute-characters` and the time headers.
//! - `/v1/embeddings` takes `input`, `model`, `encoding_format` (`float` or
//!   `base64`: little-endian `f32`s), `dimensions`, `user`; it answers
//!   `{object: "list", data: [{object, embedding, index}], model, usage:
//!   {prompt_tokens, total_tokens}}`; its errors are `{message, code,
//!   error_type}`.
//! - Errors are `{error, error_type}` with the type's variant name as TEI's
//!   serde writes it (`Validation`, `Overloaded`, `Backend`, `Empty`,
//!   `Tokenizer`, `Unhealthy`): 422 a batch above `max_client_batch_size`
//!   (the source says 422; the OpenAPI example says 413) and an input
//!   longer than `max_input_length` without `truncate`; 400 an empty
//!   batch; 413 a body above the payload limit, in plain text from the HTTP
//!   layer; 424 and 429 through scripted faults.
//!
//! The `feature-extraction` pipeline at `POST /fe` (an inference-toolkit
//! endpoint) and at the router's
//! `/hf-inference/models/{repo}/pipeline/feature-extraction`: `inputs` a
//! string or a list, known `parameters` (`normalize`, `truncate`,
//! `truncation_direction`, `prompt_name`), every failure a 400 `{error}`;
//! it answers pooled vectors, or with [`super::Behaviour::fe_per_token`] one
//! vector per word whose mean is the pooled one.
//!
//! Vectors are [`fake_embedding`]: a hash of the text, so tests can check
//! which vector went with which input.

use base64::Engine;
use serde_json::{json, Value};

use super::{is_json, json_response, respond, words, Behaviour, Body, HeaderMap, Response};

/// TEI's payload limit (`--payload-limit`, 2 MB by default).
const PAYLOAD_LIMIT: usize = 2_000_000;

/// The vector the fake gives `text`: `dim` numbers drawn from a hash of the
/// text (FNV-1a, then splitmix64 per position: cheap enough that a benchmark
/// measures hfconnect, not the fake), scaled to unit length when `normalize`.
pub fn fake_embedding(text: &str, dim: usize, normalize: bool) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dim as u64)
        .map(|i| {
            let mut z = h.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for x in &mut v {
                *x /= norm;
            }
        }
    }
    v
}

/// The inputs of a body: a string, or a list of strings.
fn inputs_of(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

fn tei_error(status: u16, message: &str, error_type: &str, openai: bool) -> Response {
    let body = if openai {
        json!({"message": message, "code": status, "error_type": error_type})
    } else {
        json!({"error": message, "error_type": error_type})
    };
    respond(status, Body::Json(body), &[])
}

/// TEI's checks of a body and its inputs; the parsed body and inputs.
#[allow(clippy::result_large_err)] // the error is the response to send
fn checked(
    headers: &HeaderMap,
    body: &[u8],
    b: &Behaviour,
    key: &str,
    openai: bool,
) -> Result<(Value, Vec<String>, bool), Response> {
    if body.len() > PAYLOAD_LIMIT {
        return Err(respond(
            413,
            Body::Text("Failed to buffer the request body: length limit exceeded".into()),
            &[],
        ));
    }
    if !is_json(headers) {
        return Err(respond(
            415,
            Body::Text("Expected request with `Content-Type: application/json`".into()),
            &[],
        ));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(respond(
                422,
                Body::Text(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                )),
                &[],
            ))
        }
    };
    let Some(inputs) = inputs_of(v.get(key)) else {
        return Err(respond(
            422,
            Body::Text(format!(
                "Failed to deserialize the JSON body into the target type: missing field `{key}`"
            )),
            &[],
        ));
    };
    let batch = v.get(key).is_some_and(Value::is_array);
    if batch && inputs.is_empty() {
        return Err(tei_error(400, "`inputs` cannot be empty", "Empty", openai));
    }
    if inputs.len() > b.tei_max_batch {
        return Err(tei_error(
            422,
            &format!(
                "batch size {} > maximum allowed batch size {}",
                inputs.len(),
                b.tei_max_batch
            ),
            "Validation",
            openai,
        ));
    }
    let truncate = v.get("truncate").and_then(Value::as_bool).unwrap_or(false);
    if !truncate {
        if let Some(n) = inputs
            .iter()
            .map(|i| words(i))
            .find(|n| *n > b.tei_max_input)
        {
            return Err(tei_error(
                422,
                &format!(
                    "Input validation error: `inputs` must have less than {} tokens. Given: {n}",
                    b.tei_max_input
                ),
                "Validation",
                openai,
            ));
        }
    }
    Ok((v, inputs, truncate))
}

/// `dimensions` asked for: a prefix of the vector, at most the model's.
#[allow(clippy::result_large_err)]
fn dims_of(v: &Value, b: &Behaviour, openai: bool) -> Result<usize, Response> {
    match v.get("dimensions").and_then(Value::as_u64) {
        None => Ok(b.embed_dim),
        Some(d) if d as usize > b.embed_dim || d == 0 => Err(tei_error(
            422,
            &format!(
                "Input validation error: `dimensions` must be between 1 and {}",
                b.embed_dim
            ),
            "Validation",
            openai,
        )),
        Some(d) => Ok(d as usize),
    }
}

/// The model's vector for `text`: cut to `dims`, then scaled to unit length
/// when `normalize` (Matryoshka models are cut before they are normalized).
fn vector(text: &str, b: &Behaviour, dims: usize, normalize: bool) -> Vec<f32> {
    let mut v = fake_embedding(text, b.embed_dim, false);
    v.truncate(dims);
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

fn metadata(inputs: &[String]) -> Vec<(String, String)> {
    let tokens: usize = inputs.iter().map(|i| words(i)).sum();
    let chars: usize = inputs.iter().map(|i| i.chars().count()).sum();
    vec![
        ("x-compute-type".into(), "cpu".into()),
        ("x-compute-tokens".into(), tokens.to_string()),
        ("x-compute-characters".into(), chars.to_string()),
        ("x-total-time".into(), "1".into()),
        ("x-tokenization-time".into(), "0".into()),
        ("x-queue-time".into(), "0".into()),
        ("x-inference-time".into(), "1".into()),
    ]
}

/// `POST /tei/embed`.
pub(super) fn embed(headers: &HeaderMap, body: &[u8], b: &Behaviour) -> Response {
    let (v, inputs, _) = match checked(headers, body, b, "inputs", false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let dims = match dims_of(&v, b, false) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let normalize = v.get("normalize").and_then(Value::as_bool).unwrap_or(true);
    let vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|t| vector(t, b, dims, normalize))
        .collect();
    let mut headers = vec![("x-request-id".to_string(), "fake-embed-1".to_string())];
    headers.extend(metadata(&inputs));
    floats(&vectors, &headers)
}

/// A JSON answer written straight from `f32`s, as TEI's serde writes them
/// (each in its shortest form: `0.1`, not the `0.10000000149011612` that a
/// detour through `serde_json::Value`'s `f64` would print).
fn floats(v: &impl serde::Serialize, headers: &[(String, String)]) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = respond(200, Body::Empty, headers);
    *r.body_mut() = axum::body::Body::from(bytes);
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST …/v1/embeddings` (TEI's OpenAI-compatible route; vectors normalized).
pub(super) fn openai_embeddings(headers: &HeaderMap, body: &[u8], b: &Behaviour) -> Response {
    let (v, inputs, _) = match checked(headers, body, b, "input", true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let dims = match dims_of(&v, b, true) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let base64 = match v.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return respond(
                422,
                Body::Text(format!(
                    "Failed to deserialize the JSON body into the target type: encoding_format: unknown variant `{other}`, expected `float` or `base64`"
                )),
                &[],
            )
        }
    };
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Embedding {
        Floats(Vec<f32>),
        Base64(String),
    }
    #[derive(serde::Serialize)]
    struct Item {
        object: &'static str,
        embedding: Embedding,
        index: usize,
    }
    let data: Vec<Item> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let vec = vector(t, b, dims, true);
            let embedding = if base64 {
                let bytes: Vec<u8> = vec.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Embedding::Floats(vec)
            };
            Item {
                object: "embedding",
                embedding,
                index: i,
            }
        })
        .collect();
    let tokens: usize = inputs.iter().map(|i| words(i)).sum();
    #[derive(serde::Serialize)]
    struct Answer {
        object: &'static str,
        data: Vec<Item>,
        model: &'static str,
        usage: Value,
    }
    let mut headers = vec![("x-request-id".to_string(), "fake-embed-1".to_string())];
    headers.extend(metadata(&inputs));
    floats(
        &Answer {
            object: "list",
            data,
            model: "fake/embedder",
            usage: json!({"prompt_tokens": tokens, "total_tokens": tokens}),
        },
        &headers,
    )
}

/// `GET /tei/info`.
pub(super) fn info(b: &Behaviour) -> Response {
    json_response(
        &json!({
            "model_id": "fake/embedder",
            "model_sha": null,
            "model_dtype": "float16",
            "model_type": {"embedding": {"pooling": "mean"}},
            "served_model_name": "fake/embedder",
            "max_concurrent_requests": 512,
            "max_input_length": b.tei_max_input,
            "max_batch_tokens": 16384,
            "max_batch_requests": null,
            "max_client_batch_size": b.tei_max_batch,
            "auto_truncate": false,
            "tokenization_workers": 2,
            "version": "fake-1.8.0",
            "sha": null,
            "docker_label": null,
        }),
        &[],
    )
}

/// The `feature-extraction` pipeline (`POST /fe`, the router's `…/pipeline/feature-extraction`).
pub(super) fn feature_extraction(headers: &HeaderMap, body: &[u8], b: &Behaviour) -> Response {
    let bad = |m: &str| respond(400, Body::Json(json!({"error": m})), &[]);
    if !is_json(headers) {
        return bad(
            "Content type \"None\" not supported. Supported content types are: application/json",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad("Expecting value: line 1 column 1 (char 0)");
    };
    let Some(inputs) = inputs_of(v.get("inputs")) else {
        return bad("Body needs to provide a inputs key");
    };
    let known = [
        "normalize",
        "truncate",
        "truncation_direction",
        "prompt_name",
    ];
    if let Some(params) = v.get("parameters").and_then(Value::as_object) {
        let unknown: Vec<String> = params
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("'{k}'"))
            .collect();
        if !unknown.is_empty() {
            return bad(&format!(
                "The following `model_kwargs` are not used by the model: [{}] (note: typos in the generate arguments will also show up in this list)",
                unknown.join(", ")
            ));
        }
    }
    let normalize = v
        .pointer("/parameters/normalize")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Answer {
        Pooled(Vec<f32>),
        PerToken(Vec<Vec<f32>>),
        Many(Vec<Answer>),
    }
    let answer = |t: &str| -> Answer {
        let pooled = vector(t, b, b.embed_dim, normalize);
        if !b.fe_per_token {
            return Answer::Pooled(pooled);
        }
        // One row per word, spread around the pooled vector so that their mean is it.
        let n = words(t).max(1);
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let offset = i as f32 - (n - 1) as f32 / 2.0;
                pooled.iter().map(|x| x + offset * 0.125).collect()
            })
            .collect();
        Answer::PerToken(rows)
    };
    let out = match v.get("inputs") {
        Some(Value::String(s)) => answer(s),
        _ => Answer::Many(inputs.iter().map(|t| answer(t)).collect()),
    };
    floats(
        &out,
        &[("x-request-id".to_string(), "fake-fe-1".to_string())],
    )
}
