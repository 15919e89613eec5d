//! The WIT `Host` trait of `flowhost:plugin/config`.

use super::ConfigCtx;
use crate::bindings::config::Host;

impl Host for ConfigCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(ConfigCtx::get(self, &key))
    }
}
