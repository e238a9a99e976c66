//! The job options that decide a failed job's fate, read from the job's raw
//! `opts` JSON field by field.
//!
//! `bullmq-official` parses the whole `opts` object into typed options and,
//! when any one field does not fit (a float where it wants an integer, such as
//! `backoff.delay: 100.5`), silently falls back to *all* defaults; it also drops
//! `backoff.jitter`. Reading each field on its own keeps every option that
//! BullMQ's Node worker would honour.

use serde_json::Value;

/// The options of a job that its failures depend on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobOptions {
    /// `attempts`: at least 1.
    pub attempts: u32,
    /// `backoff`, if set.
    pub backoff: Option<JobBackoff>,
    /// `lifo`.
    pub lifo: bool,
    /// `stackTraceLimit`: how many stack traces the job keeps (all when None).
    pub stack_trace_limit: Option<usize>,
    /// `keepLogs` (stored by Node as `kl`): how many job-log lines the job
    /// keeps (all when None).
    pub keep_logs: Option<u32>,
}

/// A job's `backoff` option: `{type, delay, jitter}`, or a bare number (a
/// fixed delay).
#[derive(Debug, Clone, PartialEq)]
pub struct JobBackoff {
    /// `fixed`, `exponential` or a custom name.
    pub kind: String,
    /// Milliseconds; 0 when unset.
    pub delay: u64,
    /// 0.0–1.0; 0 when unset.
    pub jitter: f64,
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn millis(value: Option<&Value>) -> u64 {
    number(value).map_or(0, |n| n.max(0.0).round() as u64)
}

/// Reads the options from a job's raw `opts` JSON text. Fields that are
/// missing or unreadable take BullMQ's defaults, one by one.
///
/// ```
/// use bullpen::outcome::options::parse;
/// let opts = parse(r#"{"attempts":3,"backoff":{"type":"exponential","delay":100.5,"jitter":0.5}}"#);
/// assert_eq!(opts.attempts, 3);
/// let backoff = opts.backoff.unwrap();
/// assert_eq!((backoff.kind.as_str(), backoff.delay, backoff.jitter), ("exponential", 101, 0.5));
/// ```
pub fn parse(opts: &str) -> JobOptions {
    let value: Value = serde_json::from_str(opts).unwrap_or(Value::Null);
    let attempts = number(value.get("attempts")).map_or(1, |n| n.max(1.0) as u32);
    let backoff = match value.get("backoff") {
        Some(Value::Object(b)) => Some(JobBackoff {
            kind: b
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("fixed")
                .to_owned(),
            delay: millis(b.get("delay")),
            jitter: number(b.get("jitter")).unwrap_or(0.0).clamp(0.0, 1.0),
        }),
        Some(n @ (Value::Number(_) | Value::String(_))) if number(Some(n)).is_some() => {
            Some(JobBackoff {
                kind: "fixed".into(),
                delay: millis(Some(n)),
                jitter: 0.0,
            })
        }
        _ => None,
    };
    JobOptions {
        attempts,
        backoff,
        lifo: value.get("lifo").and_then(Value::as_bool).unwrap_or(false),
        stack_trace_limit: number(value.get("stackTraceLimit")).map(|n| n.max(0.0) as usize),
        keep_logs: number(value.get("kl").or(value.get("keepLogs")))
            .filter(|n| *n >= 1.0)
            .map(|n| n.min(u32::MAX as f64) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_does_not_wipe_the_other_options() {
        let opts = parse(r#"{"attempts":4,"lifo":true,"backoff":{"type":"fixed","delay":100.5}}"#);
        assert_eq!(opts.attempts, 4);
        assert!(opts.lifo);
        assert_eq!(opts.backoff.unwrap().delay, 101);
    }

    #[test]
    fn a_bare_number_is_a_fixed_backoff() {
        let opts = parse(r#"{"attempts":2,"backoff":1500}"#);
        assert_eq!(
            opts.backoff,
            Some(JobBackoff {
                kind: "fixed".into(),
                delay: 1500,
                jitter: 0.0
            })
        );
    }

    #[test]
    fn keep_logs_is_read_in_nodes_short_name_and_in_full() {
        assert_eq!(parse(r#"{"kl":2}"#).keep_logs, Some(2));
        assert_eq!(parse(r#"{"keepLogs":3}"#).keep_logs, Some(3));
        assert_eq!(parse(r#"{"kl":0}"#).keep_logs, None);
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse("{}"),
            JobOptions {
                attempts: 1,
                ..JobOptions::default()
            }
        );
        assert_eq!(parse("not json").attempts, 1);
    }
}
