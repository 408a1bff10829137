//! The real `tether` binary as a child process, read through its JSON log lines.

use std::time::Duration;

/// The real `tether` binary, started with `--log-format json`, once it logs that it is serving.
pub struct TetherProcess {
    /// The process.
    pub child: std::process::Child,
    /// The "… is serving" log line.
    pub serving: serde_json::Value,
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl TetherProcess {
    /// Runs `tether ARGS` in the crate directory.
    pub async fn spawn(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["--log-format", "json"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut p = Self { child, serving: serde_json::Value::Null, logs };
        p.serving = p.wait_log("is serving").await;
        p
    }

    /// The next log line whose message ends with `suffix`.
    pub async fn wait_log(&mut self, suffix: &str) -> serde_json::Value {
        self.wait_line(&format!("a message ending {suffix:?}"), |v| {
            v["message"].as_str().is_some_and(|m| m.ends_with(suffix))
        })
        .await
    }

    /// The next log line (as JSON) that `matches`.
    pub async fn wait_line(
        &mut self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.logs.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {what} within 30 s"))
                .unwrap_or_else(|| panic!("tether exited: {:?}", self.child.try_wait()));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if matches(&v) {
                return v;
            }
        }
    }

    /// The log lines (as JSON) written so far and not yet read, without waiting for more.
    pub fn drain(&mut self) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| self.logs.try_recv().ok())
            .map(|line| serde_json::from_str(&line).unwrap_or_default())
            .collect()
    }

    /// The process's resident set (`VmRSS` of `/proc/PID/status`) in KiB; `None` off Linux.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Sends a signal (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        tokio::task::spawn_blocking(move || self.child.wait().unwrap().code()).await.unwrap()
    }

    /// The public listener's address, from the serving line.
    pub fn listen(&self) -> String {
        self.serving["listen"].as_str().unwrap().to_string()
    }

    /// The admin listener's address.
    pub fn admin(&self) -> String {
        self.serving["admin"].as_str().unwrap().to_string()
    }
}

impl Drop for TetherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
