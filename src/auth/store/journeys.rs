//! [`RedisStore`] as the [`JourneyStore`]: journeys in progress (`auth_sessions = "store"`) and spent
//! client-mode steps, for every node of every process on the same Redis and `key_prefix`.
//!
//! Keys (one each, no hash tag: every command and script touches one key, so each is legal on Redis
//! Cluster as it stands):
//! * `PREFIX:journey:H(session id)` → JSON `{"o": H(otk), "j": journey}`, with the auth session's time
//!   left as a relative TTL (`PEXPIRE`). [`take`](JourneyStore::take) is one script (`take.lua`): GET,
//!   compare the `otk`, DEL. Like AM's CTS auth sessions, any node continues any journey, and an `authId`
//!   is answered once on all of them.
//! * `PREFIX:otk:H(otk)` → a random request ID, `SET … NX GET PX`: the first answer of a client-mode step
//!   writes it, every later one (on any node) finds it and is refused, as AM's allowlisting does.
//!
//! `H` is SHA-256 (hex), so a dump of Redis holds no auth session ID and no `otk`. Journeys are written
//! in the clear otherwise (a user name and which step is next), as AM's CTS holds them. Entries leave by
//! their TTL; nothing needs sweeping.
//!
//! Retries: the cluster client may send a command again after a dropped connection. A repeated `SET` of a
//! journey is harmless; a repeated `take` finds nothing and the step answers 110 (the client starts
//! again, never a step answered twice); a repeated `spend` finds its own request ID and counts as fresh.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::key::{CLOCK_SKEW, digest, millis};
use super::redis::{RedisStore, unavailable};
use crate::auth::journey::Journey;
use crate::auth::pending::{JourneyStore, Spend, Taken, TooManyJourneys};
use crate::auth::session::{StoreError, StoreFuture};
use crate::auth::store::StoreOp;

/// GET, compare, DEL of one journey key; loaded once per Redis (re-loaded after `NOSCRIPT`).
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("take.lua")));

/// What a journey key holds.
#[derive(Serialize, Deserialize)]
struct Kept {
    /// The digest of the current step's `otk`.
    #[serde(rename = "o")]
    otk: String,
    #[serde(rename = "j")]
    journey: Journey,
}

impl RedisStore {
    fn journey_key(&self, session_id: &str) -> String {
        format!("{}:journey:{}", self.prefix, digest(session_id))
    }

    fn otk_key(&self, otk: &str) -> String {
        format!("{}:otk:{}", self.prefix, digest(otk))
    }
}

impl JourneyStore for RedisStore {
    fn keep<'a>(
        &'a self,
        session_id: &'a str,
        otk: &'a str,
        journey: Journey,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, Result<(), TooManyJourneys>> {
        Box::pin(self.deadline(StoreOp::Keep, async move {
            let record = serde_json::to_string(&Kept { otk: digest(otk), journey })
                .map_err(|e| StoreError::Unavailable(format!("cannot serialize the journey: {e}")))?;
            let ttl = millis(until.saturating_duration_since(now));
            let mut conn = self.conn.clone();
            conn.pset_ex::<_, _, ()>(self.journey_key(session_id), record, ttl).await.map_err(unavailable)?;
            // Redis is bounded by its memory, and refuses writes (OOM) past it with `noeviction`: 503.
            Ok(Ok(()))
        }))
    }

    fn take<'a>(&'a self, session_id: &'a str, otk: &'a str, now: Instant) -> StoreFuture<'a, Taken> {
        Box::pin(self.deadline(StoreOp::Take, async move {
            let mut conn = self.conn.clone();
            let mut call = TAKE.key(self.journey_key(session_id));
            call.arg(digest(otk));
            let found: Option<(String, i64)> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            let Some((record, left)) = found else { return Ok(None) };
            let Ok(left) = u64::try_from(left) else { return Ok(None) };
            // A journey this version cannot read (written by another version during a rolling upgrade)
            // is a login this node cannot continue: 110, and the client starts again. Not a store fault.
            match serde_json::from_str::<Kept>(&record) {
                Ok(kept) => Ok(Some((kept.journey, now + Duration::from_millis(left)))),
                Err(e) => {
                    tracing::warn!(target: "tether::auth", error = %e, "unreadable journey in the store: dropped");
                    Ok(None)
                }
            }
        }))
    }

    fn spend<'a>(&'a self, otk: &'a str, until: Instant, now: Instant) -> StoreFuture<'a, Spend> {
        Box::pin(self.deadline(StoreOp::Spend, async move {
            let ttl = until.saturating_duration_since(now) + CLOCK_SKEW;
            let first = self.mark_once(self.otk_key(otk), ttl).await?;
            Ok(if first { Spend::Fresh } else { Spend::Replayed })
        }))
    }

    /// Nothing to do: journeys and spent steps leave Redis by their TTL.
    fn sweep(&self, _now: Instant) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(std::future::ready(Ok((0, 0))))
    }

    /// Journeys live in Redis, not in this process.
    fn count(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hide_the_auth_session_and_the_otk() {
        let d = digest("AQIC5wM2LY4S");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("AQIC"));
        assert_eq!(millis(Duration::ZERO), 1);
    }

    #[test]
    fn a_kept_journey_round_trips_through_its_json() {
        let kept = Kept { otk: digest("otk"), journey: crate::auth::journey::sample() };
        let text = serde_json::to_string(&kept).unwrap();
        assert!(text.starts_with(r#"{"o":""#), "take.lua reads the otk digest from `o`: {text}");
        let back: Kept = serde_json::from_str(&text).unwrap();
        assert_eq!(back.journey, crate::auth::journey::sample());
    }
}
