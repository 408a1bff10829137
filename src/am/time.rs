//! One wall clock for everything tether writes as a date, and AM's ISO-8601.
//!
//! Expiry runs on [`tokio::time::Instant`]. Wall-clock values (an `authId`'s `exp`, the TOTP time step,
//! `getSessionInfo`'s ISO times, the status page) come from a [`Clock`] that follows tokio's clock from
//! one base read at creation. Reading `SystemTime` at every use would make them disagree with
//! `Instant`-based expiry under paused test time, and jump with NTP corrections while a login is in
//! progress; the drift against the system clock over a process lifetime is that of the monotonic clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;
use tokio::time::Instant;

/// Bound applied to configured durations before adding them to an instant, so a huge value means
/// "practically never" rather than an overflow panic.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `now + d`, with `d` bounded by [`MAX_LIFETIME`] so it cannot overflow.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(MAX_LIFETIME)).unwrap_or(now)
}

/// Unix time that follows tokio's clock: `base_unix + (now - base_instant)`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_unix: Duration,
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose base is the system time now.
    pub fn new() -> Self {
        Self {
            base_unix: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
            base: Instant::now(),
        }
    }

    /// A clock that reads `unix` at the instant `at`, for tests with a fixed time.
    pub fn fixed(unix: Duration, at: Instant) -> Self {
        Self { base_unix: unix, base: at }
    }

    /// Unix time of the instant `at`.
    pub fn unix_at(&self, at: Instant) -> Duration {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_unix.saturating_add(after),
            None => self.base_unix.saturating_sub(self.base.duration_since(at)),
        }
    }

    /// Unix time now.
    pub fn unix_now(&self) -> Duration {
        self.unix_at(Instant::now())
    }

    /// The instant of unix time `unix`, computed relative to `now`.
    pub fn instant_at(&self, unix: Duration, now: Instant) -> Instant {
        let now_unix = self.unix_at(now);
        match unix.checked_sub(now_unix) {
            Some(ahead) => later(now, ahead),
            None => now.checked_sub(now_unix.saturating_sub(unix)).unwrap_or(now),
        }
    }

    /// The instant `at` as ISO-8601, as AM writes session times.
    pub fn iso_at(&self, at: Instant) -> String {
        iso_utc(self.unix_at(at).as_secs())
    }
}

/// ISO-8601 UTC with second precision, as AM writes session times: `2026-11-23T14:03:12Z`. Times past
/// year 9999 have no room in the format and are clamped to its end.
pub fn iso_utc(unix_secs: u64) -> String {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = i64::try_from(unix_secs).unwrap_or(MAX).min(MAX);
    let at = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default()
}

/// ISO-8601 of a system time (the status page's "last check").
pub fn iso_utc_of(at: SystemTime) -> String {
    iso_utc(at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_civil_utc_times() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(946_684_799), "1999-12-31T23:59:59Z");
        assert_eq!(iso_utc(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(iso_utc(1_795_442_592), "2026-11-23T14:03:12Z");
        assert_eq!(iso_utc(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(iso_utc(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_tokio_time_both_ways() {
        let now = Instant::now();
        let clock = Clock::fixed(Duration::from_secs(1_000), now);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.unix_now(), Duration::from_secs(1_005));
        assert_eq!(
            clock.instant_at(Duration::from_secs(1_010), Instant::now()),
            now + Duration::from_secs(10)
        );
        assert_eq!(
            clock.unix_at(clock.instant_at(Duration::from_secs(990), Instant::now())),
            Duration::from_secs(990)
        );
    }

    #[test]
    fn later_never_overflows() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + MAX_LIFETIME);
    }
}
