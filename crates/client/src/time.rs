//! The contract's time values (Unix seconds as JSON floats) to and from `SystemTime` and
//! `Duration`, and how an instant reads in a message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds → `SystemTime`; `None` for a negative, infinite or NaN value.
pub(crate) fn from_unix_secs(secs: f64) -> Option<SystemTime> {
    Duration::try_from_secs_f64(secs).ok().map(|d| UNIX_EPOCH + d)
}

/// Seconds → `Duration`; `None` for a negative, infinite or NaN value.
pub(crate) fn secs(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// RFC 3339 UTC to the second, e.g. `2026-11-26T23:38:25Z`.
pub(crate) fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_times_round_trip() {
        let t = from_unix_secs(1795736305.768).unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64(), 1795736305.768);
        assert_eq!(format_time(from_unix_secs(0.0).unwrap()), "1970-01-01T00:00:00Z");
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(from_unix_secs(bad), None, "{bad}");
            assert_eq!(secs(bad), None, "{bad}");
        }
    }
}
