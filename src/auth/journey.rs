//! Journeys: the state of one login in progress, the callbacks each module sends, and where that state
//! is kept between steps.
//!
//! An AM authentication chain runs its modules in order; each module sends a page of callbacks, the client
//! fills in their `input` values and posts them back with the `authId` it was given (research notes,
//! section 2). Everything here is transport-free: [`crate::auth::node`] turns it into HTTP.
//!
//! Between steps the journey lives in one of two places (`[auth] auth_sessions`):
//! * **memory** ([`PendingJourneys`]): in the node that started it, keyed by the auth session ID, exactly
//!   as AM keeps chain auth sessions. Another node does not hold it and answers `Session has timed out`
//!   (AM error code 110, OPENAM-12675), which is why the proxy must keep a login on one node.
//! * **client** ([`ClientState`] sealed into the `authId`): like AM's client-side tree auth sessions, any
//!   node with the shared secret can continue. Replay protection then needs a memory of answered steps,
//!   [`SpentOtks`], shared by the nodes of one process.
//!
//! In both modes every step carries a fresh random `otk` (AM's "one time key" claim) and a step can be
//! answered once: AM's auth session allowlisting stops a flow whose client echoes a stale value, and an
//! unanswerable old `authId` also means a captured step cannot be replayed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{AuthConfig, ModuleKind};

/// Most journeys one node holds in memory at once. AM bounds its in-memory auth sessions too; without a
/// bound, anyone could exhaust a node's memory by starting logins (the first step needs no credentials).
/// 100 000 journeys of well under 1 KiB each is far above any real login rate times the auth session
/// timeout, and small enough that a flood cannot take the process down: it gets 503 instead.
pub const MAX_PENDING_JOURNEYS: usize = 100_000;

/// Default bound of [`SpentOtks`]. Entries only arise from answered steps of genuine `authId`s and leave
/// at their `exp`, so the bound is about floods, for the same reason as [`MAX_PENDING_JOURNEYS`].
pub const MAX_SPENT_OTKS: usize = 1_000_000;

/// How the request picks what to run: AM's `authIndexType` values that tether implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexType {
    /// `authIndexType=service`: a chain by name (AM: an authentication chain or tree).
    Service,
    /// `authIndexType=module`: one module on its own, as a one-module chain.
    Module,
}

impl IndexType {
    /// Parses AM's value. AM matches index types without regard to case, so do we.
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("service") {
            Some(Self::Service)
        } else if value.eq_ignore_ascii_case("module") {
            Some(Self::Module)
        } else {
            None
        }
    }

    /// The value as AM writes it into `authId` claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Module => "module",
        }
    }
}

/// Why a login cannot start with the requested index. All are 400s: the client asked for something this
/// node does not have, which no retry fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// AM's exact message for an `authIndexType` it does not know (here: anything but `service` and
    /// `module`; AM's `user`, `role`, `level`, … are not implemented).
    #[error("Unknown Authentication Index Type")]
    UnknownIndexType(String),
    /// `authIndexType` without `authIndexValue`.
    #[error("authIndexValue is required with authIndexType={0}")]
    MissingIndexValue(&'static str),
    /// No `[[auth.chain]]` has this name.
    #[error("No authentication chain named '{0}' (chains: {1})")]
    UnknownChain(String, String),
    /// Not a module tether implements.
    #[error("No authentication module named '{0}' (modules: DataStore, TOTP)")]
    UnknownModule(String),
    /// A chain with no modules would authenticate nobody as somebody; configuration refuses it, and this
    /// guard keeps a hand-built config from turning it into a bypass.
    #[error("Authentication chain '{0}' has no modules")]
    EmptyChain(String),
}

/// One login in progress: what runs, how far it got, and who the user turned out to be.
///
/// Serialized (with short names, it travels inside client-mode `authId`s) into [`ClientState`]. The module
/// list is copied from the configuration when the login starts, so a reload mid-login neither skips nor
/// adds a step to a journey already under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journey {
    /// How the chain was chosen (the `authIndexType` claim).
    #[serde(rename = "t")]
    pub index_type: IndexType,
    /// The chain or module name (the `authIndexValue` claim).
    #[serde(rename = "v")]
    pub index_value: String,
    /// The modules to run, in order; all must pass (AM's REQUIRED flag).
    #[serde(rename = "m", with = "module_names")]
    pub modules: Vec<ModuleKind>,
    /// Index of the module whose callbacks the client was sent and must answer next.
    #[serde(rename = "n")]
    pub next: usize,
    /// The user, once a `DataStore` step identified them.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The realm of the login, `/` or `/sub/...`.
    #[serde(rename = "r")]
    pub realm: String,
}

