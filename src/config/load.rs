//! Reading the file: TOML syntax, then serde, then the conversion, collecting every problem.
//!
//! The raw structs accept unknown keys so that serde reads the whole file in one pass; `serde_ignored`
//! names each key serde skipped, and every one of them is refused here, as `deny_unknown_fields` would,
//! but all at once and next to the conversion's own problems. Every problem is mapped back to the line of
//! its key through the spans of the parsed tree, and a serde error (a wrong type, a missing key) to the key
//! whose entry holds its span.

use std::ops::Range;
use std::path::Path;

use serde::de::Error as _;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::problem::{Checker, ConfigError, KeyPath, Problem, Seg};
use super::raw::{self, RawConfig};
use super::{Config, auth, pool, proxy, route, type_error};

/// Reads and validates a file; relative paths inside it resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let with_file = |mut e: ConfigError| {
        e.file = Some(path.to_path_buf());
        e
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| with_file(ConfigError::single(format!("cannot read the file: {e}"))))?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut config = parse_in(&text, base).map_err(with_file)?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Validates TOML text; relative paths resolve against the working directory.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_in(text, Path::new("."))
}

fn parse_in(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let line_of = |span: Range<usize>| Some(text.get(..span.start).unwrap_or(text).matches('\n').count() + 1);
    let tree = DeTable::parse(text).map_err(|e| {
        let mut p = Problem::new(KeyPath::root(), format!("invalid TOML: {}", e.message().trim()));
        p.line = e.span().and_then(line_of);
        ConfigError::new(vec![p])
    })?;

    let (raw, mut problems, stand_ins) = read_raw(&tree, text.len(), &line_of);
    if let Some(raw) = raw {
        match convert(raw, base_dir) {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => {}
            // A problem about a stand-in is only about the stand-in: its key was reported already.
            Err(e) => problems.extend(
                e.problems.into_iter().filter(|p| !stand_ins.iter().any(|s| type_error::within(p.path(), s))),
            ),
        }
    }
    for p in &mut problems {
        if p.line.is_none() {
            p.line = span_of(tree.get_ref(), p.path().segs()).and_then(line_of);
        }
    }
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    Err(ConfigError::new(problems))
}

/// serde over the tree, round after round: each wrong type or missing key is recorded and a stand-in put
/// in its place, until the whole file reads (or nothing more can be done). Returns the raw config, the
/// problems (every unknown key among them) and the keys that hold a stand-in.
fn read_raw(
    tree: &Spanned<DeTable<'_>>,
    text_len: usize,
    line_of: &dyn Fn(Range<usize>) -> Option<usize>,
) -> (Option<RawConfig>, Vec<Problem>, Vec<KeyPath>) {
    let mut tree = tree.clone();
    let mut problems = Vec::new();
    let mut stand_ins: Vec<(KeyPath, Range<usize>)> = Vec::new();
    let in_text = |s: &Range<usize>| s.end <= text_len;
    for _ in 0..256 {
        let mut unknown = Vec::new();
        let read: Result<RawConfig, _> =
            serde_ignored::deserialize(toml::Deserializer::from(tree.clone()), |path| {
                unknown.push(key_path(&path));
            });
        let e = match read {
            Ok(raw) => {
                problems.extend(unknown.into_iter().map(unknown_key));
                return (Some(raw), problems, stand_ins.into_iter().map(|(p, _)| p).collect());
            }
            Err(e) => e,
        };
        let message = e.message().trim().to_string();
        let span = e.span();
        let at = span
            .as_ref()
            .filter(|s| !s.is_empty())
            .and_then(|s| path_at(tree.get_ref(), s, &KeyPath::root()))
            .unwrap_or_default();
        // A fresh span past the end of the text for each stand-in, so each is told from the others.
        let fresh = text_len + 1 + 2 * stand_ins.len();
        let fresh = fresh..fresh + 1;
        let mine =
            span.as_ref().and_then(|s| stand_ins.iter().find(|(_, at)| at == s)).map(|(p, _)| p.clone());
        let (path, value, problem) =
            match (mine, type_error::missing(&message), type_error::expected(&message)) {
                // A stand-in of the wrong type: swapped for the one asked for, nothing to report.
                (Some(path), _, Some(expected)) => (path, type_error::stand_in(expected), None),
                (None, Some(name), _) => {
                    let mut p = Problem::new(at.clone(), message.clone());
                    p.line = span.clone().filter(in_text).and_then(line_of);
                    (at.key(name.to_string()), DeValue::String("".into()), Some(p))
                }
                (None, None, Some(expected)) if !at.segs().is_empty() => {
                    let found = type_error::value_at(tree.get_ref(), at.segs());
                    let mut p = Problem::new(at.clone(), type_error::in_words(&at, expected, found));
                    p.line = span.clone().filter(in_text).and_then(line_of);
                    (at.clone(), type_error::stand_in(expected), Some(p))
                }
                _ => (KeyPath::root(), DeValue::Boolean(false), None),
            };
        if problem.is_none() && path.segs().is_empty()
            || !type_error::put(tree.get_mut(), path.segs(), value, fresh.clone())
        {
            let mut p = Problem::new(at, message);
            p.line = span.filter(in_text).and_then(line_of);
            problems.push(p);
            problems.extend(unknown.into_iter().map(unknown_key));
            return (None, problems, Vec::new());
        }
        problems.extend(problem);
        stand_ins.push((path, fresh));
    }
    (None, problems, Vec::new())
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        convert(raw, Path::new("."))
    }
}

