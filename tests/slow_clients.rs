//! Slow clients and connection floods: the header, body and send deadlines close a client that holds a
//! connection without using it, on the fast path and on hyper's path (an HTTP/1.0 request is hyper's),
//! `max_connections` pauses accepting at its limit, and, driven by `slowhttptest` and `h2load`, ordinary
//! mfa logins keep going through while slowloris, slow-body and slow-read attackers run.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Cluster, Journey, ProxyHandle, TestBackend, TetherProcess, client, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The deadlines of the in-process tests, in milliseconds: short, so a test waits little.
const DEADLINE_MS: i64 = 300;

/// Far longer than any deadline: a connection still open this long after it started was not closed.
const NEVER: Duration = Duration::from_secs(5);

async fn with_deadlines(node: &support::BackendHandle) -> ProxyHandle {
    Cluster::of(&[node])
        .proxy("request_header_timeout_ms", DEADLINE_MS)
        .proxy("request_body_timeout_ms", DEADLINE_MS)
        .proxy("client_send_timeout_ms", DEADLINE_MS)
        .start()
        .await
}

/// What the proxy wrote before closing the connection, and when it closed it; panics when it did not
/// within [`NEVER`]. `trickle` is written a piece every 100 ms meanwhile (a slow client).
async fn until_closed(conn: TcpStream, start: &[u8], trickle: &'static [u8]) -> (String, Duration) {
    let began = Instant::now();
    let (mut rd, mut wr) = conn.into_split();
    wr.write_all(start).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..100 {
            tick.tick().await;
            if trickle.is_empty() || wr.write_all(trickle).await.is_err() {
                break;
            }
        }
        // Kept open until the test ends: the proxy is the one to close.
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(NEVER, rd.read_to_end(&mut out)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(read.is_ok(), "still open after {NEVER:?}; got {text:?}");
    (text, began.elapsed())
}

#[tokio::test]
async fn a_trickled_head_and_an_idle_keep_alive_connection_close_at_the_header_deadline_on_both_paths() {
    let node = TestBackend::start("01").await;
    let proxy = with_deadlines(&node).await;
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let head = format!("GET /x {version}\r\nHost: a\r\n");
        let conn = TcpStream::connect(proxy.addr).await.unwrap();
        let (out, took) = until_closed(conn, head.as_bytes(), b"X-Slow: 1\r\n").await;
        println!("{version}: a head trickled a field every 100 ms was cut after {took:?}");
        assert!(!out.contains(" 200 "), "{version}: {out}");

        let whole = format!("GET /x {version}\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
        let conn = TcpStream::connect(proxy.addr).await.unwrap();
        let (out, took) = until_closed(conn, whole.as_bytes(), b"").await;
        println!("{version}: a keep-alive connection idle after its answer was closed after {took:?}");
        assert!(out.starts_with(&format!("{version} 200")), "{version}: {out}");
        assert!(out.to_ascii_lowercase().contains("keep-alive") || version == "HTTP/1.1", "{out}");
    }
    assert_eq!(node.hits(), 2, "only the two whole requests reached the node");
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_a_closed_connection_on_both_paths() {
    let node = TestBackend::start("01").await;
    let proxy = with_deadlines(&node).await;
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let head = format!(
            "POST /upload {version}\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
        );
        let conn = TcpStream::connect(proxy.addr).await.unwrap();
        // 100 bytes a second: well below the 500 a second that earn more time.
        let (out, took) = until_closed(conn, head.as_bytes(), b"0123456789").await;
        println!("{version}: a body trickled at 100 bytes/s was answered and cut after {took:?}");
        assert!(out.starts_with("HTTP/1.") && out.contains(" 408 "), "{version}: {out}");
        assert!(out.contains(r#""code":408"#) && out.contains(r#""reason":"Request Timeout""#), "{out}");
    }
}

/// The public listener's open connections, from the admin listener's metrics.
async fn open_connections(proxy_admin: &str) -> i64 {
    let text =
        client().get(format!("http://{proxy_admin}/metrics")).send().await.unwrap().text().await.unwrap();
    metric(&text, r#"tether_open_connections{listener="public"}"#) as i64
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_loses_the_connection_on_both_paths() {
    let node = TestBackend::start("01").await;
    let proxy = with_deadlines(&node).await;
    let admin = proxy.admin.to_string();
    for (i, version) in ["HTTP/1.1", "HTTP/1.0"].into_iter().enumerate() {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        // 64 MiB: far more than the socket buffers on both sides hold.
        let req = format!("GET /download?bytes=67108864 {version}\r\nHost: a\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        eventually("the node got the download", NEVER, async || node.hits() > i).await;
        let began = Instant::now();
        eventually("the proxy closed the unread download", NEVER, async || {
            open_connections(&admin).await == 0
        })
        .await;
        println!(
            "{version}: a client reading nothing lost its connection {:?} after the node answered",
            began.elapsed()
        );
        drop(conn);
    }
}

#[tokio::test]
async fn at_max_connections_the_next_connection_waits_until_one_closes() {
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).proxy("max_connections", 2).start().await;
    let admin = proxy.admin.to_string();
    let a = TcpStream::connect(proxy.addr).await.unwrap();
    let b = TcpStream::connect(proxy.addr).await.unwrap();
    eventually("two connections open", NEVER, async || open_connections(&admin).await == 2).await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was served while two were open");
    let text = client().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, r#"tether_max_connections{listener="public"}"#), 2.0);
    assert!(metric(&text, r#"tether_connection_limit_reached_total{listener="public"}"#) >= 1.0);
    assert_eq!(open_connections(&admin).await, 2, "the waiting one is in the backlog, not open");
    drop(a);
    let n = tokio::time::timeout(NEVER, c.read(&mut buf)).await.expect("served once a slot freed").unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    drop((b, c));
    let resp = client().get(proxy.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "ordinary service resumed");
}

/// Whether `tools` are on `PATH`; otherwise skips `check` with a message, or fails it under `CI`.
fn tools(check: &str, tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!("{} not on PATH (apt-get install slowhttptest nghttp2-client)", missing.join(", "));
    assert!(std::env::var_os("CI").is_none(), "CI must run the {check}, but {what}");
    println!("skipping the {check}: {what}");
    false
}

/// The soft open-file limit of this process (the children inherit it).
fn open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or(1024)
}

/// One `slowhttptest` run: its exit status line, and the most connections its CSV (one row a second)
/// saw held at once and closed. The last second before an early exit has no row.
struct Round {
    exit: String,
    connected: u64,
    closed: u64,
}

async fn slowhttptest(args: &[String], out: &std::path::Path) -> Round {
    let run = tokio::process::Command::new("slowhttptest")
        .args(args)
        .args(["-g", "-o", out.to_str().unwrap()])
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("slowhttptest ended").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exit = stdout.lines().find(|l| l.contains("Exit status")).unwrap_or_default();
    // Colour codes out: "Exit status: No open connections left".
    let exit: String = exit.split('\u{1b}').map(|p| p.split_once('m').map_or(p, |(_, t)| t)).collect();
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap_or_default();
    // Seconds,Closed,Pending,Connected,Service Available
    let column = |i| csv.lines().skip(1).filter_map(|l| l.split(',').nth(i)?.parse().ok()).max().unwrap_or(0);
    Round { exit: exit.trim().to_owned(), connected: column(3), closed: column(1) }
}

/// Seconds each `slowhttptest` round runs at most.
const ROUND_S: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_logins_go_through_while_slowloris_slow_body_and_slow_read_hold_connections() {
    if !tools("slow-client check", &["slowhttptest"]) {
        return;
    }
    // Every attacker connection is a descriptor in the proxy, plus a node connection for slow bodies
    // and reads: fit them in `ulimit -n`, which tether inherits.
    let nofile = open_file_limit();
    let loris = 500.min(nofile.saturating_sub(600) / 2);
    println!("ulimit -n {nofile}: slowloris with {loris} connections, 100 slow bodies, 100 slow readers");
    assert!(loris >= 100, "ulimit -n {nofile} is too low for this check");
    let files = TestBackend::start("f1").await;
    let toml = Cluster::new()
        .active(["01", "02"])
        .proxy("request_header_timeout_ms", 3000)
        .proxy("request_body_timeout_ms", 3000)
        .proxy("client_send_timeout_ms", 3000)
        .proxy("max_connections", 4000)
        .toml()
        + &format!(
            "\n[[pool]]\nname = \"files\"\n[[pool.backend]]\nid = \"f1\"\nurl = \"{}\"\n\
             [[route]]\npath_prefix = \"/download\"\npool = \"files\"\n",
            files.url()
        );
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("proxy.toml"), &toml).unwrap();
    let mut tether = TetherProcess::spawn(&["run", "-c", dir.join("proxy.toml").to_str().unwrap()]).await;
    let (base, admin) = (format!("http://{}", tether.listen()), tether.admin());
    let up = async || {
        client().get(format!("{base}/download?bytes=1")).send().await.is_ok_and(|r| r.status() == 200)
    };
    eventually("the files pool is up", Duration::from_secs(20), up).await;
    for _ in 0..5 {
        Journey::new(&base, true).mfa_login("secret").await;
    }
    let rss_before = tether.rss_kib().unwrap_or(0);

    // Set when the logins are done: the attack rounds and the sampler stop.
    let done = Arc::new(AtomicBool::new(false));
    let attack = |mode: &'static str, extra: Vec<String>| {
        let (dir, done) = (dir.clone(), Arc::clone(&done));
        let mut args = vec![mode.to_string(), "-p".into(), "3".into(), "-l".into(), ROUND_S.to_string()];
        args.extend(extra);
        async move {
            let mut rounds = Vec::new();
            while rounds.is_empty() || !done.load(Ordering::SeqCst) && rounds.len() < 6 {
                let out = dir.join(format!("{}-{}", &mode[1..], rounds.len()));
                rounds.push(slowhttptest(&args, &out).await);
            }
            rounds
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let loris_args =
        s(&["-c", &loris.to_string(), "-r", "250", "-i", "1", "-x", "24", "-u", &format!("{base}/am/")]);
    let body_url = format!("{base}/am/json/realms/root/authenticate");
    let body_args = s(&["-c", "100", "-r", "100", "-i", "1", "-x", "10", "-s", "8192", "-u", &body_url]);
    let read_url = format!("{base}/download?bytes=8388608");
    let read_args = s(&[
        "-c", "100", "-r", "100", "-k", "1", "-n", "1", "-z", "32", "-w", "512", "-y", "1024", "-u",
        &read_url,
    ]);
    let rounds = (attack("-H", loris_args), attack("-B", body_args), attack("-X", read_args));
    let attackers = tokio::spawn(async move { tokio::join!(rounds.0, rounds.1, rounds.2) });
    let held = loris as i64 / 2;
    eventually("the attackers hold connections", Duration::from_secs(20), async || {
        open_connections(&admin).await >= held
    })
    .await;

    // Memory and open connections sampled while 100 mfa logins run, four at a time.
    let sampler = {
        let (pid, admin, done) = (tether.child.id(), admin.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let (mut rss, mut open) = (0u64, 0i64);
            // A sample every 100 ms until the logins are done (a sampling period, not a wait).
            let mut every = tokio::time::interval(Duration::from_millis(100));
            while !done.load(Ordering::SeqCst) {
                every.tick().await;
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
                rss = rss.max(kib.unwrap_or(0));
                open = open.max(open_connections(&admin).await);
            }
            (rss, open)
        })
    };
    let mut workers = Vec::new();
    for _ in 0..4 {
        let base = base.clone();
        workers.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for _ in 0..25 {
                let began = Instant::now();
                Journey::new(&base, true).mfa_login("secret").await;
                took.push(began.elapsed());
            }
            took
        }));
    }
    let mut took = Vec::new();
    for w in workers {
        took.extend(w.await.expect("every login succeeded"));
    }
    done.store(true, Ordering::SeqCst);
    let (loris_rounds, body_rounds, read_rounds) = attackers.await.unwrap();
    let (rss_peak, open_peak) = sampler.await.unwrap();
    eventually("the attackers' connections are gone", Duration::from_secs(20), async || {
        open_connections(&admin).await <= 2
    })
    .await;
    let rss_after = tether.rss_kib().unwrap_or(0);

    took.sort();
    let pct = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
    println!(
        "{} mfa logins under attack: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        pct(50),
        pct(99),
        took[took.len() - 1]
    );
    println!("proxy RSS: {rss_before} KiB before, {rss_peak} KiB at most during, {rss_after} KiB after");
    println!("public connections open at most during the attack: {open_peak}");
    for (what, rounds) in
        [("slowloris", &loris_rounds), ("slow body", &body_rounds), ("slow read", &read_rounds)]
    {
        for (i, r) in rounds.iter().enumerate() {
            println!(
                "slowhttptest {what} round {i}: {} held at once, {} closed, {}",
                r.connected, r.closed, r.exit
            );
        }
    }
    assert_eq!(took.len(), 100);
    assert!(took[took.len() - 1] < Duration::from_secs(30), "a login took {:?}", took[took.len() - 1]);
    // Slowloris and slow bodies: the attacker held its connections, and the proxy closed every one
    // before the round's time was up (slowhttptest closes none itself until then).
    for (what, rounds, conns) in [("slowloris", &loris_rounds, loris), ("slow body", &body_rounds, 100)] {
        for r in rounds.iter() {
            assert!(r.connected >= conns * 8 / 10, "{what}: only {} of {conns} held", r.connected);
            assert!(r.exit.contains("No open connections left"), "{what}: {}", r.exit);
        }
    }
    // Slow readers never see the close (they read 32 bytes a second through what the kernel holds), so
    // the proxy's own access lines say it: downloads cut well before slowhttptest gave up.
    let lines = tether.drain();
    let cut = |l: &&serde_json::Value| {
        // The access line's path leaves the query out.
        l["path"] == "/download"
            && l["complete"] == false
            && l["duration_us"].as_u64().is_some_and(|us| us < (ROUND_S - 3) * 1_000_000)
    };
    let cut_early = lines.iter().filter(cut).count();
    println!("slow reads cut by the send deadline: {cut_early}");
    assert!(cut_early >= read_rounds.len() * 90, "only {cut_early} slow reads were cut early");
    let timeouts = lines.iter().filter(|l| l["target"] == "tether::access" && l["status"] == 408).count();
    println!("slow bodies answered 408: {timeouts}");
    assert!(timeouts >= body_rounds.len() * 90, "only {timeouts} slow bodies got 408");
    assert!(rss_peak < rss_before + 256 * 1024, "RSS grew from {rss_before} KiB to {rss_peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2load_connection_flood_stays_within_max_connections_and_ordinary_requests_are_served() {
    if !tools("connection flood check", &["h2load"]) {
        return;
    }
    let node = TestBackend::start("01").await;
    let proxy = Cluster::of(&[&node]).proxy("max_connections", 100).start().await;
    let admin = proxy.admin.to_string();
    let flood = tokio::process::Command::new("h2load")
        .args(["-c", "1000", "--rate", "100", "--rate-period", "100ms", "-m", "1", "-n", "5000", "-t", "1"])
        .arg(proxy.url("/x"))
        .kill_on_drop(true)
        .output();
    let flood = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(120), flood).await });
    let (mut open_peak, mut served) = (0, Vec::new());
    // The open connections sampled every 20 ms while the flood lasts.
    let mut every = tokio::time::interval(Duration::from_millis(20));
    while !flood.is_finished() {
        every.tick().await;
        open_peak = open_peak.max(open_connections(&admin).await);
        if served.len() < 10 && open_peak >= 100 {
            let began = Instant::now();
            let resp = client().get(proxy.url("/x")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            served.push(began.elapsed());
        }
    }
    let output = flood.await.unwrap().expect("h2load ended within 120 s").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("requests:") || l.starts_with("finished in")) {
        println!("h2load: {line}");
    }
    println!(
        "public connections open at most: {open_peak}; ordinary requests during the flood took {served:?}"
    );
    let text = client().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let paused = metric(&text, r#"tether_connection_limit_reached_total{listener="public"}"#);
    println!("accepting paused at the limit {paused} times");
    assert!(stdout.contains("5000 succeeded"), "{stdout}");
    assert!(open_peak <= 100, "{open_peak} connections open with max_connections = 100");
    assert!(paused >= 1.0 && !served.is_empty());
}
