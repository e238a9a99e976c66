//! A job's hash as a producer may have written it, through what reads it:
//! the crate's `Job::from_redis_hash`, then bullpen's own decoding of the
//! data (handed to the guest as stored, or refused saying why) and the
//! options (field by field). Never a panic.
//!
//! Input: the fields' values separated by NUL bytes, in the order of
//! [`FIELDS`].
#![no_main]

use bullpen::queue::bullmq::Job;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

const FIELDS: [&str; 7] = [
    "data",
    "opts",
    "name",
    "timestamp",
    "attemptsMade",
    "atm",
    "ats",
];

fuzz_target!(|bytes: &[u8]| {
    let values: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    let fields: HashMap<String, String> = FIELDS
        .iter()
        .zip(&values)
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    let raw_data = values.first().map(|d| d.to_vec());
    if let Ok(job) = Job::from_redis_hash("1", &fields) {
        let _ = bullpen::json::may_differ(job.data());
        let _ = (job.attempts_made(), job.attempts_started(), job.opts());
    }
    if let Ok(text) = bullpen::json::stored_data(raw_data.clone()) {
        assert_eq!(Some(text.into_bytes()), raw_data);
    }
    let options = bullpen::outcome::options::parse(fields.get("opts").map_or("", String::as_str));
    assert!(options.attempts >= 1);
    if let Some(value) = values.get(1).and_then(|v| std::str::from_utf8(v).ok()) {
        let _ = bullpen::json::storable_return_value(value);
    }
});
