//! The admin state file (`proxy.state_file`): operator states saved on every change and read at start,
//! so a restart does not put a node in maintenance back into service, nor turn back on the health checks
//! an operator turned off.
//!
//! Modelled on HAProxy's `server-state-file` (`load-server-state-from-file`): at start the file's entry
//! for a node wins over its configured `admin_state`. The file records what operators changed: it lists
//! the nodes whose state differs from their configured `admin_state` (a drain with a deadline always
//! differs), so editing `admin_state` in the config still takes effect for every node an operator has not
//! overridden, and the nodes whose health checks are disabled (`POST /backends/{id}/health/disable`;
//! the config has no setting for it). Versioned JSON, one entry per server ID, each with a `state`, a
//! `health_checks`, or both:
//!
//! ```text
//! {"version": 1, "backends": {"02": {"state": "maint"}, "03": {"state": "drain", "until_unix": 1764620000},
//!                             "04": {"health_checks": "disabled"}}}
//! ```
//!
//! A drain's deadline is wall-clock (`until_unix`), so the time a restart took counts against it. Entries
//! for IDs the config no longer has are ignored with a warning and dropped at the next write: the file
//! always describes the running set of nodes.
//!
//! Written atomically: a temp file in the same directory, `fsync`, `rename`, `fsync` of the directory, so
//! a crash leaves the old file or the new one, never a torn one. Writes are blocking work; callers run
//! [`StateFile::save`] on a blocking thread. A lock taken inside it (never held across an `await`)
//! serialises writers, and each reads the node states only after taking it, so whichever write lands
//! last holds the newest state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{AdminState, Upstreams};
use crate::am::time::Clock;
use crate::config::Config;

/// The only format version this build reads and writes.
const VERSION: u64 = 1;

/// What to do about a bad file, appended to every read error.
const FIX: &str = "every node then starts in its configured admin_state";

/// Why the state file could not be used. Read errors stop the start (a file that says "maint" but
/// cannot be read must not silently put the node back in service); a write error leaves the new state
/// applied in memory only, and retrying the same change is safe.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file exists but cannot be read.
    #[error("cannot read the state file {}: {source}; fix its permissions, or delete it ({FIX})", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file this build understands.
    #[error("the state file {} is corrupt at line {line}: {reason}; fix line {line}, or delete the file ({FIX})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// The file was written by a build with another format.
    #[error("the state file {} has version {found}, but this tether reads version {VERSION} only; delete it ({FIX}), or run the tether that wrote it", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: String,
    },
    /// The new state could not be saved; it applies until the next restart only.
    #[error("cannot write the state file {}: {source}; the new state applies now but will not survive a restart until the file can be written (retrying the change is safe)", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One node's saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Saved {
    /// The operator state; `None` = the configured `admin_state`.
    pub state: Option<AdminState>,
    /// For a drain: when it stops holding pinned clients (unix seconds); `None` = no deadline.
    pub until_unix: Option<u64>,
    /// The operator disabled the node's active checks (it counts as up until they are enabled).
    pub checks_disabled: bool,
}

/// The entries of a state file, by server ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedStates(pub BTreeMap<String, Saved>);

/// The file as serde reads and writes it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    version: u64,
    #[serde(default)]
    backends: BTreeMap<String, EntryRepr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<StateName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_unix: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_checks: Option<ChecksName>,
}

/// `health_checks`: only a disabled one is written; `"enabled"` is read as no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ChecksName {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StateName {
    Ready,
    Drain,
    Maint,
}

impl From<StateName> for AdminState {
    fn from(s: StateName) -> Self {
        match s {
            StateName::Ready => Self::Ready,
            StateName::Drain => Self::Drain,
            StateName::Maint => Self::Maint,
        }
    }
}

impl From<AdminState> for StateName {
    fn from(s: AdminState) -> Self {
        match s {
            AdminState::Ready => Self::Ready,
            AdminState::Drain => Self::Drain,
            AdminState::Maint => Self::Maint,
        }
    }
}

/// The state file of a running proxy.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    clock: Clock,
    writing: Mutex<()>,
}

