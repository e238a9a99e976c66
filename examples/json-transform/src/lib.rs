//! `json-transform`: parses the job's records, aggregates them, and returns
//! a summary: real CPU work on real JSON.
//!
//! Data: `{"records": [{"name": "a", "tags": ["x"], "value": 1.5}, ...],
//! "rounds": 1}` (`rounds` optional, default 1: how many times the work is
//! repeated). Returns `{"count", "total", "mean", "by_tag": {tag: {"count",
//! "sum", "min", "max"}}, "top": [the 3 names with the highest values],
//! "digest": <FNV-1a of the sorted records, hex>}`.
//!
//! [`transform`] is the whole job; the crate also builds natively so the
//! benchmark can run the same code outside the sandbox.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Input {
    records: Vec<Record>,
    #[serde(default = "one")]
    rounds: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, Clone)]
struct Record {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    value: f64,
}

#[derive(Serialize, Default, PartialEq, Debug)]
struct TagStats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

#[derive(Serialize, PartialEq, Debug)]
struct Summary {
    count: usize,
    total: f64,
    mean: f64,
    by_tag: BTreeMap<String, TagStats>,
    top: Vec<String>,
    digest: String,
}

/// The whole job: JSON text in, JSON text out.
///
/// ```
/// let out = json_transform::transform(r#"{"records":[{"name":"a","tags":["x"],"value":2}]}"#).unwrap();
/// assert!(out.contains(r#""total":2.0"#));
/// ```
pub fn transform(data: &str) -> Result<String, String> {
    let input: Input = serde_json::from_str(data).map_err(|e| format!("bad records: {e}"))?;
    let mut summary = summarise(&input.records);
    for _ in 1..input.rounds {
        summary = summarise(&input.records);
    }
    serde_json::to_string(&summary).map_err(|e| e.to_string())
}

fn summarise(records: &[Record]) -> Summary {
    let mut by_tag: BTreeMap<String, TagStats> = BTreeMap::new();
    let mut total = 0.0;
    for record in records {
        total += record.value;
        for tag in &record.tags {
            let stats = by_tag.entry(tag.clone()).or_insert_with(|| TagStats {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..TagStats::default()
            });
            stats.count += 1;
            stats.sum += record.value;
            stats.min = stats.min.min(record.value);
            stats.max = stats.max.max(record.value);
        }
    }
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for record in &sorted {
        for byte in record
            .name
            .bytes()
            .chain(record.value.to_bits().to_le_bytes())
        {
            digest ^= u64::from(byte);
            digest = digest.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Summary {
        count: records.len(),
        total,
        mean: if records.is_empty() {
            0.0
        } else {
            total / records.len() as f64
        },
        by_tag,
        top: sorted.iter().take(3).map(|r| r.name.clone()).collect(),
        digest: format!("{digest:016x}"),
    }
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use bullpen_guest::{Error, Job, Processor, RawValue, Result};

    struct JsonTransform;

    impl Processor for JsonTransform {
        fn process(job: Job) -> Result<impl serde::Serialize> {
            let out = super::transform(job.data_text()).map_err(Error::unrecoverable)?;
            RawValue::from_string(out).map_err(Error::from)
        }
    }

    bullpen_guest::export!(JsonTransform);
}
