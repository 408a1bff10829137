//! What is wrong with a file: [`Problem`] (key path, line, message with the fix), [`ConfigError`] (all of
//! them), and the [`Checker`] that converts raw values while collecting problems instead of stopping.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// A table key.
    Key(Cow<'static, str>),
    /// An array index.
    Index(usize),
}

/// Where a value sits in the file, as `pool[0].backend[1].id`: the name an operator searches for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The whole file.
    pub(super) fn root() -> Self {
        Self::default()
    }

    /// This path, one table key deeper.
    pub(super) fn key(&self, key: impl Into<Cow<'static, str>>) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.into()));
        Self(segs)
    }

    /// This path, into element `index` of an array.
    pub(super) fn at(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }

    pub(super) fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, like `pool[0].backend[1].id` (empty when the file as a whole is at fault).
    pub key: String,
    /// 1-based line of that key, when known.
    pub line: Option<usize>,
    /// What is wrong, and where useful how to fix it.
    pub message: String,
    path: KeyPath,
}

impl Problem {
    pub(super) fn new(path: KeyPath, message: String) -> Self {
        Self { key: path.to_string(), line: None, message, path }
    }

    /// Where the problem is, for finding its line.
    pub(super) fn path(&self) -> &KeyPath {
        &self.path
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a config file. Never worth retrying unchanged: the file has to be edited.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// Every problem found, in file order where lines are known.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(super) fn new(problems: Vec<Problem>) -> Self {
        Self { file: None, problems }
    }

    pub(super) fn single(message: String) -> Self {
        Self::new(vec![Problem::new(KeyPath::root(), message)])
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "config".into());
        write!(f, "{file}: {} problem(s)", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {file}: {p}")?;
        }
        Ok(())
    }
}

/// Converts raw values and collects problems, so one run reports all of them.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
    base_dir: PathBuf,
}

impl Checker {
    /// Relative file names in the config resolve against `base_dir`.
    pub(super) fn new(base_dir: &Path) -> Self {
        Self { problems: Vec::new(), base_dir: base_dir.to_path_buf() }
    }

    pub(super) fn report(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(Problem::new(path.clone(), message.into()));
    }

    /// Runs a conversion; on error records it under `path` and yields `None`.
    pub(super) fn take<T>(&mut self, path: &KeyPath, result: Result<T, String>) -> Option<T> {
        result.map_err(|e| self.report(path, e)).ok()
    }

    /// One of a fixed set of names; `fallback` stands in after a problem so later checks can go on.
    pub(super) fn choice<T: Copy>(
        &mut self,
        path: &KeyPath,
        value: &str,
        choices: &[(&str, T)],
        fallback: T,
    ) -> T {
        self.pick(path, value, choices).unwrap_or(fallback)
    }

    /// One of a fixed set of names, or `None` (recorded) when it is none of them.
    pub(super) fn pick<T: Copy>(&mut self, path: &KeyPath, value: &str, choices: &[(&str, T)]) -> Option<T> {
        let found = choices.iter().find(|(name, _)| *name == value).map(|(_, v)| *v);
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            self.report(path, format!("{value:?} is not one of {}", names.join(", ")));
        }
        found
    }

    /// A non-zero amount of `unit`.
    pub(super) fn duration(&mut self, path: &KeyPath, value: u64, unit: fn(u64) -> Duration) -> Duration {
        if value == 0 {
            self.report(path, "must be greater than 0");
        }
        unit(value)
    }

    /// A cookie name: an RFC 9110 `token`, so it can be written into `Set-Cookie` as it is.
    pub(super) fn cookie_name(&mut self, path: &KeyPath, value: &str) -> String {
        let ok = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            self.report(path, format!("{value:?} is not a valid cookie name"));
            return String::new();
        }
        value.to_string()
    }

    /// A file named in the config, relative to the config's directory.
    pub(super) fn file(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }
}
