//! 64 MiB each way streams through the proxy without buffering.
//!
//! This file holds one test so its binary's peak RSS belongs to this transfer alone. The kernel's
//! high-water mark (`VmHWM`) is reset through `/proc/self/clear_refs` before the transfer and read after:
//! buffering a body anywhere in the process (client, proxy or node) would raise it by tens of MiB.

mod support;

use support::{Cluster, TestBackend, Zeros, client};

const SIZE: u64 = 64 * 1024 * 1024;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn current_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_in_bounded_memory() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).start().await;
    let http = client();
    // Warm up connections, allocator arenas and the runtime before measuring.
    let _ = http.get(proxy.url("/download?bytes=1048576")).send().await.unwrap().bytes().await.unwrap();

    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let base = current_rss_kib();

    let resp = http
        .post(proxy.url("/upload"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap(Zeros::new(SIZE)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["received"].as_u64(), Some(SIZE));

    let mut resp = http.get(proxy.url(&format!("/download?bytes={SIZE}"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, SIZE);

    let growth_mib = peak_rss_kib().saturating_sub(base) / 1024;
    println!("peak RSS growth while moving 2 x 64 MiB through the proxy: {growth_mib} MiB");
    assert!(growth_mib < 16, "peak RSS grew by {growth_mib} MiB: a body was buffered somewhere");
    node.join().await;
}
