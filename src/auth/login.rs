//! The login step: start a journey, answer its current step, finish it with a session.
//!
//! Each call takes the time (`now`) and returns a [`Step`] or an [`AuthError`], with no HTTP in sight:
//! [`crate::auth::http`] reads the request and writes the answer. Like AM, the node mints the auth session
//! ID and the session token with itself as `S1`, so the proxy can route every later request of the login
//! and of the session back here. Sessions are created through the one atomic [`SessionStore::create`],
//! which enforces the quota without AM's check-then-write race (OPENAM-10332).
//!
//! Time: expiry uses [`tokio::time::Instant`]; wall-clock values (`exp`, the TOTP step) come from the
//! node's [`Clock`], which follows tokio time, so tests with paused time see one consistent clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ring::rand::SystemRandom;
use serde_json::Value;
use tokio::time::Instant;

use crate::am::time::{Clock, MAX_LIFETIME, later};
use crate::am::token::{self, Keys};
use crate::auth::client_session;
use crate::auth::error::AuthError;
use crate::auth::journey::{AuthIdClaims, ClientState, Journey, step_inputs};
use crate::auth::lockout::{Lockout, LoginGuard, MemoryGuard};
use crate::auth::modules::Modules;
use crate::auth::pending::{JourneyStore, MAX_PENDING_JOURNEYS, PendingJourneys, Spend, TooManyJourneys};
use crate::auth::quota::Quota;
use crate::auth::session::{Session, SessionStore, StoreError};
use crate::auth::totp;
use crate::config::{AuthConfig, AuthSessionMode, BackendId, ModuleKind, SessionLocation};

/// Random bytes in an `otk`: 160 bits, above AM's 130-bit nonce.
const OTK_BYTES: usize = 20;

/// Random bytes after `shandle:` in a session handle.
const HANDLE_BYTES: usize = 24;

/// The target every log line of the auth node uses, so operators can filter logins with
/// `RUST_LOG=tether::auth=info` whichever file logged them.
pub(crate) const LOG: &str = "tether::auth";

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

/// What a login step led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The client must answer the callbacks of `module`, posting them back with `auth_id`.
    Callbacks {
        /// The signed `authId` of the step (AM's `AuthIdHelper` JWT).
        auth_id: String,
        /// The module whose callbacks the client was sent.
        module: ModuleKind,
    },
    /// The chain passed and a session exists.
    Success {
        /// The session token (`tokenId`, the `iPlanetDirectoryPro` cookie value).
        token: String,
        /// The realm the user authenticated in.
        realm: String,
    },
}

/// A zero-page login's credentials (AM's `X-OpenAM-Username` / `X-OpenAM-Password` headers), already
/// decoded; `None` where a header is missing or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The username.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
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

