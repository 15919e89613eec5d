//! The records the stores keep (runs, journal entries, outbox entries, dead letters, plugin
//! versions), as a corrupt or foreign file would hand them back: refused, never a panic;
//! whatever reads writes back to the same record.

#![no_main]

use flowhost::model::{DeadLetter, JournalEntry, OutboxEntry, PluginVersion, Run};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<T>(data) {
        let again: T = serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(again, record);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Run>(data);
    round_trip::<JournalEntry>(data);
    round_trip::<OutboxEntry>(data);
    round_trip::<DeadLetter>(data);
    round_trip::<PluginVersion>(data);
});
