//! Journeys: the state of one login in progress, the callbacks each module sends, and how a passed step
//! advances the journey to its next module.
//!
//! An AM authentication chain runs its modules in order; each module sends a page of callbacks, the client
//! fills in their `input` values and posts them back with the `authId` it was given (AM's callback-based
//! REST authentication). Everything here is transport-free: [`crate::auth::login`] runs the steps and
//! [`crate::auth::http`] turns them into HTTP.
//!
//! Between steps the journey lives in one of two places (`[auth] auth_sessions`), see
//! [`crate::auth::pending`]: in the memory of the node that started it, or sealed into the `authId` as a
//! [`ClientState`], like AM's client-side tree auth sessions.
//!
//! In both modes every step carries a fresh random `otk` (AM's "one time key" claim) and a step can be
//! answered once: AM's auth session allowlisting stops a flow whose client echoes a stale value, and an
//! unanswerable old `authId` also means a captured step cannot be replayed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{AuthConfig, ModuleKind};

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

    /// Records that the current module passed for `username` and moves on: the module to answer next, or
    /// `None` when the whole chain has passed (every module is REQUIRED, so one failure ends the journey
    /// and never reaches here).
    pub fn advance(&mut self, username: String) -> Option<ModuleKind> {
        self.username = Some(username);
        self.next += 1;
        self.current()
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
    /// Client mode only: `ClientState` sealed with `Keys::seal`.
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

/// An `mfa` journey of `demo` past its first module, for the unit tests of this layer.
#[cfg(test)]
pub(crate) fn sample() -> Journey {
    Journey {
        index_type: IndexType::Service,
        index_value: "mfa".into(),
        modules: vec![ModuleKind::DataStore, ModuleKind::Totp],
        next: 1,
        username: Some("demo".into()),
        realm: "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey() -> Journey {
        sample()
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
    fn advancing_records_the_user_and_reaches_the_end_of_the_chain() {
        let mut j = journey();
        j.next = 0;
        j.username = None;
        assert_eq!(j.current(), Some(ModuleKind::DataStore));
        assert_eq!(j.advance("demo".into()), Some(ModuleKind::Totp));
        assert_eq!(j.username.as_deref(), Some("demo"));
        assert_eq!(j.advance("demo".into()), None);
        assert_eq!(j.current(), None);
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
}
