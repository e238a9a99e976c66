//! `bullpen run` end to end: a real redis-server, the real binary, the
//! example guests; BullMQ state read back through the crate's `Queue`.

use bullpen::queue::bullmq::types::BackoffStrategy;
use bullpen::queue::bullmq::{JobOptions, Queue};
use bullpen_tests::{RedisServer, RunningHost, field, finished, queue as open, wait_for_state};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn add(queue: &Queue, data: Value, options: JobOptions) -> String {
    queue
        .add("test", data)
        .options(options)
        .await
        .unwrap()
        .id()
        .to_owned()
}

fn attempts(n: u32) -> JobOptions {
    JobOptions {
        attempts: Some(n),
        ..JobOptions::default()
    }
}

const SECONDS_10: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_of_several_workers_shares_its_jobs_and_completes_each_once() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.wide]\nmodule = \"echo.wasm\"\nconcurrency = 6\nworkers = 3\n",
    );
    let queue = open(&redis, "wide").await;
    assert_eq!(
        queue.get_workers_count().await.unwrap(),
        3,
        "{}",
        host.log()
    );
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(add(&queue, json!({ "i": i }), attempts(1)).await);
    }
    for id in &ids {
        let (state, job) = finished(&queue, id, SECONDS_10).await;
        assert_eq!(state, "completed", "{}", host.log());
        assert_eq!(job.attempts_made(), 1);
        assert_eq!(job.attempts_started(), 1, "job {id} was started twice");
    }
    assert_eq!(queue.get_completed_count().await.unwrap(), 300);
    // Which module version ran it: BullMQ's `processedBy`, the name of the
    // worker that took it.
    let job = queue.get_job(&ids[0]).await.unwrap().unwrap();
    let by = job.processed_by().unwrap_or_default();
    assert!(
        by.starts_with("echo.wasm@") && by.len() == "echo.wasm@".len() + 12,
        "{by}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_names_its_module_version_with_no_write_of_its_own() {
    // Written by BullMQ's own move to active, from the worker's name: no
    // job-log line, no round trip per attempt.
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.slow]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "slow").await;
    let id = add(&queue, json!({"mode": "work", "ms": 1000}), attempts(1)).await;
    wait_for_state(&queue, &id, &["active"], SECONDS_10).await;
    let by = field(&queue, &id, "pb").await.unwrap_or_default();
    let hash = &by["misbehave.wasm@".len().min(by.len())..];
    assert!(
        by.starts_with("misbehave.wasm@") && hash.len() == 12,
        "{by}"
    );
    assert!(
        host.log().contains(hash),
        "the host's log names the hash too"
    );
    let (state, _) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed", "{}", host.log());
    let (logs, count) = queue.get_job_logs(&id, 0, -1, true).await.unwrap();
    assert_eq!(count, 0, "{logs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_jobs_carry_the_return_value_as_an_object() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.echo]\nmodule = \"echo.wasm\"\n");
    let queue = open(&redis, "echo").await;
    let id = add(&queue, json!({"hello": "world", "n": [1, 2]}), attempts(1)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed", "{}", host.log());
    // Stored as JSON text of the object, which is what Node's client parses
    // into `job.returnvalue` — not a JSON string holding JSON.
    assert_eq!(
        field(&queue, &id, "returnvalue").await.as_deref(),
        Some(r#"{"hello":"world","n":[1,2]}"#)
    );
    assert_eq!(job.attempts_made(), 1);
    assert_eq!(job.attempts_started(), 1);
    // The worker's unbounded event channel is read (else it grows by a few
    // events per job forever): its reader logs each completion.
    let deadline = Instant::now() + SECONDS_10;
    while !host
        .log()
        .contains(&format!("completed queue=\"echo\" job=\"{id}\""))
    {
        assert!(
            Instant::now() < deadline,
            "no completed event drained:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_retry_with_fixed_and_exponential_backoff() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        "[queues.flaky]\nmodule = \"flaky.wasm\"\nconcurrency = 2\n",
    );
    let queue = open(&redis, "flaky").await;
    let data = json!({"succeed_on": 3, "error_name": "Boom"});
    let started = Instant::now();
    let fixed = add(
        &queue,
        data.clone(),
        JobOptions {
            attempts: Some(5),
            backoff: Some(BackoffStrategy::Fixed(300)),
            ..JobOptions::default()
        },
    )
    .await;
    let exponential = add(
        &queue,
        data,
        JobOptions {
            attempts: Some(5),
            backoff: Some(BackoffStrategy::Exponential(200)),
            ..JobOptions::default()
        },
    )
    .await;
    let (state, job) = finished(&queue, &fixed, SECONDS_10).await;
    let fixed_took = started.elapsed();
    assert_eq!(state, "completed");
    assert_eq!(job.attempts_made(), 3);
    assert_eq!(job.attempts_started(), 3);
    assert!(fixed_took >= Duration::from_millis(600), "{fixed_took:?}");
    let (state, job) = finished(&queue, &exponential, SECONDS_10).await;
    assert_eq!(state, "completed");
    assert_eq!(job.attempts_made(), 3);
    // 200 ms, then 400 ms.
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(
        field(&queue, &fixed, "returnvalue").await.as_deref(),
        Some(r#"{"attempt":3}"#)
    );
    // The last failure's reason stays on the job, as BullMQ's worker leaves it.
    assert_eq!(
        field(&queue, &fixed, "failedReason").await.as_deref(),
        Some("attempt 2 of 3 failed")
    );
    let stacktrace: Vec<String> =
        serde_json::from_str(&field(&queue, &fixed, "stacktrace").await.unwrap()).unwrap();
    assert_eq!(stacktrace.len(), 2);
    assert!(stacktrace[0].starts_with("Boom: attempt 1 of 3 failed\n    at flaky.wasm (sha256 "));
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_attempts_fail_the_job_with_the_last_reason() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.flaky]\nmodule = \"flaky.wasm\"\n");
    let queue = open(&redis, "flaky").await;
    let id = add(&queue, json!({"succeed_on": 9}), attempts(2)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "failed");
    assert_eq!(job.failed_reason(), "attempt 2 of 9 failed");
    assert_eq!(job.attempts_made(), 2);
    let stacktrace: Vec<String> =
        serde_json::from_str(&field(&queue, &id, "stacktrace").await.unwrap()).unwrap();
    assert_eq!(stacktrace.len(), 2);
}

/// A retry's backoff past 365 days waits 365 days, and the host says so
/// (docs/CONFIG.md: cut values are logged).
#[tokio::test(flavor = "multi_thread")]
async fn a_backoff_past_a_year_is_cut_to_one_and_logged() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.flaky]\nmodule = \"flaky.wasm\"\n");
    let queue = open(&redis, "flaky").await;
    let year_ms = 365 * 24 * 3600 * 1000u64;
    // Before the add: the attempt may run (and take its time) before the
    // add call returns.
    let before = now_ms();
    let id = add(
        &queue,
        json!({"succeed_on": 9}),
        JobOptions {
            attempts: Some(2),
            backoff: Some(BackoffStrategy::Fixed(400 * 24 * 3600 * 1000)),
            ..JobOptions::default()
        },
    )
    .await;
    wait_for_state(&queue, &id, &["delayed"], SECONDS_10).await;
    assert!(
        host.wait_for_log("is cut to 8760h", SECONDS_10),
        "{}",
        host.log()
    );
    let mut connection = queue.connection().connection();
    let score: f64 = redis::cmd("ZSCORE")
        .arg(queue.keys().delayed())
        .arg(&id)
        .query_async(&mut connection)
        .await
        .unwrap();
    // BullMQ's delayed score: the time in ms, shifted 12 bits for order.
    let until = (score as u64) >> 12;
    assert!(
        (before + year_ms..=now_ms() + year_ms).contains(&until),
        "delayed until {until}, {} ms from now",
        until - before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unrecoverable_fails_at_once_whatever_attempts_remain() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.signups]\nmodule = \"validate.wasm\"\n");
    let queue = open(&redis, "signups").await;
    let id = add(&queue, json!({}), attempts(5)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "failed");
    assert_eq!(
        job.failed_reason(),
        "Invalid job data: \"email\" is required"
    );
    assert_eq!(job.attempts_made(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_jobs_wait_without_counting_an_attempt() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.limited]\nmodule = \"rate-limited.wasm\"\n");
    let queue = open(&redis, "limited").await;
    let started = Instant::now();
    let id = add(&queue, json!({"wait_ms": 1000, "times": 1}), attempts(1)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed", "{}", job.failed_reason());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job.attempts_started(), 2);
    // Only the completion counted: the rate limit was not an attempt.
    assert_eq!(job.attempts_made(), 1);
    assert_eq!(
        field(&queue, &id, "returnvalue").await.as_deref(),
        Some(r#"{"attempts_started":2}"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_set_by_another_host_holds_the_queue_until_it_ends() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.plain]\nmodule = \"echo.wasm\"\n");
    let queue = open(&redis, "plain").await;
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let id = add(&queue, json!({}), attempts(1)).await;
    assert_eq!(finished(&queue, &id, SECONDS_10).await.0, "completed");
    // A queue never rate limited has workers without a limiter: none of
    // them counted the job against one.
    let counted: bool = redis::cmd("EXISTS")
        .arg("bull:plain:limiter")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        !counted,
        "a worker without need of a limiter counted the job"
    );

    // Another host's processor (or a Node one's `queue.rateLimit`) limits
    // the queue: within a second this host's workers honour it too.
    let limited_at = now_ms();
    queue.rate_limit(4_000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = add(&queue, json!({}), attempts(1)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed", "{}", host.log());
    let started = job.processed_on().unwrap();
    assert!(
        started + 20 >= limited_at + 4_000,
        "the job started {} ms into a 4,000 ms rate limit\n{}",
        started - limited_at,
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_jobs_come_back_later_without_counting_an_attempt() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.later]\nmodule = \"delayed.wasm\"\n");
    let queue = open(&redis, "later").await;
    let started = Instant::now();
    let id = add(&queue, json!({"delay_ms": 700}), attempts(1)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed");
    assert!(started.elapsed() >= Duration::from_millis(650));
    assert_eq!(job.attempts_started(), 2);
    assert_eq!(job.attempts_made(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_modules_backoff_decides_custom_strategies() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        "[queues.custom]\nmodule = \"custom-backoff.wasm\"\n",
    );
    let queue = open(&redis, "custom").await;
    let linear = |errors: Value| {
        (
            json!({ "errors": errors }),
            JobOptions {
                attempts: Some(5),
                backoff: Some(BackoffStrategy::Custom("linear".into())),
                ..JobOptions::default()
            },
        )
    };
    // Transient: after 1 × 1000 ms; RetryNow: at once; then it completes.
    let started = Instant::now();
    let (data, options) = linear(json!(["Transient", "RetryNow"]));
    let delayed = add(&queue, data, options).await;
    // Fatal: the module gives up on attempt 1 of 5.
    let (data, options) = linear(json!(["Fatal"]));
    let given_up = add(&queue, data, options).await;

    let (state, job) = finished(&queue, &given_up, SECONDS_10).await;
    assert_eq!(state, "failed");
    assert_eq!(job.failed_reason(), "attempt 1 failed with Fatal");
    assert_eq!(job.attempts_made(), 1);

    let (state, job) = finished(&queue, &delayed, SECONDS_10).await;
    let took = started.elapsed();
    assert_eq!(state, "completed");
    assert_eq!(job.attempts_made(), 3);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_millis(4000), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_backoff_type_fails_the_job_as_bullmq_does() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.flaky]\nmodule = \"flaky.wasm\"\n");
    let queue = open(&redis, "flaky").await;
    let id = add(
        &queue,
        json!({"succeed_on": 3}),
        JobOptions {
            attempts: Some(3),
            backoff: Some(BackoffStrategy::Custom("weird".into())),
            ..JobOptions::default()
        },
    )
    .await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "failed");
    assert!(
        job.failed_reason()
            .starts_with("Unknown backoff strategy weird."),
        "{}",
        job.failed_reason()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crashes_count_per_on_crash() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        "[queues.retrying]\nmodule = \"misbehave.wasm\"\ntimeout = \"300ms\"\n\n\
         [queues.failing]\nmodule = \"misbehave.wasm\"\ntimeout = \"300ms\"\non_crash = \"fail\"\n",
    );
    let retrying = open(&redis, "retrying").await;
    let failing = open(&redis, "failing").await;
    let spin = json!({"mode": "spin"});
    let a = add(&retrying, spin.clone(), attempts(2)).await;
    let b = add(&failing, spin, attempts(2)).await;
    let (state, job) = finished(&retrying, &a, SECONDS_10).await;
    assert_eq!(
        (state.as_str(), job.failed_reason()),
        ("failed", "timeout after 300ms")
    );
    assert_eq!(job.attempts_made(), 2);
    let (state, job) = finished(&failing, &b, SECONDS_10).await;
    assert_eq!(
        (state.as_str(), job.failed_reason()),
        ("failed", "timeout after 300ms")
    );
    assert_eq!(job.attempts_made(), 1);
    let panic = add(&failing, json!({"mode": "panic"}), attempts(1)).await;
    let (_, job) = finished(&failing, &panic, SECONDS_10).await;
    assert!(
        job.failed_reason().starts_with("panicked at "),
        "{}",
        job.failed_reason()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_and_log_lines_reach_the_job_with_the_module_hash() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.signups]\nmodule = \"validate.wasm\"\n");
    let queue = open(&redis, "signups").await;
    let id = add(
        &queue,
        json!({"email": "ada@example.com", "name": "Ada"}),
        attempts(1),
    )
    .await;
    let (state, _) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "completed");
    let (logs, count) = queue.get_job_logs(&id, 0, -1, true).await.unwrap();
    assert_eq!(
        (count, logs),
        (1, vec!["registered Ada <ada@example.com>".to_owned()])
    );
    let job = queue.get_job(&id).await.unwrap().unwrap();
    let hash = job
        .processed_by()
        .and_then(|by| by.strip_prefix("validate.wasm@"))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hash.len(), 12);
    assert!(
        host.log().contains(&hash),
        "the host's log names the module hash too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_progress_becomes_the_jobs_progress() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.m]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "m").await;
    let id = add(&queue, json!({"mode": "bad-progress"}), attempts(1)).await;
    finished(&queue, &id, SECONDS_10).await;
    // The valid progress (10) was recorded; the one that is not JSON was not.
    assert_eq!(field(&queue, &id, "progress").await.as_deref(), Some("10"));
}

