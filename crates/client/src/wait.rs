//! The arithmetic of waiting in a lock's queue: which waits the contract accepts, the whole
//! seconds each attempt asks for, and how long a waiting call may go on. Pure: instants and
//! durations come in as arguments.
//!
//! A wait is a long poll (`POST .../locks/{resource}` with `{"wait": S}`) that the server keeps
//! open until the grant, the deadline or the session's end. The same request again (same
//! session and resource) joins the queue entry it made, keeping its place, if it arrives within
//! 2 s of a lost connection; so after a failure the client asks again at once, with the time
//! that is left, never with the whole wait again (that would move the deadline later).

use std::time::Duration;

use crate::Error;

/// The longest wait the contract accepts, in seconds (the core's rule).
pub(crate) const MAX_WAIT_SECS: u64 = lockio_core::WaitSecs::MAX_SECS;

/// The longest lock-delay the contract accepts, in seconds (the core's rule).
pub(crate) const MAX_LOCK_DELAY_SECS: u64 = lockio_core::LockDelay::MAX_SECS;

/// The longest pause between two rounds of attempts of a wait: well inside the 2 s for which
/// the server keeps the place of a waiter whose connection broke.
pub(crate) const RETRY_PAUSE_CAP: Duration = Duration::from_millis(500);

/// A wait as the contract counts it: whole seconds, 0 (a try-lock) to 300.
pub(crate) fn wait_secs(wait: Duration) -> Result<u64, Error> {
    whole_secs("wait", wait, MAX_WAIT_SECS)
}

/// A session's lock-delay as the contract counts it: whole seconds, 0 to 60.
pub(crate) fn lock_delay_secs(lock_delay: Duration) -> Result<u64, Error> {
    whole_secs("lock_delay", lock_delay, MAX_LOCK_DELAY_SECS)
}

fn whole_secs(field: &str, d: Duration, max: u64) -> Result<u64, Error> {
    if d.subsec_nanos() != 0 || d.as_secs() > max {
        return Err(Error::InvalidInput {
            field: field.into(),
            reason: format!("must be whole seconds from 0 to {max}"),
        });
    }
    Ok(d.as_secs())
}

/// The `wait` one attempt asks for when `left` remains of the caller's wait: rounded up to
/// whole seconds (the server's deadline is then never earlier than the caller's), 0 once
/// nothing is left (a try-lock, which tells whether the grant came in time).
pub(crate) fn ask_for(left: Duration) -> u64 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() != 0);
    secs.min(MAX_WAIT_SECS)
}

/// How long a waiting call may go on in all, from its start: the wait, then `answer_time` for
/// the last answer (or the try-lock after it) to arrive, and never less than `retry_budget`,
/// the time any other call gets.
pub(crate) fn call_time(wait: Duration, answer_time: Duration, retry_budget: Duration) -> Duration {
    (wait + answer_time).max(retry_budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_lock_delays_are_whole_seconds_in_range() {
        let s = Duration::from_secs;
        // (value, wait, lock_delay)
        let table = [
            (s(0), Some(0), Some(0)),
            (s(1), Some(1), Some(1)),
            (s(60), Some(60), Some(60)),
            (s(61), Some(61), None),
            (s(300), Some(300), None),
            (s(301), None, None),
            (Duration::from_millis(1500), None, None),
        ];
        for (value, wait, lock_delay) in table {
            assert_eq!(wait_secs(value).ok(), wait, "{value:?}");
            assert_eq!(lock_delay_secs(value).ok(), lock_delay, "{value:?}");
        }
        assert_eq!(wait_secs(s(301)).unwrap_err().to_string(), "invalid wait: must be whole seconds from 0 to 300");
        assert_eq!(
            lock_delay_secs(s(61)).unwrap_err().to_string(),
            "invalid lock_delay: must be whole seconds from 0 to 60"
        );
    }

    #[test]
    fn each_attempt_asks_for_what_is_left_rounded_up() {
        let ms = Duration::from_millis;
        let table =
            [(ms(0), 0), (ms(1), 1), (ms(999), 1), (ms(1000), 1), (ms(1001), 2), (ms(29_500), 30), (ms(400_000), 300)];
        for (left, secs) in table {
            assert_eq!(ask_for(left), secs, "{left:?}");
        }
    }

    #[test]
    fn a_waiting_call_outlasts_its_wait() {
        let s = Duration::from_secs;
        assert_eq!(call_time(s(30), s(10), s(20)), s(40));
        assert_eq!(call_time(s(1), s(10), s(20)), s(20));
    }
}
