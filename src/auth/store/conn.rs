//! [`StoreConnection`]: the one connection type [`super::RedisStore`] talks through, to a single Redis
//! or to a Redis Cluster, chosen by `[auth.store]` (`url` or `cluster`).
//!
//! Both kinds connect lazily (a node starts while Redis is down, and its requests fail with
//! [`StoreError`] until Redis answers), give every connection attempt and every reply `timeout_ms`, and
//! reconnect by themselves. On a cluster the client routes each command by its first key's hash slot,
//! follows `MOVED`/`ASK` redirects after a resharding or failover, and loads scripts on every node.
//! [`StoreConnection::ping`] asks every primary that serves slots, so readiness holds only while the
//! whole cluster answers. Every script touches the
//! keys of one user only, which share the hash tag `{PREFIX:USER}` and so one slot, as Redis Cluster
//! requires of a script's keys.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::auth::session::StoreError;
use crate::config::{StoreConfig, StoreServers};

/// A connection to the configured Redis: cheap to clone, every clone shares the same sockets.
#[derive(Clone)]
pub(super) enum StoreConnection {
    /// `url`: one multiplexed connection that the manager re-opens in the background.
    Single(ConnectionManager),
    /// `cluster`: one multiplexed connection per node, the slot map refreshed on redirects.
    Cluster(ClusterConnection),
}

impl StoreConnection {
    /// Opens (lazily) the connection `config` names. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// A URL the client cannot parse, or seeds it cannot combine (different TLS modes or passwords).
    pub(super) fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let fail = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        match &config.servers {
            StoreServers::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(fail)?;
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    .set_max_delay(Duration::from_millis(500))
                    // Login bursts queue many commands on the one multiplexed connection.
                    .set_pipeline_buffer_size(1024);
                Ok(Self::Single(client.get_connection_manager_lazy(manager).map_err(fail)?))
            }
            StoreServers::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(config.timeout)
                    // Also the bound of a whole request with its retries and redirects.
                    .response_timeout(config.timeout)
                    .build()
                    .map_err(fail)?;
                // Connects in the background: the first commands wait for it (within their deadline)
                // or fail, and a cluster that was down at start is found again on a later command.
                Ok(Self::Cluster(client.get_pending_async_connection_with_config(Default::default())))
            }
        }
    }
}

impl StoreConnection {
    /// `PING`: to the one Redis, or to each primary that `CLUSTER SLOTS` names, every one of which must
    /// answer. (The client's own fan-out of `PING` skips nodes it has no connection to, so a dead
    /// primary would still look fine.)
    pub(super) async fn ping(&mut self) -> RedisResult<()> {
        let cluster = match self {
            Self::Single(c) => return redis::cmd("PING").query_async(c).await,
            Self::Cluster(c) => c,
        };
        let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(cluster).await?;
        let mut primaries: Vec<(String, u16)> = slots.iter().filter_map(primary).collect();
        primaries.sort_unstable();
        primaries.dedup();
        if primaries.is_empty() {
            return Err(
                (redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown), "no slots served").into()
            );
        }
        for (host, port) in primaries {
            let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            cluster.route_command(redis::cmd("PING"), at).await?;
        }
        Ok(())
    }
}

/// The primary of one `CLUSTER SLOTS` entry: `[start, end, [host, port, id, …], replicas…]`.
fn primary(range: &Value) -> Option<(String, u16)> {
    let Value::Array(range) = range else { return None };
    let Some(Value::Array(node)) = range.get(2) else { return None };
    let host = match node.first()? {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let Value::Int(port) = node.get(1)? else { return None };
    Some((host, u16::try_from(*port).ok()?))
}

impl ConnectionLike for StoreConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_of_a_slot_range_is_its_first_node() {
        let node = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.into()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node("10.0.0.1", 7000),
            node("10.0.0.2", 7001),
        ]);
        assert_eq!(primary(&range), Some(("10.0.0.1".to_owned(), 7000)));
        assert_eq!(primary(&Value::Array(vec![Value::Int(0), Value::Int(1)])), None);
        assert_eq!(primary(&Value::Array(vec![Value::Int(0), Value::Int(1), node("h", 70000)])), None);
    }
}
