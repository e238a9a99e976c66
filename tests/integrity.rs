//! Nothing corrupted, nothing unbounded (issue 12): job data reaches the
//! guest as the producer stored it or the job fails saying why; return
//! values that cannot be stored say so, the same under `run` and `exec`;
//! report floods stop at the attempt's budget; delays and rate limits stay
//! within bounds.

use bullpen::queue::bullmq::{Job, JobOptions, Queue};
use bullpen_tests::{
    RedisServer, RunningHost, bullpen, field, finished, guest, queue as open, wait_for_state,
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECONDS_10: Duration = Duration::from_secs(10);

/// Adds a job named `name` whose stored `data` is exactly `bytes`, as a
/// producer in another language may write it; nothing takes jobs yet.
async fn add_raw(queue: &Queue, name: &str, bytes: &[u8], attempts: u32) -> String {
    let options = JobOptions {
        attempts: Some(attempts),
        ..JobOptions::default()
    };
    let id = queue
        .add(name, json!({}))
        .options(options)
        .await
        .unwrap()
        .id()
        .to_owned();
    let mut connection = queue.connection().connection();
    let _: () = connection
        .hset(queue.keys().job_key(&id), "data", bytes)
        .await
        .unwrap();
    id
}

async fn done(queue: &Queue, id: &str) -> (String, Job) {
    finished(queue, id, SECONDS_10).await
}

fn nested(depth: usize) -> String {
    format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread")]
async fn job_data_reaches_the_guest_byte_for_byte_or_fails_the_job_saying_why() {
    let redis = RedisServer::start();
    let queue = open(&redis, "odd").await;
    let deep = nested(200);
    // What JavaScript's JSON.stringify writes for a lone surrogate, a number
    // too large for 64 bits (a Python producer), and `null` itself: each
    // became `null`, or an inexact float, through the crate's parse.
    let faithful: Vec<(&str, String)> = vec![
        ("deep", deep.clone()),
        ("surrogate", r#"{"s":"\ud800"}"#.to_owned()),
        ("big", r#"{"n":123456789012345678901234567890}"#.to_owned()),
        ("null", "null".to_owned()),
        (
            "plain",
            r#"{"to":"ada@example.com","n":[1,2.5]}"#.to_owned(),
        ),
    ];
    let mut shown = Vec::new();
    for (label, text) in &faithful {
        shown.push((
            *label,
            text.clone(),
            add_raw(&queue, "data-text", text.as_bytes(), 3).await,
        ));
    }
    // The echo guest returns its data as its value: 200 levels are stored
    // whole (the crate's own parse stops at 128).
    let echo = open(&redis, "odd-echo").await;
    let echoed = add_raw(&echo, "echo", deep.as_bytes(), 1).await;
    // A lone surrogate in a return value is stored as written, as Node's
    // JSON.stringify writes it (the crate's patch 0003).
    let surrogate = r#"{"s":"x\ud800y"}"#;
    let echoed_surrogate = add_raw(&echo, "echo", surrogate.as_bytes(), 1).await;
    let broken = [
        (
            &b"{\"a\":"[..],
            "job data is not valid JSON: EOF while parsing a value at line 1 column 5",
        ),
        (
            &b"\"caf\xe9\""[..],
            "job data is not UTF-8: invalid byte at offset 4",
        ),
        (
            &b"{\"x\":NaN}"[..],
            "job data is not valid JSON: expected value at line 1 column 6",
        ),
    ];
    let mut refused = Vec::new();
    for (bytes, reason) in broken {
        refused.push((add_raw(&queue, "data-text", bytes, 3).await, reason));
    }

    let host = RunningHost::start(
        &redis,
        "[queues.odd]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\n\
         [queues.odd-echo]\nmodule = \"echo.wasm\"\n",
    );
    for (label, text, id) in shown {
        let (state, _) = done(&queue, &id).await;
        assert_eq!(state, "completed", "{label}: {}", host.log());
        let returned: Value =
            serde_json::from_str(&field(&queue, &id, "returnvalue").await.unwrap()).unwrap();
        assert_eq!(returned, json!(text), "{label}: the guest got other bytes");
    }
    for (id, reason) in refused {
        // Read field by field: the crate cannot load a hash that is not UTF-8.
        let state = wait_for_state(&queue, &id, &["completed", "failed"], SECONDS_10).await;
        assert_eq!(state, "failed", "{}", host.log());
        assert_eq!(field(&queue, &id, "failedReason").await.unwrap(), reason);
        // Unrecoverable: no retry, though attempts = 3.
        assert_eq!(
            field(&queue, &id, "atm").await.unwrap(),
            "1",
            "job {id} was retried"
        );
    }
    let (state, _) = done(&echo, &echoed).await;
    assert_eq!(state, "completed", "{}", host.log());
    assert_eq!(field(&echo, &echoed, "returnvalue").await.unwrap(), deep);
    let (state, _) = done(&echo, &echoed_surrogate).await;
    assert_eq!(state, "completed", "{}", host.log());
    assert_eq!(
        field(&echo, &echoed_surrogate, "returnvalue")
            .await
            .unwrap(),
        surrogate
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_return_value_too_deep_to_store_fails_alike_under_run_and_exec() {
    let redis = RedisServer::start();
    let queue = open(&redis, "deep").await;
    let too_deep = nested(1_000); // 1,001 levels with the object around it
    let id = add_raw(&queue, "echo", too_deep.as_bytes(), 1).await;
    let fine = add_raw(&queue, "echo", nested(300).as_bytes(), 1).await;
    let host = RunningHost::start(&redis, "[queues.deep]\nmodule = \"echo.wasm\"\n");
    let reason = "the return value cannot be stored: it is nested 1001 levels deep, \
                  more than the 1000 bullpen stores";
    let (state, job) = done(&queue, &id).await;
    assert_eq!(state, "failed", "{}", host.log());
    assert_eq!(job.failed_reason(), reason);
    assert_eq!(done(&queue, &fine).await.0, "completed");

    for (data, outcome) in [(too_deep, "failed"), (nested(300), "completed")] {
        let output = bullpen()
            .arg("exec")
            .arg(guest("echo"))
            .args(["--data", &data, "--no-cache"])
            .output()
            .unwrap();
        let mut reader = serde_json::Deserializer::from_slice(&output.stdout);
        reader.disable_recursion_limit();
        let report = <Value as serde::Deserialize>::deserialize(&mut reader).unwrap();
        assert_eq!(report["outcome"], outcome, "{report}");
        if outcome == "failed" {
            assert_eq!(report["error"]["message"], reason);
            assert_eq!(output.status.code(), Some(3));
        } else {
            assert_eq!(report["return_value"].to_string(), data);
        }
    }
    // A lone surrogate is stored as written under `run` (above, in
    // job_data_reaches_the_guest…); `exec` gives its text.
    let surrogate = r#"{"s":"x\ud800y"}"#;
    let output = bullpen()
        .arg("exec")
        .arg(guest("echo"))
        .args(["--data", surrogate, "--no-cache"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "completed", "{report}");
    assert_eq!(report["return_value_json"], surrogate, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn report_floods_stop_at_the_attempts_budget_and_say_so_once() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.loud]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\nreport_budget = \"256KiB\"\n",
    );
    let queue = open(&redis, "loud").await;
    let mut connection = queue.connection().connection();
    let before: u64 = used_memory(&mut connection).await;
    let mut logs = Vec::new();
    for _ in 0..4 {
        // 10,000 × 64 KiB = 625 MiB asked, per job.
        let data = json!({"mode": "job-log", "times": 10_000, "bytes": 65_536});
        logs.push(queue.add("t", data).await.unwrap().id().to_owned());
    }
    let progress = queue
        .add("t", json!({"mode": "progress", "times": 10_000}))
        .await
        .unwrap()
        .id()
        .to_owned();
    for id in &logs {
        let (state, _) = done(&queue, id).await;
        assert_eq!(state, "completed", "{}", host.log());
        let lines: Vec<String> = connection
            .lrange(format!("{}:logs", queue.keys().job_key(id)), 0, -1)
            .await
            .unwrap();
        let guest_bytes: usize = lines
            .iter()
            .filter(|l| !l.starts_with("bullpen: "))
            .map(String::len)
            .sum();
        assert!(
            guest_bytes <= 256 << 10,
            "{guest_bytes} bytes of job log kept"
        );
        assert_eq!(lines.len(), 3 + 1, "3 guest lines, the drop line");
        assert_eq!(
            lines.last().unwrap(),
            &format!(
                "bullpen: 9997 report(s) ({} bytes of job-log lines and progress) over this \
                 attempt's budget of 256 KiB were dropped",
                9997 * 65_536
            )
        );
    }
    let after = used_memory(&mut connection).await;
    assert!(
        after < before + (8 << 20),
        "Redis grew from {before} to {after} bytes"
    );

    let (state, _) = done(&queue, &progress).await;
    assert_eq!(state, "completed", "{}", host.log());
    let events = bullpen_tests::events(&queue).await;
    let progress_events = format!("{events:?}").matches("\"progress\"").count();
    // 256 KiB at 257+ bytes a report: at most 1,020 writes, fewer when
    // values the writer had not caught up with were replaced.
    assert!(
        (1..=1_020).contains(&progress_events),
        "{progress_events} progress events"
    );
    let last: u64 = field(&queue, &progress, "progress")
        .await
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!((1..=1_020).contains(&last), "progress {last}");
}

async fn used_memory(connection: &mut impl redis::aio::ConnectionLike) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delay_into_the_past_does_not_loop_and_starts_are_bounded() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.later]\nmodule = \"delayed.wasm\"\nmax_started_attempts = 5\n",
    );
    let queue = open(&redis, "later").await;
    // delay_ms 0: "delay me until now", on every start.
    let id = queue
        .add("t", json!({"delay_ms": 0, "times": 1_000_000}))
        .await
        .unwrap()
        .id()
        .to_owned();
    let started = Instant::now();
    let (state, job) = done(&queue, &id).await;
    let took = started.elapsed();
    assert_eq!(state, "failed", "{}", host.log());
    assert_eq!(job.failed_reason(), "job started more than allowable limit");
    assert_eq!(job.attempts_started(), 6);
    // Five delays of at least MIN_DELAY (100 ms) each.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(
        host.log().matches("delayed until").count(),
        1,
        "said once:\n{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_over_the_queues_max_data_size_fails_the_job_saying_its_size() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.small]\nmodule = \"echo.wasm\"\nmax_data_size = \"1KiB\"\n",
    );
    let queue = open(&redis, "small").await;
    let big = queue
        .add("t", json!({ "s": "x".repeat(2000) }))
        .await
        .unwrap()
        .id()
        .to_owned();
    let fits = queue
        .add("t", json!({ "s": "x".repeat(500) }))
        .await
        .unwrap()
        .id()
        .to_owned();
    let (state, job) = done(&queue, &big).await;
    assert_eq!(state, "failed", "{}", host.log());
    assert_eq!(
        job.failed_reason(),
        "job data is 1.961 KiB, more than this queue's max_data_size of 1 KiB"
    );
    assert_eq!(done(&queue, &fits).await.0, "completed");
}
