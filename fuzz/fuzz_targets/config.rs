//! The configuration file: any text either parses into a configuration that validates, or
//! is refused with an error; it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = flowhost::Config::from_toml(text) {
        let _ = config.validate();
    }
});
