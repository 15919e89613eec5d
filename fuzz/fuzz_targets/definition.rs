//! A workflow definition, as `PUT /v1/workflows/{name}` reads it (JSON) and the
//! configuration's `[workflows.*]` do (TOML): parsed, then validated (conditions, awaits,
//! parallel branches, schedules); never a panic. A definition that validates keeps its
//! digest through a round trip through JSON.

#![no_main]

use flowhost::model::WorkflowDefinition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(definition) = serde_json::from_slice::<WorkflowDefinition>(data) else {
        return;
    };
    if definition.validate().is_err() {
        return;
    }
    let again: WorkflowDefinition =
        serde_json::from_value(serde_json::to_value(&definition).unwrap()).unwrap();
    assert_eq!(again.digest(), definition.digest());
});
