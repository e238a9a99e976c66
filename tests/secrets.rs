//! A queue's secrets never leave bullpen, whatever path a processor says
//! them on (issue 26): every field of the job hash, the job's log, the
//! events stream, the host's log (text and JSON), `/metrics`, `/attempts`,
//! `bullpen jobs` and `bullpen exec`; for a Rust, a JavaScript and a Python
//! processor. The two secrets overlap (one is the other's prefix), and they
//! are said where the host cuts a panic message.

use bullpen::queue::bullmq::JobOptions;
use bullpen::queue::bullmq::types::BackoffStrategy;
use bullpen_tests::{
    RedisServer, RunningHost, finished, free_port, http_get, queue as open, script_guest,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const TOKEN: &str = "Pfx-7Hq2-tail-91X";
const PREFIX: &str = "Pfx-7Hq2";
/// What is left of either secret if one is cut before it is masked.
const STUB: &str = "Pfx-7";

fn set_secrets() {
    // SAFETY: set before any thread of this test reads the environment;
    // both tests set the same values.
    unsafe {
        std::env::set_var("BULLPEN_TEST_LEAK_TOKEN", TOKEN);
        std::env::set_var("BULLPEN_TEST_LEAK_PREFIX", PREFIX);
    }
}

/// Who says the secrets: a module in the host's `modules/`, copied there
/// from `source` unless it is an example.
struct Leaker {
    module: &'static str,
    source: Option<PathBuf>,
}

impl Leaker {
    fn rust() -> Self {
        Leaker {
            module: "misbehave.wasm",
            source: None,
        }
    }

    fn script(source: &str) -> Self {
        Leaker {
            module: "leak.wasm",
            source: Some(script_guest(source)),
        }
    }

    fn is_rust(&self) -> bool {
        self.source.is_none()
    }
}

/// The queue table every test runs, after `[host]` keys.
fn config(host_keys: &str, module: &str) -> String {
    format!(
        "{host_keys}\n\n[queues.leaky]\nmodule = \"{module}\"\n\
         secrets = {{ API_TOKEN = {{ env = \"BULLPEN_TEST_LEAK_TOKEN\" }}, \
                      API_PREFIX = {{ env = \"BULLPEN_TEST_LEAK_PREFIX\" }} }}\n"
    )
}

/// Fails naming `place` if a secret, or the start of one, is in `text`.
fn assert_masked(place: &str, text: &str) {
    for needle in [TOKEN, PREFIX, STUB] {
        assert!(
            !text.contains(needle),
            "{place} holds `{needle}`:\n{}",
            // Enough to see where, not a 4 KiB panic message.
            text.match_indices(needle)
                .map(|(at, _)| &text[at.saturating_sub(200)..(at + 40).min(text.len())])
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
}

fn leak(how: &str) -> Value {
    json!({"mode": "leak", "how": how, "names": ["API_TOKEN", "API_PREFIX"]})
}

/// Every way `misbehave`'s `leak` mode says the secrets, with the options
/// that lead there and the state the job ends in.
fn cases() -> Vec<(&'static str, JobOptions, &'static str)> {
    let once = JobOptions {
        attempts: Some(1),
        ..JobOptions::default()
    };
    vec![
        ("complete", once.clone(), "completed"),
        ("fail", once.clone(), "failed"),
        ("unrecoverable", once.clone(), "failed"),
        ("panic", once.clone(), "failed"),
        ("update-data", once, "completed"),
        (
            "backoff",
            JobOptions {
                attempts: Some(3),
                backoff: Some(BackoffStrategy::Custom("leak".into())),
                ..JobOptions::default()
            },
            "failed",
        ),
    ]
}

async fn nothing_leaks(leaker: Leaker, log_format: &str) {
    set_secrets();
    let redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = config(
        &format!("metrics = \"{addr}\"\nlog_format = \"{log_format}\""),
        leaker.module,
    );
    let modules: Vec<(&str, &std::path::Path)> = leaker
        .source
        .iter()
        .map(|source| (leaker.module, source.as_path()))
        .collect();
    let host = RunningHost::start_with_modules(&redis, &config, &modules);
    let queue = open(&redis, "leaky").await;
    let mut everything = String::new();
    for (how, options, state) in cases() {
        let id = queue
            .add("leak", leak(how))
            .options(options)
            .await
            .unwrap()
            .id()
            .to_owned();
        let (ended, job) = finished(&queue, &id, Duration::from_secs(20)).await;
        assert_eq!(
            ended,
            state,
            "{how}: {}\n{}",
            job.failed_reason(),
            host.log()
        );
        let text = bullpen_tests::stored(&queue, &id).await;
        assert_masked(&format!("job `{how}` in Redis"), &text);
        // Masked, not dropped: each path still says what it said.
        assert!(text.contains("***"), "{how}: {text}");
        match how {
            "complete" => assert_eq!(
                serde_json::from_str::<Value>(job.returnvalue()).unwrap(),
                json!({"echo": "*** ***"})
            ),
            "fail" => {
                assert_eq!(job.failed_reason(), "bad *** ***");
                // The failure's name, the secret, starts the stack entry.
                assert!(text.contains("***: bad *** ***"), "{text}");
            }
            // Cut at 4 KiB after masking (Rust's panic message), or kept
            // whole (a script's error).
            "panic" => assert!(
                job.failed_reason().contains("xxx***"),
                "{}",
                job.failed_reason()
            ),
            "backoff" if leaker.is_rust() => assert!(
                job.failed_reason().contains(
                    "(backoff strategy leak crashed: panicked at examples/misbehave/src/lib.rs"
                ) && job.failed_reason().ends_with("the strategy saw *** ***)"),
                "{}",
                job.failed_reason()
            ),
            _ => {}
        }
        everything.push_str(&text);
    }
    assert!(
        everything.contains(r#"{\"said\":\"*** ***\"}"#),
        "{everything}"
    );
    assert!(everything.contains("job log *** ***"), "{everything}");

    assert_masked(
        "the events stream",
        &format!("{:?}", bullpen_tests::events(&queue).await),
    );
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_masked("/metrics", &metrics);
    let (status, attempts) = http_get(&addr, "/attempts?queue=leaky");
    assert_eq!(status, 200);
    assert_masked("/attempts", &attempts);
    let (code, stdout, stderr) = host.cli(&["jobs", "leaky"]);
    assert_eq!(code, 0, "{stderr}");
    assert_masked("bullpen jobs", &format!("{stdout}{stderr}"));

    // The guest's log message and its stderr are in the host's log,
    // masked; so is the crash of a Rust strategy (a script's strategy that
    // throws gives up, saying so in a log the host does not keep).
    let log = host.log();
    assert_masked("the host's log", &log);
    let mut in_log = vec!["log *** ***", "stderr *** ***"];
    if leaker.is_rust() {
        in_log.push("the strategy saw *** ***");
    }
    for said in in_log {
        assert!(log.contains(said), "`{said}` is not in the log:\n{log}");
    }
    if log_format == "json" {
        let line = log
            .lines()
            .find(|line| line.contains("log *** ***"))
            .unwrap();
        let parsed: Value = serde_json::from_str(line).unwrap();
        assert_eq!(parsed["level"], "WARN", "{line}");
    }

    // `bullpen exec` runs the queue's module with its secrets.
    for (how, _, _) in cases() {
        let data = leak(how).to_string();
        let module = format!("modules/{}", leaker.module);
        let mut args = vec!["exec", &module, "--queue", "leaky", "--data", &data];
        if how == "backoff" {
            args.extend(["--attempts", "3", "--backoff", "leak"]);
        }
        let (_, stdout, stderr) = host.cli(&args);
        assert_masked(
            &format!("bullpen exec `{how}`"),
            &format!("{stdout}{stderr}"),
        );
        assert!(stdout.contains("***"), "{how}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_rust_processor_lets_a_secret_out() {
    nothing_leaks(Leaker::rust(), "text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_rust_processor_lets_a_secret_out_of_a_json_log() {
    nothing_leaks(Leaker::rust(), "json").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_javascript_processor_lets_a_secret_out() {
    nothing_leaks(Leaker::script("tests/fixtures/js/leak.js"), "text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_javascript_processor_lets_a_secret_out_of_a_json_log() {
    nothing_leaks(Leaker::script("tests/fixtures/js/leak.js"), "json").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_python_processor_lets_a_secret_out() {
    nothing_leaks(Leaker::script("tests/fixtures/python/leak.py"), "text").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_of_a_python_processor_lets_a_secret_out_of_a_json_log() {
    nothing_leaks(Leaker::script("tests/fixtures/python/leak.py"), "json").await;
}
