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
