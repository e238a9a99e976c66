//! The comparison of the oracle suites: a job as BullMQ's own Node worker
//! left it against the same job as bullpen left it, each read back by
//! `tests/interop/node/oracle.mjs`. Only what must differ is normalised:
//! timestamps, the worker's name, stack trace texts (their count is
//! compared), and delays (compared by order of magnitude).

use serde_json::Value;

/// Hash fields whose values differ by nature between two runs.
const TIMESTAMPS: [&str; 4] = ["timestamp", "processedOn", "finishedOn", "pb"];
/// Hash fields holding JSON, compared parsed.
const JSON_FIELDS: [&str; 4] = ["data", "opts", "returnvalue", "progress"];

/// Every way `ours` differs from `oracle`, one line each.
pub fn differences(oracle: &Value, ours: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    if oracle["state"] != ours["state"] {
        diffs.push(format!(
            "state: node {} bullpen {}",
            oracle["state"], ours["state"]
        ));
    }
    let (a, b) = (
        oracle["hash"].as_object().unwrap(),
        ours["hash"].as_object().unwrap(),
    );
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        if TIMESTAMPS.contains(&key.as_str()) {
            continue;
        }
        let (x, y) = (a.get(key.as_str()), b.get(key.as_str()));
        let same = match (key.as_str(), x, y) {
            (_, None, _) | (_, _, None) => false,
            ("stacktrace", Some(x), Some(y)) => {
                let len = |v: &Value| {
                    serde_json::from_str::<Vec<Value>>(v.as_str().unwrap())
                        .map(|s| s.len())
                        .ok()
                };
                len(x) == len(y)
            }
            ("delay", Some(x), Some(y)) => same_magnitude(x, y),
            (k, Some(x), Some(y)) if JSON_FIELDS.contains(&k) => {
                let parse = |v: &Value| serde_json::from_str::<Value>(v.as_str().unwrap()).ok();
                parse(x) == parse(y)
            }
            (_, Some(x), Some(y)) => x == y,
        };
        if !same {
            diffs.push(format!("hash.{key}: node {x:?} bullpen {y:?}"));
        }
    }
    if oracle["logs"] != ours["logs"] {
        diffs.push(format!(
            "logs: node {} bullpen {}",
            oracle["logs"], ours["logs"]
        ));
    }
    let names = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    };
    if names(oracle) != names(ours) {
        diffs.push(format!(
            "events: node {:?} bullpen {:?}",
            names(oracle),
            names(ours)
        ));
    }
    for kind in ["completed", "failed"] {
        let field = if kind == "completed" {
            "returnvalue"
        } else {
            "failedReason"
        };
        let pick = |v: &Value| -> Vec<Value> {
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["event"] == kind)
                .map(|e| e[field].clone())
                .collect()
        };
        if pick(oracle) != pick(ours) {
            diffs.push(format!(
                "{kind} events' {field}: node {:?} bullpen {:?}",
                pick(oracle),
                pick(ours)
            ));
        }
    }
    diffs
}

/// Delays within a factor of 2 (or both under 10 ms).
fn same_magnitude(x: &Value, y: &Value) -> bool {
    let ms = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let (x, y) = (ms(x), ms(y));
    (x < 10.0 && y < 10.0) || (x > 0.0 && y > 0.0 && x / y < 2.0 && y / x < 2.0)
}
