//! An in-process provider for tests (feature `test-support`): it answers
//! what it is told, after the delay it is told, and records what it was
//! asked. Delays run on tokio's clock, so a test under
//! `tokio::time::pause` waits for nothing; no HTTP, no fake server.
//!
//! ```
//! # use hfconnect::testing::provider::scripted::{Reply, Scripted};
//! let provider = Scripted::new();
//! provider.then(Reply::text("first answer"));
//! provider.always(Reply::echo());
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{
    ChatRequest, Completion, CompletionStream, EmbedRequest, Embeddings, EndpointInfo, ErrorKind,
    FinishReason, LlmProvider, ModelEndpoint, ProviderError, StreamEvent, SummarizeRequest,
    TextRequest, Timings, Usage, Vectors,
};

/// What one call answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    answer: Answer,
    delay: Duration,
    finish: Option<FinishReason>,
    usage: Usage,
    chunks: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Echo,
    Text(String),
    Error(ErrorKind, Option<Duration>),
}

impl Reply {
    /// `echo: ` and what was asked (the prompt, the last message, the text).
    pub fn echo() -> Reply {
        Reply {
            answer: Answer::Echo,
            delay: Duration::ZERO,
            finish: Some(FinishReason::Stop),
            usage: Usage {
                prompt_tokens: Some(1),
                completion_tokens: Some(1),
            },
            chunks: None,
        }
    }

    /// This text.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            answer: Answer::Text(text.into()),
            ..Reply::echo()
        }
    }

    /// A failure of this kind.
    pub fn error(kind: ErrorKind) -> Reply {
        Reply {
            answer: Answer::Error(kind, None),
            ..Reply::echo()
        }
    }

    /// A failure of this kind that names a wait (`Retry-After`).
    pub fn error_with_retry_after(kind: ErrorKind, wait: Duration) -> Reply {
        Reply {
            answer: Answer::Error(kind, Some(wait)),
            ..Reply::echo()
        }
    }

    /// Answer after `delay` (tokio time).
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Why generation stopped.
    #[must_use]
    pub fn finish(mut self, reason: Option<FinishReason>) -> Reply {
        self.finish = reason;
        self
    }

    /// Token counts.
    #[must_use]
    pub fn tokens(mut self, prompt: Option<u32>, completion: Option<u32>) -> Reply {
        self.usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        };
        self
    }

    /// Stream these chunks (the text is their concatenation); by default a
    /// streamed answer is one chunk per word.
    #[must_use]
    pub fn chunks<I: IntoIterator<Item = S>, S: Into<String>>(mut self, chunks: I) -> Reply {
        let chunks: Vec<String> = chunks.into_iter().map(Into::into).collect();
        self.answer = Answer::Text(chunks.concat());
        self.chunks = Some(chunks);
        self
    }
}

/// A call the provider received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The integration it was made for.
    pub integration: String,
    /// The model's name.
    pub model: String,
    /// `generate`, `generate_stream`, `chat`, `chat_stream`, `summarize`, `embed` or `probe`.
    pub call: &'static str,
    /// The prompt, the messages as `role: text` lines, the text to summarize,
    /// or the texts to embed, one per line.
    pub input: String,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Reply>,
    fallback: Reply,
    asked: Vec<Asked>,
}

