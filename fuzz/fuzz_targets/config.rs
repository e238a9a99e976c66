//! The config parser on any text: a config is accepted or refused with a
//! reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match bullpen::config::Config::parse("/fuzz/bullpen.toml".as_ref(), text) {
        Ok(config) => {
            // What a loaded config is used for first.
            for name in config.queues.keys() {
                let _ = config.queue(name);
            }
        }
        Err(error) => {
            let reason = error.to_string();
            assert!(reason.starts_with("/fuzz/bullpen.toml"), "{reason}");
        }
    }
});
