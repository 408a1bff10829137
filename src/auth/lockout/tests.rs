//! The in-process guard with paused time: the window, the lock's duration, the admin's unlock, and codes
//! spent once.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::{Failure, LoginGuard, MemoryGuard};
use crate::config::LockoutConfig;

const THREE_IN_A_MINUTE: LockoutConfig =
    LockoutConfig { failures: 3, within: Duration::from_secs(60), duration: Duration::from_secs(600) };

async fn fail(guard: &MemoryGuard, user: &str) -> Failure {
    guard.fail(user, THREE_IN_A_MINUTE, Instant::now()).await.unwrap()
}

async fn admitted(guard: &MemoryGuard, user: &str, reset: bool) -> bool {
    guard.admit(user, reset, Instant::now()).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn three_failures_within_the_window_lock_for_the_duration() {
    let guard = MemoryGuard::new();
    assert_eq!(fail(&guard, "demo").await, Failure::Counted(1));
    assert_eq!(fail(&guard, "demo").await, Failure::Counted(2));
    assert!(admitted(&guard, "demo", false).await, "two failures lock nothing");
    assert_eq!(fail(&guard, "demo").await, Failure::Locked);
    assert!(!admitted(&guard, "demo", true).await, "locked: even a completed login is refused");
    assert!(admitted(&guard, "other", true).await, "per user");
    advance(Duration::from_secs(599)).await;
    assert_eq!(fail(&guard, "demo").await, Failure::StillLocked, "a failure while locked is not counted");
    assert!(!admitted(&guard, "demo", false).await, "the lock does not move");
    advance(Duration::from_secs(1)).await;
    assert!(admitted(&guard, "demo", false).await, "after duration the account is open again");
    assert_eq!(fail(&guard, "demo").await, Failure::Counted(1), "and counting starts afresh");
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_do_not_count() {
    let guard = MemoryGuard::new();
    fail(&guard, "demo").await;
    advance(Duration::from_secs(40)).await;
    fail(&guard, "demo").await;
    advance(Duration::from_secs(21)).await;
    assert_eq!(fail(&guard, "demo").await, Failure::Counted(2), "the first left the window at 60 s");
    assert_eq!(fail(&guard, "demo").await, Failure::Locked);
}

#[tokio::test(start_paused = true)]
async fn a_completed_login_resets_the_count_and_a_passed_step_does_not() {
    let guard = MemoryGuard::new();
    fail(&guard, "demo").await;
    fail(&guard, "demo").await;
    assert!(admitted(&guard, "demo", false).await);
    assert_eq!(fail(&guard, "demo").await, Failure::Locked, "a passed first step kept the count");
    guard.unlock("demo", Instant::now()).await.unwrap();
    fail(&guard, "demo").await;
    fail(&guard, "demo").await;
    assert!(admitted(&guard, "demo", true).await);
    assert_eq!(fail(&guard, "demo").await, Failure::Counted(1), "the completed login cleared it");
}

#[tokio::test(start_paused = true)]
async fn unlock_ends_a_lock_and_says_whether_there_was_one() {
    let guard = MemoryGuard::new();
    for _ in 0..3 {
        fail(&guard, "demo").await;
    }
    assert!(!admitted(&guard, "demo", false).await);
    assert!(guard.unlock("demo", Instant::now()).await.unwrap());
    assert!(admitted(&guard, "demo", false).await);
    assert!(!guard.unlock("demo", Instant::now()).await.unwrap(), "nothing left to unlock");
    assert!(!guard.unlock("nobody", Instant::now()).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_code_is_spent_once_per_user_until_its_window_ends() {
    let guard = MemoryGuard::new();
    let until = Instant::now() + Duration::from_secs(90);
    let spend = |user: &'static str, step| {
        let guard = &guard;
        async move { guard.spend_code(user, step, until, Instant::now()).await.unwrap() }
    };
    assert!(spend("demo", 7).await);
    assert!(!spend("demo", 7).await, "the same code again");
    assert!(spend("demo", 8).await, "the next step's code");
    assert!(spend("other", 7).await, "another user's code of the same step");
    advance(Duration::from_secs(90)).await;
    assert_eq!(guard.sweep(Instant::now()), 3, "spent codes leave once they could not be accepted anyway");
    assert!(spend("demo", 7).await);
}

#[tokio::test(start_paused = true)]
async fn sweeping_keeps_locks_and_recent_failures() {
    let guard = MemoryGuard::new();
    for _ in 0..3 {
        fail(&guard, "demo").await;
    }
    fail(&guard, "other").await;
    assert_eq!(guard.sweep(Instant::now()), 0);
    advance(Duration::from_secs(60)).await;
    assert_eq!(guard.sweep(Instant::now()), 1, "other's failure left its window");
    assert!(!admitted(&guard, "demo", false).await, "demo is still locked");
    advance(Duration::from_secs(540)).await;
    assert_eq!(guard.sweep(Instant::now()), 1);
}
