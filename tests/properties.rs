//! Properties over generated inputs: bullpen's backoff against BullMQ's own
//! `Backoffs.calculate` (Node), and the parsers of what producers write
//! (job options, job data) never panicking on anything.

use bullpen::outcome::backoff::Builtin;
use bullpen::outcome::options;
use bullpen_tests::node_run;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::json;
use std::time::Duration;

#[test]
fn builtin_backoff_delays_are_bullmqs() {
    // Sampled here, computed by BullMQ in one Node run, compared one by one.
    let strategy = (
        prop_oneof![Just("fixed"), Just("exponential")],
        0u64..10_000_000,
        prop_oneof![Just(0.0), 0.0f64..=1.0],
        1u32..30,
        0.0f64..1.0,
    );
    let mut runner = TestRunner::deterministic();
    let cases: Vec<_> = (0..2_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let json_cases: Vec<_> = cases
        .iter()
        .map(|(kind, delay, jitter, attempts_made, random)| {
            json!({"type": kind, "delay": delay, "jitter": jitter, "attemptsMade": attempts_made, "random": random})
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(&json_cases).unwrap()).unwrap();
    let path = file.path().to_str().unwrap();
    let theirs = node_run("backoff.mjs", &[], &[("BACKOFF_CASES", path)]);
    for ((kind, delay, jitter, attempts_made, random), theirs) in
        cases.iter().zip(theirs.as_array().unwrap())
    {
        let ours = Builtin::named(kind).unwrap().delay(
            *attempts_made,
            Duration::from_millis(*delay),
            *jitter,
            *random,
        );
        assert_eq!(
            ours.as_millis() as u64,
            theirs.as_u64().unwrap(),
            "{kind} delay {delay} jitter {jitter} attemptsMade {attempts_made} random {random}"
        );
    }
}

/// A JSON value shaped like job options: their keys, with values of any
/// type, and other keys.
fn options_like() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(json!(0), Into::into)),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("delay".to_owned()),
                    Just("jitter".to_owned()),
                    ".{0,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(
        prop_oneof![
            Just("attempts".to_owned()),
            Just("backoff".to_owned()),
            Just("lifo".to_owned()),
            Just("stackTraceLimit".to_owned()),
            Just("kl".to_owned()),
            Just("keepLogs".to_owned()),
            ".{0,8}"
        ],
        value,
        0..6,
    )
    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_options_json_decodes_field_by_field(opts in options_like()) {
        let parsed = options::parse(&opts.to_string());
        // What is there and well-typed is read; everything else is a default.
        prop_assert!(parsed.attempts >= 1);
        if let Some(n) = opts.get("attempts").and_then(|a| a.as_u64()).filter(|n| (1..=u64::from(u32::MAX)).contains(n)) {
            prop_assert_eq!(u64::from(parsed.attempts), n);
        }
        if let Some(backoff) = &parsed.backoff {
            prop_assert!((0.0..=1.0).contains(&backoff.jitter));
        }
    }

    #[test]
    fn any_options_text_decodes_or_defaults(text in ".{0,64}") {
        let _ = options::parse(&text);
    }

    #[test]
    fn stored_job_data_is_given_as_stored_or_refused_saying_why(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match bullpen::json::stored_data(Some(bytes.clone())) {
            Ok(text) => prop_assert_eq!(text.as_bytes(), &bytes[..]),
            Err(reason) => prop_assert!(reason.starts_with("job data "), "{}", reason),
        }
    }

    #[test]
    fn json_job_data_reaches_the_guest_unchanged(value in options_like()) {
        let text = value.to_string();
        prop_assert_eq!(bullpen::json::stored_data(Some(text.clone().into_bytes())), Ok(text));
    }
}
