//! text-embeddings-inference (`api = "tei"`): `/embed` with the list form
//! (answered by a list of vectors, read straight into `f32` rows), its
//! `x-compute-tokens`, `/health` and `/info`. It only embeds.

use serde::Serialize;

use super::flavour::{Flavour, Probe};
use super::flavour::{Part, MAX_DIMENSIONS, X_COMPUTE_TOKENS};
use super::pipeline::direction;
use super::wire::header_u32;
use super::{join, HuggingFace, Inner};
use crate::provider::{
    Completion, EmbedRequest, ErrorKind, ModelEndpoint, ProviderError, SummarizeRequest,
    TextRequest, Vectors,
};

pub(super) struct Tei;

/// `/embed`'s body, written from borrowed texts.
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

/// TEI's answer: a list of vectors, read straight into `f32` rows.
pub(crate) fn parse_tei(raw: &[u8]) -> Result<Vectors, String> {
    Vectors::from_json_slice(raw, MAX_DIMENSIONS)
}

impl Flavour for Tei {
    async fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        _req: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        Err(self.cannot(&hf.inner, model, "generate"))
    }

    async fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        _req: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        Err(self.cannot(&hf.inner, model, "summarize"))
    }

    async fn embed_part(
        &self,
        inner: &Inner,
        model: &ModelEndpoint,
        inputs: &[String],
        req: &EmbedRequest,
    ) -> Result<Part, ProviderError> {
        let body = TeiBody {
            inputs,
            normalize: req.normalize,
            truncate: req.truncate,
            truncation_direction: req.truncation_direction.map(direction),
            dimensions: req.dimensions,
        };
        let url = join(&model.base_url, "embed");
        let (headers, raw, attempts, start) = inner
            .post_json(model, url, inner.body_of(model, &body)?)
            .await?;
        let vectors = match parse_tei(&raw) {
            Ok(v) => v,
            Err(why) => {
                inner.json_of(Some(model), &headers, &raw)?;
                return Err(inner.invalid(
                    Some(model),
                    &headers,
                    &format!("the answer is not a list of embeddings ({why})"),
                ));
            }
        };
        Ok(Part::new(
            vectors,
            header_u32(&headers, &X_COMPUTE_TOKENS),
            &headers,
            attempts,
            start,
        ))
    }

    fn has_info(&self) -> bool {
        true
    }

    /// TEI normalizes vectors itself when asked.
    fn normalizes(&self) -> bool {
        true
    }

    fn probe(&self) -> Probe {
        Probe::HealthAndInfo
    }

    fn cannot(&self, inner: &Inner, model: &ModelEndpoint, what: &str) -> ProviderError {
        let _ = what;
        inner
            .ctx(Some(model))
            .error(ErrorKind::InvalidRequest)
            .with_detail(
                "a `tei` endpoint only embeds: use a `tgi`, `chat` or `pipeline` model to generate",
            )
    }
}