/// The second stage: each section converted by its own module, then cross-checked; relative file names
/// resolve against `base_dir`.
fn convert(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut c = Checker::new(base_dir);
    let proxy = proxy::convert(&mut c, raw.proxy);
    let pools = pool::convert(&mut c, raw.pool);
    let routes = route::convert(&mut c, raw.route, &pools);
    let auth = raw.auth.map(|a| auth::convert(&mut c, a));
    pool::check_session_cookies(&mut c, &pools, auth.as_ref().map(|a| a.session_cookie.as_str()));
    match (proxy, c.problems.is_empty()) {
        (Some(proxy), true) => Ok(Config { proxy, pools, routes, auth, source: None }),
        _ => Err(ConfigError::new(c.problems)),
    }
}

/// A key serde skipped, refused in the words `deny_unknown_fields` uses, with the keys its table takes.
fn unknown_key(path: KeyPath) -> Problem {
    let (table, name) = match path.segs().split_last() {
        Some((Seg::Key(name), table)) => (table, name.to_string()),
        _ => (path.segs(), String::new()),
    };
    let names: Vec<&str> = table
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_ref()),
            Seg::Index(_) => None,
        })
        .collect();
    let message = serde::de::value::Error::unknown_field(&name, raw::keys_of(&names)).to_string();
    Problem::new(path, message)
}

fn key_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    use serde_ignored::Path;
    match path {
        Path::Root => KeyPath::root(),
        Path::Seq { parent, index } => key_path(parent).at(*index),
        Path::Map { parent, key } => key_path(parent).key(key.clone()),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// The deepest key whose entry covers `span` of the file, so a serde error can name its key. A span no
/// entry covers names no key (toml gives a key missing from the top level the empty span `0..0`).
fn path_at(table: &DeTable<'_>, span: &Range<usize>, path: &KeyPath) -> Option<KeyPath> {
    table.iter().find_map(|(k, v)| {
        let here = path.key(k.get_ref().to_string());
        let entry = k.span().start..k.span().end.max(v.span().end);
        path_in_value(v, span, &here).or_else(|| covers(&entry, span).then_some(here))
    })
}

fn path_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &KeyPath) -> Option<KeyPath> {
    match value.get_ref() {
        DeValue::Table(t) => path_at(t, span, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let here = path.at(i);
            path_in_value(item, span, &here).or_else(|| covers(&item.span(), span).then_some(here))
        }),
        _ => None,
    }
}

fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The span of the deepest part of `segs` present in the tree (the key itself when it is there).
fn span_of(table: &DeTable<'_>, segs: &[Seg]) -> Option<Range<usize>> {
    let (first, rest) = segs.split_first()?;
    let Seg::Key(name) = first else { return None };
    let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name.as_ref())?;
    Some(span_in_value(v, rest).unwrap_or_else(|| k.span()))
}

