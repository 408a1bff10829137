//! Session stores kept outside the process, shared by every node of every process that names them:
//! * [`redis`]: [`RedisStore`], sessions and quotas on Redis >= 7 / Valkey, one Lua script per login;
//! * [`conn`]: its connection, to one Redis or to a Redis Cluster;
//! * [`stats`]: [`StoreStats`], the round-trip times and failures such a store records.
//!
//! The in-process store is [`crate::auth::session::MemoryStore`]; both implement
//! [`crate::auth::session::SessionStore`].

mod conn;
mod redis;
mod stats;

pub use redis::RedisStore;
pub use stats::{StoreOp, StoreStats};
