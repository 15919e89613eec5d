//! The WIT `Host` trait of `flowhost:plugin/log`.

use super::{Level, LogCtx};
use crate::bindings::log::Host;

impl Host for LogCtx {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        LogCtx::log(self, level, &message);
        Ok(())
    }
}
