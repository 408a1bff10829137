//! One AM-compatible auth node: `/json/authenticate`, `/json/sessions`, and the health endpoints.
//!
//! The node answers what AM's own clients (the ForgeRock JS SDK, agents, `curl` scripts written against
//! AM) send and expect, so they work unmodified behind tether (SPEC 5, research notes sections 1–6):
//!
//! * **Logins** run authentication chains step by step ([`crate::auth::journey`]). Like AM, the node sets
//!   the load-balancer cookie (`amlbcookie`) to its own server ID when a login starts, and mints the auth
//!   session ID and the session token with itself as `S1`, so the proxy can route every later request of
//!   the login and the session back here.
//! * **Errors** are AM's CREST JSON with AM's texts, because clients branch on them: `Authentication
//!   Failed` (401), `Session has timed out` with `errorCode` 110 (401; what AM answers when another node
//!   gets a chain's step), `Maximum Sessions Limit Reached.` (401), `Failed to parse JWT` and `AuthId JWT
//!   Signature not valid` (400).
//! * **Sessions** are created through the one atomic [`SessionStore::create`], which enforces the quota
//!   without AM's check-then-write race (OPENAM-10332).
//!
//! Time: expiry uses [`tokio::time::Instant`]; wall-clock values (`exp`, TOTP, ISO-8601 times) come from a
//! clock that follows tokio time, so tests with paused time see one consistent clock.

use std::collections::HashMap;
use std::fmt::Display;
use std::num::NonZero;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use ring::rand::SystemRandom;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::am::crest;
use crate::am::request::{self, Query, TokenPlaces};
use crate::am::time::{Clock, MAX_LIFETIME, later};
use crate::am::token::{self, JwsError, Keys};
use crate::auth::journey::{
    AuthIdClaims, ClientState, Journey, MAX_PENDING_JOURNEYS, PendingJourneys, Spend, SpentOtks, callbacks,
    stage, step_inputs,
};
use crate::auth::quota::Quota;
use crate::auth::session::{Session, SessionStore};
use crate::auth::{totp, user};
use crate::body::{self, Body};
use crate::config::{AuthConfig, AuthSessionMode, BackendId, ModuleKind, UserConfig};

/// Largest request body the node reads (SPEC 4.1 uses the same bound for the proxy's `authId` peek). AM
/// requests are a few KiB at most; the bound keeps an unauthenticated client from making the node buffer
/// arbitrary amounts.
pub const MAX_BODY: usize = 64 * 1024;

/// Random bytes in an `otk`: 160 bits, above AM's 130-bit nonce.
const OTK_BYTES: usize = 20;

/// Random bytes after `shandle:` in a session handle.
const HANDLE_BYTES: usize = 24;

/// The target every log line of the auth node uses, so operators can filter logins with
/// `RUST_LOG=tether::auth=info` whichever file logged them.
const LOG: &str = "tether::auth";

/// Counters of one node, for the integrator's metrics. Monotonic; read with `load(Ordering::Relaxed)`.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Logins started: first steps and zero-page logins.
    pub logins_started: AtomicU64,
    /// Logins that created a session.
    pub logins_succeeded: AtomicU64,
    /// Logins that ended without a session: wrong credentials (401 `Authentication Failed`) and quota
    /// refusals. Timeouts are counted apart, in `timed_out`.
    pub logins_failed: AtomicU64,
    /// Continuations answered 401 `Session has timed out` (error code 110): expired, replayed, or held by
    /// another node. A rising count in memory mode usually means the proxy is not keeping logins sticky.
    pub timed_out: AtomicU64,
    /// Logins refused by a `DENY_ACCESS` quota (also counted in `logins_failed`).
    pub quota_refusals: AtomicU64,
    /// Existing sessions ended by a destroy quota action to admit a new login.
    pub quota_evictions: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// An embedded, AM-compatible auth node.
///
/// Cheap to share behind an `Arc`: every method takes `&self`, and no lock is held across an `.await`.
pub struct AuthNode {
    id: BackendId,
    auth: Arc<AuthConfig>,
    keys: Keys,
    store: Arc<dyn SessionStore>,
    spent: Arc<SpentOtks>,
    pending: PendingJourneys,
    /// Index of `auth.users` by username.
    users: HashMap<String, usize>,
    /// Bounds concurrent argon2 verifications (see [`AuthNode::verify_password`]).
    hashing: Semaphore,
    rng: SystemRandom,
    clock: Clock,
    token_places: TokenPlaces,
    stats: AuthStats,
    ready: AtomicBool,
}

impl std::fmt::Debug for AuthNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthNode")
            .field("id", &self.id)
            .field("auth_sessions", &self.auth.auth_sessions)
            .finish_non_exhaustive()
    }
}

/// Where the routes below `context_path` lead.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    IsAlive,
    Live,
    Ready,
    /// With the realm of the path, `/` or `/a/b`.
    Authenticate(String),
    Sessions,
}

/// The identity of a login in progress that survives its steps: AM keeps one auth session ID and one
/// expiry for the whole chain (`com.iplanet.am.session.invalidsessionmaxtime`), so a slow step does not
/// extend the time a half-finished login may linger.
#[derive(Debug, Clone)]
struct AuthSessionId {
    session_id: String,
    deadline: Instant,
    exp: u64,
}

impl AuthNode {
    /// A node with server ID `id`.
    ///
    /// `store` and `spent` decide what nodes share: give every node of a process the same ones for
    /// `sessions = "shared"` (like AM's CTS), and each node its own for `"local"`. `spent` only matters for
    /// `auth_sessions = "client"`. `keys` must be derived from the secret every node of the cluster
    /// shares, or nodes refuse each other's `authId`s as badly signed.
    pub fn new(
        id: BackendId,
        auth: Arc<AuthConfig>,
        keys: Keys,
        store: Arc<dyn SessionStore>,
        spent: Arc<SpentOtks>,
    ) -> Self {
        let users = auth.users.iter().enumerate().map(|(i, u)| (u.username.clone(), i)).collect();
        let cpus = std::thread::available_parallelism().map_or(1, NonZero::get);
        // Cookie names were validated as RFC 9110 tokens, which are valid header names.
        let token_places = TokenPlaces::named(&auth.session_cookie)
            .or_else(|| TokenPlaces::named("iPlanetDirectoryPro"))
            .expect("the default session cookie name is a valid header name");
        AuthNode {
            id,
            auth,
            keys,
            store,
            spent,
            pending: PendingJourneys::new(MAX_PENDING_JOURNEYS),
            users,
            hashing: Semaphore::new(cpus),
            rng: SystemRandom::new(),
            clock: Clock::new(),
            token_places,
            stats: AuthStats::default(),
            ready: AtomicBool::new(true),
        }
    }

    /// The node's server ID.
    pub fn id(&self) -> &BackendId {
        &self.id
    }

    /// The node's counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Sessions in the node's store (shared by all nodes with `sessions = "shared"`), expired ones that no
    /// read or [`sweep`](Self::sweep) has removed yet included.
    pub fn live_sessions(&self) -> usize {
        self.store.len()
    }

    /// Logins this node holds in memory between steps (always 0 with `auth_sessions = "client"`).
    pub fn pending_logins(&self) -> usize {
        self.pending.len()
    }

    /// Sets what `/json/health/ready` answers: 200 when true (the default), 503 when false. Lets the
    /// integrator take a node out of rotation (drain) while `/json/health/live` stays 200, as AM's
    /// readiness does.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/json/health/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Reclaims memory: removes expired logins in progress, expired spent `otk`s and expired sessions.
    ///
    /// Expiry never depends on it (every read checks the clock), so a few seconds between runs are fine.
    /// Run it periodically, e.g. every 10–60 s per node (shared `store`/`spent` are then swept by each node,
    /// which is harmless).
    pub fn sweep(&self) {
        let now = Instant::now();
        let logins = self.pending.sweep(now);
        let otks = self.spent.sweep(now);
        let sessions = self.store.sweep(now);
        if logins + otks + sessions > 0 {
            tracing::debug!(target: LOG, node = %self.id, logins, otks, sessions, "swept expired state");
        }
    }

