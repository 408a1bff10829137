//! Session quota decisions: which of a user's sessions must end for a new login to be admitted.
//!
//! AM checks the quota when it activates a session: it loads the user's existing sessions, and while
//! their count is at or above the limit it runs the configured "quota exhaustion action"
//! (`iplanet-am-session-constraint-handler`). That check and the session write were separate steps
//! against the CTS, so concurrent logins of one user each saw room and together overran the limit
//! (OPENAM-5864, OPENAM-10332, fixed in 13.5.1 / 14.5.0 as a "CTS race"); AM also counted sessions that had
//! already passed their idle timeout but had not been reaped yet.
//!
//! tether splits the problem in two so that cannot happen here:
//! - this module is the *decision*, a pure function of the user's live sessions, the limit and the action:
//!   no I/O, no locks, no clock, so every action's choice is unit-tested on its own;
//! - [`crate::auth::session::SessionStore::create`] is the *enforcement*: it runs this planner and applies
//!   its answer (evict, insert) in one critical section per login, after dropping expired sessions so
//!   they never count.

use tokio::time::Instant;

pub use crate::config::ExhaustionAction;

/// A user's session quota: at most `limit` live sessions, and what to do when a login would exceed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Maximum number of live sessions per user; configuration validation keeps it at 1 or more.
    /// A limit of 0 cannot be honoured by admitting anyone, so `plan_admission` denies every login.
    pub limit: u32,
    /// The action to take when the user already holds `limit` live sessions.
    pub action: ExhaustionAction,
}

/// One of the user's existing *live* sessions, as far as the planner needs to know it.
///
/// The caller leaves expired sessions out: an expired session no longer exists for AM's clients,
/// so it must neither block a login nor be "destroyed" to make room for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSession {
    /// When the session was created.
    pub created: Instant,
    /// When it stops being live: the earlier of `last_access + max_idle` and `created + max_time`.
    pub expires_at: Instant,
}

/// The planner's answer for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Admit the new session after ending the sessions at these indices of the input slice, in the order
    /// the action chose them. Empty when the user is below the limit.
    Admit {
        /// Indices into the `live` slice given to [`plan_admission`].
        evict: Vec<usize>,
    },
    /// Refuse the new login; nothing is evicted.
    Deny,
}

