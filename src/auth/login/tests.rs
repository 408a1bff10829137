//! The login step called directly, with the time passed in: a fixed wall clock and explicit instants, no
//! HTTP.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Credentials, Login, Step};
use crate::am::time::Clock;
use crate::am::token::Keys;
use crate::auth::error::AuthError;
use crate::auth::http::tests::{PASSWORD, TOTP_SECRET, config};
use crate::auth::journey::callbacks;
use crate::auth::session::{MemoryStore, SessionStore};
use crate::auth::{MemoryJourneys, totp};
use crate::config::{BackendId, ModuleKind};

/// The wall clock of every test: 2027-01-15T08:00:00Z, at the instant the test starts.
const UNIX: u64 = 1_800_000_000;

fn login(mode: &str) -> (Login, Arc<MemoryStore>, Instant) {
    let now = Instant::now();
    let store = Arc::new(MemoryStore::new());
    let login = Login::new(
        BackendId::new("01").unwrap(),
        config(mode, "enabled = false"),
        Keys::derive(b"a cluster secret of at least 128 bits, for tests only"),
        Arc::clone(&store) as Arc<dyn SessionStore>,
        Arc::new(MemoryJourneys::new()),
        Clock::fixed(Duration::from_secs(UNIX), now),
    );
    (login, store, now)
}

/// The callbacks of `module` with `values` filled in, as a client posts them back.
fn filled(module: ModuleKind, values: &[&str]) -> Vec<Value> {
    let mut cbs = callbacks(module).as_array().unwrap().clone();
    for (cb, value) in cbs.iter_mut().zip(values) {
        cb["input"][0]["value"] = json!(value);
    }
    cbs
}

/// The TOTP code of the test user at unix time `unix`.
fn code_at(unix: u64) -> String {
    let key = crate::config::totp_key(TOTP_SECRET).unwrap();
    format!("{:06}", totp::totp(&key, unix, 30, 6))
}

fn callbacks_of(step: Step) -> (String, ModuleKind) {
    match step {
        Step::Callbacks { auth_id, module } => (auth_id, module),
        Step::Success { .. } => panic!("expected callbacks, got {step:?}"),
    }
}

