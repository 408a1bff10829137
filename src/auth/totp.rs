//! One-time passwords for the `TOTP` auth module: HOTP (RFC 4226) and TOTP (RFC 6238).
//!
//! These are the parameters AM's OATH module and every authenticator app default to: HMAC-SHA-1,
//! 30-second steps, 6 digits, and a tolerance of one step either way for clock skew and typing time. The
//! secret is configured the way apps display it, as RFC 4648 base32, decoded when the
//! configuration is loaded (`crate::config::totp_key`).
//!
//! Everything here is pure: the caller supplies the clock, so tests are deterministic. [`verify`] only
//! answers "is this code valid now, and of which step"; refusing a code already used
//! (RFC 6238 §5.2) is [`crate::auth::lockout`]'s job, which spends the step across the nodes.

use ring::hmac;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// TOTP time step in seconds (RFC 6238 §4.1 default, AM's default).
pub const STEP_SECS: u64 = 30;
/// Code length (RFC 4226 §5.3 minimum and AM's default).
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (RFC 6238 §5.2 recommends at most one).
const SKEW_STEPS: u64 = 1;

/// HOTP value of `counter` (RFC 4226 §5.3): HMAC-SHA-1, dynamic truncation, modulo `10^digits`.
///
/// SHA-1 is what RFC 4226 specifies and what every authenticator app computes; HMAC-SHA-1 remains sound as
/// a PRF, which is all HOTP needs. `digits` above 9 return the full 31-bit value (it is already below
/// `10^10`); callers zero-pad to `digits` characters for display or comparison.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let hs = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes; with a 20-byte SHA-1 MAC the
    // window (at most bytes 15..19) always exists, `get` only keeps the code free of panicking paths.
    let offset = usize::from(hs.last().copied().unwrap_or_default() & 0x0f);
    let window = hs.get(offset..offset + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).unwrap_or_default();
    let binary = u32::from_be_bytes(window) & 0x7fff_ffff;
    match 10u32.checked_pow(digits) {
        Some(modulus) => binary % modulus,
        None => binary,
    }
}

/// TOTP value at `unix_secs` (RFC 6238 §4.2): HOTP of `floor(unix_secs / step_secs)`, with T0 = 0.
///
/// A `step_secs` of 0 is meaningless; it is treated as 1 rather than dividing by zero.
pub fn totp(key: &[u8], unix_secs: u64, step_secs: u64, digits: u32) -> u32 {
    hotp(key, unix_secs / step_secs.max(1), digits)
}

/// Whether `code` is the 6-digit SHA-1 TOTP of `key` for the 30-second step containing `unix_secs` or
/// the step just before or after it (RFC 6238 §5.2).
///
/// `code` must be exactly six ASCII digits: leading zeros are significant (`012345` is not `12345`), and
/// anything else, including surrounding spaces, is refused rather than guessed at. An empty `key` is
/// refused because its codes are public knowledge (a configuration mistake must not become a bypass).
/// All candidate steps are compared, each in constant time, so timing reveals neither which step matched
/// nor how many leading digits were right.
#[cfg(test)]
pub fn verify(key: &[u8], code: &str, unix_secs: u64) -> bool {
    matched_step(key, code, unix_secs).is_some()
}

/// The time step (`floor(T / 30)`) whose code `code` is, if `verify` accepts it: what a spent code is
/// remembered by, since the same code is accepted at three consecutive steps of the clock.
pub fn matched_step(key: &[u8], code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.as_bytes();
    if key.is_empty() || code.len() != 6 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let now = unix_secs / STEP_SECS;
    let first = now.saturating_sub(SKEW_STEPS);
    let last = now.saturating_add(SKEW_STEPS);
    let mut matched = Choice::from(0);
    let mut step = 0u64;
    for counter in first..=last {
        let expected = format!("{:06}", hotp(key, counter, DIGITS));
        let this = expected.as_bytes().ct_eq(code);
        step.conditional_assign(&counter, this);
        matched |= this;
    }
    bool::from(matched).then_some(step)
}

