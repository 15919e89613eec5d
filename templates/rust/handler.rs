//! `{{name}}`: a flowhost event handler. It logs each event it is given and refuses one whose
//! data is not a JSON object; a refused event is retried and then dead-lettered.
//!
//! Delivery is at least once: the same event id may come again, and should count as done.

use flowhost_sdk::prelude::*;

/// The plugin.
struct Plugin;

impl Handler for Plugin {
    fn handle(event: Event) -> Result<(), String> {
        let data: Value = event.data()?;
        if !data.is_object() {
            return Err(format!("event {} has no object as its data", event.id));
        }
        log::info!("{} {}: {data}", event.topic, event.id);
        Ok(())
    }
}

export_handler!(Plugin);
