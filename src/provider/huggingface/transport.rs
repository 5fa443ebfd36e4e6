//! The shared retrying transport: one call to an endpoint, as [`Inner`]
//! makes it for every flavour — the request, its timeouts, the answer read
//! within its limit and classified, and the wait before the next attempt
//! (retries, `Retry-After`, cold starts, resuming a paused endpoint).

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};

use super::classify::{self, classify, CallContext};
use super::dispatch::flavour;
use super::flavour::Flavour;
use super::{
    join, net_error, wire, with_estimate, Attempts, Inner, ManagedEndpoint, ERROR_BODY_LIMIT,
    USER_AGENT,
};
use crate::provider::{ErrorKind, ModelEndpoint, ProviderError};
use crate::stripe::stripe;

impl Inner {
    pub(super) fn ctx<'a>(&'a self, model: Option<&'a ModelEndpoint>) -> CallContext<'a> {
        CallContext {
            integration: &self.settings.integration,
            model: model.map(|m| m.name.as_str()),
            upstream_model: model.map(|m| m.upstream_model.as_str()),
            hub_url: self.settings.hub_url.as_str(),
        }
    }

    pub(super) fn invalid(
        &self,
        model: Option<&ModelEndpoint>,
        headers: &HeaderMap,
        what: &str,
    ) -> ProviderError {
        let mut e = self
            .ctx(model)
            .error(ErrorKind::InvalidResponse)
            .with_detail(what.to_string());
        e.text.request_id = wire::request_id(headers);
        e
    }

    pub(super) fn namespace(&self) -> Result<&str, ProviderError> {
        self.settings.namespace.as_deref().ok_or_else(|| {
            self.ctx(None).error(ErrorKind::InvalidRequest).with_detail(format!(
                "integration `{}` has no `namespace`: the endpoint management API needs the Hub user or organization owning the endpoints",
                self.settings.integration
            ))
        })
    }

