//! Streamed calls, the shared part: server-sent events read (as TGI tokens
//! or chat deltas: the flavours' `event`s), retried until the first token is
//! delivered and never after, with errors inside a 200 stream and answers
//! over the limit turned into typed errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use url::Url;

use super::classify::{classify_event, CallContext};
use super::sse::SseParser;
use super::wire::{self, Parsed};
use super::{completion, Attempts, Inner};
use crate::provider::{
    CompletionStream, ErrorKind, ModelEndpoint, ProviderError, StreamEvent, Usage,
};

/// How a flavour's stream reads: what one event means, and whether it is
/// OpenAI-style (`[DONE]` ends it; text, finish reason and usage are
/// gathered from its deltas) or TGI's (its last event carries the whole).
#[derive(Clone, Copy)]
pub(super) struct StreamKind {
    pub event: fn(&Value, &mut ChatAcc) -> Step,
    pub chat: bool,
}

/// What one server-sent event meant.
pub(super) enum Step {
    /// A piece of text.
    Token(String),
    /// The last event: its own piece of text (maybe empty) and the whole answer.
    Last(String, Parsed),
    /// An error inside a 200 stream.
    Error(ProviderError),
    /// Nothing to pass on (a keep-alive, a role-only delta, usage).
    Nothing,
}

/// Accumulated state of a chat stream (finish reason and usage come in pieces).
#[derive(Default)]
pub(super) struct ChatAcc {
    pub text: String,
    pub finish: Option<crate::provider::FinishReason>,
    pub usage: Option<Usage>,
    pub done: bool,
}

/// One event's data: the end marker of a chat stream, an error inside a
/// 200 stream, or what the flavour's events say.
fn interpret(
    kind: StreamKind,
    data: &str,
    acc: &mut ChatAcc,
    ctx: &CallContext<'_>,
    req_id: Option<&str>,
) -> Step {
    if kind.chat && data.trim() == "[DONE]" {
        acc.done = true;
        return Step::Nothing;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        let mut e = ctx
            .error(ErrorKind::InvalidResponse)
            .with_detail("a stream event is not JSON");
        e.text.request_id = req_id.map(str::to_string);
        return Step::Error(e);
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Step::Error(classify_event(ctx, &v, req_id));
    }
    (kind.event)(&v, acc)
}