async fn start(login: &Login, chain: &str, now: Instant) -> (String, ModuleKind) {
    let journey = login.journey("/", Some("service"), Some(chain)).unwrap();
    callbacks_of(login.start(journey, None, now).await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_data_store_and_totp_journey_ends_in_a_session() {
    for mode in ["memory", "client", "store"] {
        let (login, store, t0) = login(mode);
        let (auth_id, module) = start(&login, "mfa", t0).await;
        assert_eq!(module, ModuleKind::DataStore);
        let t1 = t0 + Duration::from_secs(20);
        let step = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", t1).await.unwrap();
        let (auth_id, module) = callbacks_of(step);
        assert_eq!(module, ModuleKind::Totp);
        // The code is checked against the wall clock of the time passed in, not of the machine.
        let t2 = t0 + Duration::from_secs(95);
        let code = code_at(UNIX + 95);
        let done = login.answer(&auth_id, &filled(module, &[&code]), "/", t2).await.unwrap();
        let Step::Success { token, realm } = done else { panic!("{done:?}") };
        assert_eq!(realm, "/");
        let session = store.get(&token, t2).expect("the session exists");
        assert_eq!((session.username.as_str(), session.created), ("demo", t2), "{mode}");
        assert_eq!(login.pending(), 0);
        assert_eq!(login.stats().logins_succeeded.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_is_a_failure_that_ends_the_journey() {
    for mode in ["memory", "client", "store"] {
        let (login, store, now) = login(mode);
        let (auth_id, module) = start(&login, "ldapService", now).await;
        let wrong = login.answer(&auth_id, &filled(module, &["demo", "wrong"]), "/", now).await;
        assert_eq!(wrong, Err(AuthError::Failed), "{mode}");
        let retry = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", now).await;
        assert!(matches!(retry, Err(AuthError::TimedOut { .. })), "{mode}: {retry:?}");
        assert_eq!(store.len(), 0);
        assert_eq!(login.stats().logins_failed.load(Ordering::Relaxed), 1);
        assert_eq!(login.stats().timed_out.load(Ordering::Relaxed), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_journey_answered_after_its_timeout_has_timed_out() {
    for mode in ["memory", "client", "store"] {
        let (login, store, now) = login(mode);
        let (auth_id, module) = start(&login, "ldapService", now).await;
        let late = now + Duration::from_secs(181);
        let answer = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", late).await;
        assert!(matches!(answer, Err(AuthError::TimedOut { .. })), "{mode}: {answer:?}");
        assert_eq!(store.len(), 0);
        // One second before the 180 s auth session timeout the same step still passes.
        let (auth_id, module) = start(&login, "ldapService", now).await;
        let in_time = now + Duration::from_secs(179);
        let answer = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", in_time).await;
        assert!(matches!(answer, Ok(Step::Success { .. })), "{mode}: {answer:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn zero_page_credentials_answer_only_a_first_data_store_step() {
    let (login, store, now) = login("memory");
    let credentials = Credentials { username: Some("demo".into()), password: Some(PASSWORD.into()) };
    let journey = login.journey("/", None, None).unwrap();
    let done = login.start(journey, Some(credentials.clone()), now).await.unwrap();
    assert!(matches!(done, Step::Success { .. }), "{done:?}");
    assert_eq!(store.len(), 1);
    // A chain that starts with TOTP ignores them and sends its first step.
    let journey = login.journey("/", Some("module"), Some("TOTP")).unwrap();
    let (_, module) = callbacks_of(login.start(journey, Some(credentials), now).await.unwrap());
    assert_eq!(module, ModuleKind::Totp);
    assert_eq!(login.stats().logins_started.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_journey_belongs_to_its_realm_and_an_unknown_index_is_refused() {
    let (login, _, now) = login("client");
    let (auth_id, module) = start(&login, "ldapService", now).await;
    let elsewhere = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/other", now).await;
    assert!(matches!(elsewhere, Err(AuthError::TimedOut { .. })), "{elsewhere:?}");
    let unknown = login.journey("/", Some("level"), Some("1")).unwrap_err();
    assert_eq!(unknown.to_string(), "Unknown Authentication Index Type");
    let garbage = login.answer("garbage", &[], "/", now).await;
    assert_eq!(garbage, Err(AuthError::MalformedAuthId("not a compact JWS")));
}

/// A login with `[auth.lockout]` of three failures within a minute, locking for two minutes.
fn login_with_lockout() -> (Login, Arc<MemoryStore>, Instant) {
    let now = Instant::now();
    let store = Arc::new(MemoryStore::new());
    let lockout = "enabled = false\n[auth.lockout]\nfailures = 3\nwithin_s = 60\nduration_s = 120";
    let login = Login::new(
        BackendId::new("01").unwrap(),
        config("memory", lockout),
        Keys::derive(b"a cluster secret of at least 128 bits, for tests only"),
        Arc::clone(&store) as Arc<dyn SessionStore>,
        Arc::new(MemoryJourneys::new()),
        Clock::fixed(Duration::from_secs(UNIX), now),
    );
    (login, store, now)
}

/// One `ldapService` login with `password` at `now`.
async fn password_login(login: &Login, password: &str, now: Instant) -> Result<Step, AuthError> {
    let (auth_id, module) = start(login, "ldapService", now).await;
    login.answer(&auth_id, &filled(module, &["demo", password]), "/", now).await
}

#[tokio::test(start_paused = true)]
async fn three_wrong_passwords_lock_the_account_until_the_duration_ends() {
    let (login, store, t0) = login_with_lockout();
    for _ in 0..3 {
        assert_eq!(password_login(&login, "wrong", t0).await, Err(AuthError::Failed));
    }
    let locked = password_login(&login, PASSWORD, t0 + Duration::from_secs(1)).await;
    assert_eq!(locked, Err(AuthError::Failed), "the right password while locked");
    assert_eq!(store.len(), 0, "no session");
    // An mfa login is refused at its first step: a locked account learns nothing from a right password.
    let (auth_id, module) = start(&login, "mfa", t0).await;
    let first = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", t0).await;
    assert_eq!(first, Err(AuthError::Failed));
    let still = password_login(&login, PASSWORD, t0 + Duration::from_secs(119)).await;
    assert_eq!(still, Err(AuthError::Failed), "one second before the lock ends");
    let open = password_login(&login, PASSWORD, t0 + Duration::from_secs(120)).await;
    assert!(matches!(open, Ok(Step::Success { .. })), "{open:?}");
    assert_eq!(login.stats().logins_failed.load(Ordering::Relaxed), 6);
}

#[tokio::test(start_paused = true)]
async fn a_completed_login_resets_the_count_and_unknown_users_are_not_counted() {
    let (login, _, t0) = login_with_lockout();
    for _ in 0..2 {
        password_login(&login, "wrong", t0).await.unwrap_err();
    }
    assert!(password_login(&login, PASSWORD, t0).await.is_ok());
    for _ in 0..2 {
        password_login(&login, "wrong", t0).await.unwrap_err();
    }
    assert!(password_login(&login, PASSWORD, t0).await.is_ok(), "two, reset, two: never three");
    // Failures spread wider than the window do not lock either.
    for i in 0..3 {
        password_login(&login, "wrong", t0 + Duration::from_secs(31 * i)).await.unwrap_err();
    }
    assert!(password_login(&login, PASSWORD, t0 + Duration::from_secs(62)).await.is_ok());
    for _ in 0..5 {
        let (auth_id, module) = start(&login, "ldapService", t0).await;
        login.answer(&auth_id, &filled(module, &["nobody", "x"]), "/", t0).await.unwrap_err();
    }
    assert_eq!(login.lockout().guard().sweep(t0), 0, "nothing is kept for a name nobody has");
}

#[tokio::test(start_paused = true)]
async fn unlock_ends_a_lock_at_once() {
    let (login, _, t0) = login_with_lockout();
    for _ in 0..3 {
        password_login(&login, "wrong", t0).await.unwrap_err();
    }
    assert_eq!(password_login(&login, PASSWORD, t0).await, Err(AuthError::Failed));
    assert!(login.lockout().guard().unlock("demo", t0).await.unwrap());
    assert!(password_login(&login, PASSWORD, t0).await.is_ok());
}

/// An `mfa` login as demo answering `code` at `now`.
async fn mfa_login(login: &Login, code: &str, now: Instant) -> Result<Step, AuthError> {
    let (auth_id, module) = start(login, "mfa", now).await;
    let step = login.answer(&auth_id, &filled(module, &["demo", PASSWORD]), "/", now).await?;
    let (auth_id, module) = callbacks_of(step);
    login.answer(&auth_id, &filled(module, &[code]), "/", now).await
}

#[tokio::test(start_paused = true)]
async fn a_code_that_completed_a_login_cannot_complete_another() {
    for mode in ["memory", "client", "store"] {
        let (login, store, t0) = login(mode);
        let code = code_at(UNIX);
        assert!(matches!(mfa_login(&login, &code, t0).await, Ok(Step::Success { .. })), "{mode}");
        let again = mfa_login(&login, &code, t0 + Duration::from_secs(20)).await;
        assert_eq!(again, Err(AuthError::Failed), "{mode}: the same code, within its window");
        assert_eq!(again.unwrap_err().to_string(), "Authentication Failed");
        // The same code is valid for 90 s (its step and one either side) and spent for all of them.
        let later = mfa_login(&login, &code, t0 + Duration::from_secs(55)).await;
        assert_eq!(later, Err(AuthError::Failed), "{mode}: a step later, still the spent code");
        let next = mfa_login(&login, &code_at(UNIX + 30), t0 + Duration::from_secs(55)).await;
        assert!(matches!(next, Ok(Step::Success { .. })), "{mode}: the next code: {next:?}");
        assert_eq!(store.len(), 2, "{mode}");
    }
}
