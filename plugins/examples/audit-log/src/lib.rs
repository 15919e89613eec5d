//! `audit-log`: an event handler that logs every event it receives and counts deliveries
//! per topic in the cache (`count:<topic>`). An event whose data has `"fail": true` is
//! refused, so tests can exercise retries and dead letters.
//!
//! The counter is a read-then-write, not atomic: concurrent deliveries may lose an
//! increment. It is an audit aid, not a ledger.

use flowhost_sdk::prelude::*;

/// The plugin.
struct AuditLog;

impl Handler for AuditLog {
    fn handle(event: Event) -> Result<(), String> {
        log::info!(
            "event {} on {} (correlation id {})",
            event.id,
            event.topic,
            event.correlation_id.as_deref().unwrap_or("none"),
        );
        // Counted before the `fail` check, so every delivery attempt shows.
        let key = format!("count:{}", event.topic);
        let count = cache::get::<u64>(&key).unwrap_or(0) + 1;
        cache::set(&key, &count, None)?;

        let asked_to_fail = event
            .data::<Value>()
            .is_ok_and(|data| data.get("fail") == Some(&Value::Bool(true)));
        if asked_to_fail {
            return Err("asked to fail".to_string());
        }
        Ok(())
    }
}

export_handler!(AuditLog);