fn span_in_value(value: &Spanned<DeValue<'_>>, segs: &[Seg]) -> Option<Range<usize>> {
    let (first, rest) = segs.split_first()?;
    match (first, value.get_ref()) {
        (Seg::Key(_), DeValue::Table(t)) => span_of(t, segs),
        (Seg::Index(i), DeValue::Array(items)) => {
            let item = items.get(*i)?;
            Some(span_in_value(item, rest).unwrap_or_else(|| item.span()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[proxy]
listen = "127.0.0.1:8080"

[[pool]]
name = "am"
  [[pool.backend]]
  id = "01"
  url = "http://127.0.0.1:8081"

[[route]]
path_prefix = "/"
pool = "am"
"#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.proxy.admin_listen.to_string(), "127.0.0.1:9090");
        let pool = &c.pools[0];
        assert_eq!(pool.affinity.cookie, "amlbcookie");
        assert_eq!(pool.affinity.hints.len(), 3);
        assert_eq!(pool.health.rise, 2);
        assert_eq!(pool.backends[0].authority.as_str(), "127.0.0.1:8081");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let text = MINIMAL.replace("name = \"am\"", "name = \"am\"\nbalanse = \"least-conn\"")
            + "\n[[route]]\npath_prefix = \"/x\"\npool = \"nope\"\n";
        let text = text.replace(
            "  url = \"http://127.0.0.1:8081\"",
            "  url = \"http://127.0.0.1:8081\"\n  [[pool.backend]]\n  id = \"01\"\n  url = \"http://127.0.0.1:8082\"",
        );
        let err = parse(&text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems.len(), 3, "{shown}");
        assert!(shown.contains("line 7: `pool[0].balanse`: unknown field"), "{shown}");
        assert!(shown.contains("`pool[0].backend[1].id`: duplicate backend ID \"01\""), "{shown}");
        assert!(shown.contains("`route[1].pool`: no pool is named \"nope\""), "{shown}");
        let dup = err.problems.iter().find(|p| p.key == "pool[0].backend[1].id").unwrap();
        assert_eq!(text.lines().nth(dup.line.unwrap() - 1).unwrap().trim(), "id = \"01\"");
    }

    #[test]
    fn redis_sessions_need_a_store_table_and_get_its_defaults() {
        let err = parse(&(MINIMAL.to_owned() + "\n[auth]\nsessions = \"redis\"\n")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("`auth.sessions`: \"redis\" needs an [auth.store] table with url ="),
            "{shown}"
        );
        assert!(shown.contains("line "), "{shown}");
        let c = parse(
            &(MINIMAL.to_owned()
                + "\n[auth]\nsessions = \"redis\"\n[auth.store]\nurl = \"redis://127.0.0.1:7000\"\n"
                + "[[auth.chain]]\nname = \"ldapService\"\nmodules = [\"DataStore\"]\n"),
        )
        .unwrap();
        let store = c.auth.unwrap().store.unwrap();
        assert_eq!((store.key_prefix.as_str(), store.timeout), ("tether", std::time::Duration::from_secs(1)));
        let err = parse(
            &(MINIMAL.to_owned() + "\n[auth]\nsessions = \"redis\"\n[auth.store]\nurl = \"http://x\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`auth.store.url`"), "{err}");
    }

    /// `[auth.store]` on Redis Cluster: `cluster` instead of `url`, each problem named by its key.
    #[test]
    fn a_store_names_one_redis_or_the_seeds_of_a_cluster() {
        let with = |store: &str| {
            MINIMAL.to_owned()
                + "\n[auth]\nsessions = \"redis\"\n[auth.store]\n"
                + store
                + "\n[[auth.chain]]\nname = \"ldapService\"\nmodules = [\"DataStore\"]\n"
        };
        let c = parse(&with(r#"cluster = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001/0"]"#)).unwrap();
        assert_eq!(
            c.auth.unwrap().store.unwrap().servers,
            crate::config::StoreServers::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001/0".into()
            ])
        );
        let c = parse(&with(r#"cluster = ["rediss://10.0.0.1:7000"]"#)).unwrap();
        assert!(matches!(c.auth.unwrap().store.unwrap().servers, crate::config::StoreServers::Cluster(_)));
        let c = parse(&with(r#"url = "redis://127.0.0.1:6380/2""#)).unwrap();
        let single = crate::config::StoreServers::Single("redis://127.0.0.1:6380/2".into());
        assert_eq!(c.auth.unwrap().store.unwrap().servers, single);

        let problems = |store: &str| {
            let err = parse(&with(store)).unwrap_err();
            err.problems.iter().map(|p| (p.key.clone(), p.message.clone())).collect::<Vec<_>>()
        };
        let both = problems(
            r#"url = "redis://a:1"
cluster = ["redis://b:2"]"#,
        );
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].0, "auth.store.cluster");
        assert!(both[0].1.contains("not both"), "{both:?}");

        let neither = problems("key_prefix = \"t\"");
        assert_eq!(neither.len(), 1, "{neither:?}");
        assert_eq!(neither[0].0, "auth.store.url");
        assert!(neither[0].1.contains("cluster = ["), "the fix names both keys: {neither:?}");

        let bad = problems(r#"cluster = ["http://a:1", "redis://b:2", "rediss://c:3", "redis://d:4/1"]"#);
        let keys: Vec<&str> = bad.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["auth.store.cluster[0]", "auth.store.cluster[3]"], "{bad:?}");
        assert!(bad[0].1.contains("must be a redis:// or rediss:// URL"), "{bad:?}");
        assert!(bad[1].1.contains("only database 0"), "{bad:?}");

        let mixed = problems(r#"cluster = ["redis://a:1", "rediss://b:2"]"#);
        assert_eq!(mixed.len(), 1, "{mixed:?}");
        assert_eq!(mixed[0].0, "auth.store.cluster[1]");
        assert!(mixed[0].1.contains("every seed must use redis://"), "{mixed:?}");
    }

    #[test]
    fn several_unknown_keys_in_nested_tables_are_all_named() {
        let text = MINIMAL
            .replace(
                "[[pool]]",
                "[[pool]]\n[pool.health]\nintervall_ms = 5\n[pool.affinity]\nmod = \"x\"\n[[pool]]",
            )
            .replacen("name = \"am\"", "name = \"b\"", 0);
        let err = parse(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"pool[0].health.intervall_ms"), "{err}");
        assert!(keys.contains(&"pool[0].affinity.mod"), "{err}");
    }

    #[test]
    fn unknown_keys_of_every_table_are_refused_in_one_run_with_the_keys_it_takes() {
        let text = MINIMAL.replace(
            "[[pool]]",
            "listen_on = 1\n[proxy.tls]\ncert = \"c\"\nkey = \"k\"\ncrt = 2\n\n[[pool]]",
        ) + "\n[auth]\nsesions = \"local\"\n[auth.quota]\nlimt = 3\n[[auth.user]]\nusername = \"u\"\npassword = \"x\"\npasword = 1\n";
        let err = parse(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in
            ["proxy.listen_on", "proxy.tls.crt", "auth.sesions", "auth.quota.limt", "auth.user[0].pasword"]
        {
            assert!(keys.contains(&key), "{key}: {err}");
        }
        // The conversion's own problems come in the same run.
        assert!(keys.contains(&"auth.user[0].password"), "{err}");
        let shown = err.to_string();
        assert!(shown.contains("`auth.quota.limt`: unknown field `limt`, expected one of `enabled`, `limit`, `exhaustion_action`"), "{shown}");
        let tls = err.problems.iter().find(|p| p.key == "proxy.tls.crt").unwrap();
        assert_eq!(text.lines().nth(tls.line.unwrap() - 1), Some("crt = 2"), "{err}");
    }

    #[test]
    fn type_errors_name_their_key_and_line() {
        let text = MINIMAL.replace("listen = \"127.0.0.1:8080\"", "listen = 8080");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "proxy.listen", "{err}");
        assert_eq!(err.problems[0].line, Some(3), "{err}");
        let text = MINIMAL.replace("  id = \"01\"", "  id = \"01\"\n  embedded = \"yes\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems[0].key, "pool[0].backend[0].embedded", "{err}");
        let err =
            parse(&MINIMAL.replace("path_prefix = \"/\"", "path_prefix = \"/\"\nmethods = [\"GET\", 5]"))
                .unwrap_err();
        assert_eq!(err.problems[0].key, "route[0].methods[1]", "{err}");
    }

    #[test]
    fn every_type_error_comes_in_one_run_in_words_with_the_conversions_problems() {
        let text = MINIMAL
            .replace(
                "listen = \"127.0.0.1:8080\"",
                "listen = 8080\nrequest_header_timeout_ms = \"1s\"\nshutdown_grace_s = -1",
            )
            .replace("  id = \"01\"", "  id = \"01\"\n  embedded = \"yes\"")
            .replace("path_prefix = \"/\"", "path_prefix = \"x\"\nmethods = [\"GET\", 5]");
        let err = parse(&text).unwrap_err();
        let got: Vec<(&str, Option<usize>, &str)> =
            err.problems.iter().map(|p| (p.key.as_str(), p.line, p.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    "proxy.listen",
                    Some(3),
                    "expected a string in quotes, found the number 8080; write it in quotes: \"8080\""
                ),
                (
                    "proxy.request_header_timeout_ms",
                    Some(4),
                    "expected a whole number of milliseconds, found the string \"1s\"; write 1000"
                ),
                (
                    "proxy.shutdown_grace_s",
                    Some(5),
                    "expected a whole number of seconds, found -1; write 0 or more"
                ),
                ("pool[0].backend[0].embedded", Some(11), "expected true or false, found the string \"yes\""),
                ("route[0].path_prefix", Some(15), "\"x\" must start with '/'"),
                (
                    "route[0].methods[1]",
                    Some(16),
                    "expected a string in quotes, found the number 5; write it in quotes: \"5\""
                ),
            ],
            "{err}"
        );
        let err = parse(
            &MINIMAL.replace("  url = \"http://127.0.0.1:8081\"\n", "").replace("name = \"am\"", "name = 5"),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"pool[0].name") && keys.contains(&"pool[0].backend[0]"), "{err}");
    }

    #[test]
    fn a_missing_key_names_its_table() {
        let err =
            parse(MINIMAL.replace("[proxy]\nlisten = \"127.0.0.1:8080\"\n", "").trim_start()).unwrap_err();
        assert_eq!(
            (err.problems[0].key.as_str(), err.problems[0].message.as_str()),
            ("", "missing field `proxy`")
        );
        let err = parse(&MINIMAL.replace("  url = \"http://127.0.0.1:8081\"\n", "")).unwrap_err();
        assert!(err.problems[0].message.contains("missing field `url`"), "{err}");
        assert_eq!(err.problems[0].key, "pool[0].backend[0]", "{err}");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let err = parse("[proxy]\nlisten = \n").unwrap_err();
        assert_eq!(err.problems[0].line, Some(2), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = MINIMAL
            .replace("127.0.0.1:8080", "localhost")
            .replace("http://127.0.0.1:8081", "127.0.0.1:8081")
            .replace("path_prefix = \"/\"", "path_prefix = \"/\"\nmethods = [\"get\"]");
        let err = parse(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["proxy.listen", "pool[0].backend[0].url", "route[0].methods[0]"], "{err}");
    }

    #[test]
    fn maxconn_is_optional_and_zero_is_refused_with_the_fix() {
        let c = parse(MINIMAL).unwrap();
        let five_s = std::time::Duration::from_secs(5);
        assert_eq!((c.pools[0].backends[0].maxconn, c.pools[0].queue_timeout), (None, five_s));
        let with = |maxconn: &str, queue: &str| {
            let backend = format!("url = \"http://127.0.0.1:8081\"\n  maxconn = {maxconn}");
            let pool = format!("name = \"am\"\nqueue_timeout_ms = {queue}");
            parse(
                &MINIMAL.replace("url = \"http://127.0.0.1:8081\"", &backend).replace("name = \"am\"", &pool),
            )
        };
        let c = with("4", "250").unwrap();
        assert_eq!(c.pools[0].backends[0].maxconn.map(|m| m.get()), Some(4));
        assert_eq!(c.pools[0].queue_timeout, std::time::Duration::from_millis(250));
        let err = with("0", "0").unwrap_err();
        let shown: Vec<String> = err.problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
        assert_eq!(
            shown,
            [
                "pool[0].queue_timeout_ms: must be greater than 0",
                "pool[0].backend[0].maxconn: must be 1 or more, not 0: leave maxconn out for no limit",
            ],
            "{err}"
        );
        assert!(err.problems.iter().all(|p| p.line.is_some()), "{err}");
    }

    #[test]
    fn a_pool_without_an_active_backend_is_refused() {
        let text = MINIMAL.replace(
            "  url = \"http://127.0.0.1:8081\"",
            "  url = \"http://127.0.0.1:8081\"\n  role = \"passive\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("has no active backend"), "{err}");
    }
}
