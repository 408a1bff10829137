//! Choosing the node for a request: the pinned node when it can serve, else the pool's balance over the
//! serving tier.
//!
//! The serving tier is the active nodes that take new clients, or, when none does, the passive ones
//! (HAProxy's `backup` servers). A pinned node that is down is left per `on_down`: `redispatch` balances
//! and marks the answer for a cookie rewrite, `strict` refuses. A client pinned to a passive node moves to
//! an active one only with `failback = "primary"`; with `"sticky"` it stays, so its in-memory journey on
//! that node survives (the fix for HAProxy #2729 is a choice, not a surprise). A pinned client waits for
//! its node's `maxconn` slot (its login state is there); a new one is balanced over the nodes with a free
//! slot when there are any.

use super::affinity::Hints;
use super::{Health, Pool};
use crate::config::{BackendId, Balance, Failback, OnDown, Role};

/// How the affinity decision went, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A hint named a node that served.
    Hit,
    /// No hint: balanced.
    Miss,
    /// A hint named no configured node: balanced.
    Invalid,
    /// The named node could not serve (or failback moved the client): served elsewhere.
    Redispatch,
}

impl Outcome {
    /// The `outcome` label of `tether_affinity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Invalid => "invalid",
            Self::Redispatch => "redispatch",
        }
    }
}

/// Why no node can take a request. Never worth a retry on this pool: every node was considered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The pool has no node that can take the request.
    #[error("no backend of pool {pool:?} is available")]
    NoBackend {
        /// The pool, as the file names it.
        pool: String,
    },
    /// The client is pinned to a node that is down, and the pool is `on_down = "strict"`.
    #[error("backend {backend} holding this client's session is unavailable")]
    PinnedDown {
        /// The node the client is pinned to, so the operator sees whose sessions are cut off.
        backend: BackendId,
    },
}

/// The node for one attempt, and how affinity decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index into the pool's backends.
    pub index: usize,
    /// How the decision went.
    pub outcome: Outcome,
}

/// Chooses a node. `exclude` is a node that already failed this request (a retry never goes back to it).
pub fn choose(pool: &Pool, hints: &Hints, exclude: Option<usize>) -> Result<Choice, Unavailable> {
    if let Some((pinned, _)) = hints.pinned {
        let backend = &pool.backends[pinned];
        let usable = Some(pinned) != exclude && backend.state.takes_pinned();
        if usable {
            let fail_back = backend.role == Role::Passive
                && pool.affinity.failback == Failback::Primary
                && tier_has(pool, Role::Active, exclude);
            if !fail_back {
                return Ok(Choice { index: pinned, outcome: Outcome::Hit });
            }
        } else if pool.affinity.on_down == OnDown::Strict && backend.state.health() == Health::Down {
            // `strict` is about failures; a node the operator put in maint, or whose drain deadline
            // passed, hands its clients over.
            return Err(Unavailable::PinnedDown { backend: backend.id.clone() });
        }
        return balance(pool, exclude).map(|index| Choice { index, outcome: Outcome::Redispatch });
    }
    let outcome = if hints.invalid { Outcome::Invalid } else { Outcome::Miss };
    balance(pool, exclude).map(|index| Choice { index, outcome })
}

fn takes_new(pool: &Pool, i: usize, role: Role, exclude: Option<usize>) -> bool {
    let b = &pool.backends[i];
    b.role == role && Some(i) != exclude && b.weight > 0 && b.state.takes_new()
}

fn tier_has(pool: &Pool, role: Role, exclude: Option<usize>) -> bool {
    (0..pool.backends.len()).any(|i| takes_new(pool, i, role, exclude))
}

