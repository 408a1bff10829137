//! The session-store series of the admin `/metrics`, scraped from a real `tether run`: live sessions
//! counted once per node that created them, and the round trips and failures of a Redis store.
//!
//! The Redis test starts its own `redis-server` ([`support::RedisServer`]); without one it is skipped
//! with a message, except under CI, where it fails.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{Cluster, RedisServer, TetherProcess, client, eventually};

/// One `tether run` of `cluster`, from a config file of its own.
struct Run {
    process: TetherProcess,
    config: std::path::PathBuf,
}

impl Run {
    async fn start(cluster: &Cluster) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let config = std::env::temp_dir().join(format!(
            "tether-store-metrics-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&config, cluster.toml()).unwrap();
        let process = TetherProcess::spawn(&["run", "-c", config.to_str().unwrap()]).await;
        Self { process, config }
    }

    /// Where node `id` listens, from the "serving" log line (`01=127.0.0.1:PORT 02=…`).
    fn node(&self, id: &str) -> String {
        let nodes = self.process.serving["nodes"].as_str().unwrap();
        let addr = nodes.split(' ').find_map(|n| n.strip_prefix(&format!("{id}="))).unwrap();
        format!("http://{addr}")
    }

    /// A zero-page login of demo/secret straight on node `id`: the HTTP status.
    async fn login(&self, id: &str) -> u16 {
        let resp = client()
            .post(format!("{}/am/json/realms/root/authenticate", self.node(id)))
            .header("X-OpenAM-Username", "demo")
            .header("X-OpenAM-Password", "secret")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    }

    /// `(name, labels) → value` of the admin `/metrics`.
    async fn scrape(&self) -> BTreeMap<(String, String), f64> {
        let url = format!("http://{}/metrics", self.process.admin());
        let text = client().get(url).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("name value");
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                ((name.to_string(), labels.trim_end_matches('}').to_string()), value.parse().unwrap())
            })
            .collect()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The `tether_auth_*` series, for failure messages.
fn auth_series(m: &BTreeMap<(String, String), f64>) -> Vec<(&(String, String), &f64)> {
    m.iter().filter(|((name, _), _)| name.starts_with("tether_auth_")).collect()
}

fn value(m: &BTreeMap<(String, String), f64>, name: &str, labels: &str) -> Option<f64> {
    m.get(&(name.to_string(), labels.to_string())).copied()
}

#[tokio::test]
async fn with_a_shared_store_each_node_counts_the_sessions_it_created() {
    let run = Run::start(&Cluster::new().active(["01", "02"]).shared_sessions()).await;
    for node in ["01", "01", "02"] {
        assert_eq!(run.login(node).await, 200, "login on {node}");
    }
    let m = run.scrape().await;
    assert_eq!(value(&m, "tether_auth_sessions", r#"node="01""#), Some(2.0), "{:?}", auth_series(&m));
    assert_eq!(value(&m, "tether_auth_sessions", r#"node="02""#), Some(1.0), "{:?}", auth_series(&m));
    assert!(
        !m.keys().any(|(name, _)| name.starts_with("tether_auth_store_")),
        "an in-process store makes no round trips"
    );
}

#[tokio::test]
async fn with_local_stores_each_node_counts_its_own() {
    let run = Run::start(&Cluster::new().active(["01", "02"])).await;
    assert_eq!(run.login("02").await, 200);
    let m = run.scrape().await;
    assert_eq!(value(&m, "tether_auth_sessions", r#"node="01""#), Some(0.0), "{:?}", auth_series(&m));
    assert_eq!(value(&m, "tether_auth_sessions", r#"node="02""#), Some(1.0), "{:?}", auth_series(&m));
}

#[tokio::test]
async fn redis_round_trips_are_timed_and_failures_counted_by_kind() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let cluster = Cluster::new()
        .active(["01", "02"])
        .auth("sessions", "redis")
        .set("auth.store.url", redis.url())
        .set("auth.store.timeout_ms", 300);
    let run = Run::start(&cluster).await;
    eventually("node 01 ready", Duration::from_secs(10), async || {
        let ready = client().get(format!("{}/am/json/health/ready", run.node("01"))).send().await;
        ready.is_ok_and(|r| r.status() == 200)
    })
    .await;
    for node in ["01", "01", "02"] {
        assert_eq!(run.login(node).await, 200, "login on {node}");
    }
    let m = run.scrape().await;
    let count = |m: &BTreeMap<_, _>, op: &str| {
        value(m, "tether_auth_store_duration_seconds_count", &format!(r#"op="{op}""#)).unwrap_or(-1.0)
    };
    assert_eq!(count(&m, "create"), 3.0, "one create per login: {:?}", auth_series(&m));
    let errors = |m: &BTreeMap<_, _>, kind: &str| {
        value(m, "tether_auth_store_errors_total", &format!(r#"kind="{kind}""#)).unwrap_or(-1.0)
    };
    assert_eq!((errors(&m, "timeout"), errors(&m, "unavailable")), (0.0, 0.0));
    assert!(
        !m.keys().any(|(name, _)| name == "tether_auth_sessions"),
        "sessions on Redis are not counted in this process, so no number is shown rather than a wrong one"
    );

    redis.stop();
    assert_eq!(run.login("01").await, 503, "a store that fails gives 503");
    let m = run.scrape().await;
    assert_eq!(count(&m, "create"), 4.0, "the failed create is timed too");
    assert!(errors(&m, "timeout") + errors(&m, "unavailable") >= 1.0, "{:?}", auth_series(&m));
    assert!(errors(&m, "unavailable") >= 1.0, "a refused connection is `unavailable`: {:?}", auth_series(&m));
}
