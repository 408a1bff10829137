//! Reading the file: TOML syntax, then serde, then [`super::convert`], collecting every problem.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key. An operator fixing a file wants all of
//! them at once, so when serde names an unknown key we record it, drop that key from the parsed tree, and
//! deserialize again; the cross-checks then run on what is left. Every problem is mapped back to the line
//! of its key through the spans of the parsed tree.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::problem::{ConfigError, KeyPath, Problem, Seg};
use super::raw::RawConfig;
use super::{Config, convert};

/// How many unknown keys one run reports before giving up on recovery.
const MAX_UNKNOWN_KEYS: usize = 64;

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

    let mut problems = Vec::new();
    let mut tree = tree;
    let raw = loop {
        match RawConfig::deserialize(toml::Deserializer::from(tree.clone())) {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let span = e.span();
                let unknown = e.message().starts_with("unknown field");
                let removed = match (&span, unknown) {
                    (Some(span), true) if problems.len() < MAX_UNKNOWN_KEYS => {
                        remove_key_at(tree.get_mut(), span.start, "")
                    }
                    _ => None,
                };
                let mut p = Problem::new(KeyPath::root(), e.message().trim().to_string());
                p.line = span.and_then(line_of);
                if let Some(path) = &removed {
                    p.key = path.clone();
                }
                problems.push(p);
                if removed.is_none() {
                    break None;
                }
            }
        }
    };
    if let Some(raw) = raw {
        match convert(raw, base_dir) {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(e) => {
                problems.extend(e.problems.into_iter().map(|mut p| {
                    p.line = span_of(tree.get_ref(), p.path().segs()).and_then(line_of);
                    p
                }));
            }
        }
    }
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    Err(ConfigError::new(problems))
}

/// Removes the table entry whose key starts at byte `at`, returning its key path.
fn remove_key_at(table: &mut DeTable<'_>, at: usize, path: &str) -> Option<String> {
    if let Some(k) = table.iter().map(|(k, _)| k).find(|k| k.span().start == at).cloned() {
        table.remove(&k);
        return Some(join_key(path, k.get_ref()));
    }
    for (k, v) in table.iter_mut() {
        let sub = join_key(path, k.get_ref());
        if let Some(p) = remove_in_value(v.get_mut(), at, &sub) {
            return Some(p);
        }
    }
    None
}

fn remove_in_value(value: &mut DeValue<'_>, at: usize, path: &str) -> Option<String> {
    match value {
        DeValue::Table(t) => remove_key_at(t, at, path),
        DeValue::Array(items) => items
            .iter_mut()
            .enumerate()
            .find_map(|(i, item)| remove_in_value(item.get_mut(), at, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
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
    fn a_pool_without_an_active_backend_is_refused() {
        let text = MINIMAL.replace(
            "  url = \"http://127.0.0.1:8081\"",
            "  url = \"http://127.0.0.1:8081\"\n  role = \"passive\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("has no active backend"), "{err}");
    }
}
