//! `flowhost:plugin/cache`: a TTL cache shared by all calls, namespaced per plugin.
//!
//! One [`Cache`] (a `moka` cache bounded in bytes, with per-entry expiry) serves every
//! plugin; a [`CacheCtx`] per call pins the namespace, so a plugin cannot reach another's
//! keys unless configuration gives both the same `cache-namespace`.

mod host;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use serde::{Deserialize, Serialize};

pub use crate::bindings::cache::CacheError;
use crate::model::recording::{RecordedBody, RecordedRead};
use crate::telemetry::metrics::{CACHE_EVICTIONS, CACHE_HITS, CACHE_MISSES};

/// The longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// `[cache]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Total size of keys and values kept, in bytes; least-recently-used entries are evicted
    /// past it. Default 64 MiB.
    pub max_bytes: u64,
    /// Largest single value, in bytes. Default 1 MiB.
    pub max_value_bytes: u64,
    /// TTL of an entry set without one. Default 5 minutes.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            default_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

/// Each entry lives for its own TTL, restarted when it is overwritten.
struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// The host's cache.
pub struct Cache {
    entries: moka::sync::Cache<String, Entry>,
    config: CacheConfig,
}

impl Cache {
    /// An empty cache bounded as `config` says.
    pub fn new(config: &CacheConfig) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(EntryTtl)
            .eviction_listener(|_key, _entry, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    metrics::counter!(CACHE_EVICTIONS).increment(1);
                }
            })
            .build();
        Self {
            entries,
            config: config.clone(),
        }
    }

    fn get(&self, namespace: &Arc<str>, key: &str) -> Option<Vec<u8>> {
        let found = self
            .entries
            .get(&scoped(namespace, key))
            .map(|e| e.value.to_vec());
        let counter = if found.is_some() {
            CACHE_HITS
        } else {
            CACHE_MISSES
        };
        metrics::counter!(counter, "namespace" => namespace.clone()).increment(1);
        found
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        check_key(key)?;
        if value.len() as u64 > self.config.max_value_bytes {
            return Err(CacheError::TooLarge(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                self.config.max_value_bytes
            )));
        }
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        self.entries.insert(
            scoped(namespace, key),
            Entry {
                value: value.into(),
                ttl,
            },
        );
        Ok(())
    }

    fn delete(&self, namespace: &str, key: &str) {
        self.entries.invalidate(&scoped(namespace, key));
    }
}

fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CacheError::InvalidKey(format!(
            "keys must be 1 to {MAX_KEY_BYTES} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

/// The namespace and key as one map key; NUL cannot appear in a namespace name.
fn scoped(namespace: &str, key: &str) -> String {
    format!("{namespace}\0{key}")
}

/// Per-call state of the cache capability.
pub struct CacheCtx {
    cache: Arc<Cache>,
    namespace: Arc<str>,
    /// The reads made, when the call is recorded.
    reads: Option<Vec<RecordedRead>>,
    /// A replay's reads, answered in order instead of the cache's; writes go nowhere.
    replay: Option<VecDeque<RecordedRead>>,
}

impl CacheCtx {
    /// State for one call whose plugin uses `namespace`.
    pub fn new(cache: Arc<Cache>, namespace: Arc<str>) -> Self {
        Self {
            cache,
            namespace,
            reads: None,
            replay: None,
        }
    }

    /// Keeps each read made, with what it found, for [`Self::take_reads`].
    pub fn recording(mut self) -> Self {
        self.reads = Some(Vec::new());
        self
    }

    /// Answers reads from `reads`, in order, instead of the cache's, and keeps writes out
    /// of it (recording the reads made): a replay.
    pub fn replaying(mut self, reads: &[RecordedRead]) -> Self {
        self.replay = Some(reads.iter().cloned().collect());
        self.recording()
    }

    /// The reads made so far, when recording.
    pub fn take_reads(&mut self) -> Vec<RecordedRead> {
        self.reads.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The value under `key` in this namespace; in a replay, the next recorded read's if
    /// it was of `key`, else a miss.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let value = match &mut self.replay {
            Some(replay) => replay
                .pop_front()
                .filter(|read| read.key == key)
                .and_then(|read| read.value.map(|value| value.bytes())),
            None => self.cache.get(&self.namespace, key),
        };
        if let Some(reads) = &mut self.reads {
            reads.push(RecordedRead {
                key: key.to_owned(),
                value: value.as_deref().map(RecordedBody::new),
            });
        }
        value
    }

    /// Stores `value` under `key` for `ttl` (or the default TTL); nowhere in a replay.
    pub fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), CacheError> {
        if self.replay.is_some() {
            return Ok(());
        }
        self.cache.set(&self.namespace, key, value, ttl)
    }

    /// Removes `key`; nothing in a replay.
    pub fn delete(&self, key: &str) {
        if self.replay.is_none() {
            self.cache.delete(&self.namespace, key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(cache: &Arc<Cache>, namespace: &str) -> CacheCtx {
        CacheCtx::new(cache.clone(), namespace.into())
    }

    #[test]
    fn namespaces_are_apart() {
        let cache = Arc::new(Cache::new(&CacheConfig::default()));
        let (mut a, mut b, mut a2) = (ctx(&cache, "a"), ctx(&cache, "b"), ctx(&cache, "a"));
        a.set("k", b"1".to_vec(), None).unwrap();
        assert_eq!(a.get("k").as_deref(), Some(&b"1"[..]));
        assert_eq!(b.get("k"), None);
        assert_eq!(
            a2.get("k").as_deref(),
            Some(&b"1"[..]),
            "same namespace shares"
        );
        a.delete("k");
        assert_eq!(a.get("k"), None);
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = Arc::new(Cache::new(&CacheConfig::default()));
        let mut c = ctx(&cache, "p");
        c.set("short", b"x".to_vec(), Some(Duration::from_millis(30)))
            .unwrap();
        c.set("long", b"y".to_vec(), Some(Duration::from_secs(60)))
            .unwrap();
        assert!(c.get("short").is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get("short"), None);
        assert!(c.get("long").is_some());
    }

    #[test]
    fn size_is_bounded_by_eviction() {
        let config = CacheConfig {
            max_bytes: 64 * 1024,
            ..CacheConfig::default()
        };
        let cache = Arc::new(Cache::new(&config));
        let c = ctx(&cache, "p");
        for i in 0..1000 {
            c.set(&format!("k{i}"), vec![0; 1024], None).unwrap();
        }
        cache.entries.run_pending_tasks();
        assert!(
            cache.entries.weighted_size() <= config.max_bytes,
            "{}",
            cache.entries.weighted_size()
        );
        assert!(cache.entries.entry_count() < 1000);
    }

    #[test]
    fn bad_keys_and_large_values_are_refused() {
        let config = CacheConfig {
            max_value_bytes: 8,
            ..CacheConfig::default()
        };
        let cache = Arc::new(Cache::new(&config));
        let c = ctx(&cache, "p");
        assert!(matches!(
            c.set("", vec![], None),
            Err(CacheError::InvalidKey(_))
        ));
        assert!(matches!(
            c.set(&"k".repeat(257), vec![], None),
            Err(CacheError::InvalidKey(_))
        ));
        assert!(matches!(
            c.set("k", vec![0; 9], None),
            Err(CacheError::TooLarge(_))
        ));
        assert!(c.set("k", vec![0; 8], None).is_ok());
    }
}
