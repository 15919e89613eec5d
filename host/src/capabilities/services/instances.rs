//! A service's instances: the set calls rotate over, and each one's cool-down.
//!
//! Listed services (`urls`) keep one set for good; discovered ones have theirs replaced
//! whole whenever the registry reports another ([`Instances::replace`]). A call takes the
//! set as it is at that moment (an `Arc` clone), so a replacement never waits for calls in
//! flight, nor they for it. An instance that stays across a replacement stays the same
//! object, cool-down included: the registry may still list an instance that refused a
//! connection a moment ago, and it must go on sitting out its cool-down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An instance as a registry (or the configuration) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The base URL without a trailing slash.
    pub base: String,
    /// Lower is preferred: a call goes to an instance of a higher priority only when all of
    /// the lower ones cool down (DNS SRV priorities; 0 for everything else).
    pub priority: u16,
}

impl Endpoint {
    /// An endpoint of priority 0 at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            priority: 0,
        }
    }
}

pub(super) struct Instance {
    /// The base URL without a trailing slash; a request's path is appended to it.
    pub base: String,
    /// See [`Endpoint::priority`].
    priority: u16,
    /// Until when this instance is skipped after a connection error or timeout. A std
    /// `Mutex`: it is held for a read or a write, never across an `.await`.
    unhealthy_until: Mutex<Option<Instant>>,
}

/// The current set of a service's instances, sorted by priority, and the rotation over it.
pub(super) struct Instances {
    /// A std `RwLock`: held only to clone or swap the `Arc`, never across an `.await`.
    list: RwLock<Arc<[Arc<Instance>]>>,
    /// Round-robin cursor; taken modulo the size of whichever set a call sees.
    next: AtomicUsize,
}

impl Instances {
    /// A set of `endpoints`.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let instances = Self {
            list: RwLock::new(Arc::from([])),
            next: AtomicUsize::new(0),
        };
        instances.replace(endpoints);
        instances
    }

    /// The set as it is now.
    fn current(&self) -> Arc<[Arc<Instance>]> {
        self.list.read().expect("instances lock poisoned").clone()
    }

    /// The base URLs of the set as it is now, in priority order.
    pub fn bases(&self) -> Vec<String> {
        self.current().iter().map(|i| i.base.clone()).collect()
    }

    /// How many instances the set has.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Makes `endpoints` the set. An instance already in the set at the same base URL and
    /// priority is kept as it is, with its cool-down. Returns whether the set changed.
    pub fn replace(&self, mut endpoints: Vec<Endpoint>) -> bool {
        let mut seen = HashSet::new();
        endpoints.retain(|e| seen.insert(e.base.clone()));
        // Stable: the registry's order within one priority is kept.
        endpoints.sort_by_key(|e| e.priority);
        let mut list = self.list.write().expect("instances lock poisoned");
        let unchanged = list.len() == endpoints.len()
            && list
                .iter()
                .zip(&endpoints)
                .all(|(i, e)| i.base == e.base && i.priority == e.priority);
        if unchanged {
            return false;
        }
        let replacement: Vec<Arc<Instance>> = endpoints
            .into_iter()
            .map(|endpoint| {
                list.iter()
                    .find(|i| i.base == endpoint.base && i.priority == endpoint.priority)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Instance {
                            base: endpoint.base,
                            priority: endpoint.priority,
                            unhealthy_until: Mutex::new(None),
                        })
                    })
            })
            .collect();
        *list = replacement.into();
        true
    }

    /// The next instance in rotation among those of the lowest priority that has one not
    /// cooling down; when all cool down, the one whose cool-down ends first; none when the
    /// set is empty.
    pub fn pick(&self) -> Option<Arc<Instance>> {
        let list = self.current();
        if list.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(Instant, &Arc<Instance>)> = None;
        for tier in list.chunk_by(|a, b| a.priority == b.priority) {
            for i in 0..tier.len() {
                let instance = &tier[(start + i) % tier.len()];
                match instance.cooling_down_until(now) {
                    None => return Some(instance.clone()),
                    Some(until) if soonest.is_none_or(|(s, _)| until < s) => {
                        soonest = Some((until, instance))
                    }
                    Some(_) => {}
                }
            }
        }
        Some(soonest.map_or_else(|| list[start % list.len()].clone(), |(_, i)| i.clone()))
    }
}

impl Instance {
    fn cooling_down_until(&self, now: Instant) -> Option<Instant> {
        let until = *self.unhealthy_until.lock().expect("health lock poisoned");
        until.filter(|until| *until > now)
    }

    /// Skips this instance for `cooldown`.
    pub fn mark_unhealthy(&self, cooldown: Duration) {
        tracing::warn!(instance = %self.base, ?cooldown, "service instance unreachable; skipping it");
        *self.unhealthy_until.lock().expect("health lock poisoned") =
            Some(Instant::now() + cooldown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(base: &str, priority: u16) -> Endpoint {
        Endpoint {
            base: base.into(),
            priority,
        }
    }

    #[test]
    fn a_replacement_keeps_the_cool_down_of_instances_that_stay() {
        let instances = Instances::new(vec![endpoint("http://a", 0), endpoint("http://b", 0)]);
        let a = instances.pick().unwrap();
        assert_eq!(a.base, "http://a");
        a.mark_unhealthy(Duration::from_secs(60));
        assert!(instances.replace(vec![endpoint("http://c", 0), endpoint("http://a", 0)]));
        assert_eq!(instances.bases(), ["http://c", "http://a"]);
        for _ in 0..4 {
            assert_eq!(
                instances.pick().unwrap().base,
                "http://c",
                "a still cools down"
            );
        }
        assert!(!instances.replace(vec![endpoint("http://c", 0), endpoint("http://a", 0)]));
        assert!(instances.replace(vec![]));
        assert!(instances.pick().is_none());
    }

    #[test]
    fn a_higher_priority_is_used_only_while_every_lower_one_cools_down() {
        let instances = Instances::new(vec![
            endpoint("http://backup", 10),
            endpoint("http://a", 0),
            endpoint("http://b", 0),
        ]);
        assert_eq!(instances.bases(), ["http://a", "http://b", "http://backup"]);
        let picked: Vec<String> = (0..4)
            .map(|_| instances.pick().unwrap().base.clone())
            .collect();
        assert_eq!(picked, ["http://a", "http://b", "http://a", "http://b"]);
        for instance in instances.current().iter().take(2) {
            instance.mark_unhealthy(Duration::from_secs(60));
        }
        assert_eq!(instances.pick().unwrap().base, "http://backup");
        instances.current()[2].mark_unhealthy(Duration::from_secs(30));
        assert_eq!(
            instances.pick().unwrap().base,
            "http://backup",
            "all cool down: the one back soonest"
        );
    }
}
