//! The embedded AM-compatible auth node.
//!
//! [`AuthNode`] answers AM's REST endpoints (SPEC 5); [`journey`] holds the login state machine and where
//! logins in progress live; [`session`] and [`quota`] the authenticated sessions and their limits.
//!
//! What an integrator wires up, per process:
//! * one [`token::Keys`](crate::am::token::Keys) derived from the cluster's shared secret, cloned into every
//!   node (nodes refuse `authId`s signed with another secret);
//! * a [`session::SessionStore`] and a [`SpentOtks`]: one of each shared by all nodes for
//!   `sessions = "shared"`, one per node for `"local"`;
//! * a periodic [`AuthNode::sweep`] per node (every 10–60 s) to reclaim expired state: expiry itself never
//!   waits for it.

pub mod journey;
pub mod node;
pub mod quota;
pub mod session;
pub mod totp;
pub mod user;

pub use journey::SpentOtks;
pub use node::{AuthNode, AuthStats};
