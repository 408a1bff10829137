//! The `tether` binary: `check` reports every problem, SIGTERM drains in-flight requests, `hash-password`
//! asks without echo on a terminal and reads a pipe as it is.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{CHECK_ERRORS, Cluster, TestBackend, TetherProcess, client, eventually};

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
    let out = tether().args(["check", "-c", CHECK_ERRORS]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3: `proxy.admin_listn`: unknown field `admin_listn`"), "{err}");
    assert!(err.contains("line 11: `pool[0].backend[1].id`: duplicate backend ID \"01\""), "{err}");
    assert!(err.contains("line 16: `route[0].pool`: no pool is named \"missing\""), "{err}");
}

/// One mistake of every kind, all named in one run with key and line (issue 18, acceptance 3).
#[test]
fn check_names_every_kind_of_mistake_in_one_run() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check_all.toml");
    let out = tether().args(["check", "-c", file]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "line 3: `proxy.admin_listn`: unknown field `admin_listn`",
        "line 4: `proxy.request_header_timeout_ms`: expected a whole number of milliseconds, found the string \"1s\"; write 1000",
        "line 5: `proxy.connect_timeout_ms`: must be greater than 0",
        "line 7: `proxy.tls.cert`: ",
        "garbage.pem holds no PEM certificate",
        "line 16: `pool[0].backend[1].id`: duplicate backend ID \"01\"",
        "line 17: `pool[0].backend[1].url`: \"http://127.0.0.1:99999\": port 99999 is out of range",
        "line 20: `pool[0].backend[2].url`: duplicate backend URL \"http://127.0.0.1:8081\": backend \"01\" (pool[0].backend[0].url)",
        "line 24: `route[0].pool`: no pool is named \"missing\"",
        "line 25: `route[0].methods[0]`: \"GETT\" is not an HTTP method: use one of GET, HEAD, POST",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains(": 9 problem(s)"), "{err}");
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
    let path = scratch("drain", &Cluster::of(&[&node]).toml());
    let mut tether = TetherProcess::spawn(&["run", "-c", path.to_str().unwrap()]).await;
    let listen = tether.listen();

    let slow = tokio::spawn({
        let url = format!("http://{listen}/slow");
        async move { client().get(url).send().await.unwrap().text().await.unwrap() }
    });
    eventually("the slow request reached the node", Duration::from_secs(10), async || {
        node.slow_started() == 1
    })
    .await;

    tether.signal("TERM");
    eventually("new connections are refused", Duration::from_secs(10), async || {
        tokio::net::TcpStream::connect(&listen).await.is_err()
    })
    .await;
    assert!(tether.child.try_wait().unwrap().is_none(), "tether exited with a request in flight");

    node.release();
    let body = slow.await.unwrap();
    assert!(body.contains("\"backend\":\"01\""), "{body}");
    assert_eq!(tether.exit_code().await, Some(0));
}

#[tokio::test]
async fn the_demo_cluster_from_the_root_config_completes_an_mfa_login() {
    let tether = TetherProcess::spawn(&["run"]).await;
    assert_eq!(tether.listen(), "127.0.0.1:8080");
    let mut journey = support::Journey::new("http://127.0.0.1:8080", true);
    let token = journey.mfa_login("demo-Passw0rd").await;
    let v = journey.validate(&token).await;
    assert_eq!(v["valid"], true, "{v}");
    let node = journey.cookies["amlbcookie"].clone();
    assert!(["01", "02"].contains(&node.as_str()), "a login lands on an active node, not {node}");
    // The console is hidden by a status route; every login's successUrl is the login page, which the demo
    // serves.
    assert_eq!(client().get("http://127.0.0.1:8080/am/console").send().await.unwrap().status(), 403);
    let done: serde_json::Value = client()
        .post("http://127.0.0.1:8080/am/json/realms/root/authenticate")
        .header("content-type", "application/json")
        .header("x-openam-username", "demo")
        .header("x-openam-password", "demo-Passw0rd")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["successUrl"], "/am/XUI/", "{done}");
    let page = client().get("http://127.0.0.1:8080/am/XUI/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<title>Sign in</title>"));
    tether.signal("TERM");
    assert_eq!(tether.exit_code().await, Some(0));
}

