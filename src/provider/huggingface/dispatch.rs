//! The one place an endpoint's `api` is looked at: [`flavour!`] binds the
//! [`Flavour`](super::flavour::Flavour) of a model's `api` for an expression.

/// `$body` with `$f` bound to the flavour of `$api`: the one dispatch on it.
macro_rules! flavour {
    ($api:expr, $f:ident => $body:expr) => {
        match $api {
            $crate::provider::Api::Tgi => {
                let $f = &$crate::provider::huggingface::tgi::Tgi;
                $body
            }
            $crate::provider::Api::Chat => {
                let $f = &$crate::provider::huggingface::chat_route::ChatRoute;
                $body
            }
            $crate::provider::Api::Pipeline => {
                let $f = &$crate::provider::huggingface::pipeline::Pipeline;
                $body
            }
            $crate::provider::Api::Router => {
                let $f = &$crate::provider::huggingface::router::Router;
                $body
            }
            $crate::provider::Api::Tei => {
                let $f = &$crate::provider::huggingface::tei::Tei;
                $body
            }
        }
    };
}

pub(super) use flavour;
