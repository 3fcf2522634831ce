//! Wall-clock helpers: epoch milliseconds, RFC 3339 timestamps for outbound events, UTC days
//! (the period of daily usage counters), and the [`Clock`] a manager reads them from.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Where "now" comes from for what depends on the calendar (daily usage counters and budgets):
/// the system clock in production, a test's own clock to move to the next UTC day.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// The UTC day of epoch milliseconds `ms`, as `YYYY-MM-DD` (the key of daily counters).
pub fn utc_day(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The first millisecond of the UTC day after the one `ms` is in.
pub fn next_utc_day(ms: u64) -> u64 {
    (ms / DAY_MS + 1) * DAY_MS
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-27T13:40:00.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known instants format exactly, including leap days and millisecond padding.
    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_ms(1_795_873_200_123), "2026-11-28T13:40:00.123Z");
    }

    /// A day's key changes exactly at UTC midnight, and the next day starts there.
    #[test]
    fn utc_days_turn_at_midnight() {
        assert_eq!(utc_day(951_782_399_999), "2000-02-28");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(next_utc_day(951_782_399_999), 951_782_400_000);
        assert_eq!(next_utc_day(951_782_400_000), 951_782_400_000 + DAY_MS);
    }
}