fn cli(host: &RunningHost, args: &[&str]) -> (i32, String, String) {
    host.cli(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_by_hand_with_each_reset_option_and_its_errors() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.echo]\nmodule = \"echo.wasm\"\n\n[queues.flaky]\nmodule = \"flaky.wasm\"\n",
    );
    let echo = open(&redis, "echo").await;
    let id = add(&echo, json!({"a": 1}), attempts(1)).await;
    finished(&echo, &id, SECONDS_10).await;

    // Completed, no reset: processed again, attempts keep counting.
    let (code, stdout, stderr) = cli(&host, &["retry", "echo", &id, "--state", "completed"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("{id}: back to wait\n"));
    let deadline = Instant::now() + SECONDS_10;
    let job = loop {
        let (_, job) = finished(&echo, &id, SECONDS_10).await;
        if job.attempts_started() == 2 || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((job.attempts_made(), job.attempts_started()), (2, 2));

    // Both resets: the counters start over.
    let (code, ..) = cli(
        &host,
        &[
            "retry",
            "echo",
            &id,
            "--state",
            "completed",
            "--reset-attempts-made",
            "--reset-attempts-started",
        ],
    );
    assert_eq!(code, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, job) = finished(&echo, &id, SECONDS_10).await;
    assert_eq!((job.attempts_made(), job.attempts_started()), (1, 1));

    // A failed job, attemptsMade reset only: it gets its attempts again.
    let flaky = open(&redis, "flaky").await;
    let failed = add(&flaky, json!({"succeed_on": 3}), attempts(2)).await;
    let (state, _) = finished(&flaky, &failed, SECONDS_10).await;
    assert_eq!(state, "failed");
    let (code, ..) = cli(&host, &["retry", "flaky", &failed, "--reset-attempts-made"]);
    assert_eq!(code, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (state, job) = finished(&flaky, &failed, SECONDS_10).await;
    assert_eq!(state, "failed");
    assert_eq!((job.attempts_made(), job.attempts_started()), (2, 4));

    // The seeds' two error cases.
    let (code, _, stderr) = cli(&host, &["retry", "echo", "no-such-job"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "bullpen: queue echo: job no-such-job does not exist\n"
    );
    let (code, _, stderr) = cli(&host, &["retry", "echo", &id]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!("bullpen: queue echo: job {id} is not in the failed state (it is completed)\n")
    );
}

/// A producer's job name or a failed reason longer than 65,535 characters
/// is listed whole (`format!`'s width panicked past that).
#[tokio::test(flavor = "multi_thread")]
async fn bullpen_jobs_lists_fields_of_any_length() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.signups]\nmodule = \"validate.wasm\"\n");
    let queue = open(&redis, "signups").await;
    let name = "n".repeat(70_000);
    let id = queue.add(&name, json!({})).await.unwrap().id().to_owned();
    finished(&queue, &id, SECONDS_10).await;
    let (code, stdout, stderr) = cli(&host, &["jobs", "signups"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&name),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn add_jobs_and_status_from_the_cli() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.signups]\nmodule = \"validate.wasm\"\n");
    let (code, stdout, stderr) = cli(
        &host,
        &[
            "add",
            "signups",
            "{}",
            "--attempts",
            "3",
            "--job-id",
            "first",
            "--name",
            "signup",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "first\n");
    let queue = open(&redis, "signups").await;
    let (state, job) = finished(&queue, "first", SECONDS_10).await;
    assert_eq!((state.as_str(), job.name()), ("failed", "signup"));
    let (code, stdout, _) = cli(&host, &["jobs", "signups", "--state", "failed"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ID",
            "NAME",
            "STATE",
            "ATTEMPTS_MADE",
            "ATTEMPTS_STARTED",
            "MODULE",
            "LAST_MS",
            "CPU_MS",
            "PEAK_MEMORY",
            "INSTANCE",
            "FAILED_REASON"
        ],
        "{stdout}"
    );
    assert!(
        lines[1]
            .starts_with("first  signup  failed  1              1                 validate.wasm@")
            && lines[1].ends_with(
                "  -        -       -            -         Invalid job data: \"email\" is required"
            ),
        "{stdout}"
    );
    let (code, stdout, _) = cli(&host, &["status"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("signups  0        0       0        0            0          1       1        validate.wasm ("), "{stdout}");
    let (code, _, stderr) = cli(&host, &["add", "nope", "{}"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no queue named `nope` (configured: signups)"),
        "{stderr}"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_added_to_a_queue_not_granted_or_past_the_cap_is_refused_with_the_reason() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.fan]\nmodule = \"fan-out.wasm\"\nadd_to_queues = [\"fan\", \"echo\"]\nmax_added_jobs = 2\n",
    );
    let queue = open(&redis, "fan").await;
    let id = add(&queue, json!({"follow_up": "emails"}), attempts(1)).await;
    let (state, job) = finished(&queue, &id, SECONDS_10).await;
    assert_eq!(state, "failed", "{}", host.log());
    assert_eq!(
        job.failed_reason(),
        "cannot add a job to queue `emails`: not in this queue's add_to_queues (echo, fan)"
    );
    let emails = open(&redis, "emails").await;
    assert_eq!(emails.get_job_counts().await.unwrap().waiting, 0);

    // Three children, two allowed: the third is refused before Redis; the
    // two added are whole jobs, processed as children of the failed parent.
    let parent = queue
        .add("sum", json!({"numbers": [1, 2, 3]}))
        .await
        .unwrap()
        .id()
        .to_owned();
    let (state, job) = finished(&queue, &parent, SECONDS_10).await;
    assert_eq!(state, "failed", "{}", host.log());
    assert_eq!(
        job.failed_reason(),
        "this attempt already added 2 jobs, the most its queue allows (max_added_jobs)"
    );
    for id in ["3", "4"] {
        let child = queue.get_job(id).await.unwrap().expect("a child");
        assert_eq!(child.name(), "square");
        assert_eq!(
            child.parent_key().map(String::as_str),
            Some(format!("bull:fan:{parent}").as_str())
        );
    }
    assert!(
        queue.get_job("5").await.unwrap().is_none(),
        "a third child was written"
    );
}