/// The scripted provider. Clones share the script and the record, so a test
/// keeps one to script and read while the Connector calls the others.
#[derive(Debug, Clone)]
pub struct Scripted {
    integration: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl Default for Scripted {
    fn default() -> Self {
        Scripted::new()
    }
}

impl Scripted {
    /// A provider that echoes until told otherwise.
    pub fn new() -> Scripted {
        Scripted {
            integration: Arc::from("scripted"),
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                fallback: Reply::echo(),
                asked: Vec::new(),
            })),
        }
    }

    /// The same script, answering for `integration` (its name in errors).
    #[must_use]
    pub fn serving(&self, integration: &str) -> Scripted {
        Scripted {
            integration: Arc::from(integration),
            state: self.state.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer the next call (after those already queued) with `reply`.
    pub fn then(&self, reply: Reply) -> &Scripted {
        self.state().queue.push_back(reply);
        self
    }

    /// Answer every call past the queue with `reply`.
    pub fn always(&self, reply: Reply) -> &Scripted {
        self.state().fallback = reply;
        self
    }

    /// The calls received so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.state().asked.clone()
    }

    /// Record a call and pick its reply.
    fn next(&self, model: &ModelEndpoint, call: &'static str, input: String) -> Reply {
        let mut s = self.state();
        s.asked.push(Asked {
            integration: self.integration.to_string(),
            model: model.name.clone(),
            call,
            input,
        });
        s.queue.pop_front().unwrap_or_else(|| s.fallback.clone())
    }

    fn completion(
        &self,
        model: &ModelEndpoint,
        reply: &Reply,
        input: &str,
    ) -> Result<Completion, ProviderError> {
        let text = match &reply.answer {
            Answer::Echo => format!("echo: {input}"),
            Answer::Text(t) => t.clone(),
            Answer::Error(kind, wait) => {
                let mut e = ProviderError::new(*kind, &self.integration, Some(&model.name))
                    .with_detail("scripted");
                e.retry_after = *wait;
                return Err(e);
            }
        };
        Ok(Completion {
            text,
            finish_reason: reply.finish.clone(),
            usage: reply.usage,
            request_id: None,
            timings: Timings {
                total: reply.delay,
                ..Timings::default()
            },
            attempts: 1,
        })
    }

    async fn answer(
        &self,
        model: &ModelEndpoint,
        call: &'static str,
        input: String,
    ) -> Result<Completion, ProviderError> {
        let reply = self.next(model, call, input.clone());
        tokio::time::sleep(reply.delay).await;
        self.completion(model, &reply, &input)
    }

    fn stream(&self, model: &ModelEndpoint, call: &'static str, input: String) -> CompletionStream {
        let reply = self.next(model, call, input.clone());
        let done = self.completion(model, &reply, &input);
        Box::pin(async_stream::stream! {
            tokio::time::sleep(reply.delay).await;
            match done {
                Ok(c) => {
                    let chunks = reply.chunks.clone().unwrap_or_else(|| {
                        c.text.split_inclusive(' ').map(str::to_string).collect()
                    });
                    for chunk in chunks {
                        yield Ok(StreamEvent::Token(chunk));
                    }
                    yield Ok(StreamEvent::Done(c));
                }
                Err(e) => yield Err(e),
            }
        })
    }
}

/// The vector the scripted provider gives `text`: its length in characters,
/// then its bytes' sum, then zeros, `size` numbers in all.
pub fn scripted_vector(text: &str, size: usize) -> Vec<f32> {
    let mut v = vec![0.0; size];
    if let Some(x) = v.first_mut() {
        *x = text.chars().count() as f32;
    }
    if let Some(x) = v.get_mut(1) {
        *x = text.bytes().map(f32::from).sum();
    }
    v
}

fn messages_text(r: &ChatRequest) -> String {
    r.messages
        .iter()
        .map(|m| format!("{:?}: {}", m.role, m.content).to_lowercase())
        .collect::<Vec<_>>()
        .join("\n")
}

impl LlmProvider for Scripted {
    async fn generate(
        &self,
        model: &ModelEndpoint,
        request: &TextRequest,
    ) -> Result<Completion, ProviderError> {
        self.answer(model, "generate", request.prompt.clone()).await
    }

    fn generate_stream(&self, model: &ModelEndpoint, request: TextRequest) -> CompletionStream {
        self.stream(model, "generate_stream", request.prompt)
    }

    async fn chat(
        &self,
        model: &ModelEndpoint,
        request: &ChatRequest,
    ) -> Result<Completion, ProviderError> {
        self.answer(model, "chat", messages_text(request)).await
    }

    fn chat_stream(&self, model: &ModelEndpoint, request: ChatRequest) -> CompletionStream {
        self.stream(model, "chat_stream", messages_text(&request))
    }

    async fn summarize(
        &self,
        model: &ModelEndpoint,
        request: &SummarizeRequest,
    ) -> Result<Completion, ProviderError> {
        self.answer(model, "summarize", request.text.clone()).await
    }

    /// Every input's vector is [`scripted_vector`] of its text; the reply's
    /// text is not used, its delay, errors and prompt tokens are.
    async fn embed(
        &self,
        model: &ModelEndpoint,
        request: &EmbedRequest,
    ) -> Result<Embeddings, ProviderError> {
        let c = self
            .answer(model, "embed", request.inputs.join("\n"))
            .await?;
        let size = request.dimensions.unwrap_or(4) as usize;
        Ok(Embeddings {
            vectors: Vectors::from_rows(request.inputs.iter().map(|t| scripted_vector(t, size)))
                .map_err(|e| {
                    ProviderError::new(ErrorKind::InvalidResponse, "scripted", None)
                        .with_detail(e.to_string())
                })?,
            usage: Usage {
                prompt_tokens: c.usage.prompt_tokens,
                completion_tokens: Some(0),
            },
            request_id: None,
            timings: c.timings,
            attempts: 1,
        })
    }

    async fn probe(&self, model: &ModelEndpoint) -> Result<EndpointInfo, ProviderError> {
        self.answer(model, "probe", String::new())
            .await
            .map(|_| EndpointInfo {
                healthy: true,
                model_id: Some(model.upstream_model.clone()),
                ..EndpointInfo::default()
            })
    }
}
