//! Shared pieces of the benchmarks.

/// The data of a `json-transform` job: `n` records with two tags each, as
/// `{"records": [...]}`. The same input for the guest, the native code and
/// the Node processor.
///
/// ```
/// let data: serde_json::Value = serde_json::from_str(&bullpen_bench::records(3)).unwrap();
/// assert_eq!(data["records"].as_array().unwrap().len(), 3);
/// ```
pub fn records(n: usize) -> String {
    const TAGS: [&str; 5] = ["red", "green", "blue", "small", "large"];
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("item-{i}"),
                "tags": [TAGS[i % 5], TAGS[(i / 5) % 5]],
                "value": ((i * 37) % 101) as f64 * 1.5,
            })
        })
        .collect();
    serde_json::json!({ "records": records }).to_string()
}