/// Decides whether a new session may be admitted for a user holding the `live` sessions, and which of
/// them must end first so that afterwards at most `quota.limit` live sessions exist.
///
/// AM runs the action "while count >= quota", so a user who is already *over* the limit (say the limit
/// was lowered) loses enough sessions to get back to `limit - 1` before the new one is added, not just one.
///
/// Ties (equal expiry, equal creation) are broken by creation instant and then by position in `live`, so
/// the answer is deterministic; the store passes sessions in insertion order.
pub fn plan_admission(live: &[LiveSession], quota: Quota) -> Decision {
    let limit = usize::try_from(quota.limit).unwrap_or(usize::MAX);
    if limit == 0 {
        return Decision::Deny;
    }
    if live.len() < limit {
        return Decision::Admit { evict: Vec::new() };
    }
    // Enough to leave `limit - 1`, so the new session brings the count to exactly `limit`.
    let excess = live.len() - (limit - 1);
    let mut order: Vec<usize> = (0..live.len()).collect();
    match quota.action {
        ExhaustionAction::DenyAccess => return Decision::Deny,
        ExhaustionAction::DestroyOldSessions => return Decision::Admit { evict: order },
        ExhaustionAction::DestroyNextExpiring => {
            order.sort_by_key(|&i| (live[i].expires_at, live[i].created, i));
        }
        ExhaustionAction::DestroyOldestSession => {
            order.sort_by_key(|&i| (live[i].created, i));
        }
    }
    order.truncate(excess);
    Decision::Admit { evict: order }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Sessions `(created offset, expiry offset)` in seconds from a common base.
    fn sessions(base: Instant, spec: &[(u64, u64)]) -> Vec<LiveSession> {
        spec.iter()
            .map(|&(c, e)| LiveSession { created: base + secs(c), expires_at: base + secs(e) })
            .collect()
    }

    fn quota(limit: u32, action: ExhaustionAction) -> Quota {
        Quota { limit, action }
    }

    /// Three sessions: created 0, 10, 20; expiring 300, 100, 200 (the middle one is idle longest).
    fn three(base: Instant) -> Vec<LiveSession> {
        sessions(base, &[(0, 300), (10, 100), (20, 200)])
    }

    #[test]
    fn below_the_limit_every_action_admits_without_evicting() {
        let base = Instant::now();
        let live = sessions(base, &[(0, 100), (1, 50)]);
        for action in ExhaustionAction::ALL {
            assert_eq!(
                plan_admission(&live, quota(3, action)),
                Decision::Admit { evict: vec![] },
                "{action}"
            );
        }
    }

    #[test]
    fn a_first_login_is_admitted_even_with_limit_one_and_deny_access() {
        let decision = plan_admission(&[], quota(1, ExhaustionAction::DenyAccess));
        assert_eq!(decision, Decision::Admit { evict: vec![] });
    }

    #[test]
    fn deny_access_refuses_the_fourth_login_at_limit_three() {
        let base = Instant::now();
        assert_eq!(plan_admission(&three(base), quota(3, ExhaustionAction::DenyAccess)), Decision::Deny);
    }

    #[test]
    fn destroy_next_expiring_evicts_the_session_with_least_time_left() {
        let base = Instant::now();
        let decision = plan_admission(&three(base), quota(3, ExhaustionAction::DestroyNextExpiring));
        assert_eq!(decision, Decision::Admit { evict: vec![1] });
    }

    #[test]
    fn destroy_oldest_session_evicts_the_session_created_first() {
        let base = Instant::now();
        let decision = plan_admission(&three(base), quota(3, ExhaustionAction::DestroyOldestSession));
        assert_eq!(decision, Decision::Admit { evict: vec![0] });
    }

    #[test]
    fn destroy_old_sessions_evicts_every_existing_session() {
        let base = Instant::now();
        let decision = plan_admission(&three(base), quota(3, ExhaustionAction::DestroyOldSessions));
        assert_eq!(decision, Decision::Admit { evict: vec![0, 1, 2] });
    }

    #[test]
    fn limit_one_replaces_the_single_session_or_denies() {
        let base = Instant::now();
        let live = sessions(base, &[(0, 100)]);
        assert_eq!(plan_admission(&live, quota(1, ExhaustionAction::DenyAccess)), Decision::Deny);
        for action in [
            ExhaustionAction::DestroyNextExpiring,
            ExhaustionAction::DestroyOldestSession,
            ExhaustionAction::DestroyOldSessions,
        ] {
            assert_eq!(
                plan_admission(&live, quota(1, action)),
                Decision::Admit { evict: vec![0] },
                "{action}"
            );
        }
    }

    #[test]
    fn a_user_over_a_lowered_limit_loses_enough_sessions_to_end_at_the_limit() {
        let base = Instant::now();
        // Five sessions, limit now 3: three must go so the new one makes three.
        let live = sessions(base, &[(0, 500), (10, 100), (20, 400), (30, 200), (40, 300)]);
        assert_eq!(
            plan_admission(&live, quota(3, ExhaustionAction::DestroyNextExpiring)),
            Decision::Admit { evict: vec![1, 3, 4] }
        );
        assert_eq!(
            plan_admission(&live, quota(3, ExhaustionAction::DestroyOldestSession)),
            Decision::Admit { evict: vec![0, 1, 2] }
        );
        assert_eq!(
            plan_admission(&live, quota(3, ExhaustionAction::DestroyOldSessions)),
            Decision::Admit { evict: vec![0, 1, 2, 3, 4] }
        );
        assert_eq!(plan_admission(&live, quota(3, ExhaustionAction::DenyAccess)), Decision::Deny);
    }

    #[test]
    fn ties_in_expiry_fall_back_to_creation_then_position() {
        let base = Instant::now();
        let live = sessions(base, &[(20, 100), (10, 100), (10, 100)]);
        assert_eq!(
            plan_admission(&live, quota(2, ExhaustionAction::DestroyNextExpiring)),
            Decision::Admit { evict: vec![1, 2] }
        );
        assert_eq!(
            plan_admission(&live, quota(3, ExhaustionAction::DestroyOldestSession)),
            Decision::Admit { evict: vec![1] }
        );
    }

    #[test]
    fn a_zero_limit_denies_because_no_admission_could_respect_it() {
        for action in ExhaustionAction::ALL {
            assert_eq!(plan_admission(&[], quota(0, action)), Decision::Deny, "{action}");
        }
    }
}
