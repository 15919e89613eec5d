//! The WIT `Host` trait of `flowhost:plugin/cache`.

use std::time::Duration;

use super::{CacheCtx, CacheError};
use crate::bindings::cache::Host;

impl Host for CacheCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(CacheCtx::get(self, &key))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), CacheError>> {
        Ok(CacheCtx::set(
            self,
            &key,
            value,
            ttl_ms.map(Duration::from_millis),
        ))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        CacheCtx::delete(self, &key);
        Ok(())
    }
}
