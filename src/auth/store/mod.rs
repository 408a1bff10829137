//! Session stores kept outside the process, shared by every node of every process that names them:
//! * [`redis`]: [`RedisStore`], sessions and quotas on Redis >= 7 / Valkey, one Lua script per login.
//!
//! The in-process store is [`crate::auth::session::MemoryStore`]; both implement
//! [`crate::auth::session::SessionStore`].

mod redis;

pub use redis::RedisStore;