impl StateFile {
    /// The file at `path` (already resolved against the config file's directory).
    pub fn new(path: PathBuf) -> Self {
        Self { path, clock: Clock::new(), writing: Mutex::new(()) }
    }

    /// Reads the file: `None` when there is none yet (logged; it is written on the first change).
    pub fn read(&self) -> Result<Option<SavedStates>, StateFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => parse(&self.path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(file = %self.path.display(), "no state file yet: every node starts in its configured admin_state; the file is written on the first admin state change");
                Ok(None)
            }
            Err(source) => Err(StateFileError::Read { path: self.path.clone(), source }),
        }
    }

    /// Writes the states of every node of `upstreams` that differ from `config`'s `admin_state`, and
    /// which nodes have their health checks disabled. Blocking: call it on a blocking thread.
    pub fn save(&self, config: &Config, upstreams: &Upstreams) -> Result<(), StateFileError> {
        let _one = self.writing.lock();
        let now = self.clock.unix_now();
        let mut backends = BTreeMap::new();
        for b in upstreams.pools.iter().flat_map(|p| &p.backends) {
            let state = b.state.admin();
            let until_unix = b.state.drain_left().map(|left| ceil_secs(now.saturating_add(left)));
            let configured = config.backend(b.id.as_str()).map_or(AdminState::Ready, |c| c.admin_state);
            let state = (state != configured || until_unix.is_some()).then_some(state.into());
            let health_checks = (!b.state.health_checks_enabled()).then_some(ChecksName::Disabled);
            if state.is_some() || health_checks.is_some() {
                backends.insert(b.id.to_string(), EntryRepr { state, until_unix, health_checks });
            }
        }
        let mut text = serde_json::to_vec_pretty(&FileRepr { version: VERSION, backends })
            .expect("a map of plain values serializes");
        text.push(b'\n');
        write_atomic(&self.path, &text)
            .map_err(|source| StateFileError::Write { path: self.path.clone(), source })
    }

    /// Applies `saved` to the nodes of a freshly started proxy. An entry for an ID the config does not
    /// have is ignored with a warning (the next write drops it).
    pub fn apply(&self, saved: &SavedStates, config: &Config, upstreams: &Upstreams) {
        let now = self.clock.unix_now().as_secs();
        for (id, entry) in &saved.0 {
            let Some(backend) = upstreams.backend(id) else {
                tracing::warn!(file = %self.path.display(), backend = %id, state = entry.state.map(AdminState::as_str), checks_disabled = entry.checks_disabled, "the state file names a backend the config does not have: ignored, and dropped at the next write");
                continue;
            };
            if let Some(state) = entry.state {
                if let Some(c) = config.backend(id)
                    && c.admin_state != state
                {
                    tracing::info!(file = %self.path.display(), backend = %id, saved = state.as_str(), configured = c.admin_state.as_str(), "the state file's entry wins over the configured admin_state");
                }
                let deadline = entry.until_unix.map(|u| Duration::from_secs(u.saturating_sub(now)));
                backend.state.set_admin(state, deadline);
            }
            if entry.checks_disabled {
                tracing::info!(file = %self.path.display(), backend = %id, "health checks stay disabled, as saved in the state file");
                backend.state.set_health_checks(false);
            }
        }
    }
}

/// Whole seconds, rounded up, so a restored drain never ends earlier than the saved one.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() != 0))
}

