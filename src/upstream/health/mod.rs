//! Node health: a pure rise/fall state machine, the bookkeeping of its results, and (in `checker`)
//! the active checker that feeds it.
//!
//! As in HAProxy (`check inter rise fall`) a node starts up, goes down after `fall` failed checks in a
//! row and comes back after `rise` passes in a row; a single result against the streak resets it, so a
//! flapping node does not bounce in and out. Failures seen on real traffic (connect refused or timed out)
//! count as failed checks at once (HAProxy's `observe layer4`), so a dead node leaves the serving tier
//! before the next probe is due.
//!
//! [`HealthMachine`] and [`HealthInfo`] are pure (no clock, no I/O; the check time is passed in);
//! [`NodeHealth`] puts them behind a small mutex with the atomics the request path reads.

mod checker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::config::{BackendId, HealthConfig};
pub use checker::Checkers;

/// Health as seen by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Taking requests.
    Up,
    /// Refusing connections or failing checks.
    Down,
}

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Down → up after `rise` passes.
    Up,
    /// Up → down after `fall` failures.
    Down,
}

/// The rise/fall counter of one node. Pure: no clock, no I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthMachine {
    up: bool,
    /// Results in a row that disagree with the current state.
    streak: u32,
}

impl Default for HealthMachine {
    /// Nodes start up, so a fresh proxy serves at once; failing checks take them out after `fall`.
    fn default() -> Self {
        Self { up: true, streak: 0 }
    }
}

impl HealthMachine {
    /// Whether the node counts as up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Results in a row against the current state.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Feeds one result; returns the transition it caused, if any.
    pub fn observe(&mut self, pass: bool, rise: u32, fall: u32) -> Option<Transition> {
        if pass == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.up { fall } else { rise };
        if self.streak < threshold.max(1) {
            return None;
        }
        self.up = pass;
        self.streak = 0;
        Some(if pass { Transition::Up } else { Transition::Down })
    }
}

/// The outcome of the last active check, for the status page.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// When it finished.
    pub at: SystemTime,
    /// Whether it passed.
    pub pass: bool,
    /// `200`, `503`, `timeout`, `connect: …`.
    pub detail: String,
}

/// Health details for the status page and the scrape: the machine and what it went through.
#[derive(Debug, Default, Clone)]
pub struct HealthInfo {
    /// The rise/fall machine.
    pub machine: HealthMachine,
    /// The last active check.
    pub last_check: Option<CheckResult>,
    /// Transitions so far.
    pub transitions: u64,
    /// Transitions to up so far.
    pub transitions_up: u64,
    /// Transitions to down so far.
    pub transitions_down: u64,
    /// Active checks run so far.
    pub checks: u64,
    /// The reason of the last transition.
    pub last_reason: Option<String>,
}

impl HealthInfo {
    /// Feeds one result to the machine and books the transition it caused, with its reason (built only
    /// when there is a transition, so a success on live traffic costs no allocation).
    pub fn observe(
        &mut self,
        pass: bool,
        rise: u32,
        fall: u32,
        reason: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let t = self.machine.observe(pass, rise, fall)?;
        self.transitions += 1;
        match t {
            Transition::Up => self.transitions_up += 1,
            Transition::Down => self.transitions_down += 1,
        }
        self.last_reason = Some(reason());
        Some(t)
    }

    /// Books an active check: counts it, keeps it as the last one and feeds it to the machine.
    pub fn checked(&mut self, check: CheckResult, rise: u32, fall: u32) -> Option<Transition> {
        let (pass, detail) = (check.pass, &check.detail);
        let t = self.observe(pass, rise, fall, || {
            if pass {
                format!("{rise} check(s) passed in a row (last: {detail})")
            } else {
                format!("{fall} check(s) failed in a row (last: {detail})")
            }
        });
        self.checks += 1;
        self.last_check = Some(check);
        t
    }
}

/// The health of one node: the request path reads two atomics; the details sit behind a small mutex
/// taken by the checker, by passive failures, and by a success that follows a failure.
#[derive(Debug)]
pub struct NodeHealth {
    up: AtomicBool,
    /// A failure streak is open, so the next success must close it.
    suspect: AtomicBool,
    info: Mutex<HealthInfo>,
}

impl Default for NodeHealth {
    /// Up, like [`HealthMachine::default`].
    fn default() -> Self {
        Self { up: AtomicBool::new(true), suspect: AtomicBool::new(false), info: Mutex::default() }
    }
}

impl NodeHealth {
    /// Current health.
    pub fn get(&self) -> Health {
        if self.up.load(Ordering::Relaxed) { Health::Up } else { Health::Down }
    }

    /// A copy of the details.
    pub fn info(&self) -> HealthInfo {
        self.info.lock().clone()
    }

    /// Applies `book` to the details and publishes the machine's state to the atomics.
    fn book(&self, id: &BackendId, book: impl FnOnce(&mut HealthInfo) -> Option<Transition>) {
        let mut info = self.info.lock();
        let transition = book(&mut info);
        self.suspect.store(info.machine.streak() > 0, Ordering::Relaxed);
        if let Some(t) = transition {
            self.up.store(t == Transition::Up, Ordering::Relaxed);
            let reason = info.last_reason.as_deref().unwrap_or_default();
            match t {
                Transition::Down => tracing::warn!(backend = %id, reason, "backend is down"),
                Transition::Up => tracing::info!(backend = %id, reason, "backend is up"),
            }
        }
    }