/// `maxconn = 0` and `queue_timeout_ms = 0` are refused by `check`, with their keys, lines and the fix; a
/// text where a number belongs is named in words.
#[test]
fn check_refuses_a_zero_maxconn_and_queue_timeout() {
    let text = "[proxy]\nlisten = \"127.0.0.1:8080\"\n\n[[pool]]\nname = \"am\"\nqueue_timeout_ms = 0\n  \
                [[pool.backend]]\n  id = \"01\"\n  url = \"http://127.0.0.1:8081\"\n  maxconn = 0\n  \
                [[pool.backend]]\n  id = \"02\"\n  url = \"http://127.0.0.1:8082\"\n  maxconn = \"10\"\n\n\
                [[route]]\npath_prefix = \"/\"\npool = \"am\"\n";
    let out = tether().args(["check", "-c"]).arg(scratch("maxconn", text)).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "line 6: `pool[0].queue_timeout_ms`: must be greater than 0",
        "line 10: `pool[0].backend[0].maxconn`: must be 1 or more, not 0: leave maxconn out for no limit",
        "line 14: `pool[0].backend[1].maxconn`: expected a whole number, found the string \"10\"; write 10",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// A certificate that expires within 30 days is a warning, not a failure: `check` exits 0 and names the
/// key, the file and the date; one valid for a year passes without it.
#[test]
fn check_warns_of_a_certificate_expiring_within_30_days() {
    // `tether check` on `toml` passes (exit 0) and warns that `file`, named by `key`, expires in `days`.
    let warns = |name: &str, toml: &str, (key, file, days, not_after): (&str, &std::path::Path, i64, i64)| {
        let out = tether().args(["check", "-c"]).arg(scratch(name, toml)).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let date = tether::am::time::iso_utc(u64::try_from(not_after).unwrap());
        let expected = format!(
            "warning: `{key}`: the certificate {} expires in {days} day(s), on {date}",
            file.display()
        );
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    };
    let config = |cert: &std::path::Path, key: &std::path::Path| {
        Cluster::of(&[]).backend_at(0, "01", "http://127.0.0.1:1", "active").tls(cert, key).toml()
    };
    let (cert, key, _, not_after) = support::cert_valid_for("expiring", 10);
    warns("expiring", &config(&cert, &key), ("proxy.tls.cert", &cert, 10, not_after));
    let (cert, key, _, _) = support::cert_valid_for("lasting", 365);
    let out = tether().args(["check", "-c"]).arg(scratch("lasting", &config(&cert, &key))).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "a year is far enough");

    // The client certificate a pool shows its https:// nodes: when it expires, every node refuses it.
    let (client_cert, client_key, _, not_after) = support::cert_valid_for("expiring-client", 5);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let toml = Cluster::of(&[])
        .backend_at(0, "01", "https://127.0.0.1:1", "active")
        .set("pool.0.tls.ca_file", path(&cert))
        .set("pool.0.tls.client_cert", path(&client_cert))
        .set("pool.0.tls.client_key", path(&client_key))
        .toml();
    warns("expiring-client", &toml, ("pool[0].tls.client_cert", &client_cert, 5, not_after));
}

#[test]
fn check_accepts_the_standalone_example() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/standalone/proxy.toml");
    let out = tether().args(["check", "-c", file]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_accepts_the_real_am_example_with_https_nodes_proxy_protocol_and_a_state_file() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/real-am/proxy.toml");
    let out = tether().args(["check", "-c", file]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 backend(s) (0 embedded)"), "{out:?}");
}

#[test]
fn check_accepts_the_redis_example_of_three_node_hosts_and_a_proxy() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/redis/proxy.toml");
    let out = tether().args(["check", "-c", file]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 backend(s) (0 embedded)"), "{out:?}");
}

/// Reads `from` until its output so far contains `text`; the output so far.
fn read_until(from: &mut impl std::io::Read, seen: &mut String, text: &str) {
    let mut buf = [0u8; 256];
    while !seen.contains(text) {
        let n = from.read(&mut buf).unwrap();
        assert!(n > 0, "the output ended before {text:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// `tether hash-password` under a pseudo-terminal (`script`, util-linux), answering each prompt once it
/// is shown: everything the terminal displayed, and the exit status.
fn hash_password_on_a_terminal(first: &str, second: &str) -> Option<(String, std::process::ExitStatus)> {
    use std::io::Write;
    use std::process::Stdio;
    let command = format!("{} hash-password", env!("CARGO_BIN_EXE_tether"));
    let Ok(mut child) = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the terminal check, but `script` is missing");
        println!("skipping the terminal check: no `script` (util-linux)");
        return None;
    };
    let (mut stdin, mut stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    // A deadline, so a binary that never prompts fails the test instead of hanging it: after 30 s the
    // terminal is killed, its output ends, and `read_until` names what never came.
    let (done, deadline) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        if deadline.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let mut shown = String::new();
    read_until(&mut stdout, &mut shown, "Password: ");
    stdin.write_all(format!("{first}\r").as_bytes()).unwrap();
    read_until(&mut stdout, &mut shown, "Confirm: ");
    stdin.write_all(format!("{second}\r").as_bytes()).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    shown.push_str(&rest);
    let status = child.wait().unwrap();
    let _ = done.send(());
    Some((shown, status))
}

#[test]
fn hash_password_on_a_terminal_prompts_twice_without_echo_and_refuses_a_mismatch() {
    let Some((shown, status)) = hash_password_on_a_terminal("Tr0ub4dor&3", "Tr0ub4dor&3") else {
        return;
    };
    assert!(status.success(), "{shown}");
    assert!(!shown.contains("Tr0ub4dor"), "the terminal showed the password: {shown:?}");
    let phc = shown.lines().map(str::trim).find(|l| l.starts_with("$argon2id$")).expect("a PHC hash");
    let hash = argon2::PasswordHash::new(phc).unwrap();
    use argon2::PasswordVerifier as _;
    assert!(argon2::Argon2::default().verify_password(b"Tr0ub4dor&3", &hash).is_ok(), "{phc}");

    let (shown, status) = hash_password_on_a_terminal("Tr0ub4dor&3", "Tr0ub4dor&4").unwrap();
    assert!(!status.success(), "a mistyped confirmation is refused: {shown}");
    assert!(shown.contains("the two passwords differ"), "{shown}");
    assert!(!shown.contains("$argon2id$"), "{shown}");
}

#[test]
fn hash_password_reads_a_piped_stdin_as_it_is() {
    use std::io::Write;
    let mut child = tether()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret pass\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "no prompt when piped: {}", String::from_utf8_lossy(&out.stderr));
    let phc = String::from_utf8(out.stdout).unwrap();
    let hash = argon2::PasswordHash::new(phc.trim()).unwrap();
    use argon2::PasswordVerifier as _;
    assert!(argon2::Argon2::default().verify_password(b"s3cret pass", &hash).is_ok());
}
