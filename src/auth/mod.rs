//! The embedded AM-compatible auth node.

pub mod quota;
pub mod session;
pub mod totp;
pub mod user;
