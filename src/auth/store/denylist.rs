//! [`RedisStore`] as the [`Denylist`] of logged-out client-side sessions, for every node of every process
//! on the same Redis and `key_prefix`.
//!
//! One key per logged-out session: `PREFIX:deny:H(handle)` (`H` = SHA-256, hex, so a dump of Redis names
//! no handle), written with `SET … NX PX ttl` where `ttl` is what the session had left of its maximum
//! time. `NX` makes the first logout the one that counts (a second one, on any node, answers `Token has
//! expired` as for any ended session); the TTL removes the entry exactly when no token of that session
//! could be valid any more, so nothing needs sweeping. Every command touches one key, so Redis Cluster
//! takes it as it stands.
//!
//! Retries: a `SET NX` sent twice after a dropped connection finds its own entry the second time and the
//! logout answers `Token has expired`; the session is denied either way, which is what matters.

use std::time::Duration;

use redis::AsyncCommands;
use tokio::time::Instant;

use super::key::digest;
use super::redis::{RedisStore, unavailable};
use crate::auth::denylist::Denylist;
use crate::auth::session::StoreFuture;
use crate::auth::store::StoreOp;

impl RedisStore {
    fn deny_key(&self, handle: &str) -> String {
        format!("{}:deny:{}", self.prefix, digest(handle))
    }
}

impl Denylist for RedisStore {
    fn deny<'a>(&'a self, handle: &'a str, ttl: Duration, _now: Instant) -> StoreFuture<'a, bool> {
        // `PX 0` is an error, and a session with no time left is over anyway: `mark_once` still answers
        // for at least 1 ms.
        Box::pin(self.deadline(StoreOp::Deny, self.mark_once(self.deny_key(handle), ttl)))
    }

    fn is_denied<'a>(&'a self, handle: &'a str, _now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::Denied, async move {
            self.conn.clone().exists(self.deny_key(handle)).await.map_err(unavailable)
        }))
    }
}
