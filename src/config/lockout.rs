//! `[auth.lockout]`: AM's login failure lockout ("Login Failure Lockout Mode"), per user, for every node
//! that shares the session store.

use std::time::Duration;

use super::problem::{Checker, KeyPath};
use super::raw::RawLockout;

/// Failures that can lock an account, at most: each one is kept until it leaves the window, so the bound
/// keeps one user's record small whatever a file says.
const MAX_FAILURES: u32 = 1000;

/// The longest window or lock, 30 days: longer is a disabled account, which is not what lockout is for.
const MAX_SECS: u64 = 30 * 24 * 3600;

/// `[auth.lockout]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failed login steps of one user within `within` that lock the account.
    pub failures: u32,
    /// The window the failures are counted in.
    pub within: Duration,
    /// How long the account stays locked.
    pub duration: Duration,
}

/// `[auth.lockout]` from its raw form, every value in range; the problems name the key and the fix.
pub(super) fn convert(c: &mut Checker, at: &KeyPath, raw: &RawLockout) -> LockoutConfig {
    if raw.failures == 0 || raw.failures > MAX_FAILURES {
        c.report(
            &at.key("failures"),
            format!(
                "{} is out of range: give 1 to {MAX_FAILURES} failures (remove [auth.lockout] for no lockout)",
                raw.failures
            ),
        );
    }
    let mut secs = |key: &'static str, value: u64| {
        if value == 0 || value > MAX_SECS {
            c.report(&at.key(key), format!("{value} is out of range: give 1 to {MAX_SECS} seconds"));
        }
        Duration::from_secs(value.clamp(1, MAX_SECS))
    };
    let within = secs("within_s", raw.within_s);
    let duration = secs("duration_s", raw.duration_s);
    LockoutConfig { failures: raw.failures.clamp(1, MAX_FAILURES), within, duration }
}

#[cfg(test)]
mod tests {
    fn problems(lockout: &str) -> String {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[auth]\n[auth.lockout]\n{lockout}\n"
        );
        crate::config::parse(&text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn values_out_of_range_name_the_key_the_line_and_the_fix() {
        let zero = problems("failures = 0\nwithin_s = 0\nduration_s = 99999999");
        assert!(
            zero.contains("line 6: `auth.lockout.failures`: 0 is out of range: give 1 to 1000"),
            "{zero}"
        );
        assert!(zero.contains("remove [auth.lockout] for no lockout"), "{zero}");
        assert!(zero.contains("line 7: `auth.lockout.within_s`: 0 is out of range"), "{zero}");
        assert!(zero.contains("`auth.lockout.duration_s`: 99999999 is out of range"), "{zero}");
        let unknown = problems("failure = 3");
        assert!(unknown.contains("auth.lockout.failure") && unknown.contains("failures"), "{unknown}");
    }

    #[test]
    fn absent_is_no_lockout_and_an_empty_table_is_ams_defaults() {
        // The demo cluster of the repository's root, which has no [auth.lockout].
        let text = include_str!("../../proxy.toml");
        let parsed = |t: &str| crate::config::parse(t).map(|c| c.auth.and_then(|a| a.lockout));
        assert_eq!(parsed(text).unwrap(), None);
        let l = parsed(&text.replace("[auth.quota]", "[auth.lockout]\n[auth.quota]")).unwrap().unwrap();
        assert_eq!((l.failures, l.within.as_secs(), l.duration.as_secs()), (5, 300, 600));
    }
}
