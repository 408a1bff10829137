//! The source tree keeps the shape the README's layout table promises: layers without import circles,
//! files a reader can take in, one place for the codecs crates provide, and an auth layer whose login
//! logic knows nothing of HTTP.
//!
//! These read `src/` as text, the way a reviewer would; they fail when a change reaches up a layer,
//! grows a file past the bound, or brings back a hand-written codec.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use (README, "Layout"): only modules above it.
const MAY_USE: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("body", &[]),
    ("metrics", &[]),
    ("terminal", &[]),
    ("am", &["body"]),
    ("tls", &["config"]),
    ("server", &["config", "body", "metrics", "tls"]),
    ("upstream", &["config", "body", "metrics", "am"]),
    ("proxy", &["config", "body", "metrics", "am", "server", "upstream"]),
    ("auth", &["config", "body", "am"]),
    ("nodes", &["config", "body", "am", "auth", "server"]),
    ("reload", &["config", "tls", "upstream", "proxy", "nodes"]),
    ("shutdown", &["proxy"]),
    (
        "admin",
        &["config", "body", "metrics", "am", "tls", "server", "upstream", "proxy", "auth", "nodes", "reload"],
    ),
];

/// Lines of code a file may have, tests aside.
const MAX_CODE_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file under `src/` with its text before the first `#[cfg(test)]` (unit tests aside),
/// files that are wholly tests (`tests.rs`, `tests/`) left out.
fn code_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(src()).unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .filter(|(name, _)| !name.ends_with("tests.rs") && !name.contains("/tests/"))
        .map(|(name, text)| {
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
            (name, code)
        })
        .collect()
}

fn top_module(file: &str) -> Option<&str> {
    match file.split_once('/') {
        Some((dir, _)) => Some(dir),
        None if file == "lib.rs" || file == "main.rs" => None,
        None => file.strip_suffix(".rs"),
    }
}

/// The `crate::X` paths of a text, X a top-level module.
fn crate_uses(code: &str, modules: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
        if modules.contains(name.as_str()) {
            uses.insert(name);
        }
    }
    uses
}

#[test]
fn every_module_uses_only_the_layers_above_it() {
    let allowed: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let modules: BTreeSet<&str> = allowed.keys().copied().collect();
    let mut wrong = Vec::new();
    for (file, code) in code_files() {
        let Some(top) = top_module(&file) else { continue };
        let Some(may) = allowed.get(top) else {
            wrong.push(format!("{file}: top-level module `{top}` is not in the layout table"));
            continue;
        };
        for used in crate_uses(&code, &modules) {
            if used != top && !may.contains(&used.as_str()) {
                wrong.push(format!("{file}: `{top}` uses `crate::{used}`, which is not above it"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_a_reader_takes_in() {
    let long: Vec<String> = code_files()
        .into_iter()
        .map(|(file, code)| {
            let lines = code.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).count();
            (file, lines)
        })
        .filter(|(_, lines)| *lines > MAX_CODE_LINES)
        .map(|(file, lines)| format!("{file}: {lines} lines of code"))
        .collect();
    assert!(long.is_empty(), "over {MAX_CODE_LINES} lines of code, tests aside:\n{}", long.join("\n"));
}

#[test]
fn codecs_come_from_crates_not_from_hand_written_copies() {
    // query strings: form_urlencoded; dates: time; base32: data-encoding; equality: subtle; cookies: cookie
    let banned = [
        "fn percent_decode",
        "fn civil_from_days",
        "fn decode_base32",
        "fn ct_eq",
        "fn constant_time_eq",
        "PoisonError",
        "into_inner()",
        "format!(\"{}={}; Path",
    ];
    let mut found = Vec::new();
    for (file, code) in code_files() {
        for b in banned {
            if code.contains(b) {
                found.push(format!("{file}: {b}"));
            }
        }
    }
    assert!(found.is_empty(), "hand-written where a crate does it:\n{}", found.join("\n"));
}

#[test]
fn the_login_layer_has_no_http_types_and_auth_errors_have_one_mapping() {
    for file in ["auth/login.rs", "auth/journey.rs", "auth/modules.rs", "auth/pending.rs", "auth/session.rs"]
    {
        let code = std::fs::read_to_string(src().join(file)).unwrap();
        let code = code.split("#[cfg(test)]").next().unwrap();
        for http in ["http::", "Response<", "StatusCode", "HeaderMap", "crest::"] {
            assert!(
                !code.contains(http),
                "{file} uses {http}: the login layer returns outcomes, not answers"
            );
        }
    }
    // AM's JSON errors of the auth node are built in one place: AuthError's mapping.
    let builders: Vec<String> = code_files()
        .into_iter()
        .filter(|(file, code)| file.starts_with("auth/") && code.contains("crest::error"))
        .map(|(file, _)| file)
        .collect();
    assert_eq!(builders, ["auth/error.rs"], "CREST errors built outside AuthError's mapping");
}
