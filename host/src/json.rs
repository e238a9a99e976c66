//! JSON text on its way between Redis and a guest: whether the crate's
//! parsed copy of a job's data says exactly what the producer wrote, checks
//! on the stored bytes when it may not, and return values turned into
//! something the crate can store (a value, or text the crate stores as it
//! is).
//!
//! `bullmq-official` hands a worker the job's data only as a parsed
//! `serde_json::Value`, and a parse that fails becomes `null` (its
//! `Job::from_redis_hash` uses `.ok()`). Everything that can make that copy
//! differ from the stored text leaves a mark in the value (see
//! [`may_differ`]); only then are the stored bytes read back.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// Deepest nesting of a return value bullpen stores. The crate keeps return
/// values as a `serde_json::Value`, which it serialises, clones and drops
/// recursively on a runtime thread's stack; a guest's JSON text can be
/// nested deeper than that stack holds.
pub const MAX_RETURN_DEPTH: usize = 1_000;

/// Integers of this magnitude or more cannot all be held exactly by an
/// `f64`, which is what serde_json makes of an integer beyond `i64`/`u64`.
const EXACT_F64_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53

/// Whether the crate's parsed copy of a job's data may differ from the text
/// the producer stored, so that the stored bytes must be read.
///
/// The copy is `null` whenever the crate's parse failed (text that is not
/// JSON or not UTF-8, nesting past serde_json's 128 levels, a lone surrogate
/// escape such as `"\ud800"`, which JavaScript's `JSON.stringify` writes); a
/// string holds U+FFFD where the crate replaced bytes that are not UTF-8;
/// an integer too large for 64 bits became an inexact float. Anything else
/// is the producer's value: serialising it again gives the same JSON value
/// (whitespace and escapes may be written differently).
///
/// ```
/// use bullpen::json::may_differ;
/// use serde_json::json;
/// assert!(!may_differ(&json!({"to": "ada@example.com", "n": [1, 2.5]})));
/// assert!(may_differ(&json!(null)));
/// assert!(may_differ(&json!({"s": "bad \u{FFFD} byte"})));
/// assert!(may_differ(&json!({"big": 1.2089258196146292e24})));
/// ```
pub fn may_differ(value: &Value) -> bool {
    value.is_null() || lossy(value)
}

/// Whether `value` holds a mark of a lossy parse. Recursive: the crate's
/// parse stops at serde_json's 128 levels, and a recursive walk is about
/// twice as fast as one with a stack of its own (this runs on every job).
fn lossy(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\u{FFFD}'),
        Value::Number(n) => n
            .as_f64()
            .is_some_and(|f| n.is_f64() && f.fract() == 0.0 && f.abs() >= EXACT_F64_INTEGERS),
        Value::Array(items) => items.iter().any(lossy),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\u{FFFD}') || lossy(item)),
        Value::Null | Value::Bool(_) => false,
    }
}

/// The stored bytes of a job's `data` as the text a guest gets, or why they
/// cannot be given to it faithfully. A job with no `data` field gets `{}`,
/// as BullMQ's Node worker reads it.
///
/// ```
/// use bullpen::json::stored_data;
/// assert_eq!(stored_data(Some(br#"{"s":"\ud800"}"#.to_vec())).unwrap(), r#"{"s":"\ud800"}"#);
/// assert_eq!(stored_data(None).unwrap(), "{}");
/// assert_eq!(
///     stored_data(Some(b"{\"a\":".to_vec())).unwrap_err(),
///     "job data is not valid JSON: EOF while parsing a value at line 1 column 5"
/// );
/// assert_eq!(
///     stored_data(Some(b"\"caf\xe9\"".to_vec())).unwrap_err(),
///     "job data is not UTF-8: invalid byte at offset 4"
/// );
/// ```
pub fn stored_data(bytes: Option<Vec<u8>>) -> Result<String, String> {
    let Some(bytes) = bytes else {
        return Ok("{}".to_owned());
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "job data is not UTF-8: invalid byte at offset {}",
            e.utf8_error().valid_up_to()
        )
    })?;
    // IgnoredAny checks the syntax without building anything and without a
    // depth limit (serde_json skips values with its own stack), and, like
    // JavaScript's JSON.parse, accepts escapes of lone surrogates.
    serde_json::from_str::<IgnoredAny>(&text)
        .map_err(|e| format!("job data is not valid JSON: {e}"))?;
    Ok(text)
}

/// A guest's return value, ready for the crate to store.
#[derive(Debug, Clone, PartialEq)]
pub enum ReturnValue {
    /// A value the crate serialises as it stores it.
    Value(Value),
    /// JSON text the crate stores as it is (`Job::set_return_json`): it
    /// holds a lone surrogate escape (`"\ud800"`), which JavaScript's
    /// `JSON.stringify` writes and `JSON.parse` reads, and which a
    /// `serde_json::Value` cannot hold. Stored so, as Node stores it.
    Text(String),
}

