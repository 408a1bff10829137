//! tether: a sticky sidecar load balancer for AM-style auth clusters.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod token;
