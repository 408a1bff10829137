//! A client's AM login over HTTP ([`Journey`]), and the credentials of the fixtures' users.

use std::collections::BTreeMap;

use super::client;

/// An argon2id PHC hash with cheap parameters, so logins in debug tests stay fast.
pub fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"tether-test-salt")
        .unwrap()
        .to_string()
}

/// The demo TOTP secret (RFC 4648 base32) and its key.
pub const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

/// The current TOTP code for [`TOTP_SECRET`].
pub fn totp_now() -> String {
    let key = tether::config::totp_key(TOTP_SECRET).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    format!("{:06}", tether::totp(&key, now, 30, 6))
}

/// One client's view of an AM login: keeps cookies (or not) and walks the callbacks.
pub struct Journey {
    http: reqwest::Client,
    base: String,
    /// Cookies set so far (name → value); empty when `keep_cookies` is off.
    pub cookies: BTreeMap<String, String>,
    keep_cookies: bool,
}

impl Journey {
    /// A login against `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>, keep_cookies: bool) -> Self {
        Self { http: client(), base: base.into(), cookies: BTreeMap::new(), keep_cookies }
    }

    /// A login through a client of the test's choosing (HTTPS, HTTP/2 …).
    pub fn with_client(http: reqwest::Client, base: impl Into<String>, keep_cookies: bool) -> Self {
        Self { http, base: base.into(), cookies: BTreeMap::new(), keep_cookies }
    }

    /// Points the next requests elsewhere (to send a step straight to another node).
    pub fn retarget(&mut self, base: impl Into<String>) {
        self.base = base.into();
    }

    /// POSTs `body` (or an empty JSON body) to `path`, returning status and JSON.
    pub async fn post(&mut self, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        let mut req =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", jar.join("; "));
        }
        req = match body {
            Some(b) => req.body(b.to_string()),
            None => req.body(""),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        if self.keep_cookies {
            for c in resp.headers().get_all("set-cookie") {
                let c = c.to_str().unwrap();
                let pair = c.split(';').next().unwrap();
                if let Some((k, v)) = pair.split_once('=') {
                    self.cookies.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Starts a login of `chain`.
    pub async fn start(&mut self, chain: &str) -> (u16, serde_json::Value) {
        self.post(
            &format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}"),
            None,
        )
        .await
    }

    /// Fills the step's callbacks in order with `answers` and sends it to `chain`'s endpoint.
    pub async fn answer(
        &mut self,
        chain: &str,
        mut step: serde_json::Value,
        answers: &[&str],
    ) -> (u16, serde_json::Value) {
        let callbacks = step["callbacks"].as_array_mut().expect("callbacks");
        for (cb, answer) in callbacks.iter_mut().zip(answers) {
            cb["input"][0]["value"] = serde_json::Value::String(answer.to_string());
        }
        self.post(
            &format!("/am/json/realms/root/authenticate?authIndexType=service&authIndexValue={chain}"),
            Some(&step),
        )
        .await
    }

    /// A whole `mfa` login as `demo`/`secret`; returns the tokenId.
    pub async fn mfa_login(&mut self, password: &str) -> String {
        let (status, step) = self.start("mfa").await;
        assert_eq!(status, 200, "{step}");
        let (status, step) = self.answer("mfa", step, &["demo", password]).await;
        assert_eq!(status, 200, "{step}");
        let (status, done) = self.answer("mfa", step, &[&totp_now()]).await;
        assert_eq!(status, 200, "{done}");
        done["tokenId"].as_str().expect("tokenId").to_string()
    }

    /// `sessions?_action=validate` with the token in the query.
    pub async fn validate(&mut self, token: &str) -> serde_json::Value {
        let (status, v) =
            self.post(&format!("/am/json/realms/root/sessions?_action=validate&tokenId={token}"), None).await;
        assert_eq!(status, 200, "{v}");
        v
    }
}
