//! [`RedisStore`]: the [`SessionStore`] on Redis, for nodes in separate processes and hosts.
//!
//! Layout, per user (all three keys carry the hash tag `{PREFIX:USER}`, so they share one slot and one
//! script may touch them all, as Redis Cluster requires):
//! * `{PREFIX:USER}:exp`, a ZSET: member → expiry (ms, Redis clock), so counting ignores expired sessions
//!   by construction;
//! * `{PREFIX:USER}:seq`, a ZSET: member → insertion number (creation order, the planner's tie-break);
//! * `{PREFIX:USER}:rec`, a HASH: member → `created:last:idle:max:` and the JSON of handle, user, realm.
//!
//! plus `PREFIX:tok:MEMBER` → username, which lets any node find the user's keys from the token alone,
//! and `PREFIX:hdl:DIGEST` → `MEMBER:username`, which lets an administrator end a session by its handle.
//! The member is a SHA-256 digest of the token, so a dump of Redis holds no usable token. Every key gets
//! a relative TTL (`PEXPIRE`): the user's keys live as long as the user's longest session, the token key
//! as long as the session's maximum lifetime; nothing needs a reaper or keyspace notifications.
//!
//! Every decision about time is made on Redis's own clock (`TIME` inside the scripts), so one user's
//! expiry and quota use one clock whichever node asks. Every operation has a deadline (`timeout_ms`);
//! past it, or with Redis unreachable, it fails with [`StoreError`] and the node answers 503. The
//! connection (one Redis or a Redis Cluster, see [`StoreConnection`]) reconnects in the background, and
//! [`Script`] reloads a script Redis lost (`NOSCRIPT` after a restart), so the node recovers by itself.
//! The token key lives in another slot than the user's keys; it is only read and written by single-key
//! commands outside the scripts, which Redis Cluster routes to its own node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{AsyncCommands, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::am::token::node_hint;
use crate::auth::quota::Quota;
use crate::auth::session::admin::SessionAdmin;
use crate::auth::session::{Created, QuotaExceeded, Session, SessionStore, StoreError, StoreFuture};
use crate::auth::store::{StoreOp, StoreStats};
use crate::config::StoreConfig;

use super::conn::StoreConnection;
use super::key::{digest, millis, random_id};

/// How often the store checks that Redis answers while no request does, for `/json/health/ready`.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The sessions of every node that names the same Redis and `key_prefix`.
pub struct RedisStore {
    pub(super) conn: StoreConnection,
    pub(super) prefix: String,
    timeout: Duration,
    /// The outcome of the last operation or ping.
    up: Arc<AtomicBool>,
    create: Script,
    get: Script,
    logout: Script,
    live: Script,
    /// Round-trip times and failures, recorded at [`Self::deadline`].
    stats: StoreStats,
    /// Stops the ping loop when the store is dropped.
    _ping: DropGuard,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// What a session record keeps besides its times.
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    #[serde(rename = "h")]
    pub(super) handle: String,
    #[serde(rename = "u")]
    pub(super) username: String,
    #[serde(rename = "r")]
    pub(super) realm: String,
    /// The server ID of the node that created the session (the token's `S1`), for the session listing:
    /// the member is a digest, so the token cannot tell. Records written before it read as `""`.
    #[serde(rename = "n", default)]
    pub(super) node: String,
}

impl RedisStore {
    /// A store on `config.servers`. Connects lazily: a node starts while Redis is down, answers 503 and
    /// is not ready until Redis answers. Must be called inside a Tokio runtime (it starts the ping loop).
    ///
    /// # Errors
    /// A URL the client cannot parse.
    pub fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let conn = StoreConnection::open(config)?;
        let up = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        tokio::spawn(ping_loop(conn.clone(), Arc::clone(&up), config.timeout, stop.clone()));
        Ok(Self {
            conn,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            up,
            create: Script::new(include_str!("create.lua")),
            get: Script::new(include_str!("get.lua")),
            logout: Script::new(include_str!("logout.lua")),
            live: Script::new(include_str!("live.lua")),
            stats: StoreStats::default(),
            _ping: stop.drop_guard(),
        })
    }

    /// Runs one store operation `op` (one or two commands) under the one deadline, recording whether
    /// Redis answered, how long it took and why it failed.
    pub(super) async fn deadline<T>(
        &self,
        op: StoreOp,
        run: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result =
            tokio::time::timeout(self.timeout, run).await.unwrap_or(Err(StoreError::Timeout(self.timeout)));
        self.stats.record(op, start.elapsed(), result.as_ref().err());
        self.up.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Marks `key` as spent for `ttl` unless it already is: `true` for the first mark, `false` if the key
    /// was marked before. One `SET NX GET PX` with a random request ID as the value, so a command the client
    /// retried after a lost reply recognises its own write as the first mark instead of refusing a user
    /// whose step, code or logout went through (every spend-once key of the store goes through here).
    pub(super) async fn mark_once(&self, key: String, ttl: Duration) -> Result<bool, StoreError> {
        let request = random_id()?;
        let before: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&request)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(before.is_none_or(|theirs| theirs == request))
    }

    pub(super) fn user_keys(&self, username: &str) -> [String; 3] {
        let tag = format!("{{{}:{username}}}", self.prefix);
        [format!("{tag}:exp"), format!("{tag}:seq"), format!("{tag}:rec")]
    }

    pub(super) fn token_key(&self, member: &str) -> String {
        format!("{}:tok:{member}", self.prefix)
    }

    /// The key of the pointer from a session handle to its session (`MEMBER:username`).
    pub(super) fn handle_key(&self, handle: &str) -> String {
        format!("{}:hdl:{}", self.prefix, member(handle))
    }

    /// The user a token's session belongs to, if its token key is still there.
    async fn owner(&self, member: &str) -> Result<Option<String>, StoreError> {
        self.conn.clone().get(self.token_key(member)).await.map_err(unavailable)
    }

    async fn read(&self, token: &str, touch: bool, now: Instant) -> Result<Option<Session>, StoreError> {
        let member = member(token);
        let Some(username) = self.owner(&member).await? else { return Ok(None) };
        let [exp, seq, rec] = self.user_keys(&username);
        let mut conn = self.conn.clone();
        let mut call = self.get.key(exp);
        call.key(seq).key(rec).arg(&member).arg(if touch { "1" } else { "0" });
        let found: Option<(String, i64, i64)> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(found.and_then(|(record, _expires, redis_now)| session_of(token, &record, redis_now, now)))
    }
}