impl Journey {
    /// Resolves the request's `authIndexType`/`authIndexValue` (absent type: `default_chain`) into a fresh
    /// journey in `realm`.
    ///
    /// # Errors
    /// Every [`ResolveError`]; the caller answers 400 with its text.
    pub fn start(
        auth: &AuthConfig,
        index_type: Option<&str>,
        index_value: Option<&str>,
        realm: &str,
    ) -> Result<Self, ResolveError> {
        let (index_type, index_value) = match index_type {
            None => (IndexType::Service, auth.default_chain.as_str()),
            Some(raw) => {
                let ty =
                    IndexType::parse(raw).ok_or_else(|| ResolveError::UnknownIndexType(raw.to_owned()))?;
                let value = index_value
                    .filter(|v| !v.is_empty())
                    .ok_or(ResolveError::MissingIndexValue(ty.as_str()))?;
                (ty, value)
            }
        };
        let modules = match index_type {
            IndexType::Service => {
                let chain = auth.chains.iter().find(|c| c.name == index_value).ok_or_else(|| {
                    let known: Vec<&str> = auth.chains.iter().map(|c| c.name.as_str()).collect();
                    ResolveError::UnknownChain(index_value.to_owned(), known.join(", "))
                })?;
                chain.modules.clone()
            }
            IndexType::Module => vec![
                ModuleKind::parse(index_value)
                    .ok_or_else(|| ResolveError::UnknownModule(index_value.to_owned()))?,
            ],
        };
        if modules.is_empty() {
            return Err(ResolveError::EmptyChain(index_value.to_owned()));
        }
        Ok(Journey {
            index_type,
            index_value: index_value.to_owned(),
            modules,
            next: 0,
            username: None,
            realm: realm.to_owned(),
        })
    }

    /// The module whose callbacks the client must answer, or `None` once every module has passed.
    pub fn current(&self) -> Option<ModuleKind> {
        self.modules.get(self.next).copied()
    }
}

/// (De)serializes modules by AM's names, so sealed state stays readable across versions of the enum.
mod module_names {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::ModuleKind;

