//! The host's key/value cache, with values stored as JSON.
//!
//! Keys are namespaced per plugin. The cache is bounded: an entry may be evicted before its
//! TTL ends, so a miss is normal and the cache never holds the only copy of anything. The
//! cache is also the only state that outlives one call: globals do not (every call runs in a
//! fresh instance).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::flowhost::plugin::cache as raw;

/// Why a value was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// The key is empty or longer than the host's cap (256 bytes).
    InvalidKey(String),
    /// The value is larger than the host's cap (1 MiB by default).
    TooLarge(String),
    /// The value does not serialize to JSON.
    Encode(String),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey(message) => write!(f, "invalid cache key: {message}"),
            Self::TooLarge(message) => write!(f, "cache value too large: {message}"),
            Self::Encode(message) => write!(f, "cache value does not serialize: {message}"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<raw::CacheError> for CacheError {
    fn from(error: raw::CacheError) -> Self {
        match error {
            raw::CacheError::InvalidKey(message) => Self::InvalidKey(message),
            raw::CacheError::TooLarge(message) => Self::TooLarge(message),
        }
    }
}

/// Lets `?` pass a cache error up from an event handler.
impl From<CacheError> for String {
    fn from(error: CacheError) -> Self {
        error.to_string()
    }
}

/// The value under `key` decoded from JSON, or `None` when it is missing, expired, evicted or
/// not a `T` (a value of the wrong shape counts as a miss).
pub fn get<T: DeserializeOwned>(key: &str) -> Option<T> {
    serde_json::from_slice(&raw::get(key)?).ok()
}

/// Stores `value` as JSON under `key`. It expires after `ttl`, or after the host's default
/// TTL when `None`.
pub fn set<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), CacheError> {
    let bytes = serde_json::to_vec(value).map_err(|error| CacheError::Encode(error.to_string()))?;
    set_bytes(key, &bytes, ttl)
}

/// Removes `key`; removing a missing key is not an error.
pub fn delete(key: &str) {
    raw::delete(key);
}

/// The bytes under `key`, as stored.
pub fn get_bytes(key: &str) -> Option<Vec<u8>> {
    raw::get(key)
}

/// Stores `value` under `key` as is. Milliseconds of `ttl` beyond `u64::MAX` are cut to it.
pub fn set_bytes(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
    let ttl_ms = ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    raw::set(key, value, ttl_ms).map_err(CacheError::from)
}