impl SessionStore for RedisStore {
    fn create(
        &self,
        session: Session,
        quota: Option<Quota>,
        _now: Instant,
    ) -> StoreFuture<'_, Result<Created, QuotaExceeded>> {
        Box::pin(self.deadline(StoreOp::Create, async move {
            let member = member(&session.token);
            let idle = millis(session.max_idle);
            let max = millis(session.max_time);
            let blob = serde_json::to_string(&Record {
                handle: session.handle.clone(),
                username: session.username.clone(),
                realm: session.realm.clone(),
                node: node_hint(&session.token).unwrap_or_default(),
            })
            .unwrap_or_default();
            // The pointers first: if the script then fails, only unusable pointers are left behind
            // (no quota slot is taken by a session nobody holds). Two keys in two slots, so two
            // commands, sent together: one round trip's wait. The first failure ends the wait: with
            // Redis gone the login fails at once as unavailable, not at the deadline.
            let token_key = self.token_key(&member);
            let handle_key = self.handle_key(&session.handle);
            let (mut tok, mut hdl) = (self.conn.clone(), self.conn.clone());
            let owner = format!("{member}:{}", session.username);
            tokio::try_join!(
                tok.pset_ex::<_, _, ()>(&token_key, &session.username, max.max(1)),
                hdl.pset_ex::<_, _, ()>(&handle_key, &owner, max.max(1)),
            )
            .map_err(unavailable)?;

            let [exp, seq, rec] = self.user_keys(&session.username);
            let mut conn = self.conn.clone();
            let mut call = self.create.key(exp);
            call.key(seq).key(rec).arg(&member).arg(blob).arg(idle).arg(max);
            match quota {
                Some(q) => call.arg(q.limit).arg(q.action.as_str()),
                None => call.arg("").arg(""),
            };
            call.arg("");
            let reply: Vec<Value> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            match reply.first() {
                Some(Value::Int(0)) => {
                    // Best effort: the pointers expire by themselves anyway.
                    let _ = conn.del::<_, ()>(&token_key).await;
                    let _ = conn.del::<_, ()>(&handle_key).await;
                    Ok(Err(QuotaExceeded))
                }
                Some(Value::Int(1 | 2)) => {
                    let evicted = reply.iter().skip(3).filter_map(text).collect();
                    Ok(Ok(Created { evicted }))
                }
                other => {
                    Err(StoreError::Unavailable(format!("unexpected reply of the create script: {other:?}")))
                }
            }
        }))
    }

    fn get<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.deadline(StoreOp::Get, self.read(token, false, now)))
    }

    fn touch<'a>(&'a self, token: &'a str, now: Instant) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.deadline(StoreOp::Touch, self.read(token, true, now)))
    }

    fn remove<'a>(&'a self, token: &'a str, _now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::Remove, async move {
            let member = member(token);
            let Some(username) = self.owner(&member).await? else { return Ok(false) };
            let [exp, seq, rec] = self.user_keys(&username);
            let mut conn = self.conn.clone();
            let mut call = self.logout.key(exp);
            call.key(seq).key(rec).arg(&member);
            let ended: i64 = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            // Best effort: without its session the pointer leads nowhere, and it expires by itself.
            let _ = conn.del::<_, ()>(self.token_key(&member)).await;
            Ok(ended == 1)
        }))
    }

    /// Nothing to do: expired sessions are dropped by every script that meets them, and keys expire.
    fn sweep(&self, _now: Instant) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn live_sessions<'a>(&'a self, username: &'a str, _now: Instant) -> StoreFuture<'a, usize> {
        Box::pin(self.deadline(StoreOp::Live, async move {
            let [exp, ..] = self.user_keys(username);
            let mut conn = self.conn.clone();
            self.live.key(exp).invoke_async(&mut conn).await.map_err(unavailable)
        }))
    }

    /// Sessions live in Redis, not in this process.
    fn len(&self) -> usize {
        0
    }

    fn available(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn stats(&self) -> Option<&StoreStats> {
        Some(&self.stats)
    }

    fn admin(&self) -> Option<&dyn SessionAdmin> {
        Some(self)
    }
}

