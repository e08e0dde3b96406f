//! Domain value types with their validation rules (http-api.md, "Validation" and "Conventions").
//!
//! A value of one of these types is valid by construction: the constructors are the only
//! place the rules live, and the service layer calls them before anything enters the log.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a value was refused; `field` names the request field for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidValue {
    pub field: String,
    pub reason: String,
}

impl InvalidValue {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        InvalidValue { field: field.to_string(), reason: reason.into() }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A session's id: a UUID v4 minted by the node that took the create request, before the
/// command is replicated, so that every replica knows the session by the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub uuid::Uuid);

impl SessionId {
    /// Parses the textual form a client sends (any case, hyphenated or not).
    pub fn parse(s: &str) -> Option<SessionId> {
        uuid::Uuid::parse_str(s).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lower-case hyphenated, as the contract says.
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Who a session belongs to, as the client named itself: 1 to 255 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_CHARS: usize = 255;

    pub fn new(raw: &str) -> Result<ClientId, InvalidValue> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(InvalidValue::new("client_id", "must not be empty or only whitespace"));
        }
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue::new("client_id", format!("must be at most {} characters", Self::MAX_CHARS)));
        }
        Ok(ClientId(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a lockable thing: one URL path segment after percent-decoding, 1 to 255 bytes
/// of UTF-8, no control characters, no leading or trailing whitespace.
///
/// Shared (`Arc<str>`) because the same name sits in the lock table and in its holder's
/// session; a million locks should not mean two million strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource(Arc<str>);

impl Resource {
    pub const MAX_BYTES: usize = 255;

    pub fn new(raw: &str) -> Result<Resource, InvalidValue> {
        let problem = if raw.is_empty() {
            Some("must not be empty".to_string())
        } else if raw.len() > Self::MAX_BYTES {
            Some(format!("must be at most {} bytes", Self::MAX_BYTES))
        } else if raw.chars().any(char::is_control) {
            Some("must not contain control characters".to_string())
        } else if raw.trim() != raw {
            Some("must not start or end with whitespace".to_string())
        } else {
            None
        };
        match problem {
            Some(reason) => Err(InvalidValue::new("resource", reason)),
            None => Ok(Resource(Arc::from(raw))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A grant's number from the one cluster-wide counter: positive, never repeated, never lower
/// than an earlier grant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FenceToken(pub u64);

impl FenceToken {
    /// A token a client presents: any integer of at least 1.
    pub fn new(n: u64) -> Result<FenceToken, InvalidValue> {
        if n == 0 {
            return Err(InvalidValue::new("fence_token", "must be an integer of at least 1"));
        }
        Ok(FenceToken(n))
    }
}

impl fmt::Display for FenceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How long a session lives without a keepalive, in whole seconds: 5 to 3600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timeout(u32);

impl Timeout {
    pub const MIN_SECS: u64 = 5;
    pub const MAX_SECS: u64 = 3600;
    pub const DEFAULT: Timeout = Timeout(60);

    pub fn from_secs(secs: u64) -> Result<Timeout, InvalidValue> {
        if !(Self::MIN_SECS..=Self::MAX_SECS).contains(&secs) {
            return Err(InvalidValue::new(
                "timeout",
                format!("must be an integer from {} to {} (seconds)", Self::MIN_SECS, Self::MAX_SECS),
            ));
        }
        Ok(Timeout(secs as u32))
    }

    pub fn secs(self) -> u64 {
        u64::from(self.0)
    }

    pub fn millis(self) -> u64 {
        self.secs() * 1000
    }

    /// How often a client should send keepalives: a third of the timeout, rounded down.
    pub fn keepalive_interval_secs(self) -> u64 {
        self.secs() / 3
    }
}

/// A whole number of seconds from 0 to a maximum, read from the request field it names.
macro_rules! seconds_up_to {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        pub struct $name(u32);

        impl $name {
            pub const MAX_SECS: u64 = $max;
            pub const NONE: $name = $name(0);

            pub fn from_secs(secs: u64) -> Result<$name, InvalidValue> {
                if secs > Self::MAX_SECS {
                    let rule = format!("must be an integer from 0 to {} (seconds)", Self::MAX_SECS);
                    return Err(InvalidValue::new($field, rule));
                }
                Ok($name(secs as u32))
            }

            pub fn secs(self) -> u64 {
                u64::from(self.0)
            }

            pub fn millis(self) -> u64 {
                self.secs() * 1000
            }
        }
    };
}

seconds_up_to!(
    /// How long a session's locks stay unavailable after the session **expires** (not after a
    /// release or a delete), in whole seconds: 0 to 60 (Chubby's lock-delay).
    LockDelay,
    "lock_delay",
    60
);

seconds_up_to!(
    /// How long an acquire may wait in the resource's queue, in whole seconds: 0 (a try-lock)
    /// to 300.
    WaitSecs,
    "wait",
    300
);

/// How a session holds or waits for a resource: alone (`Exclusive`, a writer) or together with
/// other `Shared` holders (readers, or the permits of a counting semaphore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub enum Mode {
    #[default]
    Exclusive,
    Shared,
}

impl Mode {
    /// The contract's spelling of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }

    /// Parses the contract's spelling.
    pub fn parse(raw: &str) -> Result<Mode, InvalidValue> {
        match raw {
            "exclusive" => Ok(Mode::Exclusive),
            "shared" => Ok(Mode::Shared),
            _ => Err(InvalidValue::new("mode", "must be \"exclusive\" or \"shared\"")),
        }
    }
}

/// The most shared holders a resource takes at once (a counting semaphore's permits): 1 to
/// 10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Limit(u32);

impl Limit {
    pub const MAX: u64 = 10_000;

    pub fn new(n: u64) -> Result<Limit, InvalidValue> {
        if !(1..=Self::MAX).contains(&n) {
            return Err(InvalidValue::new("limit", format!("must be an integer from 1 to {}", Self::MAX)));
        }
        Ok(Limit(n as u32))
    }

    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// What a holder stores with its grant (e.g. its address, for leader election): at most 1,024
/// bytes of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockValue(String);

impl LockValue {
    pub const MAX_BYTES: usize = 1024;

    pub fn new(raw: &str) -> Result<LockValue, InvalidValue> {
        if raw.len() > Self::MAX_BYTES {
            return Err(InvalidValue::new("value", format!("must be at most {} bytes of UTF-8", Self::MAX_BYTES)));
        }
        Ok(LockValue(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A wall-clock instant in milliseconds since the Unix epoch, stamped by the leader that
/// ordered the command. The core only compares and stores these; it never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// Seconds as a float, the form the HTTP contract uses.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn saturating_add_millis(self, ms: u64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_trimmed_and_bounded() {
        assert_eq!(ClientId::new("  a b ").unwrap().as_str(), "a b");
        assert!(ClientId::new(" \t\n").is_err());
        assert!(ClientId::new(&"é".repeat(255)).is_ok(), "limit counts characters, not bytes");
        assert!(ClientId::new(&"x".repeat(256)).is_err());
    }

    #[test]
    fn resource_rules() {
        assert!(Resource::new("resource-1").is_ok());
        assert!(Resource::new("a/b c").is_ok());
        assert!(Resource::new(&"x".repeat(255)).is_ok());
        for bad in ["", " a", "a ", "a\u{7}b", "a\nb", "\u{85}x"] {
            assert!(Resource::new(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Resource::new(&"é".repeat(128)).is_err(), "limit counts bytes");
    }

    #[test]
    fn timeout_bounds() {
        assert!(Timeout::from_secs(4).is_err());
        assert_eq!(Timeout::from_secs(5).unwrap().keepalive_interval_secs(), 1);
        assert_eq!(Timeout::from_secs(100).unwrap().keepalive_interval_secs(), 33);
        assert!(Timeout::from_secs(3600).is_ok());
        assert!(Timeout::from_secs(3601).is_err());
        assert!(FenceToken::new(0).is_err());
    }

    #[test]
    fn lock_delay_wait_and_mode_bounds() {
        assert_eq!(LockDelay::from_secs(0).unwrap(), LockDelay::NONE);
        assert_eq!(LockDelay::from_secs(60).unwrap().millis(), 60_000);
        assert_eq!(LockDelay::from_secs(61).unwrap_err().field, "lock_delay");
        assert_eq!(WaitSecs::from_secs(300).unwrap().secs(), 300);
        assert_eq!(WaitSecs::from_secs(301).unwrap_err().field, "wait");
        assert_eq!(Mode::parse("exclusive").unwrap(), Mode::Exclusive);
        assert_eq!(Mode::parse("shared").unwrap(), Mode::Shared);
        assert_eq!(Mode::parse("EXCLUSIVE").unwrap_err().field, "mode");
        assert_eq!(Limit::new(0).unwrap_err().field, "limit");
        assert_eq!(Limit::new(10_000).unwrap().get(), 10_000);
        assert_eq!(Limit::new(10_001).unwrap_err().field, "limit");
        assert!(LockValue::new(&"é".repeat(512)).is_ok());
        assert_eq!(LockValue::new(&"é".repeat(513)).unwrap_err().field, "value");
    }

    #[test]
    fn session_id_displays_lower_case() {
        let id = SessionId::parse("02F55B83-0000-4000-8000-00000000000A").unwrap();
        assert_eq!(id.to_string(), "02f55b83-0000-4000-8000-00000000000a");
    }
}
