//! Login failure lockout and single-use one-time codes: what stops guessing a user's password or code.
//!
//! * Lockout (`[auth.lockout]`, AM's "Login Failure Lockout Mode"): `failures` failed login steps of one
//!   user within `within` lock the account for `duration`. While locked every step of that user's logins
//!   is refused with AM's `Authentication Failed`, the right password included, and a failure does not
//!   extend the lock. A completed login clears the count, as AM resets a user's failure count on a
//!   successful authentication. Only configured users are counted: a name nobody has gets the same 401
//!   and leaves no state behind, so guessing names fills no store.
//! * One-time codes (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the OTP after the
//!   successful validation has been issued for the first OTP"): a TOTP code that passed is spent for
//!   its user and time step until it could no longer be accepted, on every node of the store.
//!
//! Both live in a [`LoginGuard`], shared exactly as far as the sessions are: [`MemoryGuard`] per process
//! (`sessions = "shared"`) or per node (`"local"`), the [`RedisStore`](crate::auth::store::RedisStore)
//! across processes (`"redis"`). [`Lockout`] applies the configuration and logs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::auth::error::AuthError;
use crate::auth::login::LOG;
use crate::auth::session::StoreFuture;
use crate::config::{AuthConfig, BackendId, LockoutConfig};

/// What recording a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted: this many failures are now in the window.
    Counted(u32),
    /// This failure reached `failures`: the account is locked from now for `duration`.
    Locked,
    /// The account was locked already; nothing was counted.
    StillLocked,
}

/// Per-user failure counts, locks and spent one-time codes, shared by the nodes that share sessions.
pub trait LoginGuard: Send + Sync {
    /// Records a failed login step of `user` at `now` under `policy`, atomically with the decision to
    /// lock: of any number of concurrent failures on any nodes, the one that reaches `failures` locks.
    fn fail<'a>(&'a self, user: &'a str, policy: LockoutConfig, now: Instant) -> StoreFuture<'a, Failure>;

    /// Whether a step of `user` that passed may count: `false` while the account is locked. With `reset`
    /// (the step completes the login) the failure count is cleared in the same atomic step, so a lock
    /// set meanwhile is never cleared by a login that then goes through.
    fn admit<'a>(&'a self, user: &'a str, reset: bool, now: Instant) -> StoreFuture<'a, bool>;

    /// Ends `user`'s lock and clears the count (the admin's `POST /sessions/unlock`); true iff a lock was
    /// in force.
    fn unlock<'a>(&'a self, user: &'a str, now: Instant) -> StoreFuture<'a, bool>;

    /// Spends the TOTP code of `user` for time step `step` until `until`: true the first time, false for
    /// every later use of the same code (on any node sharing this guard).
    fn spend_code<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, bool>;

    /// Drops what has expired and returns how many entries (0 for a store whose keys expire by
    /// themselves).
    fn sweep(&self, now: Instant) -> usize;
}

/// One user's failures and lock.
#[derive(Debug, Default)]
struct Record {
    /// Times of the failures still in the window, oldest first.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    /// The window the failures were counted in, for sweeping.
    within: std::time::Duration,
}

impl Record {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    fn idle(&self, now: Instant) -> bool {
        !self.locked(now) && self.failures.back().is_none_or(|last| now >= *last + self.within)
    }
}

/// The in-process [`LoginGuard`]. Its maps hold only configured users (the caller checks the name), so
/// they stay as small as the user list times the codes of one window.
#[derive(Debug, Default)]
pub struct MemoryGuard {
    users: Mutex<HashMap<String, Record>>,
    codes: Mutex<HashMap<(String, u64), Instant>>,
}

impl MemoryGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    fn fail_now(&self, user: &str, policy: LockoutConfig, now: Instant) -> Failure {
        let mut users = self.users.lock();
        let record = users.entry(user.to_owned()).or_default();
        if record.locked(now) {
            return Failure::StillLocked;
        }
        record.within = policy.within;
        while record.failures.front().is_some_and(|t| now >= *t + policy.within) {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        let count = u32::try_from(record.failures.len()).unwrap_or(u32::MAX);
        if count >= policy.failures {
            record.failures.clear();
            record.locked_until = Some(now + policy.duration);
            return Failure::Locked;
        }
        Failure::Counted(count)
    }
}