/// Pings Redis every [`PING_EVERY`] so readiness follows Redis while no request does (on a cluster,
/// every primary).
async fn ping_loop(
    mut conn: StoreConnection,
    up: Arc<AtomicBool>,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let ping = tokio::time::timeout(timeout, conn.ping()).await;
        let ok = matches!(ping, Ok(Ok(_)));
        if up.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!(target: "tether::auth", "session store reachable");
                let cmd = redis::cmd("INFO").arg("memory").clone();
                let info = tokio::time::timeout(timeout, cmd.query_async::<String>(&mut conn));
                if let Ok(Ok(info)) = info.await
                    && let Some(problem) = eviction_problem(&info)
                {
                    tracing::warn!(target: "tether::auth", "{problem}");
                }
            } else {
                tracing::warn!(target: "tether::auth", "session store unreachable: logins and session actions answer 503");
            }
        }
    }
}

/// What is wrong with the `maxmemory-policy` that `INFO memory` reports, if anything. Every tether key
/// has a TTL, so any policy but `noeviction` may evict one of a user's keys under memory pressure: a
/// quota silently bypassed, sessions silently ended. With `noeviction` a full Redis refuses writes and
/// tether answers 503 instead. Checked once per (re)connection; a Redis that hides `INFO` is not checked.
fn eviction_problem(info: &str) -> Option<String> {
    let policy = info.lines().find_map(|l| l.trim().strip_prefix("maxmemory_policy:"))?;
    (policy != "noeviction").then(|| {
        format!(
            "the session store's maxmemory-policy is {policy:?}: Redis may evict session and quota keys \
             under memory pressure (quotas bypassed, users logged out); set maxmemory-policy noeviction"
        )
    })
}

pub(super) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The storage name of a token: 128 bits of its SHA-256, hex.
pub(super) fn member(token: &str) -> String {
    digest(token)[..32].to_owned()
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A session from its record, with Redis's times mapped onto this process's clock: `redis_now` is
/// the Redis time at which the script ran, taken to be `now` here.
pub(super) fn session_of(token: &str, record: &str, redis_now: i64, now: Instant) -> Option<Session> {
    let mut parts = record.splitn(5, ':');
    let mut num = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (created, last, idle, max) = (num()?, num()?, num()?, num()?);
    let rest: Record = serde_json::from_str(parts.next()?).ok()?;
    let at = |ms: i64| {
        let ago = Duration::from_millis(u64::try_from(redis_now.saturating_sub(ms)).unwrap_or(0));
        now.checked_sub(ago).unwrap_or(now)
    };
    Some(Session {
        token: token.to_owned(),
        handle: rest.handle,
        username: rest.username,
        realm: rest.realm,
        created: at(created),
        last_access: at(last),
        max_idle: Duration::from_millis(u64::try_from(idle).ok()?),
        max_time: Duration::from_millis(u64::try_from(max).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_map_onto_the_local_clock() {
        let now = Instant::now();
        let s = session_of("t", r#"1000:4000:60000:120000:{"h":"shandle:x","u":"demo","r":"/"}"#, 5000, now)
            .unwrap();
        assert_eq!((s.username.as_str(), s.handle.as_str(), s.realm.as_str()), ("demo", "shandle:x", "/"));
        assert_eq!(now.saturating_duration_since(s.created), Duration::from_secs(4));
        assert_eq!(now.saturating_duration_since(s.last_access), Duration::from_secs(1));
        assert_eq!((s.max_idle, s.max_time), (Duration::from_secs(60), Duration::from_secs(120)));
    }

    #[test]
    fn only_noeviction_is_a_safe_memory_policy() {
        let info = |p: &str| format!("# Memory\r\nused_memory:1\r\nmaxmemory_policy:{p}\r\n");
        assert_eq!(eviction_problem(&info("noeviction")), None);
        let problem = eviction_problem(&info("allkeys-lru")).unwrap();
        assert!(problem.contains("\"allkeys-lru\"") && problem.contains("set maxmemory-policy noeviction"));
        assert!(eviction_problem(&info("volatile-ttl")).is_some());
        assert_eq!(eviction_problem("# Memory\r\n"), None, "no field, nothing to say");
    }

    #[test]
    fn members_hide_the_token() {
        let m = member("AQIC5wM2LY4S");
        assert_eq!(m.len(), 32);
        assert!(!m.contains("AQIC"));
    }
}