    /// Answers one request. Paths outside `context_path` and unknown endpoints get AM's 404 JSON.
    ///
    /// Generic over the body so it takes hyper's `Incoming` as well as `Full<Bytes>` in tests. Bodies are
    /// read only for the endpoints that use one, bounded by [`MAX_BODY`] (413 beyond).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Display,
    {
        let (parts, body) = req.into_parts();
        let Some(route) = self.route(parts.uri.path()) else {
            return crest::error(
                StatusCode::NOT_FOUND,
                &format!("Resource '{}' not found", parts.uri.path()),
            );
        };
        match route {
            Route::IsAlive | Route::Live | Route::Ready => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return method_not_allowed("GET, HEAD");
                }
                self.health(&route)
            }
            Route::Authenticate(realm) => {
                if parts.method != Method::POST {
                    return method_not_allowed("POST");
                }
                match read_body(body).await {
                    Ok(bytes) => self.authenticate(&parts, &bytes, realm).await,
                    Err(resp) => resp,
                }
            }
            Route::Sessions => {
                if parts.method != Method::POST {
                    return method_not_allowed("POST");
                }
                match read_body(body).await {
                    Ok(bytes) => self.sessions(&parts, &bytes),
                    Err(resp) => resp,
                }
            }
        }
    }

    /// Maps a path to a route: `<context_path>/isAlive.jsp`, `/json/health/{live,ready}`, and
    /// `/json[/realms/root[/realms/NAME]*]/{authenticate,sessions}[/]`.
    fn route(&self, path: &str) -> Option<Route> {
        let rest = path.strip_prefix(self.auth.context_path.as_str())?;
        match rest {
            "/isAlive.jsp" => return Some(Route::IsAlive),
            "/json/health/live" => return Some(Route::Live),
            "/json/health/ready" => return Some(Route::Ready),
            _ => {}
        }
        let rest = rest.strip_prefix("/json/")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments: Vec<&str> = rest.split('/').collect();
        let endpoint = segments.pop()?;
        let realm = realm_of(&segments)?;
        match endpoint {
            "authenticate" => Some(Route::Authenticate(realm)),
            "sessions" => Some(Route::Sessions),
            _ => None,
        }
    }

    /// AM's health endpoints: `isAlive.jsp` (text), `health/live` and `health/ready` (empty bodies).
    fn health(&self, route: &Route) -> Response<Body> {
        let mut resp = Response::new(body::empty());
        match route {
            Route::IsAlive => {
                *resp.body_mut() = body::full("Server is ALIVE");
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            Route::Ready if !self.is_ready() => *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
            _ => {}
        }
        resp
    }

    // -----------------------------------------------------------------------------------------------------
    // /json/authenticate
    // -----------------------------------------------------------------------------------------------------

    /// A body with an `authId` continues a login; anything else (no body, `{}`, the JS SDK's empty first
    /// POST with a JSON content type) starts one, as in AM.
    async fn authenticate(&self, parts: &Parts, body: &[u8], realm: String) -> Response<Body> {
        // Only `authId` and `callbacks` are read. Everything else the client sends is ignored: the JS SDK
        // echoes the whole previous answer (`status`, `ok`, `template`, `stage`, `header`, …) back with the
        // filled callbacks (SPEC 5.7).
        let text = body.trim_ascii();
        let mut step = serde_json::Map::new();
        if !text.is_empty() {
            match serde_json::from_slice(text) {
                Ok(Value::Object(object)) => step = object,
                Ok(_) => {
                    return crest::error(
                        StatusCode::BAD_REQUEST,
                        "Invalid JSON in the request body: expected an object",
                    );
                }
                Err(e) => {
                    return crest::error(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid JSON in the request body: {e}"),
                    );
                }
            }
        }
        match step.get("authId") {
            Some(Value::String(auth_id)) if !auth_id.trim().is_empty() => {
                let sent = step.get("callbacks").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                self.continue_login(auth_id, sent, &realm).await
            }
            None | Some(Value::Null | Value::String(_)) => {
                let query = Query::parse(parts.uri.query());
                self.start_login(&parts.headers, &query, realm).await
            }
            Some(_) => crest::error(StatusCode::BAD_REQUEST, "Failed to parse JWT: authId is not a string"),
        }
    }

    /// Starts a login: the first step's callbacks, or, with `X-OpenAM-Username`/`X-OpenAM-Password` and a
    /// chain that starts with `DataStore`, a zero-page login whose credentials answer that first step.
    async fn start_login(&self, headers: &HeaderMap, query: &Query, realm: String) -> Response<Body> {
        let index_type = query.get("authIndexType").filter(|t| !t.is_empty());
        let journey = match Journey::start(&self.auth, index_type, query.get("authIndexValue"), &realm) {
            Ok(journey) => journey,
            Err(e) => return crest::error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        bump(&self.stats.logins_started);
        // AM applies the headers to a first page of name/password callbacks only; other chains simply get
        // their first step.
        let zero_page = match headers.get("x-openam-username") {
            Some(name) if journey.current() == Some(ModuleKind::DataStore) => {
                Some(vec![header_text(name), headers.get("x-openam-password").and_then(header_text)])
            }
            _ => None,
        };
        tracing::debug!(
            target: LOG, node = %self.id, chain = %journey.index_value, realm = %journey.realm,
            zero_page = zero_page.is_some(), "login started"
        );
        let mut resp = match zero_page {
            Some(inputs) => self.run_step(journey, inputs, None).await,
            None => self.issue_step(journey, None),
        };
        // AM sets its lb cookie to the answering server's ID when a login process starts (research notes,
        // section 1): that is how a cookie-keeping client sticks to the node holding the login.
        if !resp.status().is_server_error() {
            let cookie = format!("{}={}; Path=/", self.auth.lb_cookie, self.id);
            add_cookie(&mut resp, &cookie);
        }
        resp
    }

    /// Continues a login with the client's answers to its current step.
    async fn continue_login(&self, auth_id: &str, sent: &[Value], realm: &str) -> Response<Body> {
        let claims: AuthIdClaims = match token::verify_hs256(self.keys.signing(), auth_id) {
            Ok(claims) => claims,
            Err(JwsError::Malformed(why)) => {
                return crest::error(StatusCode::BAD_REQUEST, &format!("Failed to parse JWT, {why}"));
            }
            Err(e) => return crest::error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let now = Instant::now();
        if self.clock.unix_at(now) >= Duration::from_secs(claims.exp) {
            return self.timed_out("the authId has expired");
        }
        let (journey, deadline) = match self.auth.auth_sessions {
            AuthSessionMode::Memory => match self.pending.take(&claims.session_id, &claims.otk, now) {
                Some(found) => found,
                None => return self.timed_out("no login in progress here for this authId step"),
            },
            AuthSessionMode::Client => {
                let Some(journey) = self.open_state(&claims) else {
                    return self.timed_out("the authId carries no state sealed for this cluster");
                };
                let deadline = self.clock.instant_at(Duration::from_secs(claims.exp), now);
                match self.spent.spend(&claims.otk, deadline, now) {
                    Spend::Fresh => (journey, deadline),
                    Spend::Replayed => return self.timed_out("this authId step was already answered"),
                    Spend::Full => return self.overloaded("the replay cache of answered steps is full"),
                }
            }
        };
        // A login belongs to the realm it started in; answering it through another realm's path is not
        // the same login, just as AM would not find it there.
        if journey.realm != realm {
            return self.timed_out("the authId belongs to another realm");
        }
        let Some(module) = journey.current() else {
            return self.timed_out("the login has no step left");
        };
        let inputs = step_inputs(module, sent);
        let id = AuthSessionId { session_id: claims.session_id, deadline, exp: claims.exp };
        self.run_step(journey, inputs, Some(id)).await
    }

    /// The journey inside a client-mode `authId`, if it opens with this cluster's key and belongs to it.
    fn open_state(&self, claims: &AuthIdClaims) -> Option<Journey> {
        let sealed = claims.state.as_deref()?;
        let plain = self.keys.open(sealed).ok()?;
        let state: ClientState = serde_json::from_slice(&plain).ok()?;
        (state.otk == claims.otk).then_some(state.journey)
    }

    /// Runs the current module with `inputs`; on success the next step or the session, on failure 401.
    /// A failed step is not put back anywhere: the chain ends, as AM's REQUIRED modules end it.
    async fn run_step(
        &self,
        mut journey: Journey,
        inputs: Vec<Option<String>>,
        id: Option<AuthSessionId>,
    ) -> Response<Body> {
        let passed = match journey.current() {
            Some(ModuleKind::DataStore) => self.data_store(&journey, inputs).await,
            Some(ModuleKind::Totp) => self.totp(&journey, inputs),
            None => None,
        };
        let Some(username) = passed else {
            return self.failed(&journey);
        };
        journey.username = Some(username);
        journey.next += 1;
        if journey.current().is_some() { self.issue_step(journey, id) } else { self.finish(journey) }
    }

    /// The `DataStore` module: the name and password must match a configured user. The user the chain
    /// has identified cannot change in a later `DataStore` step.
    async fn data_store(&self, journey: &Journey, inputs: Vec<Option<String>>) -> Option<String> {
        let mut inputs = inputs.into_iter();
        let username = inputs.next().flatten().unwrap_or_default();
        let password = inputs.next().flatten().unwrap_or_default();
        let user = self.user(&username);
        // An unknown name still costs one verification (against another user's hash, result ignored), so
        // response times do not tell which usernames exist.
        let hash = user.or_else(|| self.auth.users.first())?.password_hash.clone();
        let verified = self.verify_password(password, hash).await;
        let same_user = journey.username.as_ref().is_none_or(|known| *known == username);
        (verified && same_user && user.is_some()).then_some(username)
    }

    /// The `TOTP` module: an RFC 6238 code for the user an earlier module identified (AM's OATH module
    /// also needs a preceding module to name the user).
    fn totp(&self, journey: &Journey, inputs: Vec<Option<String>>) -> Option<String> {
        let code = inputs.into_iter().next().flatten()?;
        let username = journey.username.as_ref()?;
        let key = self.user(username)?.totp_key.as_deref()?;
        totp::verify(key, code.trim(), self.clock.unix_now().as_secs()).then(|| username.clone())
    }

    /// Checks a password against a PHC hash off the async threads.
    ///
    /// argon2 is deliberately slow and memory-hard (the default parameters take ~19 MiB and tens of
    /// milliseconds): run inline it would stall every other request on the worker, so it goes to
    /// `spawn_blocking`. The semaphore caps concurrent verifications at the number of CPUs, so a flood of
    /// logins queues instead of filling tokio's 512 blocking threads with 19 MiB each.
    async fn verify_password(&self, password: String, hash: String) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || user::verify_password(&password, &hash)).await.unwrap_or(false)
    }

    /// Answers with the callbacks of the journey's current step and a fresh `authId`, storing the journey
    /// (memory mode) or sealing it into the `authId` (client mode). `id` is `None` for a new login.
    fn issue_step(&self, journey: Journey, id: Option<AuthSessionId>) -> Response<Body> {
        let Some(module) = journey.current() else {
            return self.failed(&journey);
        };
        let now = Instant::now();
        let id = id.unwrap_or_else(|| self.new_auth_session(now));
        let otk = token::random_b64(&self.rng, OTK_BYTES);
        let state = match self.auth.auth_sessions {
            AuthSessionMode::Memory => None,
            AuthSessionMode::Client => {
                let state = ClientState { otk: otk.clone(), journey: journey.clone() };
                match serde_json::to_vec(&state) {
                    Ok(plain) => Some(self.keys.seal(&self.rng, &plain)),
                    Err(e) => return internal_error(&format!("cannot serialize the login state: {e}")),
                }
            }
        };
        let claims = AuthIdClaims {
            otk: otk.clone(),
            realm: journey.realm.clone(),
            session_id: id.session_id.clone(),
            auth_index_type: journey.index_type.as_str().to_owned(),
            auth_index_value: journey.index_value.clone(),
            exp: id.exp,
            state,
        };
        let auth_id = match token::sign_hs256(self.keys.signing(), &claims) {
            Ok(auth_id) => auth_id,
            Err(e) => return internal_error(&format!("cannot sign the authId: {e}")),
        };
        if self.auth.auth_sessions == AuthSessionMode::Memory
            && self.pending.insert(&id.session_id, &otk, journey, id.deadline, now).is_err()
        {
            return self.overloaded("too many logins in progress on this node");
        }
        crest::json(
            StatusCode::OK,
            &json!({
                "authId": auth_id,
                "template": "",
                "stage": stage(module),
                "header": "Sign in",
                "callbacks": callbacks(module),
            }),
        )
    }

    /// A new auth session: an ID minted with this node as `S1` (what the proxy routes on), and the
    /// expiry `auth_session_timeout` from now. `exp` rounds up to whole seconds, so the claim never ends
    /// before the in-memory deadline.
    fn new_auth_session(&self, now: Instant) -> AuthSessionId {
        let timeout = self.auth.auth_session_timeout.min(MAX_LIFETIME);
        let end = self.clock.unix_at(now).saturating_add(timeout);
        AuthSessionId {
            session_id: token::mint_token(&self.rng, self.id.as_str()),
            deadline: later(now, timeout),
            exp: end.as_secs().saturating_add(u64::from(end.subsec_nanos() > 0)),
        }
    }

    /// The chain passed: create the session through the store's one atomic call, which also applies the
    /// quota (SPEC 5.5).
    fn finish(&self, journey: Journey) -> Response<Body> {
        let Some(user) = journey.username.as_deref().and_then(|u| self.user(u)) else {
            return self.failed(&journey);
        };
        let token = token::mint_token(&self.rng, self.id.as_str());
        let handle = format!("shandle:{}", token::random_b64(&self.rng, HANDLE_BYTES));
        let now = Instant::now();
        let session = Session::new(
            token.clone(),
            handle,
            user.username.clone(),
            journey.realm.clone(),
            now,
            self.auth.max_idle_time,
            self.auth.max_session_time,
        );
        let quota = self.auth.quota.enabled.then(|| Quota {
            limit: user.session_quota.unwrap_or(self.auth.quota.limit),
            action: self.auth.quota.exhaustion_action,
        });
        let created = match self.store.create(session, quota, now) {
            Ok(created) => created,
            Err(refused) => {
                bump(&self.stats.quota_refusals);
                bump(&self.stats.logins_failed);
                tracing::info!(
                    target: LOG, node = %self.id, user = %user.username, "login refused: session quota reached"
                );
                return crest::error(StatusCode::UNAUTHORIZED, &refused.to_string());
            }
        };
        for evicted in &created.evicted {
            bump(&self.stats.quota_evictions);
            // Never log a token (it is a bearer credential); a short digest still correlates log lines.
            tracing::info!(
                target: LOG, node = %self.id, user = %user.username,
                action = quota.map(|q| q.action.as_str()), session = %fingerprint(evicted),
                "session quota reached: ended an existing session"
            );
        }
        bump(&self.stats.logins_succeeded);
        tracing::info!(
            target: LOG, node = %self.id, user = %user.username, chain = %journey.index_value,
            session = %fingerprint(&token), "login succeeded"
        );
        let mut resp = crest::json(
            StatusCode::OK,
            &json!({
                "tokenId": token,
                "successUrl": format!("{}/console", self.auth.context_path),
                "realm": journey.realm,
            }),
        );
        add_cookie(&mut resp, &format!("{}={}; Path=/; HttpOnly", self.auth.session_cookie, token));
        resp
    }

    fn failed(&self, journey: &Journey) -> Response<Body> {
        bump(&self.stats.logins_failed);
        tracing::info!(
            target: LOG, node = %self.id, chain = %journey.index_value,
            module = journey.current().map(ModuleKind::as_str), "authentication failed"
        );
        crest::error(StatusCode::UNAUTHORIZED, "Authentication Failed")
    }

    /// AM's answer for a login this node cannot continue: 401 with error code 110.
    fn timed_out(&self, why: &str) -> Response<Body> {
        bump(&self.stats.timed_out);
        tracing::debug!(target: LOG, node = %self.id, why, "login step refused: session has timed out");
        crest::error_with(
            StatusCode::UNAUTHORIZED,
            "Session has timed out",
            Some(json!({"errorCode": "110"})),
        )
    }

    fn overloaded(&self, why: &str) -> Response<Body> {
        tracing::warn!(target: LOG, node = %self.id, why, "login refused");
        crest::error(StatusCode::SERVICE_UNAVAILABLE, &format!("Service unavailable: {why}; try again later"))
    }

    fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users.get(username).and_then(|&i| self.auth.users.get(i))
    }

    // -----------------------------------------------------------------------------------------------------
    // /json/sessions
    // -----------------------------------------------------------------------------------------------------

    /// AM's session actions. The token comes from the `tokenId` query parameter, else the header named like
    /// the session cookie, else that cookie (AM's order), else a body `{"tokenId"}`.
    fn sessions(&self, parts: &Parts, body: &[u8]) -> Response<Body> {
        let query = Query::parse(parts.uri.query());
        let Some(action) = query.get("_action") else {
            return crest::error(
                StatusCode::BAD_REQUEST,
                "The _action query parameter is required \
                 (validate, getSessionInfo, getSessionInfoAndResetIdleTime, refresh, logout)",
            );
        };
        let token = self.request_token(parts.uri.query(), &parts.headers, body);
        let token = token.as_deref();
        let now = Instant::now();
        let get = |reset: bool| {
            let token = token?;
            if reset { self.store.touch(token, now) } else { self.store.get(token, now) }
        };
        match action {
            // No idle reset: validating a session (agents do it on every request) is not using it.
            "validate" => match get(false) {
                Some(s) => crest::json(
                    StatusCode::OK,
                    &json!({"valid": true, "sessionUid": s.handle, "uid": s.username, "realm": s.realm}),
                ),
                None => crest::json(StatusCode::OK, &json!({"valid": false})),
            },
            "getSessionInfo" | "getSessionInfoAndResetIdleTime" => {
                match get(action == "getSessionInfoAndResetIdleTime") {
                    Some(s) => crest::json(StatusCode::OK, &self.session_info(&s)),
                    None => invalid_session(),
                }
            }
            "refresh" => match get(true) {
                Some(s) => crest::json(
                    StatusCode::OK,
                    &json!({
                        "uid": s.username,
                        "realm": s.realm,
                        "idletime": 0,
                        "maxidletime": s.max_idle.as_secs() / 60,
                        "maxsessiontime": s.max_time.as_secs() / 60,
                        "maxtime": s.max_expiry().saturating_duration_since(now).as_secs(),
                    }),
                ),
                None => invalid_session(),
            },
            "logout" => {
                let ended = token.is_some_and(|t| self.store.remove(t, now));
                let result = if ended { "Successfully logged out" } else { "Token has expired" };
                crest::json(StatusCode::OK, &json!({"result": result}))
            }
            other => crest::error(
                StatusCode::NOT_IMPLEMENTED,
                &format!("Action '{other}' not implemented for this resource"),
            ),
        }
    }

    fn request_token(&self, query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let from_body = || {
            let value: Value = serde_json::from_slice(body.trim_ascii()).ok()?;
            value.get("tokenId")?.as_str().map(str::to_owned)
        };
        request::session_token(&self.token_places, headers, query)
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .or_else(from_body)
            .filter(|t| !t.is_empty())
    }

    fn session_info(&self, s: &Session) -> Value {
        json!({
            "username": s.username,
            "universalId": universal_id(&s.username, &s.realm),
            "realm": s.realm,
            "latestAccessTime": self.iso(s.last_access),
            "maxIdleExpirationTime": self.iso(s.idle_expiry()),
            "maxSessionExpirationTime": self.iso(s.max_expiry()),
            "properties": {"AMCtxId": s.handle},
        })
    }

    fn iso(&self, at: Instant) -> String {
        self.clock.iso_at(at)
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes; the error is the answer to send (413 or 400).
async fn read_body<B>(body: B) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let limited = Limited::new(body.map_err(|e| e.to_string()), MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(crest::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body larger than {MAX_BODY} bytes"),
        )),
        Err(e) => {
            Err(crest::error(StatusCode::BAD_REQUEST, &format!("Failed to read the request body: {e}")))
        }
    }
}

