//! Streamed calls: server-sent events read as TGI tokens or chat deltas,
//! retried until the first token is delivered and never after, with errors
//! inside a 200 stream and answers over the limit turned into typed errors.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
    Tgi,
    Chat,
}

/// What one server-sent event meant.
enum Step {
    Token(String),
    Done(Parsed),
    Error(ProviderError),
    Nothing,
}

/// Accumulated state of a chat stream (finish reason and usage come in pieces).
#[derive(Default)]
struct ChatAcc {
    text: String,
    finish: Option<crate::provider::FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

fn interpret(
    kind: StreamKind,
    data: &str,
    acc: &mut ChatAcc,
    ctx: &CallContext<'_>,
    req_id: Option<&str>,
) -> Step {
    if kind == StreamKind::Chat && data.trim() == "[DONE]" {
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
    match kind {
        StreamKind::Tgi => {
            let token = v
                .get("token")
                .filter(|t| !t.get("special").and_then(Value::as_bool).unwrap_or(false));
            let text = token
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(full) = v.get("generated_text").and_then(Value::as_str) {
                let details = v.get("details");
                let n = |k: &str| {
                    details
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                };
                acc.text = text;
                return Step::Done(Parsed {
                    text: full.to_string(),
                    finish_reason: details
                        .and_then(|d| d.get("finish_reason"))
                        .and_then(Value::as_str)
                        .map(crate::provider::FinishReason::from_wire),
                    usage: Usage {
                        prompt_tokens: n("input_length"),
                        completion_tokens: n("generated_tokens"),
                    },
                });
            }
            if text.is_empty() {
                Step::Nothing
            } else {
                Step::Token(text)
            }
        }
        StreamKind::Chat => {
            if let Some(u) = wire::usage_of(&v) {
                acc.usage = Some(u);
            }
            let choice = v
                .get("choices")
                .and_then(Value::as_array)
                .and_then(|c| c.first());
            if let Some(f) = choice
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str)
            {
                acc.finish = Some(crate::provider::FinishReason::from_wire(f));
            }
            match choice
                .and_then(|c| c.get("delta"))
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
            {
                Some(t) if !t.is_empty() => {
                    acc.text.push_str(t);
                    Step::Token(t.to_string())
                }
                _ => Step::Nothing,
            }
        }
    }
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
                        Step::Done(parsed) => {
                            if !acc.text.is_empty() {
                                yield Ok(StreamEvent::Token(std::mem::take(&mut acc.text)));
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
                    if kind == StreamKind::Chat && acc.finish.is_some() {
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
