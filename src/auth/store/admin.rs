//! [`RedisStore`] as a [`SessionAdmin`]: a user's record hash names every session, so listing and
//! ending them all is one script on the user's keys; a session handle leads to its session through the
//! `PREFIX:hdl:…` pointer written at login. Every script touches only `{PREFIX:USER}` keys (one slot),
//! the pointer is read by a single-key command, so all of it works on a Redis Cluster too.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script, Value};
use tokio::time::Instant;

use crate::auth::session::StoreFuture;
use crate::auth::session::admin::{SessionAdmin, SessionListing};
use crate::auth::store::StoreOp;

use super::redis::{Record, RedisStore, session_of, text, unavailable};

static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("list.lua")));
static END_USER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("end_user.lua")));
static LOGOUT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("logout.lua")));

impl SessionAdmin for RedisStore {
    fn list<'a>(&'a self, username: &'a str, now: Instant) -> StoreFuture<'a, Vec<SessionListing>> {
        Box::pin(self.deadline(StoreOp::List, async move {
            let [exp, seq, rec] = self.user_keys(username);
            let mut call = LIST.key(exp);
            call.key(seq).key(rec);
            let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
            let redis_now = match reply.first() {
                Some(Value::Int(n)) => *n,
                other => {
                    return Err(crate::auth::session::StoreError::Unavailable(format!(
                        "unexpected reply of the list script: {other:?}"
                    )));
                }
            };
            Ok(reply.iter().skip(1).filter_map(text).filter_map(|r| listing_of(&r, redis_now, now)).collect())
        }))
    }

    fn end_user<'a>(&'a self, username: &'a str, _now: Instant) -> StoreFuture<'a, usize> {
        Box::pin(self.deadline(StoreOp::End, async move {
            let [exp, seq, rec] = self.user_keys(username);
            let mut call = END_USER.key(exp);
            call.key(seq).key(rec);
            call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
        }))
    }

    fn end_handle<'a>(&'a self, handle: &'a str, _now: Instant) -> StoreFuture<'a, bool> {
        Box::pin(self.deadline(StoreOp::End, async move {
            let mut conn = self.conn.clone();
            let key = self.handle_key(handle);
            let pointer: Option<String> = conn.get(&key).await.map_err(unavailable)?;
            let Some((member, username)) = pointer.as_deref().and_then(|p| p.split_once(':')) else {
                return Ok(false);
            };
            let [exp, seq, rec] = self.user_keys(username);
            let mut call = LOGOUT.key(exp);
            call.key(seq).key(rec).arg(member);
            let ended: i64 = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            // Best effort: without their session both pointers lead nowhere, and they expire anyway.
            let _ = conn.del::<_, ()>(self.token_key(member)).await;
            let _ = conn.del::<_, ()>(&key).await;
            Ok(ended == 1)
        }))
    }
}

/// A listing from a session record; the node comes from the record, since the member is a digest.
fn listing_of(record: &str, redis_now: i64, now: Instant) -> Option<SessionListing> {
    let session = session_of("", record, redis_now, now)?;
    let node = record.splitn(5, ':').nth(4).and_then(|j| serde_json::from_str::<Record>(j).ok())?.node;
    Some(SessionListing { node, ..SessionListing::of(&session) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_take_the_node_from_the_record_and_old_records_still_read() {
        let now = Instant::now();
        let new = r#"1000:4000:60000:120000:{"h":"shandle:x","u":"demo","r":"/","n":"02"}"#;
        let l = listing_of(new, 5000, now).unwrap();
        assert_eq!((l.handle.as_str(), l.username.as_str(), l.node.as_str()), ("shandle:x", "demo", "02"));
        assert_eq!(l.idle_expiry, l.last_access + std::time::Duration::from_secs(60));
        let old = r#"1000:4000:60000:120000:{"h":"shandle:x","u":"demo","r":"/"}"#;
        assert_eq!(listing_of(old, 5000, now).unwrap().node, "");
    }
}
