//! The WIT `Host` trait of `flowhost:plugin/events`.

use super::{EventsCtx, PublishError};
use crate::bindings::events::Host;

impl Host for EventsCtx {
    async fn publish(
        &mut self,
        topic: String,
        data: String,
        key: Option<String>,
    ) -> wasmtime::Result<Result<String, PublishError>> {
        Ok(EventsCtx::publish(self, topic, data, key))
    }
}
