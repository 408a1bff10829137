//! `[pool.health] expect_status` and `expect_body`: what a passing check answer looks like, as
//! HAProxy's `http-check expect status` / `expect string`.

use std::ops::RangeInclusive;

use super::problem::{Checker, KeyPath};
use super::raw::RawStatus;

/// How much of a check's body is searched for `expect_body`: a health page is small, and a bound keeps
/// a node that streams a huge body from holding the checker.
pub const BODY_LIMIT: usize = 16 * 1024;

/// What a passing answer looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Passing statuses; empty: any 2xx (the rule before these keys existed).
    pub status: Vec<RangeInclusive<u16>>,
    /// A substring of the first [`BODY_LIMIT`] bytes of the body.
    pub body: Option<String>,
}

impl Expect {
    /// Whether `status` passes.
    pub fn status_passes(&self, status: u16) -> bool {
        if self.status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.status.iter().any(|r| r.contains(&status))
        }
    }

    /// Whether `body` (already cut to [`BODY_LIMIT`]) holds the expected text.
    pub fn body_passes(&self, body: &[u8]) -> bool {
        self.body.as_ref().is_none_or(|want| body.windows(want.len().max(1)).any(|w| w == want.as_bytes()))
    }
}

/// Reads `expect_status` and `expect_body`, reporting each bad entry with its key.
pub(super) fn expect(c: &mut Checker, p: &KeyPath, raw: &[RawStatus], body: Option<String>) -> Expect {
    let key = p.key("expect_status");
    let status = raw
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let range = match entry {
                RawStatus::Code(n) => u16::try_from(*n).ok().map(|n| n..=n),
                RawStatus::Range(s) => parse_range(s),
            };
            let range = range.filter(|r| 100 <= *r.start() && r.start() <= r.end() && *r.end() <= 599);
            if range.is_none() {
                c.report(&key.at(i), "must be a status 100-599 or a range like \"200-399\"");
            }
            range
        })
        .collect();
    if body.as_deref() == Some("") {
        c.report(&p.key("expect_body"), "must not be empty: remove the key to accept any body");
    }
    Expect { status, body: body.filter(|b| !b.is_empty()) }
}

fn parse_range(s: &str) -> Option<RangeInclusive<u16>> {
    let (low, high) = s.split_once('-').unwrap_or((s, s));
    Some(low.trim().parse().ok()?..=high.trim().parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_codes_and_the_default() {
        assert_eq!(parse_range("200-399"), Some(200..=399));
        assert_eq!(parse_range("204"), Some(204..=204));
        assert_eq!(parse_range("2xx"), None);
        let default = Expect::default();
        assert!(default.status_passes(204) && !default.status_passes(302));
        let e = Expect { status: vec![200..=200, 300..=399], body: Some("ALIVE".into()) };
        assert!(e.status_passes(200) && e.status_passes(302) && !e.status_passes(204));
        assert!(e.body_passes(b"{\"status\":\"ALIVE\"}") && !e.body_passes(b"DOWN"));
    }
}
