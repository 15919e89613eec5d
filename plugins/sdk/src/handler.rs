//! Event handlers: the [`Handler`] trait a handler plugin implements and the [`Event`]
//! helpers.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use crate::bindings::handler::exports::flowhost::plugin::event_handler::Guest;

pub use crate::bindings::flowhost::plugin::types::Event;

/// An event handler.
///
/// # Lifecycle
///
/// The host calls [`handle`](Handler::handle) once per delivery, each time in a fresh
/// instance (no state survives in globals: use [`crate::cache`]). Delivery is at least once:
/// the same [`Event::id`] may arrive again, so treat a repeat as done. An `Err` is retried
/// with backoff and, after the subscription's attempts, the event goes to the dead-letter
/// store.
///
/// # Example
///
/// ```ignore
/// use flowhost_sdk::prelude::*;
///
/// struct Audit;
///
/// impl Handler for Audit {
///     fn handle(event: Event) -> Result<(), String> {
///         log::info!("{} {}", event.topic, event.id);
///         Ok(())
///     }
/// }
///
/// export_handler!(Audit);
/// ```
pub trait Handler {
    /// Handles one event; the error message ends up in the host's logs and dead letters.
    fn handle(event: Event) -> Result<(), String>;
}

impl Event {
    /// The payload deserialized into `T`. The error is a message, so `?` works in
    /// [`Handler::handle`].
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.data).map_err(|error| format!("malformed event data: {error}"))
    }

    /// The publication time.
    pub fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.time_ms)
    }
}

/// Adapts a [`Handler`] to the generated `event-handler` export trait; used by
/// [`export_handler!`](crate::export_handler).
#[doc(hidden)]
pub struct HandlerExport<H>(PhantomData<H>);

impl<H: Handler> Guest for HandlerExport<H> {
    fn handle(event: Event) -> Result<(), String> {
        H::handle(event)
    }
}
