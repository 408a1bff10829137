//! What the tool-driven checks (Chromium through playwright-core, the ForgeRock JS SDK under Node) need
//! on the machine: [`Tools::find`] returns `node` and Chromium, or skips the check with a message — and
//! fails it under CI, which must run every check (`.ci/run` installs what they need).

use std::path::PathBuf;

/// `node` and the Chromium binary for one check.
pub struct Tools {
    pub node: PathBuf,
    pub chromium: PathBuf,
}

impl Tools {
    /// The tools for `check` (named in the messages), whose npm `packages` are installed in `npm_dir`
    /// (relative to the crate, e.g. `tests/browser`); `chromium` says whether it drives a browser.
    /// `None` after printing what is missing; panics instead under CI.
    pub fn find(check: &str, npm_dir: &str, packages: &[&str], chromium: bool) -> Option<Self> {
        let mut missing = Vec::new();
        let node = std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("node")).find(|p| p.is_file()));
        if node.is_none() {
            missing.push("`node` is not on PATH".to_string());
        }
        let browser =
            std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        if chromium && !browser.is_file() {
            missing.push(format!("no Chromium at {} (set CHROMIUM)", browser.display()));
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for package in packages {
            let dir = root.join(npm_dir).join("node_modules").join(package);
            if !dir.is_dir() {
                missing.push(format!("{} (run `npm ci` in {npm_dir})", dir.display()));
            }
        }
        match node {
            Some(node) if missing.is_empty() => Some(Self { node, chromium: browser }),
            _ => {
                let what = missing.join("; ");
                assert!(std::env::var_os("CI").is_none(), "CI must run the {check}, but: {what}");
                println!("skipping the {check}: {what}");
                None
            }
        }
    }
}