impl LoginGuard for MemoryGuard {
    fn fail<'a>(&'a self, user: &'a str, policy: LockoutConfig, now: Instant) -> StoreFuture<'a, Failure> {
        Box::pin(std::future::ready(Ok(self.fail_now(user, policy, now))))
    }

    fn admit<'a>(&'a self, user: &'a str, reset: bool, now: Instant) -> StoreFuture<'a, bool> {
        let mut users = self.users.lock();
        let admitted = match users.get(user) {
            Some(r) if r.locked(now) => false,
            Some(_) if reset => {
                users.remove(user);
                true
            }
            _ => true,
        };
        Box::pin(std::future::ready(Ok(admitted)))
    }

    fn unlock<'a>(&'a self, user: &'a str, now: Instant) -> StoreFuture<'a, bool> {
        let was = self.users.lock().remove(user).is_some_and(|r| r.locked(now));
        Box::pin(std::future::ready(Ok(was)))
    }

    fn spend_code<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        until: Instant,
        now: Instant,
    ) -> StoreFuture<'a, bool> {
        let mut codes = self.codes.lock();
        let key = (user.to_owned(), step);
        let fresh = codes.get(&key).is_none_or(|t| now >= *t);
        if fresh {
            codes.insert(key, until);
        }
        Box::pin(std::future::ready(Ok(fresh)))
    }

    fn sweep(&self, now: Instant) -> usize {
        let mut users = self.users.lock();
        let before = users.len();
        users.retain(|_, r| !r.idle(now));
        let mut swept = before - users.len();
        drop(users);
        let mut codes = self.codes.lock();
        let before = codes.len();
        codes.retain(|_, until| now < *until);
        swept += before - codes.len();
        swept
    }
}

/// The lockout policy and the single-use rule of one node, over the guard it shares.
pub struct Lockout {
    node: BackendId,
    policy: Option<LockoutConfig>,
    single_use: bool,
    guard: Arc<dyn LoginGuard>,
}

impl Lockout {
    /// The policy of `auth` on `guard`.
    pub fn new(node: BackendId, auth: &AuthConfig, guard: Arc<dyn LoginGuard>) -> Self {
        Self { node, policy: auth.lockout, single_use: auth.totp_single_use, guard }
    }

    /// The guard, for the admin's unlock.
    pub fn guard(&self) -> &Arc<dyn LoginGuard> {
        &self.guard
    }

    /// A step of the configured `user` failed: count it, and lock the account at `failures`. Logged
    /// (the client address is on the enclosing request's span).
    ///
    /// # Errors
    /// [`AuthError::StoreUnavailable`]: a failure that cannot be counted is not let pass as a plain 401.
    pub async fn failed(&self, user: &str, now: Instant) -> Result<(), AuthError> {
        let Some(policy) = self.policy else { return Ok(()) };
        match self.guard.fail(user, policy, now).await? {
            Failure::Counted(n) => tracing::info!(
                target: LOG, node = %self.node, user, failures = n, of = policy.failures,
                "login failure counted towards lockout"
            ),
            Failure::Locked => tracing::warn!(
                target: LOG, node = %self.node, user, failures = policy.failures,
                within_s = policy.within.as_secs(), locked_s = policy.duration.as_secs(),
                "account locked: too many failed logins"
            ),
            Failure::StillLocked => tracing::info!(
                target: LOG, node = %self.node, user, "login failed while the account is locked"
            ),
        }
        Ok(())
    }

    /// A step of `user` passed, with TOTP time step `code` if it was a one-time code; `last` when it
    /// completes the login. Refuses ([`AuthError::Failed`]) a code already spent and a locked account;
    /// a completed login clears the failure count.
    ///
    /// # Errors
    /// [`AuthError::Failed`] as above; [`AuthError::StoreUnavailable`] when the guard cannot be reached.
    pub async fn passed(
        &self,
        user: &str,
        code: Option<(u64, Instant)>,
        last: bool,
        now: Instant,
    ) -> Result<(), AuthError> {
        if let (true, Some((step, until))) = (self.single_use, code)
            && !self.guard.spend_code(user, step, until, now).await?
        {
            tracing::info!(target: LOG, node = %self.node, user, "one-time code refused: already used");
            self.failed(user, now).await?;
            return Err(AuthError::Failed);
        }
        if self.policy.is_some() && !self.guard.admit(user, last, now).await? {
            tracing::info!(target: LOG, node = %self.node, user, "login refused: the account is locked");
            return Err(AuthError::Failed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
