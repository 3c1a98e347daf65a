//! The config file (`--config`, TOML): `scanfleet_common::config::FileConfig::parse`.
//!
//! Invariants: never panics; an error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scanfleet_common::config::FileConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = FileConfig::parse(text, Path::new("fuzz.toml")) {
        assert!(e.to_string().starts_with("config fuzz.toml: "), "{e}");
    }
});