/// The pool's balance over its serving tier, without allocating.
fn balance(pool: &Pool, exclude: Option<usize>) -> Result<usize, Unavailable> {
    let role = if tier_has(pool, Role::Active, exclude) { Role::Active } else { Role::Passive };
    let n = pool.backends.len();
    let room = |i: usize| pool.backends[i].state.slots.has_room();
    // A new client goes to a node with a free `maxconn` slot when its tier has one, and queues on a
    // full node only when all are full (HAProxy queues in the backend only when no server has room).
    let roomy = (0..n).any(|i| takes_new(pool, i, role, exclude) && room(i));
    let candidates = || (0..n).filter(move |&i| takes_new(pool, i, role, exclude) && (!roomy || room(i)));
    let total: usize = candidates().map(|i| weight(pool, i)).sum();
    if total == 0 {
        return Err(Unavailable::NoBackend { pool: pool.name.clone() });
    }
    let ticket = pool.next_ticket();
    let chosen = match pool.balance {
        Balance::RoundRobin => {
            // In lowest terms, so equal weights alternate strictly (A B A B) whatever their scale.
            let unit = candidates().fold(0, |g, i| gcd(g, weight(pool, i))).max(1);
            weighted_slot(candidates(), |i| weight(pool, i) / unit, spread(ticket, total / unit))
        }
        // Fewest in flight per unit of weight, HAProxy's `leastconn` with weights: compares
        // (in_flight + 1) / weight by cross-multiplying, so no division and no float. The rotating start
        // spreads ties instead of always picking the first.
        Balance::LeastConn => {
            let count = candidates().count();
            let load = |i: usize| pool.backends[i].state.in_flight().saturating_add(1);
            candidates().cycle().skip(ticket % count).take(count).min_by(|&a, &b| {
                let left = load(a).saturating_mul(weight(pool, b));
                left.cmp(&load(b).saturating_mul(weight(pool, a)))
            })
        }
    };
    chosen.ok_or_else(|| Unavailable::NoBackend { pool: pool.name.clone() })
}

/// Steps of one unit of `weight`, so a ramp can start below the smallest weight (HAProxy scales weights
/// the same way for `slowstart`).
const STEPS: usize = 16;

/// The node's weight now, in [`STEPS`] per unit: full, or on its `slowstart` ramp. The clock is read
/// only in pools with `slowstart_s`.
fn weight(pool: &Pool, i: usize) -> usize {
    let b = &pool.backends[i];
    let full = usize::try_from(b.weight).unwrap_or(usize::MAX).saturating_mul(STEPS);
    match pool.slowstart.and_then(|ramp| b.state.since_return().map(|since| (ramp, since))) {
        Some((ramp, since)) => ramped(full, since, ramp),
        None => full,
    }
}

/// `full` scaled by how far into the `ramp` a node is `since` its return: at least one step at once,
/// all of it once the ramp is over (HAProxy's `slowstart`). Pure, so tests give explicit times.
pub fn ramped(full: usize, since: std::time::Duration, ramp: std::time::Duration) -> usize {
    if since >= ramp || full == 0 {
        return full;
    }
    let share = full as u128 * since.as_millis() / ramp.as_millis().max(1);
    usize::try_from(share).unwrap_or(full).clamp(1, full)
}