    /// Feeds an active check result of node `id`.
    pub fn record_check(&self, id: &BackendId, pass: bool, detail: String, rise: u32, fall: u32) {
        let check = CheckResult { at: SystemTime::now(), pass, detail };
        self.book(id, |info| info.checked(check, rise, fall));
    }

    /// A failure seen on real traffic (connect refused or timed out): it counts as a failed check at
    /// once (HAProxy's `observe layer4`).
    pub fn record_failure(&self, id: &BackendId, health: &HealthConfig, what: &str) {
        let fall = health.fall;
        self.book(id, |info| {
            info.observe(false, health.rise, fall, || {
                format!("{fall} failure(s) in a row on live traffic (last: {what})")
            })
        });
    }

    /// A success on real traffic: it ends an open failure streak (cheap when there is none).
    pub fn record_success(&self, id: &BackendId, health: &HealthConfig) {
        if self.suspect.load(Ordering::Relaxed) && self.get() == Health::Up {
            self.book(id, |info| info.observe(true, health.rise, health.fall, String::new));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut HealthMachine, results: &[bool], rise: u32, fall: u32) -> Vec<Option<Transition>> {
        results.iter().map(|&r| m.observe(r, rise, fall)).collect()
    }

    #[test]
    fn goes_down_after_fall_failures_in_a_row() {
        let mut m = HealthMachine::default();
        assert_eq!(run(&mut m, &[false, false], 2, 2), [None, Some(Transition::Down)]);
        assert!(!m.is_up());
    }

    #[test]
    fn comes_back_after_rise_passes_in_a_row() {
        let mut m = HealthMachine::default();
        run(&mut m, &[false, false], 3, 2);
        assert_eq!(run(&mut m, &[true, true, true], 3, 2), [None, None, Some(Transition::Up)]);
        assert!(m.is_up());
    }

    #[test]
    fn a_flapping_node_does_not_bounce() {
        let mut m = HealthMachine::default();
        let flaps = [false, true, false, true, false, true, false, true];
        assert!(
            run(&mut m, &flaps, 2, 2).iter().all(Option::is_none),
            "alternating results never reach fall"
        );
        assert!(m.is_up());
        run(&mut m, &[false, false], 2, 2);
        assert!(!m.is_up());
        let flaps = [true, false, true, false, true, false];
        assert!(run(&mut m, &flaps, 2, 2).iter().all(Option::is_none), "nor rise");
        assert!(!m.is_up());
    }

    #[test]
    fn results_agreeing_with_the_state_reset_the_streak() {
        let mut m = HealthMachine::default();
        assert_eq!(run(&mut m, &[false, false, true, false, false], 3, 3), [None, None, None, None, None]);
        assert_eq!(m.streak(), 2);
        assert_eq!(m.observe(false, 3, 3), Some(Transition::Down));
    }

    #[test]
    fn thresholds_of_one_act_at_once() {
        let mut m = HealthMachine::default();
        assert_eq!(m.observe(false, 1, 1), Some(Transition::Down));
        assert_eq!(m.observe(true, 1, 1), Some(Transition::Up));
        assert_eq!(HealthMachine::default().observe(false, 1, 0), Some(Transition::Down), "zero acts as one");
    }

    #[test]
    fn the_books_count_checks_transitions_and_keep_the_reason() {
        let mut info = HealthInfo::default();
        let at = SystemTime::UNIX_EPOCH;
        let check = |pass, detail: &str| CheckResult { at, pass, detail: detail.to_string() };
        assert_eq!(info.checked(check(false, "503"), 2, 2), None);
        assert_eq!(info.last_reason, None, "no transition, no reason");
        assert_eq!(info.checked(check(false, "timeout"), 2, 2), Some(Transition::Down));
        assert_eq!(info.last_reason.as_deref(), Some("2 check(s) failed in a row (last: timeout)"));
        assert_eq!(info.observe(true, 1, 2, || "back".to_string()), Some(Transition::Up));
        assert_eq!((info.checks, info.transitions, info.transitions_up, info.transitions_down), (2, 2, 1, 1));
        assert_eq!(info.last_check.as_ref().map(|c| c.detail.as_str()), Some("timeout"));
        assert_eq!(info.last_reason.as_deref(), Some("back"));
    }

    #[test]
    fn a_node_starts_up_and_a_passive_failure_streak_is_closed_by_a_success() {
        let (id, node) = (BackendId::new("01").expect("id"), NodeHealth::default());
        let health = HealthConfig {
            path: "/".into(),
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
            rise: 2,
            fall: 2,
            expect: crate::config::Expect::default(),
            host: None,
        };
        assert_eq!(node.get(), Health::Up);
        node.record_failure(&id, &health, "connect refused");
        assert_eq!(node.info().machine.streak(), 1);
        node.record_success(&id, &health);
        assert_eq!(node.info().machine.streak(), 0, "the success ended the streak");
        node.record_failure(&id, &health, "connect refused");
        node.record_failure(&id, &health, "connect refused");
        assert_eq!(node.get(), Health::Down);
        assert_eq!(node.info().transitions_down, 1);
    }
}
