//! The per-store resource limiter.
//!
//! Wraps wasmtime's [`StoreLimits`] and remembers whether a request to grow past the cap was
//! refused, so that the trap that usually follows (a guest allocator aborting) is reported
//! as what it is: the memory cap, not a random `unreachable`.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Most tables, memories and instances one component instance may create. Generous for
/// Python and JS components, which link many core modules.
const MAX_PER_STORE: usize = 100;

/// Largest table a plugin may grow to, in elements.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A memory cap that remembers being hit.
pub struct MemoryLimiter {
    limits: StoreLimits,
    /// The cap in bytes, for error messages.
    limit_bytes: usize,
    /// Set when a memory (initial size included) or table was refused.
    hit: bool,
}

impl MemoryLimiter {
    /// A limiter capping every linear memory at `limit_bytes`, initial size included.
    pub fn new(limit_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limit_bytes)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(MAX_PER_STORE)
            .memories(MAX_PER_STORE)
            .tables(MAX_PER_STORE)
            .build();
        Self {
            limits,
            limit_bytes,
            hit: false,
        }
    }

    /// Whether a growth was refused during this store's life.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// The cap in bytes.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
