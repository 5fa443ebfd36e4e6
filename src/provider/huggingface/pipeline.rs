//! huggingface-inference-toolkit pipelines (`api = "pipeline"`: `POST /`
//! with `inputs`): text generation, summarization and feature extraction,
//! in typed bodies; a pipeline that refuses parameters it does not know is
//! asked once more without them. The router's `hf-inference` models speak
//! the same bodies at their own URLs (`router`).

use std::time::Instant;

use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::flavour::{Flavour, Probe};
use super::flavour::{Part, MAX_DIMENSIONS};
use super::wire::Parsed;
use super::{completion, join, HuggingFace, Inner};
use crate::provider::{
    Completion, EmbedRequest, GenerationParams, ModelEndpoint, ProviderError, SummarizeRequest,
    TextRequest, TruncationDirection, Usage, Vectors,
};

pub(super) struct Pipeline;

/// `{"inputs", "parameters"}`, `parameters` left out when there are none.
#[derive(Serialize)]
pub(super) struct Body<'a, I: ?Sized + Serialize, P: Serialize> {
    inputs: &'a I,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<P>,
}

impl<I: ?Sized + Serialize, P: Serialize> Body<'_, I, P> {
    fn bare(&self) -> Body<'_, I, P> {
        Body {
            inputs: self.inputs,
            parameters: None,
        }
    }
}

/// A text-generation pipeline's parameters: the prompt is not echoed back
/// (`return_full_text: false`); stop sequences and seeds are not pipeline
/// parameters and are not sent.
#[derive(Serialize)]
pub(super) struct TextParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_new_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    return_full_text: bool,
}

pub(super) fn text_body<'a>(
    prompt: &'a str,
    params: &GenerationParams,
) -> Body<'a, str, TextParameters> {
    Body {
        inputs: prompt,
        parameters: Some(TextParameters {
            max_new_tokens: params.max_tokens,
            temperature: params.temperature,
            top_p: params.top_p,
            return_full_text: false,
        }),
    }
}

#[derive(Serialize)]
pub(super) struct SummaryParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_length: Option<u32>,
}

/// A summarization pipeline: `parameters` only when a length is asked for.
pub(super) fn summarize_body(req: &SummarizeRequest) -> Body<'_, str, SummaryParameters> {
    let asked = req.max_length.is_some() || req.min_length.is_some();
    Body {
        inputs: &req.text,
        parameters: asked.then_some(SummaryParameters {
            max_length: req.max_length,
            min_length: req.min_length,
        }),
    }
}

#[derive(Serialize)]
pub(super) struct EmbedParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    normalize: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncation_direction: Option<&'static str>,
}

/// TEI and the pipelines' spelling of a truncation direction.
pub(super) fn direction(d: TruncationDirection) -> &'static str {
    match d {
        TruncationDirection::Left => "Left",
        TruncationDirection::Right => "Right",
    }
}

/// The `feature-extraction` pipeline's body: parameters only when one is
/// asked for.
pub(super) fn embed_body<'a>(
    inputs: &'a [String],
    req: &EmbedRequest,
) -> Body<'a, [String], EmbedParameters> {
    let asked =
        req.normalize.is_some() || req.truncate.is_some() || req.truncation_direction.is_some();
    Body {
        inputs,
        parameters: asked.then_some(EmbedParameters {
            normalize: req.normalize,
            truncate: req.truncate,
            truncation_direction: req.truncation_direction.map(direction),
        }),
    }
}

/// Whether a pipeline's 400 says it did not understand some parameters.
pub(super) fn is_unused_kwargs(message: &str) -> bool {
    message.contains("model_kwargs")
        || message.contains("are not used by the model")
        || message.contains("unexpected keyword argument")
}

/// Pipelines answer `[{"summary_text"}]`, `[{"generated_text"}]`, or the object alone.
pub(super) fn parse_text(v: &Value) -> Option<Parsed> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let text = v
        .get("summary_text")
        .or_else(|| v.get("generated_text"))?
        .as_str()?
        .to_string();
    Some(Parsed {
        text,
        finish_reason: None,
        usage: Usage::default(),
    })
}

