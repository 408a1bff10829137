//! Build facts for `tether_build_info` and `/status.json`: the git commit the binary was built from
//! (`TETHER_REVISION`, 12 hex digits, or `unknown` outside a git checkout, e.g. from a source tarball).
//! An operator comparing two nodes' dashboards needs the build, not only the version number. A build
//! without `.git` (the Docker image) may name it in the environment: `TETHER_REVISION=abc123`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=TETHER_REVISION");
    let given = std::env::var("TETHER_REVISION").ok().filter(|r| !r.trim().is_empty());
    let revision =
        given.or_else(|| git(&["rev-parse", "--short=12", "HEAD"])).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TETHER_REVISION={}", revision.trim());
    // Build again when HEAD moves: a checkout switches HEAD, a commit moves the branch's ref (loose, or
    // packed after a gc).
    for path in ["HEAD", "packed-refs"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={file}");
    }
}