/// The realm named by the path segments between `/json` and the endpoint: none (legacy `/json/...`) or
/// `realms/root` is `/`; each further `realms/NAME` pair adds `/NAME`.
fn realm_of(segments: &[&str]) -> Option<String> {
    match segments {
        [] => Some("/".to_owned()),
        ["realms", "root"] => Some("/".to_owned()),
        ["realms", "root", sub @ ..] => {
            let mut realm = String::new();
            for pair in sub.chunks(2) {
                match pair {
                    ["realms", name] if valid_realm_name(name) => {
                        realm.push('/');
                        realm.push_str(name);
                    }
                    _ => return None,
                }
            }
            Some(realm)
        }
        _ => None,
    }
}

/// Realm names as AM allows them in practice; anything else is not a realm path at all (404).
fn valid_realm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// AM's universal ID of a user: `id=<user>,ou=user,<realm DN>`, the realm DN being
/// `dc=openam,dc=forgerock,dc=org` for the root and `o=<name>,...,ou=services,<root DN>` below it.
fn universal_id(username: &str, realm: &str) -> String {
    const ROOT_DN: &str = "dc=openam,dc=forgerock,dc=org";
    let subs: Vec<&str> = realm.split('/').filter(|s| !s.is_empty()).rev().collect();
    if subs.is_empty() {
        format!("id={username},ou=user,{ROOT_DN}")
    } else {
        let orgs: Vec<String> = subs.iter().map(|s| format!("o={s}")).collect();
        format!("id={username},ou=user,{},ou=services,{ROOT_DN}", orgs.join(","))
    }
}

