//! The `tether` binary: `check` reports every problem, SIGTERM drains in-flight requests.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{TestBackend, client, eventually, proxy_toml};

fn tether() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tether"))
}

/// A file under the target directory, unique per test.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_demo_config() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml");
    let out = tether().args(["check", "-c", root]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_names_every_problem_with_its_line() {
    let bad = r#"[proxy]
listen = "127.0.0.1:8080"
admin_listn = "127.0.0.1:9090"

[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:8081"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:8082"

[[route]]
path_prefix = "/"
pool = "missing"
"#;
    let path = scratch("bad", bad);
    let out = tether().args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: `proxy.admin_listn`: unknown field `admin_listn`"), "{err}");
    assert!(err.contains("line 11: `pool[0].backend[1].id`: duplicate backend ID \"01\""), "{err}");
    assert!(err.contains("line 16: `route[0].pool`: no pool is named \"missing\""), "{err}");
}

#[test]
fn help_and_version_work_on_every_command() {
    for args in [
        &["--version"][..],
        &["--help"],
        &["run", "--help"],
        &["node", "--help"],
        &["check", "--help"],
        &["hash-password", "--help"],
    ] {
        let out = tether().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
    }
}

#[tokio::test]
async fn sigterm_finishes_the_slow_response_refuses_new_connections_and_exits_0() {
    let node = TestBackend::start("01").await;
    let path = scratch("drain", &proxy_toml(&[&node], &[], "", None));
    let (mut child, serving) = spawn_serving(&["run", "-c", path.to_str().unwrap()]).await;
    let listen = serving["listen"].as_str().unwrap().to_string();

    let slow = tokio::spawn({
        let url = format!("http://{listen}/slow");
        async move { client().get(url).send().await.unwrap().text().await.unwrap() }
    });
    eventually("the slow request reached the node", Duration::from_secs(10), async || {
        node.slow_started() == 1
    })
    .await;

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    eventually("new connections are refused", Duration::from_secs(10), async || {
        tokio::net::TcpStream::connect(&listen).await.is_err()
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "tether exited with a request in flight");

    node.release();
    let body = slow.await.unwrap();
    assert!(body.contains("\"backend\":\"01\""), "{body}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Starts `tether` with `args` and waits for its "serving" log line; returns the child and that line.
async fn spawn_serving(args: &[&str]) -> (std::process::Child, serde_json::Value) {
    let mut child = tether()
        .args(["--log-format", "json"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("tether starts")
            .unwrap_or_else(|| panic!("tether exited: {:?}", child.try_wait()));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"].as_str().is_some_and(|m| m.ends_with("is serving")) {
            return (child, v);
        }
    }
}

#[tokio::test]
async fn the_demo_cluster_from_the_root_config_completes_an_mfa_login() {
    let (child, serving) = spawn_serving(&["run"]).await;
    assert_eq!(serving["listen"], "127.0.0.1:8080");
    let mut journey = support::Journey::new("http://127.0.0.1:8080", true);
    let token = journey.mfa_login("demo-Passw0rd").await;
    let v = journey.validate(&token).await;
    assert_eq!(v["valid"], true, "{v}");
    let node = journey.cookies["amlbcookie"].clone();
    assert!(["01", "02"].contains(&node.as_str()), "a login lands on an active node, not {node}");
    // The console is hidden by a status route.
    assert_eq!(client().get("http://127.0.0.1:8080/am/console").send().await.unwrap().status(), 403);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_accepts_the_standalone_example() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/standalone/proxy.toml");
    let out = tether().args(["check", "-c", file]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
