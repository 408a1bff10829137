//! Going on past a value of the wrong type, so one run of `tether check` names every problem.
//!
//! serde stops at the first wrong type or missing key. The loader then records the problem, puts a
//! stand-in of the type serde asked for at that key (with a span outside the text, so it is never
//! mistaken for the operator's own value), and reads again; the conversion's own problems under a
//! stand-in are muted, since they would only be about the stand-in. The message says in words what the
//! key takes, from its unit suffix (`_ms`, `_s`, `_min`, `_bytes`), what it holds, and how to write it.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::problem::{KeyPath, Seg};

/// A value serde can take where it asked for `expected` (serde's words: `u64`, `a string`, …).
pub(super) fn stand_in(expected: &str) -> DeValue<'static> {
    if is_integer(expected) {
        DeValue::Integer(Default::default())
    } else if expected.contains("boolean") {
        DeValue::Boolean(false)
    } else if expected.contains("sequence") {
        DeValue::Array(Default::default())
    } else if expected.starts_with("struct") || expected.contains("map") {
        DeValue::Table(DeTable::new())
    } else {
        DeValue::String(Cow::Borrowed(""))
    }
}

fn is_integer(expected: &str) -> bool {
    ["u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "integer"].contains(&expected)
}

/// serde's "invalid type: string \"1s\", expected u64" split into what it found and what it wanted.
pub(super) fn expected(message: &str) -> Option<&str> {
    let (_, expected) = message.rsplit_once(", expected ")?;
    (message.starts_with("invalid type: ") || message.starts_with("invalid value: ")).then_some(expected)
}

/// The name of the key serde found missing ("missing field `url`").
pub(super) fn missing(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// "expected a whole number of milliseconds, found the string \"1s\"; write 1000".
pub(super) fn in_words(path: &KeyPath, expected: &str, found: Option<&DeValue<'_>>) -> String {
    let name = path
        .segs()
        .iter()
        .rev()
        .find_map(|s| match s {
            Seg::Key(k) => Some(k.as_ref()),
            Seg::Index(_) => None,
        })
        .unwrap_or_default();
    let unit = [
        ("_ms", "milliseconds", 1),
        ("_s", "seconds", 1000),
        ("_min", "minutes", 60_000),
        ("_bytes", "bytes", 0),
    ]
    .into_iter()
    .find(|(suffix, _, _)| name.ends_with(suffix));
    let wanted = match expected {
        e if is_integer(e) => match unit {
            Some((_, unit, _)) => format!("a whole number of {unit}"),
            None => "a whole number".to_string(),
        },
        e if e.contains("string") => "a string in quotes".to_string(),
        e if e.contains("boolean") => "true or false".to_string(),
        e if e.contains("sequence") => "a list in brackets".to_string(),
        e if e.starts_with("struct") || e.contains("map") => "a table".to_string(),
        e => e.to_string(),
    };
    let Some(found) = found else { return format!("expected {wanted}") };
    let (shown, fix) = match found {
        DeValue::String(s) => {
            let fix = if is_integer(expected) {
                whole(s, unit.map(|(_, _, ms)| ms)).map(|n| format!("; write {n}"))
            } else if expected.contains("boolean") && matches!(s.as_ref(), "true" | "false") {
                Some(format!("; write {s} without quotes"))
            } else if expected.contains("sequence") {
                Some(format!("; write [{s:?}]"))
            } else {
                None
            };
            (format!("the string {s:?}"), fix)
        }
        DeValue::Integer(i) if i.as_str().starts_with('-') && is_integer(expected) => {
            (format!("{i}"), Some("; write 0 or more".to_string()))
        }
        DeValue::Integer(i) if is_integer(expected) => {
            (format!("{i}"), Some("; it is too large for this key".to_string()))
        }
        DeValue::Integer(i) => (format!("the number {i}"), quoted(expected, i.as_str())),
        DeValue::Float(f) => (format!("the number {f}"), quoted(expected, f.as_str())),
        DeValue::Boolean(b) => (b.to_string(), quoted(expected, &b.to_string())),
        DeValue::Datetime(d) => (format!("the date {d}"), quoted(expected, &d.to_string())),
        DeValue::Array(_) => ("a list".to_string(), None),
        DeValue::Table(_) => ("a table".to_string(), None),
    };
    format!("expected {wanted}, found {shown}{}", fix.unwrap_or_default())
}

fn quoted(expected: &str, text: &str) -> Option<String> {
    expected.contains("string").then(|| format!("; write it in quotes: \"{text}\""))
}

/// `"1s"`, `"500ms"`, `"2m"`, `"1h"` or `"30"` in the key's unit (`per_unit_ms` ms per unit).
fn whole(text: &str, per_unit_ms: Option<u64>) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let ms = match text[digits..].trim() {
        "" => return Some(n),
        "ms" => n,
        "s" => n * 1000,
        "m" | "min" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return None,
    };
    match per_unit_ms? {
        0 => None,
        per => (ms % per == 0).then_some(ms / per),
    }
}

/// The value at `segs` of the tree, when there is one.
pub(super) fn value_at<'t, 'i>(table: &'t DeTable<'i>, segs: &[Seg]) -> Option<&'t DeValue<'i>> {
    let (Seg::Key(first), rest) = segs.split_first()? else { return None };
    let (_, mut value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == first.as_ref())?;
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => t.iter().find(|(n, _)| n.get_ref().as_ref() == k.as_ref())?.1,
            (Seg::Index(i), DeValue::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value.get_ref())
}

/// Puts `value` at `segs` (a table key or an array element), spanned by `span`; false when the path
/// leads nowhere.
pub(super) fn put<'i>(table: &mut DeTable<'i>, segs: &[Seg], value: DeValue<'i>, span: Range<usize>) -> bool {
    let Some((Seg::Key(first), rest)) = segs.split_first() else { return false };
    let key = Spanned::new(span.clone(), Cow::Owned(first.to_string()));
    if rest.is_empty() {
        table.remove(&key);
        table.insert(key, Spanned::new(span, value));
        return true;
    }
    match table.get_mut(&key) {
        Some(v) => put_in(v.get_mut(), rest, value, span),
        None => false,
    }
}

fn put_in<'i>(at: &mut DeValue<'i>, segs: &[Seg], value: DeValue<'i>, span: Range<usize>) -> bool {
    match (at, segs.split_first()) {
        (DeValue::Table(t), Some((Seg::Key(_), _))) => put(t, segs, value, span),
        (DeValue::Array(items), Some((Seg::Index(i), rest))) => match items.get_mut(*i) {
            Some(item) if rest.is_empty() => {
                *item = Spanned::new(span, value);
                true
            }
            Some(item) => put_in(item.get_mut(), rest, value, span),
            None => false,
        },
        _ => false,
    }
}

/// Whether `path` is `under` or inside it.
pub(super) fn within(path: &KeyPath, under: &KeyPath) -> bool {
    path.segs().starts_with(under.segs())
}