fn invalid_session() -> Response<Body> {
    crest::error(StatusCode::UNAUTHORIZED, "Invalid or expired session")
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = crest::error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn internal_error(why: &str) -> Response<Body> {
    tracing::error!(target: LOG, why, "internal error");
    crest::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// Appends a `Set-Cookie`. Names come from validated configuration and values are token or ID characters,
/// so the header is always valid; if it were not, the cookie is left out rather than the request failed.
fn add_cookie(resp: &mut Response<Body>, cookie: &str) {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            resp.headers_mut().append(SET_COOKIE, value);
        }
        Err(_) => tracing::warn!(target: LOG, "cannot write a Set-Cookie header; left out"),
    }
}

/// A zero-page login header as text. AM accepts RFC 2047 `=?UTF-8?B?<base64>?=` for non-ASCII names and
/// passwords, since header values are ASCII.
fn header_text(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let encoded = text
        .get(..10)
        .filter(|prefix| prefix.eq_ignore_ascii_case("=?UTF-8?B?"))
        .and_then(|_| text.get(10..)?.strip_suffix("?="));
    match encoded {
        Some(b64) => String::from_utf8(STANDARD.decode(b64).ok()?).ok(),
        None => Some(text.to_owned()),
    }
}

/// A short, non-reversible name of a token for logs.
fn fingerprint(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::am::time::iso8601;
    use crate::auth::session::MemoryStore;
    use argon2::password_hash::PasswordHasher;
    use argon2::{Algorithm, Argon2, Params, Version};
    use http::header::COOKIE;
    use http_body_util::Full;
    use std::sync::OnceLock;
    use tokio::time::advance;

    const SECRET: &[u8] = b"a cluster secret of at least 128 bits, for tests only";
    const PASSWORD: &str = "Ch4nge-it!";
    const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const AUTH: &str = "/am/json/realms/root/authenticate";
    const MFA: &str = "/am/json/realms/root/authenticate?authIndexType=service&authIndexValue=mfa";
    const SESSIONS: &str = "/am/json/realms/root/sessions";

    /// An argon2id PHC of [`PASSWORD`] with cheap parameters (8 KiB, 1 pass), computed once.
    fn cheap_hash() -> &'static str {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| {
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap())
                .hash_password_with_salt(PASSWORD.as_bytes(), b"tether-test-salt")
                .unwrap()
                .to_string()
        })
    }

    /// A complete `proxy.toml` with two backends and `[auth]`; `quota` is the body of `[auth.quota]`.
    fn config(mode: &str, quota: &str) -> Arc<AuthConfig> {
        let text = format!(
            r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:8081"
  [[pool.backend]]
  id = "02"
  url = "http://127.0.0.1:8082"

[[route]]
path_prefix = "/am/"
pool = "am"

[auth]
context_path = "/am"
auth_sessions = "{mode}"
auth_session_timeout_s = 180
max_idle_time_min = 30
max_session_time_min = 120
default_chain = "ldapService"

  [auth.quota]
  {quota}

  [[auth.chain]]
  name = "ldapService"
  modules = ["DataStore"]
  [[auth.chain]]
  name = "mfa"
  modules = ["DataStore", "TOTP"]

  [[auth.user]]
  username = "demo"
  password = "{hash}"
  totp_secret = "{TOTP_SECRET}"

  [[auth.user]]
  username = "nototp"
  password = "{hash}"
"#,
            hash = cheap_hash()
        );
        let config = crate::config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(config.auth.unwrap())
    }

    /// Two nodes `01` and `02` sharing keys, a session store and a spent-otk cache, like `tether run`
    /// with `sessions = "shared"`.
    struct Cluster {
        a: AuthNode,
        b: AuthNode,
        store: Arc<MemoryStore>,
    }

    fn cluster(mode: &str) -> Cluster {
        cluster_with(mode, "enabled = false")
    }

    fn cluster_with(mode: &str, quota: &str) -> Cluster {
        let auth = config(mode, quota);
        let store = Arc::new(MemoryStore::new());
        let spent = Arc::new(SpentOtks::new());
        let node = |id: &str| {
            AuthNode::new(
                BackendId::new(id).unwrap(),
                Arc::clone(&auth),
                Keys::derive(SECRET),
                Arc::clone(&store) as Arc<dyn SessionStore>,
                Arc::clone(&spent),
            )
        };
        Cluster { a: node("01"), b: node("02"), store }
    }

    /// What came back, with the body parsed as JSON where it is JSON.
    #[derive(Debug)]
    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        text: String,
        json: Value,
    }

    impl Answer {
        fn cookies(&self) -> Vec<&str> {
            self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect()
        }

        fn assert_error(&self, status: u16, message: &str) {
            assert_eq!(self.status, status, "{self:?}");
            assert_eq!(self.json["code"], status, "{self:?}");
            assert!(self.json["message"].as_str().unwrap().starts_with(message), "{self:?}");
        }

        fn assert_timed_out(&self) {
            self.assert_error(401, "Session has timed out");
            assert_eq!(self.json["detail"]["errorCode"], "110", "{self:?}");
        }
    }

    async fn send(node: &AuthNode, req: Request<Full<Bytes>>) -> Answer {
        let resp = node.handle(req).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        if json.is_object() {
            assert_eq!(headers[CONTENT_TYPE], "application/json", "{text}");
        }
        Answer { status, headers, text, json }
    }

    /// A POST as the JS SDK sends it: JSON content type and an `Accept-API-Version`, even with no body.
    fn post(uri: &str, body: impl Into<String>) -> Request<Full<Bytes>> {
        Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .header("Accept-API-Version", "protocol=1.0,resource=2.1")
            .body(Full::new(Bytes::from(body.into())))
            .unwrap()
    }

    fn get(uri: &str) -> Request<Full<Bytes>> {
        Request::get(uri).body(Full::new(Bytes::new())).unwrap()
    }

    /// The previous answer with `values` filled into its callbacks in order, every other field kept,
    /// exactly what the JS SDK posts back.
    fn fill(step: &Answer, values: &[&str]) -> String {
        let mut body = step.json.clone();
        let callbacks = body["callbacks"].as_array_mut().expect("a step with callbacks");
        for (cb, value) in callbacks.iter_mut().zip(values) {
            cb["input"][0]["value"] = json!(value);
        }
        body.to_string()
    }

    fn code(node: &AuthNode) -> String {
        let key = totp::decode_base32(TOTP_SECRET).unwrap();
        format!("{:06}", totp::totp(&key, node.clock.unix_now().as_secs(), 30, 6))
    }

    /// A wrong code: the right one for a step far away from now.
    fn wrong_code(node: &AuthNode) -> String {
        let key = totp::decode_base32(TOTP_SECRET).unwrap();
        format!("{:06}", totp::totp(&key, node.clock.unix_now().as_secs() + 3600, 30, 6))
    }

    fn auth_id_claims(step: &Answer) -> Value {
        let auth_id = step.json["authId"].as_str().unwrap();
        let payload = auth_id.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A full `ldapService` login on `node`; returns the tokenId.
    async fn login(node: &AuthNode) -> String {
        let step = send(node, post(AUTH, "")).await;
        let done = send(node, post(AUTH, fill(&step, &["demo", PASSWORD]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        done.json["tokenId"].as_str().unwrap().to_owned()
    }

    fn with_token(action: &str) -> String {
        format!("{SESSIONS}?_action={action}")
    }

    // ------------------------------------------------------------------------------------------------
    // Logins
    // ------------------------------------------------------------------------------------------------

    async fn full_mfa_login(mode: &str) {
        let c = cluster(mode);
        let first = send(&c.a, post(MFA, "")).await;
        assert_eq!(first.status, 200, "{first:?}");
        assert_eq!(first.json["stage"], "DataStore1");
        assert_eq!(first.json["header"], "Sign in");
        assert_eq!(first.json["template"], "");
        assert_eq!(first.json["callbacks"][0]["type"], "NameCallback");
        assert_eq!(first.json["callbacks"][1]["input"][0]["name"], "IDToken2");
        assert_eq!(first.cookies(), ["amlbcookie=01; Path=/"]);
        let claims = auth_id_claims(&first);
        assert_eq!(claims["authIndexType"], "service");
        assert_eq!(claims["authIndexValue"], "mfa");
        assert_eq!(claims["realm"], "/");
        assert!(claims["exp"].as_u64().unwrap() > c.a.clock.unix_now().as_secs());
        let auth_id = first.json["authId"].as_str().unwrap();
        assert_eq!(token::auth_id_node_hint(auth_id).as_deref(), Some("01"));

        let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(second.status, 200, "{second:?}");
        assert_eq!(second.json["stage"], "TOTP1");
        assert_eq!(second.json["callbacks"][0]["output"][0]["value"], "Enter verification code");
        assert_ne!(second.json["authId"], first.json["authId"]);
        assert_ne!(auth_id_claims(&second)["otk"], claims["otk"], "each step gets a fresh otk");
        assert_eq!(auth_id_claims(&second)["sessionId"], claims["sessionId"]);
        assert!(second.cookies().is_empty(), "amlbcookie is set when a login starts");

        let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        let token = done.json["tokenId"].as_str().unwrap();
        assert_eq!(done.json["successUrl"], "/am/console");
        assert_eq!(done.json["realm"], "/");
        assert_eq!(done.cookies(), [format!("iPlanetDirectoryPro={token}; Path=/; HttpOnly")]);
        assert_eq!(token::node_hint(token).as_deref(), Some("01"));
        assert_eq!(c.store.len(), 1);
        assert_eq!(c.a.live_sessions(), 1);
        assert_eq!(c.a.pending_logins(), 0);
        let stats = c.a.stats();
        assert_eq!(stats.logins_started.load(Ordering::Relaxed), 1);
        assert_eq!(stats.logins_succeeded.load(Ordering::Relaxed), 1);
        assert_eq!(stats.logins_failed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn full_mfa_login_in_memory_mode_gives_a_token_naming_the_node() {
        full_mfa_login("memory").await;
    }

    #[tokio::test(start_paused = true)]
    async fn full_mfa_login_in_client_mode_gives_a_token_naming_the_node() {
        full_mfa_login("client").await;
    }

    #[tokio::test(start_paused = true)]
    async fn client_mode_keeps_the_journey_sealed_inside_the_auth_id() {
        let c = cluster("client");
        let first = send(&c.a, post(MFA, "")).await;
        let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        let claims = auth_id_claims(&second);
        assert!(claims["state"].is_string());
        assert!(!second.json["authId"].as_str().unwrap().contains("demo"));
        assert!(
            !String::from_utf8_lossy(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(second.json["authId"].as_str().unwrap().split('.').nth(1).unwrap())
                    .unwrap()
            )
            .contains("demo"),
            "the username is sealed, not merely signed"
        );
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_page_login_answers_the_data_store_step_from_headers() {
        let c = cluster("memory");
        let req = |user: &str, password: &str, uri: &str| {
            Request::post(uri)
                .header("X-OpenAM-Username", user)
                .header("X-OpenAM-Password", password)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let done = send(&c.a, req("demo", PASSWORD, AUTH)).await;
        assert_eq!(done.status, 200, "{done:?}");
        assert!(token::node_hint(done.json["tokenId"].as_str().unwrap()).is_some());
        assert!(done.cookies().contains(&"amlbcookie=01; Path=/"));
        assert!(done.cookies().iter().any(|c| c.starts_with("iPlanetDirectoryPro=")));

        // More modules remain: their callbacks, with a new authId.
        let next = send(&c.a, req("demo", PASSWORD, MFA)).await;
        assert_eq!(next.status, 200, "{next:?}");
        assert_eq!(next.json["stage"], "TOTP1");
        let done = send(&c.a, post(MFA, fill(&next, &[&code(&c.a)]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        assert_eq!(c.store.len(), 2);

        let wrong = send(&c.a, req("demo", "nope", AUTH)).await;
        wrong.assert_error(401, "Authentication Failed");
        assert_eq!(c.store.len(), 2, "a failed login leaves no session");
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_page_headers_accept_rfc2047_encoded_values() {
        let c = cluster("memory");
        let encoded = format!("=?UTF-8?B?{}?=", STANDARD.encode(PASSWORD));
        let req = Request::post(AUTH)
            .header("X-OpenAM-Username", "=?UTF-8?B?ZGVtbw==?=")
            .header("X-OpenAM-Password", encoded)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c.a, req).await.status, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_memory_login_continued_on_another_node_has_timed_out() {
        let c = cluster("memory");
        let first = send(&c.a, post(MFA, "")).await;
        let elsewhere = send(&c.b, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        elsewhere.assert_timed_out();
        assert_eq!(c.b.stats().timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(c.store.len(), 0);
        // The node that holds it still can.
        let back = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(back.status, 200, "{back:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_login_continues_on_any_node_of_the_cluster() {
        let c = cluster("client");
        let first = send(&c.a, post(MFA, "")).await;
        let second = send(&c.b, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(second.status, 200, "{second:?}");
        assert_eq!(auth_id_claims(&second)["sessionId"], auth_id_claims(&first)["sessionId"]);
        let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        // The session token names the node that created the session.
        assert_eq!(token::node_hint(done.json["tokenId"].as_str().unwrap()).as_deref(), Some("01"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_password_fails_and_ends_the_chain() {
        for mode in ["memory", "client"] {
            let c = cluster(mode);
            let first = send(&c.a, post(AUTH, "")).await;
            let wrong = send(&c.a, post(AUTH, fill(&first, &["demo", "wrong"]))).await;
            wrong.assert_error(401, "Authentication Failed");
            assert_eq!(wrong.json["reason"], "Unauthorized");
            // AM ends a chain on failure: the same step cannot be retried.
            let retry = send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
            retry.assert_timed_out();
            assert_eq!(c.store.len(), 0, "{mode}");
            assert_eq!(c.a.pending_logins(), 0, "{mode}");
            assert_eq!(c.a.stats().logins_failed.load(Ordering::Relaxed), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_user_fails_like_a_wrong_password() {
        let c = cluster("memory");
        let first = send(&c.a, post(AUTH, "")).await;
        let wrong = send(&c.a, post(AUTH, fill(&first, &["nobody", PASSWORD]))).await;
        wrong.assert_error(401, "Authentication Failed");
        let first = send(&c.a, post(AUTH, "")).await;
        let empty = send(&c.a, post(AUTH, fill(&first, &[]))).await;
        empty.assert_error(401, "Authentication Failed");
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_totp_code_fails() {
        for mode in ["memory", "client"] {
            let c = cluster(mode);
            let first = send(&c.a, post(MFA, "")).await;
            let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
            let wrong = send(&c.a, post(MFA, fill(&second, &[&wrong_code(&c.a)]))).await;
            wrong.assert_error(401, "Authentication Failed");
            let retry = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
            retry.assert_timed_out();
            assert_eq!(c.store.len(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_without_a_totp_secret_fails_the_totp_step() {
        let c = cluster("memory");
        let first = send(&c.a, post(MFA, "")).await;
        let second = send(&c.a, post(MFA, fill(&first, &["nototp", PASSWORD]))).await;
        assert_eq!(second.status, 200);
        let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        done.assert_error(401, "Authentication Failed");
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_totp_code_is_accepted_one_step_late() {
        let c = cluster("memory");
        let first = send(&c.a, post(MFA, "")).await;
        let second = send(&c.a, post(MFA, fill(&first, &["demo", PASSWORD]))).await;
        let typed = code(&c.a);
        advance(Duration::from_secs(30)).await;
        let done = send(&c.a, post(MFA, fill(&second, &[&typed]))).await;
        assert_eq!(done.status, 200, "{done:?}");
    }

    async fn replay_is_refused(mode: &str) {
        let c = cluster(mode);
        let first = send(&c.a, post(MFA, "")).await;
        let answer = fill(&first, &["demo", PASSWORD]);
        let second = send(&c.a, post(MFA, answer.clone())).await;
        assert_eq!(second.status, 200);
        // The same step again, on either node: its otk is stale.
        send(&c.a, post(MFA, answer.clone())).await.assert_timed_out();
        send(&c.b, post(MFA, answer)).await.assert_timed_out();
        // The current step still works: replaying an old step does not break the login.
        let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        // And the final step cannot be replayed into a second session.
        send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await.assert_timed_out();
        assert_eq!(c.store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_auth_id_has_timed_out_in_memory_mode() {
        replay_is_refused("memory").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayed_auth_id_has_timed_out_in_client_mode() {
        replay_is_refused("client").await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_auth_session_has_timed_out() {
        for mode in ["memory", "client"] {
            let c = cluster(mode);
            let first = send(&c.a, post(AUTH, "")).await;
            advance(Duration::from_secs(181)).await;
            send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await.assert_timed_out();
            assert_eq!(c.store.len(), 0);
        }
        // Just before the timeout it still works.
        let c = cluster("memory");
        let first = send(&c.a, post(AUTH, "")).await;
        advance(Duration::from_secs(179)).await;
        let done = send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(done.status, 200, "{done:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_drops_expired_logins_in_progress() {
        let c = cluster("memory");
        send(&c.a, post(AUTH, "")).await;
        assert_eq!(c.a.pending_logins(), 1);
        advance(Duration::from_secs(180)).await;
        c.a.sweep();
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tampered_auth_id_is_refused_as_badly_signed() {
        let c = cluster("memory");
        let first = send(&c.a, post(AUTH, "")).await;
        let mut claims = auth_id_claims(&first);
        claims["exp"] = json!(u64::MAX);
        let auth_id = first.json["authId"].as_str().unwrap();
        let parts: Vec<&str> = auth_id.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        let mut body = first.json.clone();
        body["authId"] = json!(forged);
        let resp = send(&c.a, post(AUTH, body.to_string())).await;
        resp.assert_error(400, "AuthId JWT Signature not valid");

        // Signed with another cluster's secret.
        let other = AuthNode::new(
            BackendId::new("01").unwrap(),
            config("memory", "enabled = false"),
            Keys::derive(b"another cluster's secret, just as long as ours"),
            Arc::new(MemoryStore::new()),
            Arc::new(SpentOtks::new()),
        );
        let theirs = send(&other, post(AUTH, "")).await;
        let resp = send(&c.a, post(AUTH, fill(&theirs, &["demo", PASSWORD]))).await;
        resp.assert_error(400, "AuthId JWT Signature not valid");
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_garbage_auth_id_cannot_be_parsed() {
        let c = cluster("memory");
        for auth_id in ["garbage", "a.b.c", "....", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.!!.x"] {
            let body = json!({"authId": auth_id, "callbacks": []}).to_string();
            send(&c.a, post(AUTH, body)).await.assert_error(400, "Failed to parse JWT");
        }
        send(&c.a, post(AUTH, r#"{"authId": 7}"#)).await.assert_error(400, "Failed to parse JWT");
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_json_body_is_a_bad_request() {
        let c = cluster("memory");
        for body in ["{", "not json", "[1,2]", "\"authId\""] {
            send(&c.a, post(AUTH, body)).await.assert_error(400, "Invalid JSON");
        }
        assert_eq!(c.a.stats().logins_started.load(Ordering::Relaxed), 0);
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_index_type_is_a_bad_request() {
        let c = cluster("memory");
        let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=level&authIndexValue=1"), "")).await;
        resp.assert_error(400, "Unknown Authentication Index Type");
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_chain_or_module_is_a_bad_request_naming_it() {
        let c = cluster("memory");
        let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=service&authIndexValue=nope"), "")).await;
        resp.assert_error(400, "No authentication chain named 'nope'");
        let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=module&authIndexValue=LDAP"), "")).await;
        resp.assert_error(400, "No authentication module named 'LDAP'");
        let resp = send(&c.a, post(&format!("{AUTH}?authIndexType=service"), "")).await;
        resp.assert_error(400, "authIndexValue is required");
        assert_eq!(c.a.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_module_runs_as_a_one_module_chain() {
        let c = cluster("memory");
        let uri = format!("{AUTH}?authIndexType=module&authIndexValue=DataStore");
        let first = send(&c.a, post(&uri, "")).await;
        assert_eq!(auth_id_claims(&first)["authIndexType"], "module");
        let done = send(&c.a, post(&uri, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        // TOTP alone has nobody to check a code for: it can only fail.
        let uri = format!("{AUTH}?authIndexType=module&authIndexValue=TOTP");
        let first = send(&c.a, post(&uri, "")).await;
        send(&c.a, post(&uri, fill(&first, &[&code(&c.a)]))).await.assert_error(401, "Authentication Failed");
    }

    #[tokio::test(start_paused = true)]
    async fn js_sdk_continuations_with_extra_fields_are_accepted() {
        let c = cluster("memory");
        let first = send(&c.a, post(MFA, "")).await;
        let mut body: Value = serde_json::from_str(&fill(&first, &["demo", PASSWORD])).unwrap();
        body["status"] = json!(200);
        body["ok"] = json!(true);
        body["infoText"] = json!("");
        body["callbacks"][0].as_object_mut().unwrap().remove("output");
        let second = send(&c.a, post(MFA, body.to_string())).await;
        assert_eq!(second.status, 200, "{second:?}");
        let done = send(&c.a, post(MFA, fill(&second, &[&code(&c.a)]))).await;
        assert_eq!(done.status, 200, "{done:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn legacy_and_sub_realm_paths_authenticate() {
        let c = cluster("memory");
        let legacy = "/am/json/authenticate";
        let first = send(&c.a, post(legacy, "")).await;
        let done = send(&c.a, post(legacy, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(done.json["realm"], "/");

        let sub = "/am/json/realms/root/realms/alpha/realms/beta/authenticate";
        let first = send(&c.a, post(sub, "")).await;
        assert_eq!(auth_id_claims(&first)["realm"], "/alpha/beta");
        // A login belongs to its realm.
        send(&c.a, post(AUTH, fill(&first, &["demo", PASSWORD]))).await.assert_timed_out();
        let first = send(&c.a, post(sub, "")).await;
        let done = send(&c.a, post(sub, fill(&first, &["demo", PASSWORD]))).await;
        assert_eq!(done.status, 200, "{done:?}");
        assert_eq!(done.json["realm"], "/alpha/beta");
        let token = done.json["tokenId"].as_str().unwrap();
        let info = send(&c.a, post(&format!("{}&tokenId={token}", with_token("getSessionInfo")), "")).await;
        assert_eq!(info.json["realm"], "/alpha/beta");
        assert_eq!(
            info.json["universalId"],
            "id=demo,ou=user,o=beta,o=alpha,ou=services,dc=openam,dc=forgerock,dc=org"
        );
    }

    // ------------------------------------------------------------------------------------------------
    // Quotas
    // ------------------------------------------------------------------------------------------------

    #[tokio::test(start_paused = true)]
    async fn quota_deny_access_refuses_the_login_and_leaves_no_extra_session() {
        let c = cluster_with("memory", "enabled = true\n  limit = 1\n  exhaustion_action = \"DENY_ACCESS\"");
        login(&c.a).await;
        let first = send(&c.b, post(AUTH, "")).await;
        let refused = send(&c.b, post(AUTH, fill(&first, &["demo", PASSWORD]))).await;
        refused.assert_error(401, "Maximum Sessions Limit Reached.");
        assert_eq!(c.store.len(), 1);
        assert_eq!(c.b.stats().quota_refusals.load(Ordering::Relaxed), 1);
        assert_eq!(c.b.stats().logins_failed.load(Ordering::Relaxed), 1);
        assert_eq!(c.b.pending_logins(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn quota_destroy_actions_end_older_sessions_and_count_them() {
        let c = cluster_with(
            "memory",
            "enabled = true\n  limit = 2\n  exhaustion_action = \"DESTROY_OLDEST_SESSION\"",
        );
        let oldest = login(&c.a).await;
        login(&c.a).await;
        login(&c.a).await;
        assert_eq!(c.store.len(), 2);
        assert_eq!(c.a.stats().quota_evictions.load(Ordering::Relaxed), 1);
        let validate = send(&c.a, post(&format!("{}&tokenId={oldest}", with_token("validate")), "")).await;
        assert_eq!(validate.json, json!({"valid": false}));
    }

    // ------------------------------------------------------------------------------------------------
    // Sessions
    // ------------------------------------------------------------------------------------------------

    #[tokio::test(start_paused = true)]
    async fn validate_finds_the_token_in_query_header_cookie_and_body() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        let by_query = post(&format!("{}&tokenId={token}", with_token("validate")), "");
        let by_header = Request::post(with_token("validate"))
            .header("iPlanetDirectoryPro", &token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let by_cookie = Request::post(with_token("validate"))
            .header(COOKIE, format!("amlbcookie=01; iPlanetDirectoryPro={token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let by_body = post(&with_token("validate"), json!({"tokenId": token}).to_string());
        for req in [by_query, by_header, by_cookie, by_body] {
            let resp = send(&c.b, req).await;
            assert_eq!(resp.status, 200);
            assert_eq!(resp.json["valid"], true, "{resp:?}");
            assert_eq!(resp.json["uid"], "demo");
            assert_eq!(resp.json["realm"], "/");
            assert!(resp.json["sessionUid"].as_str().unwrap().starts_with("shandle:"));
        }
        // The query wins over the header.
        let req = Request::post(format!("{}&tokenId=dead", with_token("validate")))
            .header("iPlanetDirectoryPro", &token)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c.a, req).await.json, json!({"valid": false}));
    }

    #[tokio::test(start_paused = true)]
    async fn validate_of_a_dead_or_missing_token_is_not_an_error() {
        let c = cluster("memory");
        for uri in
            [format!("{}&tokenId=AQICnothing*AAJTSQACMDE.*", with_token("validate")), with_token("validate")]
        {
            let resp = send(&c.a, post(&uri, "")).await;
            assert_eq!(resp.status, 200);
            assert_eq!(resp.json, json!({"valid": false}));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn session_info_reports_iso_times_and_only_the_reset_variant_touches() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        let created = c.a.clock.unix_now().as_secs();
        advance(Duration::from_secs(600)).await;
        let info = send(&c.a, post(&format!("{}&tokenId={token}", with_token("getSessionInfo")), "")).await;
        assert_eq!(info.status, 200, "{info:?}");
        assert_eq!(info.json["username"], "demo");
        assert_eq!(info.json["universalId"], "id=demo,ou=user,dc=openam,dc=forgerock,dc=org");
        assert_eq!(info.json["latestAccessTime"], iso8601(created));
        assert_eq!(info.json["maxIdleExpirationTime"], iso8601(created + 1800));
        assert_eq!(info.json["maxSessionExpirationTime"], iso8601(created + 7200));
        assert!(info.json["properties"]["AMCtxId"].as_str().unwrap().starts_with("shandle:"));

        let uri = format!("{}&tokenId={token}", with_token("getSessionInfoAndResetIdleTime"));
        let reset = send(&c.a, post(&uri, "")).await;
        assert_eq!(reset.json["latestAccessTime"], iso8601(created + 600));
        assert_eq!(reset.json["maxIdleExpirationTime"], iso8601(created + 2400));

        let dead = send(&c.a, post(&with_token("getSessionInfo"), "")).await;
        dead.assert_error(401, "Invalid");
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_resets_the_idle_timer_and_reports_minutes() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        advance(Duration::from_secs(20 * 60)).await;
        let uri = format!("{}&tokenId={token}", with_token("refresh"));
        let resp = send(&c.a, post(&uri, "")).await;
        assert_eq!(
            resp.json,
            json!({"uid": "demo", "realm": "/", "idletime": 0, "maxidletime": 30,
                   "maxsessiontime": 120, "maxtime": 100 * 60})
        );
        advance(Duration::from_secs(20 * 60)).await; // 40 min in all, 20 since the refresh
        let validate = send(&c.a, post(&format!("{}&tokenId={token}", with_token("validate")), "")).await;
        assert_eq!(validate.json["valid"], true);
        advance(Duration::from_secs(10 * 60)).await;
        send(&c.a, post(&uri, "")).await.assert_error(401, "Invalid");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_after_max_idle_time_without_use() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        let validate = format!("{}&tokenId={token}", with_token("validate"));
        advance(Duration::from_secs(29 * 60)).await;
        assert_eq!(send(&c.a, post(&validate, "")).await.json["valid"], true);
        advance(Duration::from_secs(60)).await;
        assert_eq!(send(&c.a, post(&validate, "")).await.json["valid"], false);
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_at_max_session_time_however_active() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        let refresh = format!("{}&tokenId={token}", with_token("refresh"));
        for _ in 0..11 {
            advance(Duration::from_secs(10 * 60)).await;
            assert_eq!(send(&c.a, post(&refresh, "")).await.status, 200);
        }
        advance(Duration::from_secs(10 * 60)).await;
        let validate = format!("{}&tokenId={token}", with_token("validate"));
        assert_eq!(send(&c.a, post(&validate, "")).await.json, json!({"valid": false}));
    }

    #[tokio::test(start_paused = true)]
    async fn logout_twice_reports_the_token_as_expired() {
        let c = cluster("memory");
        let token = login(&c.a).await;
        // The JS SDK: trailing slash, token in a cookie.
        let logout = || {
            Request::post("/am/json/realms/root/sessions/?_action=logout")
                .header(COOKIE, format!("iPlanetDirectoryPro={token}"))
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let first = send(&c.b, logout()).await;
        assert_eq!(first.json, json!({"result": "Successfully logged out"}));
        let second = send(&c.b, logout()).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.json, json!({"result": "Token has expired"}));
        let missing = send(&c.a, post("/am/json/sessions?_action=logout", "")).await;
        assert_eq!(missing.json, json!({"result": "Token has expired"}));
        assert_eq!(c.store.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_or_missing_session_actions_are_refused() {
        let c = cluster("memory");
        let resp = send(&c.a, post(&with_token("frobnicate"), "")).await;
        resp.assert_error(501, "Action 'frobnicate' not implemented for this resource");
        send(&c.a, post(SESSIONS, "")).await.assert_error(400, "The _action");
    }

    // ------------------------------------------------------------------------------------------------
    // HTTP surface
    // ------------------------------------------------------------------------------------------------

    #[tokio::test(start_paused = true)]
    async fn health_endpoints_follow_readiness() {
        let c = cluster("memory");
        let alive = send(&c.a, get("/am/isAlive.jsp")).await;
        assert_eq!(alive.status, 200);
        assert_eq!(alive.text, "Server is ALIVE");
        assert_eq!(alive.headers[CONTENT_TYPE], "text/plain");
        assert_eq!(send(&c.a, get("/am/json/health/live")).await.status, 200);
        let ready = send(&c.a, get("/am/json/health/ready")).await;
        assert_eq!((ready.status, ready.text.as_str()), (StatusCode::OK, ""));
        c.a.set_ready(false);
        assert_eq!(send(&c.a, get("/am/json/health/ready")).await.status, 503);
        assert_eq!(send(&c.a, get("/am/json/health/live")).await.status, 200);
        c.a.set_ready(true);
        assert_eq!(send(&c.a, get("/am/json/health/ready")).await.status, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_paths_and_methods_get_am_json_errors() {
        let c = cluster("memory");
        for path in [
            "/",
            "/am",
            "/amx/json/authenticate",
            "/am/json/realms/other/authenticate",
            "/am/json/realms/root/realms/authenticate",
            "/am/json/realms/root/realms/../authenticate",
            "/am/json/users",
            "/other/isAlive.jsp",
        ] {
            send(&c.a, post(path, "")).await.assert_error(404, "Resource");
        }
        let resp = send(&c.a, get(AUTH)).await;
        resp.assert_error(405, "Method not allowed");
        assert_eq!(resp.headers[ALLOW], "POST");
        send(&c.a, get(SESSIONS)).await.assert_error(405, "Method");
        send(&c.a, post("/am/json/health/ready", "")).await.assert_error(405, "Method");
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_over_64_kib_are_refused() {
        let c = cluster("memory");
        let big = format!(r#"{{"authId":"{}"}}"#, "a".repeat(MAX_BODY));
        send(&c.a, post(AUTH, big)).await.assert_error(413, "Request body larger");
        send(&c.a, post(&with_token("validate"), "x".repeat(MAX_BODY + 1)))
            .await
            .assert_error(413, "Request body larger");
    }

    #[tokio::test(start_paused = true)]
    async fn the_handle_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let c = cluster("memory");
        let fut = c.a.handle(get("/am/isAlive.jsp"));
        assert_send(&fut);
        fut.await;
    }

    /// Compiles only if a hyper server can hand its `Incoming` bodies to the node from spawned tasks.
    #[allow(dead_code)]
    fn handle_takes_hyper_incoming_in_a_send_future(
        node: &AuthNode,
        req: Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send + '_ {
        node.handle(req)
    }

    #[test]
    fn universal_ids_follow_am_realm_dns() {
        assert_eq!(universal_id("demo", "/"), "id=demo,ou=user,dc=openam,dc=forgerock,dc=org");
        assert_eq!(
            universal_id("demo", "/a"),
            "id=demo,ou=user,o=a,ou=services,dc=openam,dc=forgerock,dc=org"
        );
    }
}
