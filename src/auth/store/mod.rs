//! Session stores kept outside the process, shared by every node of every process that names them:
//! * [`redis`]: [`RedisStore`], sessions and quotas on Redis >= 7 / Valkey, one Lua script per login;
//! * [`conn`]: its connection, to one Redis or to a Redis Cluster;
//! * `admin`: the same [`RedisStore`] as a [`SessionAdmin`](crate::auth::session::admin::SessionAdmin);
//! * `journeys`: the same [`RedisStore`] as the journey store: journeys in progress and spent steps;
//! * `denylist`: the same [`RedisStore`] as the [`crate::auth::Denylist`] of logged-out client-side
//!   sessions;
//! * `lockout`: the same [`RedisStore`] as the login guard: failure counts, locks, spent one-time codes;
//! * `key`: key names (digests, never secrets), request IDs and TTLs;
//! * [`stats`]: [`StoreStats`], the round-trip times and failures such a store records.
//!
//! The in-process stores are [`crate::auth::session::MemoryStore`] ([`crate::auth::session::SessionStore`])
//! and [`crate::auth::pending::MemoryJourneys`] ([`crate::auth::pending::JourneyStore`]).

mod admin;
mod conn;
mod denylist;
mod journeys;
mod key;
mod lockout;
mod redis;
mod stats;

pub use redis::RedisStore;
pub use stats::{StoreOp, StoreStats};
