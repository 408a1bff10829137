//! [`RedisStore`] as the [`LoginGuard`]: failure counts, locks and spent one-time codes, for every node
//! of every process on the same Redis and `key_prefix`.
//!
//! Keys, per user, all with the user's hash tag `{PREFIX:USER}` (the sessions' tag), so each script's two
//! keys share one slot, as Redis Cluster requires:
//! * `{PREFIX:USER}:fail`, a ZSET: one member per failure, scored with its time (ms, Redis clock); the
//!   script drops those older than `within` before counting, and the key expires `within` after the
//!   last failure;
//! * `{PREFIX:USER}:lock`, present while the account is locked, its TTL the lock's time left;
//! * `{PREFIX:USER}:code:STEP`, one per spent TOTP time step (`SET NX PX`), until the code could no
//!   longer be accepted plus a minute for other hosts' clocks.
//!
//! `fail.lua` counts and locks in one step (of concurrent failures on any nodes exactly one locks), and
//! `admit.lua` checks the lock and clears the count of a completed login in one step, on Redis's clock
//! (`TIME`), so every node agrees on the window and the lock.

use std::sync::LazyLock;

use redis::Script;
use tokio::time::Instant;

use super::key::{CLOCK_SKEW, millis, random_id};
use super::redis::{RedisStore, unavailable};
use crate::auth::lockout::{Failure, LoginGuard};
use crate::auth::session::StoreFuture;
use crate::auth::store::StoreOp;
use crate::config::LockoutConfig;

static FAIL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fail.lua")));
static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("unlock.lua")));

impl RedisStore {
    /// `[fail, lock]` of `user`.
    fn lockout_keys(&self, user: &str) -> [String; 2] {
        let tag = format!("{{{}:{user}}}", self.prefix);
        [format!("{tag}:fail"), format!("{tag}:lock")]
    }

    fn code_key(&self, user: &str, step: u64) -> String {
        format!("{{{}:{user}}}:code:{step}", self.prefix)
    }
}

impl LoginGuard for RedisStore {
    fn fail<'a>(&'a self, user: &'a str, policy: LockoutConfig, _now: Instant) -> StoreFuture<'a, Failure> {
        Box::pin(self.deadline(StoreOp::Failure, async move {
            let [fail, lock] = self.lockout_keys(user);
            let mut call = FAIL.key(fail);
            call.key(lock).arg(policy.failures).arg(millis(policy.within)).arg(millis(policy.duration));
            call.arg(random_id()?);
            let (outcome, n): (i64, i64) =
                call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
            Ok(match outcome {
                2 => Failure::StillLocked,
                1 => Failure::Locked,
                _ => Failure::Counted(u32::try_from(n).unwrap_or(u32::MAX)),
            })
        }))
    }

    fn admit<'a>(&'a self, user: &'a str, reset: bool, _now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::Admit, async move {
            let [fail, lock] = self.lockout_keys(user);
            let mut call = ADMIT.key(fail);
            call.key(lock).arg(if reset { "1" } else { "0" });
            let admitted: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
            Ok(admitted == 1)
        }))
    }

    fn unlock<'a>(&'a self, user: &'a str, _now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::Unlock, async move {
            let [fail, lock] = self.lockout_keys(user);
            let mut call = UNLOCK.key(fail);
            call.key(lock);
            let was: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
            Ok(was == 1)
        }))
    }

    fn spend_code<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::Code, async move {
            let ttl = until.saturating_duration_since(now) + CLOCK_SKEW;
            self.mark_once(self.code_key(user, step), ttl).await
        }))
    }

    /// Nothing to do: failures, locks and spent codes leave Redis by their TTL.
    fn sweep(&self, _now: Instant) -> usize {
        0
    }
}
