//! The WIT `Host` trait of `flowhost:plugin/services`.

use super::{CallError, Request, Response, ServicesCtx};
use crate::bindings::services::Host;

impl Host for ServicesCtx {
    async fn call(&mut self, request: Request) -> wasmtime::Result<Result<Response, CallError>> {
        Ok(ServicesCtx::call(self, request).await)
    }
}
