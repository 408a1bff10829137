//! Live reload: SIGHUP applies a new route without dropping a concurrent stream of requests;
//! an invalid file changes nothing and `POST /reload` names the problem.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{Cluster, TestBackend, TetherProcess, client, eventually};

fn write(path: &std::path::Path, text: &str) {
    // Write then rename, so a reload never reads a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_route_without_dropping_requests_and_bad_files_change_nothing() {
    let node = TestBackend::start("01").await;
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    let v1 = Cluster::of(&[&node]).only_route("/a/", "am");
    write(&file, &v1.toml());
    let mut tether = TetherProcess::spawn(&["run", "-c", file.to_str().unwrap()]).await;
    let (public, admin) = (format!("http://{}", tether.listen()), format!("http://{}", tether.admin()));
    let http = client();
    assert_eq!(http.get(format!("{public}/b/x")).send().await.unwrap().status(), 404);
    assert_eq!(http.post(format!("{admin}/backends/01/drain")).send().await.unwrap().status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stream = {
        let (stop, sent, failed, url) = (stop.clone(), sent.clone(), failed.clone(), format!("{public}/a/x"));
        tokio::spawn(async move {
            let http = client();
            while !stop.load(Ordering::SeqCst) {
                let ok = http
                    .get(&url)
                    .header("cookie", "amlbcookie=01")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::SeqCst);
                failed.fetch_add(usize::from(!ok), Ordering::SeqCst);
            }
        })
    };
    eventually("the stream is flowing", Duration::from_secs(10), async || sent.load(Ordering::SeqCst) > 20)
        .await;

    write(&file, &v1.clone().status_route("/b/", 403).toml());
    tether.signal("HUP");
    tether.wait_log("config reloaded").await;
    assert_eq!(
        http.get(format!("{public}/b/x")).send().await.unwrap().status(),
        403,
        "the new route answers"
    );
    let at_reload = sent.load(Ordering::SeqCst);
    eventually("the stream goes on after the reload", Duration::from_secs(10), async || {
        sent.load(Ordering::SeqCst) > at_reload + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    stream.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{sent} requests across the reload, {failed} failed");
    assert_eq!(failed, 0);
    let status: serde_json::Value =
        http.get(format!("{admin}/status.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["pools"][0]["backends"][0]["admin"], "drain", "node state survives a reload of its ID");

    // An invalid file: nothing changes, and the answer names the problem.
    write(&file, &v1.clone().set("pool.0.balanse", "least-conn").toml());
    let resp = http.post(format!("{admin}/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("`pool[0].balanse`: unknown field"), "{message}");
    assert_eq!(
        http.get(format!("{public}/b/x")).send().await.unwrap().status(),
        403,
        "the old config still serves"
    );
    tether.signal("HUP");
    tether.wait_log("the running config is unchanged").await;

    // Settings bound at start are refused by name, not half-applied.
    write(&file, &v1.clone().proxy("listen", "127.0.0.1:1").toml());
    let resp = http.post(format!("{admin}/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("proxy.listen"), "{body}");
    assert_eq!(http.get(format!("{public}/b/x")).send().await.unwrap().status(), 403);

    tether.signal("TERM");
    assert_eq!(tether.exit_code().await, Some(0));
}