/// Parses the bytes of a state file, every problem with its line.
fn parse(path: &Path, bytes: &[u8]) -> Result<SavedStates, StateFileError> {
    let corrupt =
        |line: usize, reason: String| StateFileError::Corrupt { path: path.to_path_buf(), line, reason };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let reason = format!(
            "the file is empty (an empty state file is {{\"version\": {VERSION}, \"backends\": {{}}}})"
        );
        return Err(corrupt(1, reason));
    }
    // Version first, so a file from another format is named as such, not as a list of odd fields.
    let tree: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.line(), message(&e)))?;
    match tree.get("version") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => return Err(StateFileError::Version { path: path.to_path_buf(), found: v.to_string() }),
        None => return Err(corrupt(1, format!("there is no \"version\" (this tether writes {VERSION})"))),
    }
    let file: FileRepr = serde_json::from_slice(bytes).map_err(|e| corrupt(e.line(), message(&e)))?;
    let text = String::from_utf8_lossy(bytes);
    let mut saved = BTreeMap::new();
    for (id, entry) in file.backends {
        let line = || line_of(&text, &format!("\"{id}\""));
        let state = entry.state.map(AdminState::from);
        if entry.until_unix.is_some() && state != Some(AdminState::Drain) {
            let is = state.map_or("not drained", AdminState::as_str);
            let reason = format!("backend {id:?} is {is} but has an until_unix, which only a drain has");
            return Err(corrupt(line(), reason));
        }
        if state.is_none() && entry.health_checks.is_none() {
            let reason = format!("backend {id:?} has neither a \"state\" nor \"health_checks\"");
            return Err(corrupt(line(), reason));
        }
        let checks_disabled = entry.health_checks == Some(ChecksName::Disabled);
        saved.insert(id, Saved { state, until_unix: entry.until_unix, checks_disabled });
    }
    Ok(SavedStates(saved))
}

/// serde_json's message without its " at line L column C" suffix (the line is reported apart).
fn message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}

/// 1-based line of the first occurrence of `needle` (1 when absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(1, |at| text[..at].matches('\n').count() + 1)
}

