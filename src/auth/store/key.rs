//! How the Redis store names and times its keys: digests instead of secrets in key names, random
//! request IDs, and relative TTLs in whole milliseconds.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use crate::am::time::MAX_LIFETIME;
use crate::auth::session::StoreError;

/// Added to the lifetime of a key that marks something spent (a client-mode step, a one-time code):
/// each node checks the `authId`'s `exp` or the code's window against its own clock, so a node whose
/// clock differs from the spending node's would still accept it a little later. A minute covers any
/// clock an NTP-synchronised host has.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The SHA-256 of `text`, hex: what a key holds in place of a token, handle or `otk`, so a dump of
/// Redis holds nothing usable.
pub(super) fn digest(text: &str) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// 128 random bits, hex: names one write, so a retried command recognises its own, or keeps two
/// writes of the same millisecond apart.
pub(super) fn random_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Unavailable("the system random generator failed".into()))?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// Whole milliseconds, at least 1 (`PX 0` is an error) and capped like every in-process lifetime.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.min(MAX_LIFETIME).as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_digests_and_lifetimes_are_whole_positive_milliseconds() {
        let d = digest("AQIC5wM2LY4S");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("AQIC"));
        assert_ne!(random_id().unwrap(), random_id().unwrap());
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(2500)), 2);
        assert_eq!(millis(Duration::MAX), millis(MAX_LIFETIME));
    }
}