/// The logins of one node: where journeys are kept between steps, the modules that check them, and the
/// store that receives the sessions.
///
/// Journeys wait in the node's own `pending` table (`auth_sessions = "memory"`), inside the `authId`
/// (`"client"`, with each answered `otk` spent in `journeys`), or in `journeys` (`"store"`), which the
/// nodes sharing a session store share too.
pub struct Login {
    id: BackendId,
    auth: Arc<AuthConfig>,
    keys: Keys,
    store: Arc<dyn SessionStore>,
    journeys: Arc<dyn JourneyStore>,
    pending: PendingJourneys,
    modules: Modules,
    lockout: Lockout,
    rng: SystemRandom,
    clock: Clock,
    stats: AuthStats,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Login {
    /// The logins of node `id`, reading wall-clock time from `clock`. See
    /// [`AuthNode::new`](crate::auth::AuthNode::new) for what `keys`, `store` and `journeys` decide.
    pub fn new(
        id: BackendId,
        auth: Arc<AuthConfig>,
        keys: Keys,
        store: Arc<dyn SessionStore>,
        journeys: Arc<dyn JourneyStore>,
        clock: Clock,
    ) -> Self {
        Login {
            lockout: Lockout::new(id.clone(), &auth, Arc::new(MemoryGuard::new())),
            id,
            modules: Modules::new(Arc::clone(&auth)),
            auth,
            keys,
            store,
            journeys,
            pending: PendingJourneys::new(MAX_PENDING_JOURNEYS),
            rng: SystemRandom::new(),
            clock,
            stats: AuthStats::default(),
        }
    }

    /// The node's counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// The keys derived from the shared secret (client-side sessions are opened with them).
    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Shares `guard` (failure counts, locks, spent codes) with the other nodes that share sessions;
    /// until then the node has its own.
    pub fn set_guard(&mut self, guard: Arc<dyn LoginGuard>) {
        self.lockout = Lockout::new(self.id.clone(), &self.auth, guard);
    }

    /// The node's lockout policy and guard.
    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// Logins held in memory between steps: this node's own (`auth_sessions = "memory"`), or those of
    /// the in-process journey store it shares (`"store"`; 0 when that store is Redis).
    pub fn pending(&self) -> usize {
        match self.auth.auth_sessions {
            AuthSessionMode::Store => self.journeys.count(),
            _ => self.pending.count(),
        }
    }

    /// Drops expired logins in progress and expired spent `otk`s held in this process; returns how many
    /// of each. A journey store that cannot be reached now is swept next time (its keys expire anyway).
    pub async fn sweep(&self, now: Instant) -> (usize, usize) {
        let (journeys, otks) = self.journeys.sweep(now).await.unwrap_or((0, 0));
        (self.pending.sweep(now) + journeys, otks + self.lockout.guard().sweep(now))
    }

    /// Resolves the request's `authIndexType`/`authIndexValue` (absent type: the default chain) into a
    /// fresh journey in `realm`.
    ///
    /// # Errors
    /// [`AuthError::Index`] when the index names nothing this node runs.
    pub fn journey(
        &self,
        realm: &str,
        index_type: Option<&str>,
        index_value: Option<&str>,
    ) -> Result<Journey, AuthError> {
        Ok(Journey::start(&self.auth, index_type, index_value, realm)?)
    }

    /// Starts `journey`: its first step's callbacks or, with `credentials` and a chain that starts with
    /// `DataStore`, a zero-page login whose credentials answer that first step (AM applies the headers to
    /// a first page of name/password callbacks only; other chains simply get their first step).
    ///
    /// # Errors
    /// Those of [`answer`](Self::answer) but the `authId` ones.
    pub async fn start(
        &self,
        journey: Journey,
        credentials: Option<Credentials>,
        now: Instant,
    ) -> Result<Step, AuthError> {
        bump(&self.stats.logins_started);
        let zero_page = credentials.filter(|_| journey.current() == Some(ModuleKind::DataStore));
        tracing::debug!(
            target: LOG, node = %self.id, chain = %journey.index_value, realm = %journey.realm,
            zero_page = zero_page.is_some(), "login started"
        );
        match zero_page {
            Some(c) => self.run(journey, vec![c.username, c.password], None, now).await,
            None => self.issue(journey, None, now).await,
        }
    }

    /// Answers the current step of the login `auth_id` with the client's `callbacks`, in `realm`.
    ///
    /// # Errors
    /// [`AuthError::MalformedAuthId`] and [`AuthError::BadAuthIdSignature`] for an `authId` that is not
    /// this cluster's; [`AuthError::TimedOut`] for a login that cannot continue here;
    /// [`AuthError::Failed`] when the module refuses; those of [`finish`](Self::finish); and
    /// [`AuthError::Overloaded`] / [`AuthError::Internal`]; [`AuthError::StoreUnavailable`] when the
    /// journey store cannot be reached (`auth_sessions = "store"`, or `"client"` on Redis).
    ///
    /// With `auth_sessions = "store"` a step is *taken* out of the store before its module runs, so
    /// nothing can answer it twice; if the store then fails to keep the next step (or the session
    /// cannot be created), the answer is 503 and that login is over: its `authId`s answer 110, and the
    /// client starts again. It never continues from a half-written state.
    pub async fn answer(
        &self,
        auth_id: &str,
        callbacks: &[Value],
        realm: &str,
        now: Instant,
    ) -> Result<Step, AuthError> {
        let claims: AuthIdClaims = token::verify_hs256(self.keys.signing(), auth_id)?;
        if self.clock.unix_at(now) >= Duration::from_secs(claims.exp) {
            return Err(self.timed_out("the authId has expired"));
        }
        let (journey, deadline) = match self.auth.auth_sessions {
            AuthSessionMode::Memory => match self.pending.take(&claims.session_id, &claims.otk, now) {
                Some(found) => found,
                None => return Err(self.timed_out("no login in progress here for this authId step")),
            },
            AuthSessionMode::Store => {
                let taken = self.journeys.take(&claims.session_id, &claims.otk, now).await;
                match taken.map_err(|e| self.store_failed(e))? {
                    Some(found) => found,
                    None => {
                        return Err(self.timed_out("no login in progress in the store for this authId step"));
                    }
                }
            }
            AuthSessionMode::Client => {
                let Some(journey) = self.open_state(&claims) else {
                    return Err(self.timed_out("the authId carries no state sealed for this cluster"));
                };
                let deadline = self.clock.instant_at(Duration::from_secs(claims.exp), now);
                let spent = self.journeys.spend(&claims.otk, deadline, now).await;
                match spent.map_err(|e| self.store_failed(e))? {
                    Spend::Fresh => (journey, deadline),
                    Spend::Replayed => return Err(self.timed_out("this authId step was already answered")),
                    Spend::Full => return Err(self.overloaded("the replay cache of answered steps is full")),
                }
            }
        };
        // A login belongs to the realm it started in; answering it through another realm's path is not
        // the same login, just as AM would not find it there.
        if journey.realm != realm {
            return Err(self.timed_out("the authId belongs to another realm"));
        }
        let Some(module) = journey.current() else {
            return Err(self.timed_out("the login has no step left"));
        };
        let inputs = step_inputs(module, callbacks);
        let id = AuthSessionId { session_id: claims.session_id, deadline, exp: claims.exp };
        self.run(journey, inputs, Some(id), now).await
    }

    /// The journey inside a client-mode `authId`, if it opens with this cluster's key and belongs to it.
    fn open_state(&self, claims: &AuthIdClaims) -> Option<Journey> {
        let sealed = claims.state.as_deref()?;
        let plain = self.keys.open(sealed).ok()?;
        let state: ClientState = serde_json::from_slice(&plain).ok()?;
        (state.otk == claims.otk).then_some(state.journey)
    }

    /// Runs the current module with `inputs`; on success the next step or the session, on failure
    /// [`AuthError::Failed`]. A failed step is not put back anywhere: the chain ends, as AM's REQUIRED
    /// modules end it.
    async fn run(
        &self,
        mut journey: Journey,
        inputs: Vec<Option<String>>,
        id: Option<AuthSessionId>,
        now: Instant,
    ) -> Result<Step, AuthError> {
        let unix_secs = self.clock.unix_at(now).as_secs();
        let claimed = self.modules.claimed(&journey, &inputs);
        let Some(passed) = self.modules.check(&journey, inputs, unix_secs).await else {
            if let Some(user) = &claimed {
                self.lockout.failed(user, now).await?;
            }
            return Err(self.failed_as(&journey, claimed.as_deref()));
        };
        let code = passed
            .code_step
            .map(|step| (step, self.clock.instant_at(Duration::from_secs(totp::step_expiry(step)), now)));
        let user = passed.username.clone();
        let last = journey.advance(passed.username).is_none();
        // A locked account or a spent code refuses the step that passed: no next step, no session.
        self.lockout.passed(&user, code, last, now).await.inspect_err(|e| {
            if matches!(e, AuthError::Failed) {
                bump(&self.stats.logins_failed);
            }
        })?;
        if last { self.finish(journey, now).await } else { self.issue(journey, id, now).await }
    }

    /// The callbacks of the journey's current step with a fresh `authId`, storing the journey (memory
    /// and store mode) or sealing it into the `authId` (client mode). `id` is `None` for a new login.
    /// The `authId` is handed out only once the journey is kept under its `otk`.
    async fn issue(
        &self,
        journey: Journey,
        id: Option<AuthSessionId>,
        now: Instant,
    ) -> Result<Step, AuthError> {
        let Some(module) = journey.current() else {
            return Err(self.failed(&journey));
        };
        let id = id.unwrap_or_else(|| self.new_auth_session(now));
        let otk = token::random_b64(&self.rng, OTK_BYTES);
        let state = match self.auth.auth_sessions {
            AuthSessionMode::Memory | AuthSessionMode::Store => None,
            AuthSessionMode::Client => {
                let state = ClientState { otk: otk.clone(), journey: journey.clone() };
                let plain = serde_json::to_vec(&state)
                    .map_err(|e| internal(format!("cannot serialize the login state: {e}")))?;
                Some(self.keys.seal(&self.rng, &plain))
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
        let auth_id = token::sign_hs256(self.keys.signing(), &claims)
            .map_err(|e| internal(format!("cannot sign the authId: {e}")))?;
        match self.auth.auth_sessions {
            AuthSessionMode::Memory => {
                if self.pending.insert(&id.session_id, &otk, journey, id.deadline, now).is_err() {
                    return Err(self.overloaded("too many logins in progress on this node"));
                }
            }
            AuthSessionMode::Store => {
                let kept = self.journeys.keep(&id.session_id, &otk, journey, id.deadline, now).await;
                if let Err(TooManyJourneys) = kept.map_err(|e| self.store_failed(e))? {
                    return Err(self.overloaded("too many logins in progress in the journey store"));
                }
            }
            AuthSessionMode::Client => {}
        }
        Ok(Step::Callbacks { auth_id, module })
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

    /// The chain passed: create the session at `now` through the store's one atomic call, which also
    /// applies the quota.
    ///
    /// # Errors
    /// [`AuthError::QuotaExceeded`] when a `DENY_ACCESS` quota refuses; [`AuthError::Failed`] for a
    /// journey that names no configured user; [`AuthError::StoreUnavailable`] when the store cannot be
    /// reached (the login may be retried: no session was handed out).
    pub async fn finish(&self, journey: Journey, now: Instant) -> Result<Step, AuthError> {
        let Some(user) = journey.username.as_deref().and_then(|u| self.modules.user(u)) else {
            return Err(self.failed(&journey));
        };
        let token = token::mint_token(&self.rng, self.id.as_str());
        let handle = format!("shandle:{}", token::random_b64(&self.rng, HANDLE_BYTES));
        let session = Session::new(
            token.clone(),
            handle,
            user.username.clone(),
            journey.realm.clone(),
            now,
            self.auth.max_idle_time,
            self.auth.max_session_time,
        );
        if self.auth.session_location == SessionLocation::Client {
            // Nothing is stored: the token is the session (configuration refuses quotas with it).
            let token =
                client_session::issue(&self.keys, &self.rng, self.id.as_str(), &session, &self.clock)?;
            bump(&self.stats.logins_succeeded);
            tracing::info!(
                target: LOG, node = %self.id, user = %user.username, chain = %journey.index_value,
                session = %fingerprint(&token), "login succeeded (client-side session)"
            );
            return Ok(Step::Success { token, realm: journey.realm });
        }
        let quota = self.auth.quota.enabled.then(|| Quota {
            limit: user.session_quota.unwrap_or(self.auth.quota.limit),
            action: self.auth.quota.exhaustion_action,
        });
        let created = self.store.create(session, quota, now).await.inspect_err(|e| {
            bump(&self.stats.logins_failed);
            tracing::warn!(target: LOG, node = %self.id, user = %user.username, error = %e, "login failed: session store");
        })?;
        let Ok(created) = created else {
            bump(&self.stats.quota_refusals);
            bump(&self.stats.logins_failed);
            tracing::info!(
                target: LOG, node = %self.id, user = %user.username, "login refused: session quota reached"
            );
            return Err(AuthError::QuotaExceeded);
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
        Ok(Step::Success { token, realm: journey.realm })
    }

    fn failed(&self, journey: &Journey) -> AuthError {
        self.failed_as(journey, journey.username.as_deref())
    }

    /// A failed login, logged with the user it claimed (`-` when it named none): with the client
    /// address on the request's span, what brute-force detection needs.
    fn failed_as(&self, journey: &Journey, user: Option<&str>) -> AuthError {
        bump(&self.stats.logins_failed);
        tracing::info!(
            target: LOG, node = %self.id, user = user.unwrap_or("-"), chain = %journey.index_value,
            module = journey.current().map(ModuleKind::as_str), "authentication failed"
        );
        AuthError::Failed
    }

    /// AM's answer for a login this node cannot continue.
    fn timed_out(&self, why: &'static str) -> AuthError {
        bump(&self.stats.timed_out);
        tracing::debug!(target: LOG, node = %self.id, why, "login step refused: session has timed out");
        AuthError::TimedOut { why }
    }

    fn overloaded(&self, why: &'static str) -> AuthError {
        AuthError::Overloaded(why)
    }

    /// The journey store could not be reached: 503, logged once here.
    fn store_failed(&self, e: StoreError) -> AuthError {
        tracing::warn!(target: LOG, node = %self.id, error = %e, "login step failed: journey store");
        e.into()
    }
}

fn internal(why: String) -> AuthError {
    AuthError::Internal(why)
}

/// A short, non-reversible name of a token for logs.
fn fingerprint(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