/// Replaces `path` with `bytes` so that readers and crashes see the old file or the new one, never a
/// part: write a temp file beside it, flush it to disk, rename it over, flush the directory entry.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable only once the directory is; some platforms cannot open a directory, and
    // then the rename is as durable as the platform makes it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<SavedStates, StateFileError> {
        parse(Path::new("/x/tether.state"), text.as_bytes())
    }

    #[test]
    fn reads_every_state_and_a_drain_deadline() {
        let saved = parsed(
            r#"{"version": 1, "backends": {"01": {"state": "maint"}, "02": {"state": "drain", "until_unix": 17}, "03": {"state": "ready"}}}"#,
        )
        .expect("valid");
        assert_eq!(saved.0["01"], Saved { state: Some(AdminState::Maint), ..Saved::default() });
        assert_eq!(
            saved.0["02"],
            Saved { state: Some(AdminState::Drain), until_unix: Some(17), ..Saved::default() }
        );
        assert_eq!(saved.0["03"].state, Some(AdminState::Ready));
    }

    #[test]
    fn reads_disabled_health_checks_with_or_without_a_state() {
        let saved = parsed(
            r#"{"version": 1, "backends": {"01": {"health_checks": "disabled"}, "02": {"state": "maint", "health_checks": "disabled"}, "03": {"state": "drain", "health_checks": "enabled"}}}"#,
        )
        .expect("valid");
        assert_eq!(saved.0["01"], Saved { checks_disabled: true, ..Saved::default() });
        assert_eq!(
            saved.0["02"],
            Saved { state: Some(AdminState::Maint), checks_disabled: true, ..Saved::default() }
        );
        assert_eq!(saved.0["03"], Saved { state: Some(AdminState::Drain), ..Saved::default() });
    }

    #[test]
    fn saves_disabled_checks_without_pinning_the_configured_state() {
        let dir = std::env::temp_dir().join(format!("tether-state-checks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = "[proxy]\nlisten = \"127.0.0.1:0\"\n[[pool]]\nname = \"am\"\n[[route]]\npath_prefix = \"/\"\npool = \"am\"\n\
                    [[pool.backend]]\nid = \"01\"\nurl = \"http://127.0.0.1:1\"\n\
                    [[pool.backend]]\nid = \"02\"\nurl = \"http://127.0.0.1:2\"\n";
        let config = crate::config::parse(text).expect("config");
        let upstreams = Upstreams::build(
            &config,
            &super::super::StateRegistry::default(),
            &crate::metrics::Metrics::default(),
        );
        let file = StateFile::new(dir.join("tether.state"));
        upstreams.backend("02").expect("02").state.set_health_checks(false);
        file.save(&config, &upstreams).expect("saved");
        let written = std::fs::read_to_string(dir.join("tether.state")).expect("written");
        let tree: serde_json::Value = serde_json::from_str(&written).expect("json");
        assert_eq!(tree["backends"], serde_json::json!({"02": {"health_checks": "disabled"}}), "{written}");

        let fresh = Upstreams::build(
            &config,
            &super::super::StateRegistry::default(),
            &crate::metrics::Metrics::default(),
        );
        file.apply(&file.read().expect("read").expect("some"), &config, &fresh);
        assert!(!fresh.backend("02").expect("02").state.health_checks_enabled(), "restored");
        assert!(fresh.backend("01").expect("01").state.health_checks_enabled());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_file_names_itself_its_line_and_the_fix() {
        let cases = [
            ("", 1, "empty"),
            (
                "{\"version\": 1,\n \"backends\": {\n  \"01\": {\"state\": \"sleep\"}}}",
                3,
                "unknown variant `sleep`",
            ),
            (
                "{\"version\": 1,\n \"backends\": {\n  \"01\": {\"state\": \"maint\", \"until_unix\": 5}}}",
                3,
                "only a drain",
            ),
            (
                "{\"version\": 1,\n \"backends\": {\n  \"01\": {\"state\": \"maint\", \"x\": 5}}}",
                3,
                "unknown field `x`",
            ),
            ("{\"version\": 1,\n \"backends\": {\n  \"01\": ", 3, "EOF"),
            ("{\"backends\": {}}", 1, "no \"version\""),
            ("{\"version\": 1,\n \"backends\": {\n  \"01\": {}}}", 3, "neither"),
            (
                "{\"version\": 1,\n \"backends\": {\n  \"01\": {\"health_checks\": \"off\"}}}",
                3,
                "unknown variant `off`",
            ),
            ("\u{0}\u{1}", 1, "expected value"),
        ];
        for (text, line, what) in cases {
            let e = parsed(text).expect_err(text).to_string();
            assert!(e.contains("/x/tether.state"), "{e}");
            assert!(e.contains(&format!("line {line}:")), "{text:?}: {e}");
            assert!(e.contains(what), "{text:?}: {e}");
            assert!(e.contains(&format!("fix line {line}, or delete the file")), "{e}");
        }
        let e = parsed(r#"{"version": 2, "backends": {}}"#).expect_err("v2").to_string();
        assert!(e.contains("has version 2") && e.contains("delete it"), "{e}");
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("tether-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tether.state");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert!(!dir.join(".tether.state.tmp").exists(), "no temp file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_changes_leave_the_newest_states_in_a_whole_file() {
        let dir = std::env::temp_dir().join(format!("tether-state-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut text = String::from(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[[pool]]\nname = \"am\"\n[[route]]\npath_prefix = \"/\"\npool = \"am\"\n",
        );
        for i in 1..=8 {
            text.push_str(&format!("[[pool.backend]]\nid = \"{i:02}\"\nurl = \"http://127.0.0.1:{i}\"\n"));
        }
        let config = crate::config::parse(&text).expect("config");
        let registry = super::super::StateRegistry::default();
        let upstreams = Upstreams::build(&config, &registry, &crate::metrics::Metrics::default());
        let file = StateFile::new(dir.join("tether.state"));
        // Eight writers at once, twenty changes each: without the writer lock they share the temp file
        // and rename it from under each other.
        std::thread::scope(|s| {
            for (i, b) in upstreams.pools[0].backends.iter().enumerate() {
                let (file, config, upstreams) = (&file, &config, &upstreams);
                s.spawn(move || {
                    for round in 0..20 {
                        let state = if (i + round) % 2 == 0 { AdminState::Maint } else { AdminState::Drain };
                        b.state.set_admin(state, None);
                        file.save(config, upstreams).expect("saved");
                    }
                });
            }
        });
        let saved = file.read().expect("a whole file").expect("written");
        for b in &upstreams.pools[0].backends {
            assert_eq!(
                saved.0[b.id.as_str()].state,
                Some(b.state.admin()),
                "{} holds its newest state",
                b.id
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deadlines_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}
