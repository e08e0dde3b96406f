//! Reading the contract's JSON bodies field by field into the core's domain values: success
//! bodies (`client`) and error bodies (`error`) alike.

use std::time::{Duration, SystemTime};

use lockio_core::{ClientId, FenceToken, Resource, SessionId};
use serde_json::Value;

use crate::time::{from_unix_secs, secs};

/// A body, read field by field; a missing or malformed field is an error saying which.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a>(pub &'a Value);

impl Fields<'_> {
    pub fn str(&self, key: &str) -> Result<&str, String> {
        self.0[key].as_str().ok_or_else(|| format!("{key} is not a string"))
    }
    pub fn u64(&self, key: &str) -> Result<u64, String> {
        self.0[key].as_u64().ok_or_else(|| format!("{key} is not a non-negative integer"))
    }
    /// A count the contract added later (e.g. `queue_length`): 0 when the field is absent, as
    /// from a server that predates it.
    pub fn count(&self, key: &str) -> Result<u64, String> {
        if self.0[key].is_null() {
            Ok(0)
        } else {
            self.u64(key)
        }
    }
    /// A string that may be absent (`null` or missing): `None` then.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, String> {
        if self.0[key].is_null() {
            Ok(None)
        } else {
            self.str(key).map(Some)
        }
    }
    /// An integer that may be absent (`null` or missing): `None` then.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, String> {
        if self.0[key].is_null() {
            Ok(None)
        } else {
            self.u64(key).map(Some)
        }
    }
    pub fn bool(&self, key: &str) -> Result<bool, String> {
        self.0[key].as_bool().ok_or_else(|| format!("{key} is not a boolean"))
    }
    pub fn time(&self, key: &str) -> Result<SystemTime, String> {
        self.0[key].as_f64().and_then(from_unix_secs).ok_or_else(|| format!("{key} is not a Unix time"))
    }
    pub fn secs(&self, key: &str) -> Result<Duration, String> {
        self.0[key].as_f64().and_then(secs).ok_or_else(|| format!("{key} is not a number of seconds"))
    }
    /// Seconds that may be absent (`null` or missing): `None` then.
    pub fn opt_secs(&self, key: &str) -> Result<Option<Duration>, String> {
        if self.0[key].is_null() {
            Ok(None)
        } else {
            self.secs(key).map(Some)
        }
    }
    /// A Unix time that may be absent (`null` or missing): `None` then.
    pub fn opt_time(&self, key: &str) -> Result<Option<SystemTime>, String> {
        if self.0[key].is_null() {
            Ok(None)
        } else {
            self.time(key).map(Some)
        }
    }
    pub fn session_id(&self, key: &str) -> Result<SessionId, String> {
        SessionId::parse(self.str(key)?).ok_or_else(|| format!("{key} is not a session id"))
    }
    pub fn client_id(&self, key: &str) -> Result<ClientId, String> {
        ClientId::new(self.str(key)?).map_err(|e| e.to_string())
    }
    pub fn resource(&self, key: &str) -> Result<Resource, String> {
        Resource::new(self.str(key)?).map_err(|e| e.to_string())
    }
    pub fn token(&self, key: &str) -> Result<FenceToken, String> {
        FenceToken::new(self.u64(key)?).map_err(|e| e.to_string())
    }
    pub fn resources(&self, key: &str) -> Result<Vec<Resource>, String> {
        let list = self.0[key].as_array().ok_or_else(|| format!("{key} is not a list"))?;
        list.iter().map(|v| Resource::new(v.as_str().unwrap_or_default()).map_err(|e| e.to_string())).collect()
    }
    /// A list the contract added later (e.g. `waiting_for`, `waiters`), each item read by
    /// `item`: empty when the field is absent, as from a server that predates it.
    pub fn list<T>(&self, key: &str, item: impl Fn(Fields<'_>) -> Result<T, String>) -> Result<Vec<T>, String> {
        match &self.0[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(list) => list.iter().map(|v| item(Fields(v))).collect(),
            _ => Err(format!("{key} is not a list")),
        }
    }
}
