//! The URL of a model that names its Inference Endpoint and gives no
//! `endpoint`: asked of the management API before a call and kept for a
//! minute, so that a re-created endpoint's new URL is picked up without a
//! reload while a busy model asks once a minute, not once a call.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use url::Url;

use super::{encode, Inner};
use crate::provider::{ErrorKind, ModelEndpoint, ProviderError};

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a looked-up URL is used before it is asked again.
const FRESH: Duration = Duration::from_secs(60);

impl Inner {
    /// `model` with the URL it is called at: itself, or with the management
    /// API's URL for its Inference Endpoint.
    pub(super) async fn locate<'a>(
        &self,
        model: &'a ModelEndpoint,
    ) -> Result<Cow<'a, ModelEndpoint>, ProviderError> {
        if !model.url_from_management {
            return Ok(Cow::Borrowed(model));
        }
        let Some(name) = model.inference_endpoint.as_deref() else {
            return Ok(Cow::Borrowed(model));
        };
        let cached = lock(&self.located)
            .get(name)
            .filter(|(_, at)| at.elapsed() < FRESH)
            .map(|(u, _)| u.clone());
        let url = match cached {
            Some(u) => u,
            None => {
                let v = self
                    .manage(reqwest::Method::GET, &encode(name), None)
                    .await
                    .map_err(|e| {
                        let detail = format!(
                            "the URL of Inference Endpoint `{name}` could not be read from the management API: {e}"
                        );
                        e.with_detail(detail)
                    })?;
                let ep = super::ManagedEndpoint::from_json(&v);
                let state = ep.as_ref().map_or("unknown", |e| e.state.as_str());
                let url = ep
                    .as_ref()
                    .and_then(|e| e.url.as_deref())
                    .and_then(|u| Url::parse(u).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        ProviderError::new(
                            ErrorKind::EndpointUnavailable,
                            &self.settings.integration,
                            Some(&model.name),
                        )
                        .with_detail(format!(
                            "Inference Endpoint `{name}` has no URL yet (state `{state}`)"
                        ))
                    })?;
                // A URL with a path is a base: calls join routes under it.
                let mut url = url;
                if !url.path().ends_with('/') {
                    let p = format!("{}/", url.path());
                    url.set_path(&p);
                }
                let mut located = lock(&self.located);
                // Bounded by the models of the integration that name endpoints.
                located.insert(name.to_string(), (url.clone(), Instant::now()));
                url
            }
        };
        let mut m = model.clone();
        m.base_url = url;
        Ok(Cow::Owned(m))
    }
}
