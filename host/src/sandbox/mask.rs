//! The one type that masks a queue's secrets in a text: [`Mask`]. Where
//! it is applied to everything a guest says is `gate.rs`.
//!
//! Masking is done before any text is cut, longest secret first, with
//! overlapping secrets masked as one span; text that was cut before the
//! mask saw it (a bounded stdout capture) also loses a trailing piece that
//! begins a secret.

use aho_corasick::AhoCorasick;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// What a masked secret reads as.
pub const MASKED: &str = "***";

/// The shortest trailing piece of a secret masked in cut text: one byte
/// says nothing of a secret, and would mask the last letter of most text.
const MIN_PARTIAL: usize = 2;

/// A queue's secrets, and how to take them out of a text. Cheap to clone.
#[derive(Clone, Default)]
pub struct Mask {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// Every form a secret is written in: as it is, and as JSON and Rust's
    /// `Debug` escape it (structured logs write both).
    forms: Vec<String>,
    finder: AhoCorasick,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.inner.as_ref().map_or(0, |inner| inner.forms.len());
        write!(f, "Mask({count} forms)")
    }
}

impl PartialEq for Mask {
    fn eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => a.forms == b.forms,
            _ => false,
        }
    }
}

impl Eq for Mask {}

impl Mask {
    /// A mask for these secrets (empty ones are ignored).
    ///
    /// ```
    /// use bullpen::sandbox::Mask;
    /// let mask = Mask::new(["Pfx-7Hq2", "Pfx-7Hq2-tail-91X"]);
    /// assert_eq!(mask.mask("token Pfx-7Hq2-tail-91X, prefix Pfx-7Hq2"), "token ***, prefix ***");
    /// ```
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            // Both quote the secret: the form is what stands between.
            let json = serde_json::to_string(secret).unwrap_or_default();
            let debug = format!("{secret:?}");
            let quoted = |text: &str| text[1..text.len() - 1].to_owned();
            for form in [secret.to_owned(), quoted(&json), quoted(&debug)] {
                if !form.is_empty() && !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        if forms.is_empty() {
            return Mask::default();
        }
        // Longest first: the order partial-match checks try them in.
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let finder = AhoCorasick::new(&forms).expect("secrets make a valid automaton");
        Mask {
            inner: Some(Arc::new(Inner { forms, finder })),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether `text` holds a secret, in any of its forms.
    fn holds(&self, text: &str) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.finder.is_match(text))
    }

    /// One mask holding the secrets of both.
    pub fn union(&self, other: &Mask) -> Mask {
        let forms = |mask: &Mask| {
            mask.inner
                .as_ref()
                .map(|inner| inner.forms.clone())
                .unwrap_or_default()
        };
        let (a, b) = (forms(self), forms(other));
        Mask::new(a.iter().chain(b.iter()).map(String::as_str))
    }

