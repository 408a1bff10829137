//! AM's wire formats, shared by the proxy, the auth node and the admin listener.
//!
//! Anything that must read or write exactly what AM reads or writes lives here once, so the proxy's
//! routing hints and the node's answers can never disagree:
//!
//! | module | what AM puts on the wire |
//! |---|---|
//! | [`token`] | the session token layout (`S1`/`SI` extensions), the `authId` JWS, sealed journey state |
//! | [`crest`] | the CREST JSON error body `{"code","reason","message"[,"detail"]}` and JSON answers |
//! | [`time`] | one wall clock that follows tokio's, and ISO-8601 as AM writes session times |
//! | [`request`] | where AM clients put things: query parameters, cookies, and the session token |

pub mod crest;
pub mod request;
pub mod time;
pub mod token;
