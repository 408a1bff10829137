//! The authentication modules a chain runs: `DataStore` (username and password against the configured
//! users' argon2 hashes) and `TOTP` (an RFC 6238 code for the user an earlier module identified).
//!
//! A module only answers "who passed, if anyone" for one step's inputs; what follows (the next step, the
//! session, the failure) is [`crate::auth::login`]'s business.

use std::collections::HashMap;
use std::num::NonZero;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::auth::journey::Journey;
use crate::auth::{totp, user};
use crate::config::{AuthConfig, ModuleKind, UserConfig};

/// A step a module passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// Who passed it.
    pub username: String,
    /// The TOTP time step of the code that passed it (a `TOTP` step), to spend it.
    pub code_step: Option<u64>,
}

/// The modules of one node, with the configured users they check against.
#[derive(Debug)]
pub struct Modules {
    auth: Arc<AuthConfig>,
    /// Index of `auth.users` by username.
    users: HashMap<String, usize>,
    /// Bounds concurrent argon2 verifications (see [`Modules::verify_password`]).
    hashing: Semaphore,
}

impl Modules {
    /// The modules over `auth.users`, verifying at most one password per CPU at a time.
    pub fn new(auth: Arc<AuthConfig>) -> Self {
        let users = auth.users.iter().enumerate().map(|(i, u)| (u.username.clone(), i)).collect();
        let cpus = std::thread::available_parallelism().map_or(1, NonZero::get);
        Self { auth, users, hashing: Semaphore::new(cpus) }
    }

    /// Runs the journey's current module on the step's `inputs` at unix time `unix_secs`: the user who
    /// passed, or `None` when the module refused (or the journey has no module left).
    pub async fn check(
        &self,
        journey: &Journey,
        inputs: Vec<Option<String>>,
        unix_secs: u64,
    ) -> Option<Passed> {
        match journey.current()? {
            ModuleKind::DataStore => {
                let username = self.data_store(journey, inputs).await?;
                Some(Passed { username, code_step: None })
            }
            ModuleKind::Totp => self.totp(journey, inputs, unix_secs),
        }
    }

    /// The configured user a step's `inputs` speak for, whether or not they pass: the one the journey
    /// has identified, else the name a `DataStore` step gives. What a failure is counted against.
    pub fn claimed(&self, journey: &Journey, inputs: &[Option<String>]) -> Option<String> {
        let name = match (&journey.username, journey.current()?) {
            (Some(known), _) => known.clone(),
            (None, ModuleKind::DataStore) => inputs.first().cloned().flatten()?,
            (None, ModuleKind::Totp) => return None,
        };
        self.user(&name).map(|u| u.username.clone())
    }

    /// The configured user called `username`.
    pub fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users.get(username).and_then(|&i| self.auth.users.get(i))
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
    fn totp(&self, journey: &Journey, inputs: Vec<Option<String>>, unix_secs: u64) -> Option<Passed> {
        let code = inputs.into_iter().next().flatten()?;
        let username = journey.username.as_ref()?;
        let key = self.user(username)?.totp_key.as_deref()?;
        let step = totp::matched_step(key, code.trim(), unix_secs)?;
        Some(Passed { username: username.clone(), code_step: Some(step) })
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
}