    /// `text` with every secret in it replaced by [`MASKED`]. Secrets that
    /// overlap are one span; a secret that holds another is masked whole.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(inner) = &self.inner else {
            return Cow::Borrowed(text);
        };
        let mut spans: Vec<(usize, usize)> = inner
            .finder
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            out.push_str(&text[at..start]);
            out.push_str(MASKED);
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// [`Mask::mask`] for a text that was cut short before it reached the
    /// gate: a trailing piece that begins a secret is masked too.
    pub fn mask_cut<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(inner) = &self.inner else {
            return Cow::Borrowed(text);
        };
        let partial = inner.forms.iter().find_map(|form| {
            (MIN_PARTIAL..form.len())
                .rev()
                .filter(|&len| form.is_char_boundary(len))
                .find(|&len| text.ends_with(&form[..len]))
        });
        match partial {
            None => self.mask(text),
            Some(len) => {
                let kept = &text[..text.len() - len];
                Cow::Owned(format!("{}{MASKED}", self.mask(kept)))
            }
        }
    }

    /// `text` masked, then cut to `max` bytes at a character boundary.
    pub fn mask_clip<'a>(&self, text: &'a str, max: usize) -> Cow<'a, str> {
        match self.mask(text) {
            Cow::Borrowed(text) => Cow::Borrowed(&text[..floor_char_boundary(text, max)]),
            Cow::Owned(mut masked) => {
                masked.truncate(floor_char_boundary(&masked, max));
                Cow::Owned(masked)
            }
        }
    }

    /// `text` masked, without a copy when there is nothing to mask.
    pub fn mask_owned(&self, text: String) -> String {
        match self.mask(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(masked) => masked,
        }
    }

    /// A JSON text with the secrets masked in its strings, its keys and the
    /// digits of its numbers (a number holding a secret becomes the string
    /// [`MASKED`]). `json` must be JSON; one without a secret is returned
    /// as it is.
    pub fn mask_json<'a>(&self, json: &'a str) -> Cow<'a, str> {
        if !self.holds(json) {
            return Cow::Borrowed(json);
        }
        match serde_json::from_str::<Value>(json) {
            Ok(mut value) => {
                self.mask_value(&mut value);
                Cow::Owned(value.to_string())
            }
            // Not JSON after all: masked as text.
            Err(_) => self.mask(json),
        }
    }

    /// Masks the secrets in a JSON value, in place: see [`Mask::mask_json`].
    pub fn mask_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Cow::Owned(masked) = self.mask(text) {
                    *text = masked;
                }
            }
            Value::Number(number) => {
                if self.holds(&number.to_string()) {
                    *value = Value::String(MASKED.into());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.mask_value(item)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.mask_value(&mut item);
                    map.insert(self.mask(&key).into_owned(), item);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

/// The largest index `<= max` that is a character boundary of `text`.
pub(crate) fn floor_char_boundary(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_holding_another_is_masked_whole() {
        let mask = Mask::new(["Pfx-7Hq2", "Pfx-7Hq2-tail-91X"]);
        assert_eq!(mask.mask("a Pfx-7Hq2-tail-91X b"), "a *** b");
        assert_eq!(mask.mask("Pfx-7Hq2"), "***");
        // Whatever order they are given in.
        let mask = Mask::new(["Pfx-7Hq2-tail-91X", "Pfx-7Hq2"]);
        assert_eq!(mask.mask("Pfx-7Hq2-tail-91X"), "***");
    }

    #[test]
    fn overlapping_secrets_are_one_span() {
        let mask = Mask::new(["abcd", "cdef"]);
        assert_eq!(mask.mask("xabcdefx"), "x***x");
        assert_eq!(mask.mask("abcd cdef"), "*** ***");
        assert_eq!(mask.mask("nothing"), "nothing");
        assert!(matches!(mask.mask("nothing"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_forms_are_masked_too() {
        let mask = Mask::new(["quo\"te\\"]);
        assert_eq!(mask.mask(r#"{"t":"quo\"te\\"}"#), r#"{"t":"***"}"#);
        assert_eq!(mask.mask("raw quo\"te\\ here"), "raw *** here");
    }

    #[test]
    fn a_cut_text_loses_a_trailing_start_of_a_secret() {
        let mask = Mask::new(["s3cr3t-T0KEN"]);
        assert_eq!(mask.mask_cut("output ... s3cr3t-T0"), "output ... ***");
        assert_eq!(mask.mask_cut("ends with s"), "ends with s");
        assert_eq!(mask.mask_cut("s3cr3t-T0KEN and s3"), "*** and ***");
    }

    #[test]
    fn masking_comes_before_the_cut() {
        let secret = "straddling-SECRET";
        let mask = Mask::new([secret]);
        let text = format!("{}{secret}", "x".repeat(10));
        let clipped = mask.mask_clip(&text, 14);
        assert_eq!(clipped, "xxxxxxxxxx***");
        assert!(!clipped.contains("stra"));
    }

    #[test]
    fn json_is_masked_in_strings_keys_and_numbers() {
        let mask = Mask::new(["hunter2", "4242"]);
        let masked = mask.mask_json(r#"{"pw":"my hunter2","hunter2":1,"pin":424242,"ok":[1,"a"]}"#);
        let value: Value = serde_json::from_str(&masked).unwrap();
        assert_eq!(
            value,
            json!({"pw": "my ***", "***": 1, "pin": "***", "ok": [1, "a"]})
        );
        assert!(matches!(mask.mask_json(r#"{"a":1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn no_secrets_mask_nothing() {
        let mask = Mask::new(["", ""]);
        assert!(mask.is_empty());
        assert!(matches!(mask.mask("text"), Cow::Borrowed(_)));
    }
}
