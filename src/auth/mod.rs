//! The embedded AM-compatible auth node, in layers: HTTP handlers that only translate, a login step that
//! takes the time and returns an outcome, and the journeys, sessions and stores below.
//!
//! * [`node`]: [`AuthNode`], one node's identity, shared state, readiness and sweep;
//! * [`http`]: the routes below `context_path`, method and body limits, and the `authenticate` and
//!   `sessions` handlers (HTTP ⇄ login and session calls);
//! * [`error`]: [`AuthError`], every refusal, and its one mapping to AM's CREST JSON;
//! * [`login`]: start / answer / finish a login at a given time → [`login::Step`], and [`AuthStats`];
//! * [`modules`]: the `DataStore` and `TOTP` modules;
//! * [`journey`]: the state of a login in progress, its callbacks and how it advances;
//! * [`pending`]: where journeys wait between steps ([`pending::PendingJourneys`] on one node, a
//!   [`JourneyStore`] shared by nodes) and the replay cache of answered client-mode steps ([`SpentOtks`]);
//! * [`lockout`]: failed logins that lock a user, and one-time codes spent once ([`lockout::LoginGuard`]);
//! * [`session`] and [`quota`]: authenticated sessions, their store and their limits;
//! * [`client_session`] and [`denylist`]: sessions carried inside the token (`session_location =
//!   "client"`) and the logged-out ones they must refuse;
//! * [`store`]: stores outside the process ([`store::RedisStore`]), shared across processes and hosts;
//! * [`totp`] (RFC 6238 codes) and [`user`] (argon2 password hashes).
//!
//! What an integrator wires up, per process:
//! * one [`Keys`](crate::am::token::Keys) derived from the cluster's shared secret, cloned into every
//!   node (nodes refuse `authId`s signed with another secret);
//! * a [`session::SessionStore`] and a [`JourneyStore`]: one of each ([`MemoryJourneys`]) shared by all
//!   nodes for `sessions = "shared"`, one per node for `"local"`, one [`store::RedisStore`] per process
//!   as both for `"redis"` (all processes on one Redis share its sessions, journeys and spent steps);
//!   and the [`lockout::LoginGuard`] that goes with them ([`AuthNode::with_guard`]: a
//!   [`lockout::MemoryGuard`] shared the same way, or the same `RedisStore`);
//! * a periodic [`AuthNode::sweep`] per node (every 10–60 s) to reclaim expired state: expiry itself never
//!   waits for it.

pub mod client_session;
pub mod denylist;
pub mod error;
pub mod http;
pub mod journey;
pub mod lockout;
pub mod login;
pub mod modules;
pub mod node;
pub mod pending;
pub mod quota;
pub mod session;
pub mod store;
pub mod totp;
pub mod user;

pub use denylist::{Denylist, MemoryDenylist};
pub use login::AuthStats;
pub use node::AuthNode;
pub use pending::{JourneyStore, MemoryJourneys, SpentOtks};