    pub fn serialize<S: Serializer>(modules: &[ModuleKind], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(modules.iter().map(|m| m.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ModuleKind>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| ModuleKind::parse(name).ok_or_else(|| D::Error::custom("unknown module")))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------------------

/// The callbacks a module sends, as (AM callback type, `prompt` output). Their positions define the
/// `IDToken<n>` input names, 1-based across the step.
fn expected(module: ModuleKind) -> &'static [(&'static str, &'static str)] {
    match module {
        // AM's DataStore module page: "User Name" and "Password" prompts.
        ModuleKind::DataStore => &[("NameCallback", "User Name"), ("PasswordCallback", "Password")],
        // AM's OATH module asks for the code with a PasswordCallback, so it is masked like a password.
        ModuleKind::Totp => &[("PasswordCallback", "Enter verification code")],
    }
}

/// The `callbacks` array of a step, in AM's shape:
/// `{"type","output":[{"name":"prompt","value"}],"input":[{"name":"IDToken<n>","value":""}]}`.
pub fn callbacks(module: ModuleKind) -> Value {
    expected(module)
        .iter()
        .enumerate()
        .map(|(i, (ty, prompt))| {
            json!({
                "type": ty,
                "output": [{"name": "prompt", "value": prompt}],
                "input": [{"name": format!("IDToken{}", i + 1), "value": ""}],
            })
        })
        .collect()
}

/// AM's `stage` of a step: the module name and the number of its page. Every module here has one page,
/// as AM's `DataStore1`.
pub fn stage(module: ModuleKind) -> String {
    format!("{}1", module.as_str())
}

/// The values the client filled into a step's callbacks, one per expected callback, `None` where missing.
///
/// Matching is by position first, as AM does (callback `n` is input `IDToken<n>`), as long as the type
/// there is the expected one or absent; otherwise by input name anywhere in the array, which tolerates
/// clients that reorder or drop callbacks. `output` is never needed, so clients may strip it. Strings are
/// taken as they are; numbers (a naive client sending a code as a JSON number) as their decimal text.
pub fn step_inputs(module: ModuleKind, sent: &[Value]) -> Vec<Option<String>> {
    expected(module)
        .iter()
        .enumerate()
        .map(|(i, (ty, _))| {
            let name = format!("IDToken{}", i + 1);
            let by_position = sent.get(i).filter(|cb| match cb.get("type") {
                None | Some(Value::Null) => true,
                Some(t) => t.as_str() == Some(*ty),
            });
            let by_name = || sent.iter().find(|cb| input_named(cb, &name).is_some());
            by_position
                .or_else(by_name)
                .and_then(|cb| input_named(cb, &name).or_else(|| first_input(cb)))
                .and_then(value_text)
        })
        .collect()
}

/// The `value` of the input called `name` in callback `cb`.
fn input_named<'a>(cb: &'a Value, name: &str) -> Option<&'a Value> {
    cb.get("input")?
        .as_array()?
        .iter()
        .find(|input| input.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")
}

/// The `value` of the first input of callback `cb`.
fn first_input(cb: &Value) -> Option<&Value> {
    cb.get("input")?.as_array()?.first()?.get("value")
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// authId
// ---------------------------------------------------------------------------------------------------------

/// The claims of an `authId` (AM's `AuthIdHelper`): `otk`, `realm`, `sessionId`, `authIndexType`,
/// `authIndexValue`, plus `exp` (checked by the node after the signature) and, in client mode, `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthIdClaims {
    /// The step's one-time key: random, fresh for every step.
    pub otk: String,
    /// The realm of the login.
    pub realm: String,
    /// The auth session ID: an AM token whose `S1` names the node that started the login, which the
    /// proxy routes on (`crate::am::token::auth_id_node_hint`).
    #[serde(rename = "sessionId")]
    pub session_id: String,
    /// `service` or `module`.
    #[serde(rename = "authIndexType")]
    pub auth_index_type: String,
    /// The chain or module name.
    #[serde(rename = "authIndexValue")]
    pub auth_index_value: String,
    /// Expiry, unix seconds: the end of the auth session.
    pub exp: u64,
    /// Client mode only: [`ClientState`] sealed with `Keys::seal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// What a client-mode `authId` carries sealed: the journey, and the `otk` again, so the sealed blob is
/// bound to the step it was issued for even apart from the signature over the whole `authId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientState {
    /// Must equal the `otk` claim.
    pub otk: String,
    /// The journey.
    pub journey: Journey,
}

// ---------------------------------------------------------------------------------------------------------
// Expiring keys
// ---------------------------------------------------------------------------------------------------------

/// A bounded map of string keys with a deadline each, ordered by deadline so that expired entries are
/// dropped in O(log n) each, without scanning: pruning runs on every operation, so memory never holds
/// more than what is live plus nothing.
#[derive(Debug)]
struct Expiring<V> {
    map: HashMap<String, (Instant, V)>,
    by_deadline: BTreeSet<(Instant, String)>,
    cap: usize,
}

/// The map is at its bound with live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Full;

impl<V> Expiring<V> {
    fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), by_deadline: BTreeSet::new(), cap }
    }

    /// Drops every entry whose deadline is at or before `now` and returns how many.
    fn prune(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some((deadline, _)) = self.by_deadline.first()
            && *deadline <= now
        {
            if let Some((_, key)) = self.by_deadline.pop_first() {
                self.map.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }

    /// Inserts `key` (replacing an entry of the same key) unless the map is full of live entries.
    fn insert(&mut self, key: String, deadline: Instant, value: V, now: Instant) -> Result<(), Full> {
        self.prune(now);
        self.remove(&key);
        if self.map.len() >= self.cap {
            return Err(Full);
        }
        self.by_deadline.insert((deadline, key.clone()));
        self.map.insert(key, (deadline, value));
        Ok(())
    }

    /// The live entry for `key`.
    fn get(&mut self, key: &str, now: Instant) -> Option<&(Instant, V)> {
        self.prune(now);
        self.map.get(key)
    }

    fn remove(&mut self, key: &str) -> Option<(Instant, V)> {
        let (deadline, value) = self.map.remove(key)?;
        self.by_deadline.remove(&(deadline, key.to_owned()));
        Some((deadline, value))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Locks a mutex, recovering from poisoning: nothing under these locks panics by design, and a node that
/// refuses every later login because of one earlier panic would be far worse than what the panic left.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------------------
// Memory mode
// ---------------------------------------------------------------------------------------------------------

/// The journeys one node holds in memory (`auth_sessions = "memory"`), keyed by auth session ID.
///
/// Node-local by design, as AM's chain auth sessions: this is the state that makes stickiness *required*
/// (research notes, section 1). A step is answered by [`take`](Self::take)ing the journey out, so a second,
/// concurrent or later answer of the same step finds nothing; a step that leads on is put back with the
/// next `otk`; a failed step is simply not put back, which ends the chain as AM does.
#[derive(Debug)]
pub struct PendingJourneys {
    inner: Mutex<Expiring<Pending>>,
}

#[derive(Debug)]
struct Pending {
    otk: String,
    journey: Journey,
}

/// The node holds [`MAX_PENDING_JOURNEYS`] live journeys already; the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many authentications in progress on this node")]
pub struct TooManyJourneys;

impl PendingJourneys {
    /// An empty table holding at most `cap` journeys.
    pub fn new(cap: usize) -> Self {
        Self { inner: Mutex::new(Expiring::new(cap)) }
    }

    /// Keeps `journey` under `session_id` until `deadline`, answerable with `otk`.
    ///
    /// # Errors
    /// [`TooManyJourneys`] when the table is full of live journeys.
    pub fn insert(
        &self,
        session_id: &str,
        otk: &str,
        journey: Journey,
        deadline: Instant,
        now: Instant,
    ) -> Result<(), TooManyJourneys> {
        let pending = Pending { otk: otk.to_owned(), journey };
        lock(&self.inner)
            .insert(session_id.to_owned(), deadline, pending, now)
            .map_err(|Full| TooManyJourneys)
    }

    /// Removes and returns the live journey `session_id` with its deadline, if `otk` is its current one.
    ///
    /// A stale `otk` (an earlier step's `authId`) leaves the journey alone: only its holder, who has the
    /// current `authId`, can end it, so a replayed old step cannot break a login in progress.
    pub fn take(&self, session_id: &str, otk: &str, now: Instant) -> Option<(Journey, Instant)> {
        let mut inner = lock(&self.inner);
        let (_, pending) = inner.get(session_id, now)?;
        if pending.otk != otk {
            return None;
        }
        let (deadline, pending) = inner.remove(session_id)?;
        Some((pending.journey, deadline))
    }

    /// Drops expired journeys and returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        lock(&self.inner).prune(now)
    }

    /// Journeys held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------------------
// Client mode
// ---------------------------------------------------------------------------------------------------------

/// The answered steps of client-mode journeys: each `otk` until its `authId` expires.
///
/// A client-mode `authId` is self-contained, so without this memory the same `authId` could be answered
/// again and again (a captured password step replayed, or a TOTP step retried against the same state).
/// AM solves it with allowlisting state in the CTS; tether keeps the set in the process and shares one
/// `SpentOtks` between all nodes of the process, like the session store. Nodes in *different* processes
/// do not see each other's set: a step replayed to another process within its `exp` would be accepted
/// there, which is the limit of client mode without a shared store.
///
/// Entries leave by themselves at their deadline (the `authId`'s `exp`: after it, the `authId` is refused
/// anyway), so the set stays as small as the number of steps answered within one auth session timeout.
#[derive(Debug)]
pub struct SpentOtks {
    inner: Mutex<Expiring<()>>,
}

/// What [`SpentOtks::spend`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// First answer of this step: go ahead.
    Fresh,
    /// The step was answered before: refuse as AM does (`Session has timed out`).
    Replayed,
    /// The set is full of live entries; the caller answers 503 rather than forget a spent key.
    Full,
}

impl Default for SpentOtks {
    fn default() -> Self {
        Self::new()
    }
}

impl SpentOtks {
    /// An empty set bounded by [`MAX_SPENT_OTKS`].
    pub fn new() -> Self {
        Self::with_capacity(MAX_SPENT_OTKS)
    }

    /// An empty set holding at most `cap` live keys.
    pub fn with_capacity(cap: usize) -> Self {
        Self { inner: Mutex::new(Expiring::new(cap)) }
    }

    /// Records `otk` as answered until `until`, atomically with checking it was not answered before, so of
    /// two concurrent answers of one step exactly one is [`Spend::Fresh`].
    pub fn spend(&self, otk: &str, until: Instant, now: Instant) -> Spend {
        let mut inner = lock(&self.inner);
        if inner.get(otk, now).is_some() {
            return Spend::Replayed;
        }
        match inner.insert(otk.to_owned(), until, (), now) {
            Ok(()) => Spend::Fresh,
            Err(Full) => Spend::Full,
        }
    }

    /// Drops keys past their deadline and returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        lock(&self.inner).prune(now)
    }

    /// Keys held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn journey() -> Journey {
        Journey {
            index_type: IndexType::Service,
            index_value: "mfa".into(),
            modules: vec![ModuleKind::DataStore, ModuleKind::Totp],
            next: 1,
            username: Some("demo".into()),
            realm: "/".into(),
        }
    }

    #[test]
    fn callbacks_have_am_shape_and_numbered_inputs() {
        let cbs = callbacks(ModuleKind::DataStore);
        assert_eq!(cbs[0]["type"], "NameCallback");
        assert_eq!(cbs[0]["output"][0]["value"], "User Name");
        assert_eq!(cbs[1]["type"], "PasswordCallback");
        assert_eq!(cbs[1]["input"][0]["name"], "IDToken2");
        let cbs = callbacks(ModuleKind::Totp);
        assert_eq!(cbs.as_array().unwrap().len(), 1);
        assert_eq!(cbs[0]["output"][0]["value"], "Enter verification code");
        assert_eq!(cbs[0]["input"][0]["name"], "IDToken1");
        assert_eq!(stage(ModuleKind::Totp), "TOTP1");
    }

    #[test]
    fn inputs_match_by_position_and_tolerate_missing_output() {
        let sent = vec![
            json!({"type": "NameCallback", "input": [{"name": "IDToken1", "value": "demo"}]}),
            json!({"input": [{"name": "IDToken2", "value": "pw"}]}),
        ];
        assert_eq!(step_inputs(ModuleKind::DataStore, &sent), [Some("demo".into()), Some("pw".into())]);
    }

    #[test]
    fn inputs_fall_back_to_input_names_when_callbacks_are_reordered() {
        let sent = vec![
            json!({"type": "PasswordCallback", "input": [{"name": "IDToken2", "value": "pw"}]}),
            json!({"type": "NameCallback", "input": [{"name": "IDToken1", "value": "demo"}]}),
        ];
        assert_eq!(step_inputs(ModuleKind::DataStore, &sent), [Some("demo".into()), Some("pw".into())]);
    }

    #[test]
    fn missing_or_odd_inputs_are_none_never_a_panic() {
        assert_eq!(step_inputs(ModuleKind::DataStore, &[]), [None, None]);
        let odd = vec![json!(42), json!({"type": 7, "input": "x"}), json!({"input": [{"value": null}]})];
        assert_eq!(step_inputs(ModuleKind::DataStore, &odd), [None, None]);
        let number = vec![json!({"input": [{"name": "IDToken1", "value": 123456}]})];
        assert_eq!(step_inputs(ModuleKind::Totp, &number), [Some("123456".into())]);
    }

    #[test]
    fn journey_state_round_trips_through_json() {
        let state = ClientState { otk: "k".into(), journey: journey() };
        let text = serde_json::to_string(&state).unwrap();
        assert!(text.contains("\"m\":[\"DataStore\",\"TOTP\"]"), "{text}");
        assert_eq!(serde_json::from_str::<ClientState>(&text).unwrap(), state);
        let bad = text.replace("TOTP", "Nope");
        assert!(serde_json::from_str::<ClientState>(&bad).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_journey_is_taken_once_and_only_with_its_current_otk() {
        let table = PendingJourneys::new(10);
        let now = Instant::now();
        let deadline = now + Duration::from_secs(180);
        table.insert("sid", "otk2", journey(), deadline, now).unwrap();
        assert!(table.take("sid", "otk1", now).is_none(), "stale otk");
        assert_eq!(table.len(), 1, "a stale otk leaves the journey alone");
        assert_eq!(table.take("sid", "otk2", now), Some((journey(), deadline)));
        assert!(table.take("sid", "otk2", now).is_none(), "second answer");
        assert!(table.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn pending_journeys_expire_and_are_bounded() {
        let table = PendingJourneys::new(2);
        let now = Instant::now();
        let soon = now + Duration::from_secs(10);
        table.insert("a", "o", journey(), soon, now).unwrap();
        table.insert("b", "o", journey(), soon, now).unwrap();
        assert_eq!(table.insert("c", "o", journey(), soon, now), Err(TooManyJourneys));
        assert!(table.take("a", "o", soon).is_none(), "expired at its deadline");
        assert_eq!(table.len(), 0, "expired entries are pruned on use");
        table.insert("c", "o", journey(), soon + Duration::from_secs(10), soon).unwrap();
        table.insert("d", "o", journey(), soon + Duration::from_secs(10), soon).unwrap();
        assert_eq!(table.sweep(soon + Duration::from_secs(10)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_otk_is_spent_once_until_its_deadline() {
        let spent = SpentOtks::with_capacity(1);
        let now = Instant::now();
        let until = now + Duration::from_secs(5);
        assert_eq!(spent.spend("x", until, now), Spend::Fresh);
        assert_eq!(spent.spend("x", until, now), Spend::Replayed);
        assert_eq!(spent.spend("y", until, now), Spend::Full);
        assert_eq!(spent.spend("y", until + Duration::from_secs(5), until), Spend::Fresh);
        assert_eq!(spent.len(), 1);
        assert_eq!(spent.sweep(until + Duration::from_secs(5)), 1);
        assert!(spent.is_empty());
    }
}