/// A guest's return value (JSON text) as the crate stores it, or why it
/// cannot be stored.
///
/// ```
/// use bullpen::json::{storable_return_value, ReturnValue, MAX_RETURN_DEPTH};
/// let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
/// assert!(storable_return_value(&deep).is_ok());
/// let too_deep = format!("{}{}", "[".repeat(MAX_RETURN_DEPTH + 1), "]".repeat(MAX_RETURN_DEPTH + 1));
/// assert_eq!(
///     storable_return_value(&too_deep).unwrap_err(),
///     "the return value cannot be stored: it is nested 1001 levels deep, more than the 1000 bullpen stores"
/// );
/// // A lone surrogate, as JavaScript writes it: kept as written.
/// assert_eq!(
///     storable_return_value(r#"{"s":"x\ud800y"}"#).unwrap(),
///     ReturnValue::Text(r#"{"s":"x\ud800y"}"#.into())
/// );
/// // A pair is one character, and an escaped backslash is no escape.
/// assert!(matches!(
///     storable_return_value(r#"["\ud83d\ude00", "\\ud800"]"#).unwrap(),
///     ReturnValue::Value(_)
/// ));
/// ```
pub fn storable_return_value(json: &str) -> Result<ReturnValue, String> {
    match storable(json, "the return value") {
        Ok(value) => Ok(ReturnValue::Value(value)),
        // A lone surrogate is the one thing JSON.parse reads and a `Value`
        // cannot hold.
        Err(_) if depth(json) <= MAX_RETURN_DEPTH && lone_surrogate(json) && is_json(json) => {
            Ok(ReturnValue::Text(json.to_owned()))
        }
        Err(message) => Err(message),
    }
}

/// Whether `text` is one JSON value, lone surrogate escapes allowed:
/// skipping over a string does not decode its escapes. Nesting is not
/// bounded here: the caller checks [`depth`] first.
fn is_json(text: &str) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    IgnoredAny::deserialize(&mut deserializer).is_ok() && deserializer.end().is_ok()
}

/// JSON text a guest reported (its return value, a progress value) as the
/// `Value` the crate stores, or why `what` cannot be stored.
pub fn storable(json: &str, what: &str) -> Result<Value, String> {
    let depth = depth(json);
    if depth > MAX_RETURN_DEPTH {
        return Err(format!(
            "{what} cannot be stored: it is nested {depth} levels deep, \
             more than the {MAX_RETURN_DEPTH} bullpen stores"
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    // Bounded above, by MAX_RETURN_DEPTH.
    deserializer.disable_recursion_limit();
    Value::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| {
            if e.is_syntax() && lone_surrogate(json) {
                // serde_json's words ("unexpected end of hex escape") do not
                // say what is wrong with the text.
                format!(
                    "{what} cannot be stored: a string in it holds a lone surrogate escape \
                     (\\ud800 to \\udfff without its pair), which is not Unicode text \
                     ({e})"
                )
            } else {
                format!("{what} cannot be stored: {e}")
            }
        })
}

/// Whether JSON `text` has a `\uXXXX` escape of a surrogate that is not
/// half of a pair.
fn lone_surrogate(text: &str) -> bool {
    let escape = |at: usize| -> Option<u16> {
        let hex = text.get(at..at + 6)?.strip_prefix("\\u")?;
        u16::from_str_radix(hex, 16).ok()
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        match escape(at) {
            Some(0xD800..=0xDBFF) => match escape(at + 6) {
                Some(0xDC00..=0xDFFF) => at += 12,
                _ => return true,
            },
            Some(0xDC00..=0xDFFF) => return true,
            // Any other escape is two bytes at least: `\\` is skipped whole.
            _ => at += 2,
        }
    }
    false
}

/// The deepest nesting of arrays and objects in JSON `text`, read without
/// recursion. On text that is not JSON the count may be off, but never below
/// the depth a parser reaches before it finds the error.
///
/// ```
/// assert_eq!(bullpen::json::depth(r#"{"a":[1,{"b":"[[["}]}"#), 3);
/// assert_eq!(bullpen::json::depth("7"), 0);
/// ```
pub fn depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_the_crate_makes_of_stored_text_is_suspect_whenever_it_may_differ() {
        let crate_reading = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for lossy in [
            deep.as_str(),
            r#"{"s":"\ud800"}"#,
            "not json",
            "null",
            r#"{"n":123456789012345678901234}"#,
            r#"{"n":-9223372036854775809}"#,
            "NaN",
        ] {
            assert!(may_differ(&crate_reading(lossy)), "{lossy}");
        }
        let lossy_utf8 = String::from_utf8_lossy(b"{\"s\":\"caf\xe9\"}");
        assert!(may_differ(&crate_reading(&lossy_utf8)));
        for faithful in [
            r#"{"to":"ada@example.com","n":18446744073709551615,"m":-9223372036854775808}"#,
            r#"[1.5,0.1,1e-300,{"k":"é\n"}]"#,
            r#"{"f":4503599627370496.5}"#,
            "{}",
            "0",
        ] {
            let value = crate_reading(faithful);
            assert!(!may_differ(&value), "{faithful}");
            let again: Value = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(again, value, "{faithful}");
        }
    }

    #[test]
    fn stored_data_passes_any_depth_through_as_text() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(stored_data(Some(deep.clone().into_bytes())).unwrap(), deep);
        let err = stored_data(Some(format!("{}1]", "[".repeat(200)).into_bytes())).unwrap_err();
        assert_eq!(
            err,
            "job data is not valid JSON: EOF while parsing a list at line 1 column 202"
        );
        assert!(
            stored_data(Some(b"NaN".to_vec()))
                .unwrap_err()
                .starts_with("job data is not valid JSON: expected value at line 1 column 1")
        );
    }

    #[test]
    fn return_values_keep_their_numbers_and_order() {
        assert_eq!(
            storable_return_value(r#"{"b":1,"a":[2.5,"x"]}"#).unwrap(),
            ReturnValue::Value(json!({"b": 1, "a": [2.5, "x"]}))
        );
        assert_eq!(
            storable_return_value("[1] x").unwrap_err(),
            "the return value cannot be stored: trailing characters at line 1 column 5"
        );
    }

    #[test]
    fn depth_ignores_brackets_in_strings_and_escaped_quotes() {
        assert_eq!(depth(r#"["\"[[", ["\\"], {}]"#), 2);
        assert_eq!(depth(&"[".repeat(5000)), 5000);
    }
}
