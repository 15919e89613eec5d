//! A message from a broker, read as a CloudEvent: refused with an error or read into an
//! event, never a panic; an event read is written back as the same event.

#![no_main]

use flowhost::events::{cloud_event, from_cloud_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = from_cloud_event(data) else {
        return;
    };
    let written = serde_json::to_vec(&cloud_event(&event)).unwrap();
    let again = from_cloud_event(&written).expect("what cloud_event writes reads back");
    assert_eq!(again.id, event.id);
    assert_eq!(again.topic, event.topic);
    assert_eq!(again.key, event.key);
    assert_eq!(again.correlation_id, event.correlation_id);
});