/// A streamed call: retried like any call until the first token is delivered,
/// never after. Bounded whole: at most `max_response_bytes` read in all
/// (an endless stream of tokens never trips the silence timeout), and at
/// most `stream_timeout` from the request to the last event (a slow drip
/// under the byte cap would hold its concurrency slot for ever). Either
/// bound ends the stream with an error and drops the upstream connection.
pub(super) fn stream(
    inner: Arc<Inner>,
    model: ModelEndpoint,
    url: Url,
    body: bytes::Bytes,
    kind: StreamKind,
) -> CompletionStream {
    Box::pin(async_stream::stream! {
        let mut st = Attempts::new();
        loop {
            st.count += 1;
            // Every failure before the first token leaves this block; what follows decides whether to retry.
            let failure: ProviderError = 'attempt: {
            let b = match inner.model_headers(&model) {
                Ok(h) => inner.client.post(url.clone()).headers(h.clone()).body(body.clone()),
                Err(e) => { yield Err(e); return; }
            };
            let sent = Instant::now();
            let calls = &inner.settings.calls;
            let opened_at = tokio::time::Instant::now();
            let stream_deadline = opened_at + calls.stream_timeout;
            let first_token_deadline = (opened_at + calls.first_token_timeout).min(stream_deadline);
            let opened = match tokio::time::timeout_at(first_token_deadline, inner.send(b, Some(&model))).await {
                Ok(r) => r,
                Err(_) => Err(inner.ctx(Some(&model)).error(ErrorKind::Timeout).with_detail("no answer before the first-token timeout")),
            };
            let resp = match opened {
                Ok(r) => r,
                Err(e) => break 'attempt e,
            };
            let headers = resp.headers().clone();
            let req_id = wire::request_id(&headers);
            let ctx = inner.ctx(Some(&model));
            let mut body_stream = resp.bytes_stream();
            let mut parser = SseParser::default();
            let mut acc = ChatAcc::default();
            let mut received: usize = 0;
            let mut delivered = false;
            let mut first_token: Option<Duration> = None;
            let mut ended = false;
            loop {
                let until = if delivered {
                    (tokio::time::Instant::now() + calls.request_timeout).min(stream_deadline)
                } else {
                    first_token_deadline
                };
                let next = tokio::time::timeout_at(until, body_stream.next()).await;
                let events: Vec<String> = match next {
                    Err(_) => {
                        let what = if tokio::time::Instant::now() >= stream_deadline {
                            format!(
                                "the stream ran longer than {:.0}s, the `timeouts.stream` of integration `{}`",
                                calls.stream_timeout.as_secs_f64(),
                                ctx.integration
                            )
                        } else if delivered {
                            "the stream went silent for longer than the request timeout".to_string()
                        } else {
                            "no token before the first-token timeout".to_string()
                        };
                        let mut e = ctx.error(ErrorKind::Timeout).with_detail(what);
                        e.text.request_id = req_id.clone();
                        if delivered { yield Err(e); return; }
                        break 'attempt e;
                    }
                    Ok(Some(Ok(bytes))) => {
                        received = received.saturating_add(bytes.len());
                        if received > calls.max_response_bytes {
                            let mut e = ctx.error(ErrorKind::InvalidResponse).with_detail(format!(
                                "the stream is longer than {} bytes, the `max_response_bytes` of integration `{}`",
                                calls.max_response_bytes, ctx.integration
                            ));
                            e.text.request_id = req_id.clone();
                            e.attempts = st.count;
                            // Returning drops the body: the upstream connection closes.
                            yield Err(e);
                            return;
                        }
                        match parser.push(&bytes) {
                            Ok(ev) => ev,
                            Err(err) => { yield Err(ctx.error(ErrorKind::InvalidResponse).with_detail(err.to_string())); return; }
                        }
                    }
                    Ok(Some(Err(err))) => {
                        let e = inner.transport(Some(&model), &err).with_detail("the stream broke");
                        if delivered { yield Err(e); return; }
                        break 'attempt e;
                    }
                    Ok(None) => {
                        ended = true;
                        match parser.finish() {
                            Ok(last) => last.into_iter().collect(),
                            Err(err) => { yield Err(ctx.error(ErrorKind::InvalidResponse).with_detail(err.to_string())); return; }
                        }
                    }
                };
                for data in events {
                    match interpret(kind, &data, &mut acc, &ctx, req_id.as_deref()) {
                        Step::Nothing => {}
                        Step::Token(t) => {
                            if !delivered {
                                delivered = true;
                                first_token = Some(sent.elapsed());
                            }
                            yield Ok(StreamEvent::Token(t));
                        }
                        Step::Last(t, parsed) => {
                            if !t.is_empty() {
                                yield Ok(StreamEvent::Token(t));
                            }
                            let mut c = completion(parsed, &headers, st.count, st.start);
                            c.timings.first_token = first_token.or_else(|| Some(sent.elapsed()));
                            yield Ok(StreamEvent::Done(c));
                            return;
                        }
                        Step::Error(mut e) => {
                            e.attempts = st.count;
                            if delivered { yield Err(e); return; }
                            break 'attempt e;
                        }
                    }
                    if acc.done {
                        break;
                    }
                }
                if acc.done || ended {
                    if kind.chat && acc.finish.is_some() {
                        let usage = acc.usage.unwrap_or_default();
                        let parsed = Parsed { text: std::mem::take(&mut acc.text), finish_reason: acc.finish.take(), usage };
                        let mut c = completion(parsed, &headers, st.count, st.start);
                        c.timings.first_token = first_token;
                        yield Ok(StreamEvent::Done(c));
                        return;
                    }
                    let mut e = ctx.error(ErrorKind::Upstream).with_detail("the stream ended before its final event: the generation is incomplete");
                    e.text.request_id = req_id.clone();
                    e.attempts = st.count;
                    if delivered { yield Err(e); return; }
                    break 'attempt e;
                }
            }
            };
            match inner.next_wait(&mut st, &model, failure).await {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(e) => { yield Err(e); return; }
            }
        }
    })
}