impl Inner {
    /// POST a pipeline's body. Pipelines refuse parameters they do not know
    /// with a 400; like the official client, try once more without them.
    pub(super) async fn post_pipeline<I: ?Sized + Serialize, P: Serialize>(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: &Body<'_, I, P>,
    ) -> Result<(HeaderMap, bytes::Bytes, u32, Instant), ProviderError> {
        match self
            .post_json(model, url.clone(), self.body_of(model, body)?)
            .await
        {
            Err(e)
                if e.status == Some(400)
                    && body.parameters.is_some()
                    && e.upstream_message().is_some_and(is_unused_kwargs) =>
            {
                tracing::info!(integration = %self.settings.integration, model = %model.name, "pipeline refused parameters; retrying without them");
                let bare = self.body_of(model, &body.bare())?;
                self.post_json(model, url, bare).await
            }
            other => other,
        }
    }

    /// A text pipeline's answer (summarization, text generation).
    pub(super) async fn pipeline_text<I: ?Sized + Serialize, P: Serialize>(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: &Body<'_, I, P>,
    ) -> Result<Completion, ProviderError> {
        let (headers, raw, attempts, start) = self.post_pipeline(model, url, body).await?;
        let v = self.json_of(Some(model), &headers, &raw)?;
        let parsed = parse_text(&v).ok_or_else(|| self.shape_error(model, &headers))?;
        Ok(completion(parsed, &headers, attempts, start))
    }

    /// One feature-extraction request at `url`.
    pub(super) async fn pipeline_embed(
        &self,
        model: &ModelEndpoint,
        url: Url,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        let (headers, raw, attempts, start) = self
            .post_pipeline(model, url, &embed_body(inputs, req))
            .await?;
        let v = self.json_of(Some(model), &headers, &raw)?;
        let vectors = parse_feature_extraction(&v, inputs.len())
            .map_err(|what| self.invalid(Some(model), &headers, &what))?;
        Ok(Part::new(vectors, None, &headers, attempts, start))
    }
}

impl Flavour for Pipeline {
    async fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        let url = join(&model.base_url, "");
        hf.inner
            .pipeline_text(model, url, &text_body(&req.prompt, &req.params))
            .await
    }

    async fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        let url = join(&model.base_url, "");
        hf.inner
            .pipeline_text(model, url, &summarize_body(req))
            .await
    }

    async fn embed_part(
        &self,
        inner: &Inner,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        inner
            .pipeline_embed(model, join(&model.base_url, ""), inputs, req)
            .await
    }

    fn probe(&self) -> Probe {
        Probe::Health
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_bodies_keep_the_wire_shapes() {
        let p = GenerationParams {
            max_tokens: Some(5),
            stop: vec!["x".into()],
            seed: Some(1),
            ..GenerationParams::default()
        };
        assert_eq!(
            serde_json::to_value(text_body("hi", &p)).unwrap(),
            json!({"inputs": "hi", "parameters": {"max_new_tokens": 5, "return_full_text": false}})
        );
        let s = SummarizeRequest {
            text: "t".into(),
            max_length: None,
            min_length: None,
        };
        assert_eq!(
            serde_json::to_value(summarize_body(&s)).unwrap(),
            json!({"inputs": "t"})
        );
        let b = text_body("hi", &p);
        assert_eq!(
            serde_json::to_value(b.bare()).unwrap(),
            json!({"inputs": "hi"})
        );
    }

    #[test]
    fn parses_each_answer_shape() {
        assert_eq!(
            parse_text(&json!([{"summary_text": "s"}])).unwrap().text,
            "s"
        );
        assert_eq!(
            parse_text(&json!({"generated_text": "g"})).unwrap().text,
            "g"
        );
        assert!(parse_text(&json!({"label": "x"})).is_none());
    }
}
