//! The serverless router (`api = "router"`): `hf-inference` models at
//! `{router}/hf-inference/models/{repo}` speak the pipelines' bodies; their
//! chat route is under the model's URL, and feature extraction under its
//! `pipeline/feature-extraction`. The router is not an Inference Endpoint:
//! no management API state, no health route.

use url::Url;

use super::chat_route::ChatRoute;
use super::flavour::Part;
use super::flavour::{Flavour, Probe};
use super::pipeline::{summarize_body, text_body};
use super::{join, HuggingFace, Inner};
use crate::provider::{
    ChatRequest, Completion, CompletionStream, EmbedRequest, ModelEndpoint, ProviderError,
    SummarizeRequest, TextRequest,
};

pub(super) struct Router;

pub(super) fn model_url(model: &ModelEndpoint) -> Url {
    join(
        &model.base_url,
        &format!("hf-inference/models/{}", model.upstream_model),
    )
}

fn chat_url(model: &ModelEndpoint) -> Url {
    join(
        &model.base_url,
        &format!(
            "hf-inference/models/{}/v1/chat/completions",
            model.upstream_model
        ),
    )
}

pub(super) fn feature_extraction_url(model: &ModelEndpoint) -> Url {
    join(
        &model.base_url,
        &format!(
            "hf-inference/models/{}/pipeline/feature-extraction",
            model.upstream_model
        ),
    )
}

impl Flavour for Router {
    async fn generate(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        hf.inner
            .pipeline_text(
                model,
                model_url(model),
                &text_body(&req.prompt, &req.params),
            )
            .await
    }

    async fn chat(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        ChatRoute
            .chat_at(hf, model, chat_url(model), &req.messages, &req.params)
            .await
    }

    fn chat_stream(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: ChatRequest,
    ) -> CompletionStream {
        ChatRoute.chat_stream_at(hf, model, chat_url(model), &req.messages, &req.params)
    }

    async fn summarize(
        &self,
        hf: &HuggingFace,
        model: &ModelEndpoint,
        req: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        hf.inner
            .pipeline_text(model, model_url(model), &summarize_body(req))
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
            .pipeline_embed(model, feature_extraction_url(model), inputs, req)
            .await
    }

    fn probe(&self) -> Probe {
        Probe::Nothing
    }

    fn managed(&self) -> bool {
        false
    }
}
