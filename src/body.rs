//! The one body type every service in tether answers with.
//!
//! Proxied bodies stream straight through (`Incoming` boxed, never collected); synthetic answers (errors,
//! admin pages, the auth node's JSON) are small `Full` buffers. One boxed type lets all of them share the
//! listener code.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body may yield while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or buffered HTTP body.
pub type Body = BoxBody<Bytes, BoxError>;

/// A buffered body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A streamed body from any hyper body (e.g. `Incoming`).
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
