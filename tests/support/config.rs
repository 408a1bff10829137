//! Test configs: the named TOML files under `tests/fixtures/`, and a small editor for the keys a test
//! varies. A test says what differs from the fixture (`set("proxy.response_timeout_ms", 200)`), not the
//! whole file again.

use toml::{Table, Value};

/// One pool "am" in front of test backends; every path routes to it.
pub const ONE_POOL: &str = include_str!("../fixtures/one_pool.toml");
/// Embedded auth nodes behind one proxy, with user `demo` and chains `ldapService` and `mfa`.
pub const CLUSTER: &str = include_str!("../fixtures/cluster.toml");
/// Two pools and first-match-wins routes.
pub const TWO_POOLS: &str = include_str!("../fixtures/two_pools.toml");
/// Two pools, one of dead backends, for exact metric counts.
pub const METRICS: &str = include_str!("../fixtures/metrics.toml");
/// `[pool.health]` fast enough for scenario tests: 50 ms apart, rise and fall 2.
pub const FAST_CHECKS: &str = include_str!("../fixtures/fast_checks.toml");
/// `[pool.health]` leaving detection to requests: checks an hour apart, fall 1.
pub const PASSIVE_CHECKS: &str = include_str!("../fixtures/passive_checks.toml");
/// `[auth.quota]`, enabled.
pub const QUOTA: &str = include_str!("../fixtures/quota.toml");
/// A config `tether check` must refuse, with a problem on lines 3, 11 and 16.
pub const CHECK_ERRORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check_errors.toml");

/// A TOML document being edited. Paths are dotted keys; a number indexes an array (`pool.0.health`).
#[derive(Clone, Debug)]
pub struct Toml(Value);

impl Toml {
    /// Parses a fixture (or any TOML text).
    pub fn parse(text: &str) -> Self {
        Self(Value::Table(text.parse().unwrap_or_else(|e| panic!("fixture is not TOML: {e}"))))
    }

    /// Sets the value at `path`, creating tables on the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        let (parent, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
        match self.at(parent) {
            Value::Table(t) => {
                t.insert(last.to_string(), value.into());
            }
            Value::Array(a) => {
                let i: usize = last.parse().unwrap_or_else(|_| panic!("{path}: an array takes an index"));
                a[i] = value.into();
            }
            other => panic!("{path}: {parent} is {other}, not a table"),
        }
        self
    }

    /// Sets every key of the TOML `fragment` under the table at `path`.
    pub fn merge(mut self, path: &str, fragment: &str) -> Self {
        let Value::Table(into) = self.at(path) else { panic!("{path} is not a table") };
        let fragment: Table = fragment.parse().unwrap_or_else(|e| panic!("fragment is not TOML: {e}"));
        into.extend(fragment);
        self
    }

    /// Appends a table to the array of tables at `path` (`[[pool.backend]]`, `[[route]]`), creating it.
    pub fn push(mut self, path: &str, entries: &[(&str, Value)]) -> Self {
        let table: Table = entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let (parent, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
        let Value::Table(t) = self.at(parent) else { panic!("{parent} is not a table") };
        match t.entry(last).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(a) => a.push(Value::Table(table)),
            other => panic!("{path} is {other}, not an array of tables"),
        }
        self
    }

    /// The string at `path`, if there is one.
    pub fn get_str(&self, path: &str) -> Option<&str> {
        let mut v = &self.0;
        for key in path.split('.') {
            v = match v {
                Value::Table(t) => t.get(key)?,
                Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        v.as_str()
    }

    /// The value at `path` (the whole document for `""`), tables created where missing.
    fn at(&mut self, path: &str) -> &mut Value {
        let mut v = &mut self.0;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            v = match v {
                Value::Table(t) => t.entry(key).or_insert_with(|| Value::Table(Table::new())),
                Value::Array(a) => {
                    let i: usize = key.parse().unwrap_or_else(|_| panic!("{path}: an array takes an index"));
                    &mut a[i]
                }
                other => panic!("{path}: {key} is inside {other}, not a table"),
            };
        }
        v
    }
}

impl std::fmt::Display for Toml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&toml::to_string(&self.0).expect("a table serializes"))
    }
}
