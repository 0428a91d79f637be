#![no_main]
//! Fuzz target: the configuration file. Any TOML (or garbage) must load
//! into settings or a clear error, never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = deskhand::config::Config::from_toml_str(text);
});
