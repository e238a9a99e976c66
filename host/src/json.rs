//! JSON text on its way between Redis and a guest: a job's data as the
//! text the producer stored (checked to be JSON, read again from Redis
//! when the crate's copy of the text lost bytes), and return values turned
//! into something the crate can store (a value, or text the crate stores as
//! it is).
//!
//! The patched `bullmq-official` keeps a fetched job's data as the text it
//! read (`Job::data_json`, patch 0006), and parses it only when its value is
//! asked for (patch 0007), which bullpen never does: the guest gets the
//! producer's text, neither parsed into a tree nor serialised again. That
//! text is the stored bytes, except that the crate decodes the job's hash
//! with `from_utf8_lossy`: bytes that are not UTF-8 became U+FFFD, and only
//! then are the stored bytes read back ([`data_text`]).

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// Deepest nesting of a return value bullpen stores. The crate keeps return
/// values as a `serde_json::Value`, which it serialises, clones and drops
/// recursively on a runtime thread's stack; a guest's JSON text can be
/// nested deeper than that stack holds.
pub const MAX_RETURN_DEPTH: usize = 1_000;

/// What the guest gets of a job's data, from what the crate read of it:
/// `Ok` with the text; `Err(None)` when the text the crate holds may not be
/// the stored bytes (it holds U+FFFD, which the crate writes in place of
/// bytes that are not UTF-8), so that they must be read
/// ([`stored_data`]); `Err(Some(reason))` when the data is not JSON. A job
/// with no `data` field gets `{}`, as BullMQ's Node worker reads it.
///
/// ```
/// use bullpen::json::data_text;
/// assert_eq!(data_text(Some(r#"{"n": 123456789012345678901234567890}"#)).unwrap(),
///            r#"{"n": 123456789012345678901234567890}"#);
/// assert_eq!(data_text(Some(r#"{"s":"\ud800"}"#)).unwrap(), r#"{"s":"\ud800"}"#);
/// assert_eq!(data_text(None).unwrap(), "{}");
/// assert_eq!(data_text(Some("caf\u{FFFD}")), Err(None));
/// assert_eq!(
///     data_text(Some("{\"a\":")),
///     Err(Some("job data is not valid JSON: EOF while parsing a value at line 1 column 5".into()))
/// );
/// ```
pub fn data_text(text: Option<&str>) -> Result<String, Option<String>> {
    match text {
        None => Ok("{}".to_owned()),
        Some(text) if text.contains('\u{FFFD}') => Err(None),
        Some(text) => checked(text).map(str::to_owned).map_err(Some),
    }
}

/// `text` if it is one JSON value, or why not.
fn checked(text: &str) -> Result<&str, String> {
    // IgnoredAny checks the syntax without building anything and without a
    // depth limit (serde_json skips values with its own stack), and, like
    // JavaScript's JSON.parse, accepts escapes of lone surrogates.
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| text)
        .map_err(|e| format!("job data is not valid JSON: {e}"))
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
    checked(&text)?;
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
    fn the_guest_gets_the_stored_text_or_a_reason_or_a_second_read() {
        let reading = |text: &str| data_text(Some(text));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for as_stored in [
            deep.as_str(),
            r#"{"s":"\ud800"}"#,
            "null",
            r#"{"n":123456789012345678901234}"#,
            r#"{"n":-9223372036854775809}"#,
            r#"{ "to" : "ada@example.com", "n": 1.50 }"#,
            "0",
        ] {
            assert_eq!(reading(as_stored).as_deref(), Ok(as_stored));
        }
        for not_json in ["not json", "NaN", "{\"a\":", "1 2"] {
            let reason = reading(not_json).unwrap_err().unwrap();
            assert!(
                reason.starts_with("job data is not valid JSON: "),
                "{reason}"
            );
        }
        // The crate decodes with from_utf8_lossy: the bytes must be read.
        let lossy_utf8 = String::from_utf8_lossy(b"{\"s\":\"caf\xe9\"}");
        assert_eq!(reading(&lossy_utf8), Err(None));
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