/// The slot of ticket number `ticket` in a cycle of `total` slots, scattered so that consecutive tickets
/// fall in different nodes' ranges (weight 3:1 never gives a run of all of A's share before B's): a stride coprime with
/// `total` visits every slot once per cycle, so the split per cycle is exactly the weights. This is the
/// lock-free stand-in for nginx's smooth weighted round robin, which needs a lock around its counters.
fn spread(ticket: usize, total: usize) -> usize {
    // Near the golden ratio of the cycle, the stride that scatters consecutive tickets most evenly.
    let mut stride = total * 618 / 1000 + 1;
    while gcd(stride, total) != 1 {
        stride += 1;
    }
    (ticket % total).wrapping_mul(stride) % total
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The candidate whose cumulative weight range holds `slot`.
fn weighted_slot(
    candidates: impl Iterator<Item = usize>,
    weight: impl Fn(usize) -> usize,
    mut slot: usize,
) -> Option<usize> {
    for i in candidates {
        let w = weight(i);
        if slot < w {
            return Some(i);
        }
        slot -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HintSource, parse};
    use crate::upstream::{AdminState, StateRegistry, Upstreams};
    use std::time::Duration;

    fn pools(extra: &str) -> Upstreams {
        let text = format!(
            r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[pool]]
name = "am"
{extra}
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:1"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:2"
  [[pool.backend]]
  id = "03"
  url = "http://127.0.0.1:3"
  role = "passive"
[[route]]
path_prefix = "/"
pool = "am"
"#
        );
        Upstreams::build(
            &parse(&text).unwrap(),
            &StateRegistry::default(),
            &crate::metrics::Metrics::default(),
        )
    }

    fn pinned(i: usize) -> Hints {
        Hints { pinned: Some((i, HintSource::Cookie)), cookie: Some(i), invalid: false }
    }

    #[test]
    fn round_robin_spreads_over_actives_only() {
        let u = pools("");
        let pool = &u.pools[0];
        let picks: Vec<usize> =
            (0..4).map(|_| choose(pool, &Hints::default(), None).unwrap().index).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn passive_serves_only_when_no_active_can() {
        let u = pools("");
        let pool = &u.pools[0];
        pool.backends[0].state.record_check(false, "test".into(), 1, 1);
        pool.backends[1].state.set_admin(AdminState::Maint, None);
        let c = choose(pool, &Hints::default(), None).unwrap();
        assert_eq!((c.index, c.outcome), (2, Outcome::Miss));
    }

    #[test]
    fn pinned_node_is_kept_and_redispatched_when_down() {
        let u = pools("");
        let pool = &u.pools[0];
        assert_eq!(choose(pool, &pinned(1), None).unwrap(), Choice { index: 1, outcome: Outcome::Hit });
        pool.backends[1].state.record_check(false, "test".into(), 1, 1);
        assert_eq!(
            choose(pool, &pinned(1), None).unwrap(),
            Choice { index: 0, outcome: Outcome::Redispatch }
        );
    }

    #[test]
    fn strict_pool_refuses_a_pinned_client_whose_node_is_down() {
        let u = pools("[pool.affinity]\non_down = \"strict\"");
        let pool = &u.pools[0];
        pool.backends[1].state.record_check(false, "test".into(), 1, 1);
        assert!(matches!(choose(pool, &pinned(1), None), Err(Unavailable::PinnedDown { .. })));
    }

    #[test]
    fn draining_node_keeps_pinned_clients_but_takes_no_new_ones() {
        let u = pools("");
        let pool = &u.pools[0];
        pool.backends[0].state.set_admin(AdminState::Drain, None);
        assert_eq!(choose(pool, &pinned(0), None).unwrap().outcome, Outcome::Hit);
        for _ in 0..4 {
            assert_eq!(choose(pool, &Hints::default(), None).unwrap().index, 1);
        }
    }

    #[test]
    fn a_drain_deadline_releases_pinned_clients_even_in_strict_pools() {
        let u = pools("[pool.affinity]\non_down = \"strict\"");
        let pool = &u.pools[0];
        pool.backends[0].state.set_admin(AdminState::Drain, Some(Duration::from_secs(3600)));
        assert_eq!(choose(pool, &pinned(0), None).unwrap().outcome, Outcome::Hit);
        pool.backends[0].state.set_admin(AdminState::Drain, Some(Duration::ZERO));
        assert_eq!(
            choose(pool, &pinned(0), None).unwrap(),
            Choice { index: 1, outcome: Outcome::Redispatch }
        );
        pool.backends[0].state.set_admin(AdminState::Maint, None);
        assert_eq!(choose(pool, &pinned(0), None).unwrap().outcome, Outcome::Redispatch);
    }

    #[test]
    fn failback_policy_decides_whether_passive_pins_move_back() {
        let sticky = pools("");
        assert_eq!(choose(&sticky.pools[0], &pinned(2), None).unwrap().outcome, Outcome::Hit);
        let primary = pools("[pool.affinity]\nfailback = \"primary\"");
        let c = choose(&primary.pools[0], &pinned(2), None).unwrap();
        assert_eq!(c.outcome, Outcome::Redispatch);
        assert!(c.index < 2);
    }

    #[test]
    fn a_retry_never_returns_to_the_failed_node() {
        let u = pools("");
        let pool = &u.pools[0];
        for _ in 0..4 {
            assert_eq!(choose(pool, &Hints::default(), Some(0)).unwrap().index, 1);
        }
        assert_eq!(choose(pool, &pinned(0), Some(0)).unwrap().outcome, Outcome::Redispatch);
    }

    #[test]
    fn least_conn_prefers_the_idlest_node() {
        let u = pools("balance = \"least-conn\"");
        let pool = &u.pools[0];
        let _busy = pool.backends[0].state.begin();
        for _ in 0..3 {
            assert_eq!(choose(pool, &Hints::default(), None).unwrap().index, 1);
        }
    }

    #[test]
    fn round_robin_splits_new_clients_by_weight_and_interleaves() {
        let mut u = pools("");
        u.pools[0].backends[0].weight = 3;
        let pool = &u.pools[0];
        let picks: Vec<usize> =
            (0..64).map(|_| choose(pool, &Hints::default(), None).unwrap().index).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 16, "exact split per cycle");
        for window in picks.windows(8) {
            let to_1 = window.iter().filter(|&&i| i == 1).count();
            assert!((1..=3).contains(&to_1), "interleaved: {picks:?}");
        }
    }

    #[test]
    fn weight_zero_takes_no_new_clients_but_keeps_pinned_ones() {
        let mut u = pools("");
        u.pools[0].backends[0].weight = 0;
        let pool = &u.pools[0];
        assert_eq!(choose(pool, &pinned(0), None).unwrap().outcome, Outcome::Hit);
        for _ in 0..4 {
            assert_eq!(choose(pool, &Hints::default(), None).unwrap().index, 1);
        }
    }

    #[test]
    fn least_conn_compares_in_flight_per_weight() {
        let mut u = pools("balance = \"least-conn\"");
        u.pools[0].backends[0].weight = 3;
        let pool = &u.pools[0];
        // Node 0 with 2 in flight and weight 3 is less loaded than node 1 with 1 in flight and weight 1.
        let _a = (pool.backends[0].state.begin(), pool.backends[0].state.begin());
        let _b = pool.backends[1].state.begin();
        for _ in 0..3 {
            assert_eq!(choose(pool, &Hints::default(), None).unwrap().index, 0);
        }
    }

    #[test]
    fn slowstart_ramps_from_a_step_to_the_full_weight() {
        let ramp = Duration::from_secs(10);
        assert_eq!(ramped(16, Duration::ZERO, ramp), 1);
        assert_eq!(ramped(16, Duration::from_secs(5), ramp), 8);
        assert_eq!(ramped(48, Duration::from_millis(2500), ramp), 12);
        assert_eq!(ramped(16, ramp, ramp), 16);
        assert_eq!(ramped(16, Duration::from_secs(60), ramp), 16);
        assert_eq!(ramped(0, Duration::ZERO, ramp), 0);
    }

    #[test]
    fn a_node_back_from_maint_starts_its_slowstart_ramp() {
        let u = pools("slowstart_s = 3600");
        let pool = &u.pools[0];
        pool.backends[0].state.set_admin(AdminState::Maint, None);
        pool.backends[0].state.set_admin(AdminState::Ready, None);
        let to_0 = (0..170).filter(|_| choose(pool, &Hints::default(), None).unwrap().index == 0).count();
        assert!(to_0 <= 15, "a returning node got {to_0} of 170 new clients");
    }

    #[tokio::test]
    async fn new_clients_skip_a_full_node_and_pinned_ones_wait_for_theirs() {
        let u = pools("");
        let pool = &u.pools[0];
        let limit = std::num::NonZeroU32::new(1);
        pool.backends[0].state.slots.set_max(limit);
        pool.backends[1].state.slots.set_max(limit);
        let wait = Duration::from_secs(5);
        let _full = pool.backends[0].state.admit(wait).await.unwrap();
        for _ in 0..4 {
            assert_eq!(choose(pool, &Hints::default(), None).unwrap().index, 1);
        }
        assert_eq!(choose(pool, &pinned(0), None).unwrap(), Choice { index: 0, outcome: Outcome::Hit });
        // All full: balanced as usual, to queue on the chosen node (never moved to the passive tier).
        let _also = pool.backends[1].state.admit(wait).await.unwrap();
        let picks: Vec<usize> =
            (0..4).map(|_| choose(pool, &Hints::default(), None).unwrap().index).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn no_node_at_all_is_no_backend() {
        let u = pools("");
        let pool = &u.pools[0];
        for b in &pool.backends {
            b.state.set_admin(AdminState::Maint, None);
        }
        assert!(matches!(choose(pool, &Hints::default(), None), Err(Unavailable::NoBackend { .. })));
    }
}
