//! Session stores kept outside the process, shared by every node of every process that names them:
//! * [`redis`]: [`RedisStore`], sessions and quotas on Redis >= 7 / Valkey, one Lua script per login;
//! * `journeys`: the same [`RedisStore`] as the journey store: journeys in progress and spent steps.
//!
//! The in-process stores are [`crate::auth::session::MemoryStore`] ([`crate::auth::session::SessionStore`])
//! and [`crate::auth::pending::MemoryJourneys`] ([`crate::auth::pending::JourneyStore`]).

mod journeys;
mod redis;

pub use redis::RedisStore;