    pub(super) fn transport(
        &self,
        model: Option<&ModelEndpoint>,
        e: &reqwest::Error,
    ) -> ProviderError {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Connection
        };
        // The URL and the whole chain go to the log; the caller gets the cause.
        net_error::log(
            &self.settings.integration,
            model.map(|m| m.name.as_str()),
            e,
            &self.credential.redact(&net_error::chain_text(e)),
        );
        self.ctx(model).error(kind).with_detail(net_error::cause(e))
    }

    /// A call to the Hub, the management API or a health route (not a model call).
    pub(super) fn builder(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let bearer = self.credential.bearer().map_err(|why| {
            self.ctx(None)
                .error(ErrorKind::KeyUnavailable)
                .with_detail(why.to_string())
        })?;
        Ok(self
            .client
            .request(method, url)
            .header(AUTHORIZATION, bearer)
            .header(
                reqwest::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            ))
    }

    /// The headers of a call to `model`, this thread stripe's copy.
    pub(super) fn model_headers(&self, model: &ModelEndpoint) -> Result<&HeaderMap, ProviderError> {
        match &self.model_headers {
            Ok(maps) => Ok(&maps[stripe()]),
            Err(why) => Err(self
                .ctx(Some(model))
                .error(ErrorKind::KeyUnavailable)
                .with_detail(why.clone())),
        }
    }

    /// Read an error answer and classify it, with the key scrubbed from what the server said.
    pub(super) async fn error_from(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> ProviderError {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
        let mut e = classify(&self.ctx(model), status, &headers, &body);
        e.text.upstream_message = e.text.upstream_message.map(|m| self.credential.redact(&m));
        e
    }

    /// One attempt: send, and return the answer if it is a success.
    pub(super) async fn send(
        &self,
        b: reqwest::RequestBuilder,
        model: Option<&ModelEndpoint>,
    ) -> Result<reqwest::Response, ProviderError> {
        let req = b.build().map_err(|e| self.transport(model, &e))?;
        self.execute(req, model).await
    }

    /// One attempt of a built request.
    pub(super) async fn execute(
        &self,
        req: reqwest::Request,
        model: Option<&ModelEndpoint>,
    ) -> Result<reqwest::Response, ProviderError> {
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| self.transport(model, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_from(model, resp).await)
        }
    }

    /// The answer's headers and whole body, at most `max_response_bytes`.
    pub(super) async fn read_body(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> Result<(HeaderMap, bytes::Bytes), ProviderError> {
        let limit = self.settings.calls.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(self.too_large(model, resp.headers()));
        }
        // Take the headers out rather than cloning them: this runs on every task.
        let (parts, body) = http::Response::from(resp).into_parts();
        let limited = http_body_util::Limited::new(body, limit);
        match http_body_util::BodyExt::collect(limited).await {
            Ok(c) => Ok((parts.headers, c.to_bytes())),
            Err(e) => match e.downcast::<reqwest::Error>() {
                Ok(e) => Err(self.transport(model, &e)),
                Err(_) => Err(self.too_large(model, &parts.headers)),
            },
        }
    }

    pub(super) fn too_large(
        &self,
        model: Option<&ModelEndpoint>,
        headers: &HeaderMap,
    ) -> ProviderError {
        self.invalid(
            model,
            headers,
            &format!(
                "the answer is larger than {} bytes, the `max_response_bytes` of integration `{}`",
                self.settings.calls.max_response_bytes, self.settings.integration
            ),
        )
    }

    pub(super) fn json_of(
        &self,
        model: Option<&ModelEndpoint>,
        headers: &HeaderMap,
        bytes: &[u8],
    ) -> Result<Value, ProviderError> {
        serde_json::from_slice(bytes)
            .map_err(|_| self.invalid(model, headers, "the answer is not JSON"))
    }

    pub(super) async fn read_json(
        &self,
        model: Option<&ModelEndpoint>,
        resp: reqwest::Response,
    ) -> Result<(HeaderMap, Value), ProviderError> {
        let (headers, bytes) = self.read_body(model, resp).await?;
        let v = self.json_of(model, &headers, &bytes)?;
        Ok((headers, v))
    }

    pub(super) async fn get_json(
        &self,
        model: Option<&ModelEndpoint>,
        url: Url,
    ) -> Result<(HeaderMap, Value), ProviderError> {
        let b = self
            .builder(reqwest::Method::GET, url)?
            .timeout(self.settings.calls.request_timeout);
        let resp = self.send(b, model).await?;
        self.read_json(model, resp).await
    }

    /// A management API call on `route` (under `endpoint/{namespace}`)
    /// with an optional JSON body, answered with JSON (an empty answer is
    /// `null`).
    pub(super) async fn manage(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let ns = self.namespace()?;
        let path = if route.is_empty() {
            format!("endpoint/{ns}")
        } else {
            format!("endpoint/{ns}/{route}")
        };
        let url = join(&self.settings.management_url, &path);
        let mut b = self
            .builder(method, url)?
            .timeout(self.settings.calls.request_timeout);
        if let Some(body) = body {
            b = b.json(body);
        }
        let resp = self.send(b, None).await?;
        self.read_json(None, resp).await.map(|(_, v)| v)
    }

    pub(super) async fn resume(&self, name: &str) -> Result<(), ProviderError> {
        let ns = self.namespace()?;
        let url = join(
            &self.settings.management_url,
            &format!("endpoint/{ns}/{name}/resume"),
        );
        let b = self
            .builder(reqwest::Method::POST, url)?
            .timeout(self.settings.calls.request_timeout);
        match self.send(b, None).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.status == Some(400)
                    && e.upstream_message()
                        .is_some_and(|m| m.contains("already running")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// After a 502/503, ask the management API what the endpoint is doing:
    /// whether it is starting (evidence of a cold start, worth the cold-start
    /// wait), or paused or failed (it will not come up by waiting).
    pub(super) async fn check_state(
        &self,
        model: &ModelEndpoint,
        e: &ProviderError,
    ) -> Result<bool, ProviderError> {
        if self.settings.namespace.is_none() || !flavour!(model.api, f => f.managed()) {
            return Ok(false);
        }
        let ns = self.namespace()?;
        let url = join(&self.settings.management_url, &format!("endpoint/{ns}"));
        let Ok((_, v)) = self.get_json(None, url).await else {
            // The token may not see the management API: no evidence either way.
            return Ok(false);
        };
        let Some(ep) = ManagedEndpoint::list_from_json(&v).into_iter().find(|ep| {
            match model.inference_endpoint.as_deref() {
                Some(name) => ep.name == name,
                None => ep.serves(model.base_url.as_str()),
            }
        }) else {
            return Ok(false);
        };
        tracing::info!(integration = %self.settings.integration, model = %model.name, endpoint = %ep.name, state = %ep.state, "endpoint state (management API)");
        let fail = |detail: String| {
            let mut err = e.clone();
            err.text.detail = Some(detail);
            err
        };
        match ep.state.as_str() {
            "paused" if self.settings.calls.cold_start.resume_paused => {
                tracing::info!(integration = %self.settings.integration, endpoint = %ep.name, "resuming paused endpoint");
                self.resume(&ep.name).await.map(|()| true)
            }
            "paused" => Err(fail(format!(
                "endpoint `{}` is paused and will not start by itself: resume it in the Inference Endpoints UI or with `POST {}/endpoint/{ns}/{}/resume`, or set `cold_start = {{ resume_paused = true }}` on integration `{}`",
                ep.name,
                self.settings.management_url.as_str().trim_end_matches('/'),
                ep.name,
                self.settings.integration
            ))),
            "failed" | "updateFailed" => Err(fail(format!(
                "endpoint `{}` is in state `{}`{}",
                ep.name,
                ep.state,
                ep.message.as_deref().map(|m| format!(": {}", classify::cut(m))).unwrap_or_default()
            ))),
            "initializing" | "scaledToZero" | "pending" | "updating" => Ok(true),
            _ => Ok(false),
        }
    }

    /// Decide whether to retry after `e`: the wait, or the error to give up with.
    ///
    /// Only evidence of a cold start may use the cold-start wait: a loading
    /// answer (`estimated_time`, a loading or scaling message) or the
    /// management API saying the endpoint is starting. Any other failure —
    /// a gateway's 502, a bare 503 nobody explains — counts against
    /// `max_attempts` and `budget`.
    pub(super) async fn next_wait(
        &self,
        st: &mut Attempts,
        model: &ModelEndpoint,
        mut e: ProviderError,
    ) -> Result<Duration, ProviderError> {
        e.attempts = st.count;
        if !e.is_retryable() {
            return Err(e);
        }
        if !st.state_checked && matches!(e.status, Some(502 | 503)) && !e.cold {
            st.state_checked = true;
            st.starting = self.check_state(model, &e).await?;
        }
        let cold = e.cold || (st.starting && matches!(e.status, Some(502 | 503)));
        let elapsed = st.start.elapsed();
        let policy = &self.settings.calls.retry;
        let (wait, step) = if cold {
            let left = self.settings.calls.cold_start.wait.saturating_sub(elapsed);
            // Without a hint, poll with backoff capped at the retry cap.
            (
                policy.delay(st.cold_waits, e.retry_after, left),
                st.cold_waits,
            )
        } else {
            if st.count >= policy.max_attempts {
                return Err(with_estimate(e, policy.cap(st.retries)));
            }
            let left = policy.budget.saturating_sub(elapsed);
            (policy.delay(st.retries, e.retry_after, left), st.retries)
        };
        let Some(wait) = wait else {
            return Err(with_estimate(e, policy.cap(step)));
        };
        if cold {
            st.cold_waits += 1;
        } else {
            st.retries += 1;
        }
        tracing::warn!(
            integration = %self.settings.integration,
            model = %model.name,
            kind = %e.kind,
            status = e.status,
            attempt = st.count,
            cold_start = cold,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "retrying"
        );
        Ok(wait)
    }

    /// POST a JSON body (serialized once, reused by retries), retrying what is
    /// retryable; returns headers, the answer's body and attempts.
    pub(super) async fn post_json(
        &self,
        model: &ModelEndpoint,
        url: Url,
        body: bytes::Bytes,
    ) -> Result<(HeaderMap, bytes::Bytes, u32, Instant), ProviderError> {
        let headers = self.model_headers(model)?;
        let mut st = Attempts::new();
        loop {
            st.count += 1;
            // Built in place rather than through `RequestBuilder`, whose every
            // call moves the whole builder.
            let mut req = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *req.headers_mut() = headers.clone();
            *req.body_mut() = Some(body.clone().into());
            // The request timeout covers the answer's body too. tokio's own
            // `timeout` rather than reqwest's, which boxes its timer.
            let attempt = async {
                let resp = self.execute(req, Some(model)).await?;
                self.read_body(Some(model), resp).await
            };
            let result = tokio::time::timeout(self.settings.calls.request_timeout, attempt)
                .await
                .unwrap_or_else(|_| Err(self.timed_out(model)));
            match result {
                Ok((h, v)) => return Ok((h, v, st.count, st.start)),
                Err(e) => {
                    let wait = self.next_wait(&mut st, model, e).await?;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub(super) fn timed_out(&self, model: &ModelEndpoint) -> ProviderError {
        self.ctx(Some(model))
            .error(ErrorKind::Timeout)
            .with_detail(format!(
                "no whole answer within the request timeout of {:.1}s",
                self.settings.calls.request_timeout.as_secs_f64()
            ))
    }

    pub(super) fn body_of<T: serde::Serialize + ?Sized>(
        &self,
        model: &ModelEndpoint,
        body: &T,
    ) -> Result<bytes::Bytes, ProviderError> {
        serde_json::to_vec(body)
            .map(bytes::Bytes::from)
            .map_err(|e| {
                self.ctx(Some(model))
                    .error(ErrorKind::InvalidRequest)
                    .with_detail(format!("the request cannot be written as JSON: {e}"))
            })
    }

    pub(super) fn shape_error(&self, model: &ModelEndpoint, headers: &HeaderMap) -> ProviderError {
        self.invalid(
            Some(model),
            headers,
            &format!(
                "the answer does not have the shape of the `{}` api",
                model.api
            ),
        )
    }
}