/// The first unix second at which a code of time step `step` is no longer accepted (it is accepted
/// while the current step is at most one past it).
pub fn step_expiry(step: u64) -> u64 {
    step.saturating_add(SKEW_STEPS + 1).saturating_mul(STEP_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared secret of RFC 4226 Appendix D and RFC 6238 Appendix B (SHA-1 rows).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn hotp_matches_rfc4226_appendix_d() {
        let expected = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, want) in (0u64..).zip(expected) {
            assert_eq!(hotp(RFC_SECRET, counter, 6), want, "counter {counter}");
        }
    }

    #[test]
    fn totp_matches_rfc6238_appendix_b_sha1() {
        let vectors = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (time, want) in vectors {
            assert_eq!(totp(RFC_SECRET, time, 30, 8), want, "T={time}");
        }
        // The leading zero of 07081804 is kept when formatted to the requested width.
        assert_eq!(format!("{:08}", totp(RFC_SECRET, 1111111109, 30, 8)), "07081804");
    }

    #[test]
    fn verify_accepts_the_current_previous_and_next_step() {
        let now: u64 = 1_111_111_111;
        for step in [-1i64, 0, 1] {
            let at = now.checked_add_signed(step * 30).unwrap();
            let code = format!("{:06}", totp(RFC_SECRET, at, 30, 6));
            assert!(verify(RFC_SECRET, &code, now), "step {step}");
        }
    }

    #[test]
    fn the_matched_step_is_the_step_the_code_belongs_to() {
        let now: u64 = 1_111_111_111;
        for step in [-1i64, 0, 1] {
            let at = now.checked_add_signed(step * 30).unwrap();
            let code = format!("{:06}", totp(RFC_SECRET, at, 30, 6));
            assert_eq!(matched_step(RFC_SECRET, &code, now), Some(at / 30), "step {step}");
            assert!(step_expiry(at / 30) > now && step_expiry(at / 30) <= now + 90);
            assert_eq!(matched_step(RFC_SECRET, &code, step_expiry(at / 30)), None);
        }
    }

    #[test]
    fn verify_rejects_codes_two_steps_away() {
        let now: u64 = 1_111_111_111;
        let code_at = |at: u64| format!("{:06}", totp(RFC_SECRET, at, 30, 6));
        let accepted = [code_at(now - 30), code_at(now), code_at(now + 30)];
        for at in [now - 60, now + 60] {
            let code = code_at(at);
            // These fixed vectors do not collide with an accepted step, so a pass means the window holds.
            assert!(!accepted.contains(&code), "vector collides at {at}");
            assert!(!verify(RFC_SECRET, &code, now), "T={at}");
        }
    }

    #[test]
    fn verify_rejects_malformed_codes() {
        // At this time the 6-digit code is 081804 (RFC 6238 B: 07081804), so its leading zero matters.
        let now = 1_111_111_109;
        let code = format!("{:06}", totp(RFC_SECRET, now, 30, 6));
        assert_eq!(code, "081804");
        assert!(verify(RFC_SECRET, &code, now));
        let bad =
            ["81804", "0081804", "", " 081804", "081804\n", "08a804", "+81804", "０８１８０４", "07081804"];
        for b in bad {
            assert!(!verify(RFC_SECRET, b, now), "{b:?}");
        }
    }

    #[test]
    fn verify_refuses_an_empty_key() {
        let code = format!("{:06}", totp(b"", 59, 30, 6));
        assert!(!verify(b"", &code, 59));
    }

    #[test]
    fn verify_at_the_epoch_does_not_underflow() {
        let code = format!("{:06}", totp(RFC_SECRET, 0, 30, 6));
        assert!(verify(RFC_SECRET, &code, 0));
        let code = format!("{:06}", totp(RFC_SECRET, u64::MAX, 30, 6));
        assert!(verify(RFC_SECRET, &code, u64::MAX));
    }

    #[test]
    fn odd_parameters_do_not_panic() {
        assert_eq!(hotp(RFC_SECRET, 0, 0), 0);
        assert!(hotp(RFC_SECRET, 0, 10) < 1 << 31);
        assert_eq!(hotp(RFC_SECRET, 0, u32::MAX), hotp(RFC_SECRET, 0, 10));
        assert_eq!(totp(RFC_SECRET, 59, 0, 6), hotp(RFC_SECRET, 59, 6));
    }

    #[test]
    fn rfc_secret_round_trips_through_base32() {
        // base32("12345678901234567890"), as an authenticator app would be given it.
        let key = crate::config::totp_key("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(key, RFC_SECRET);
    }

    #[test]
    fn pseudo_fuzz_never_panics() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = usize::try_from(state % 24).unwrap();
            let bytes: Vec<u8> = state.to_le_bytes().iter().cycle().take(len).copied().collect();
            let s = String::from_utf8_lossy(&bytes);
            let _ = verify(&bytes, &s, state);
            let _ = hotp(&bytes, state, u32::try_from(state % 12).unwrap());
            let _ = totp(&bytes, state, state % 3, 6);
        }
    }
}
