//! The places where `bullmq-official` 1.4.4 behaves unlike BullMQ's Node
//! worker, each driven to show bullpen's handling (docs/ARCHITECTURE.md lists
//! them). The others are covered where they are used: failedReason and
//! stacktrace on retries and the event channel's reader in `run.rs`, the
//! stalled checker's rate and close waking idle workers in `lifecycle.rs`.
//! The gaps fixed in the crate itself (patched/bullmq-official) are shown
//! where they matter: a Redis restart in `redis_faults.rs`.

use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::types::BackoffStrategy;
use bullpen::queue::bullmq::{Job, JobOptions, Queue, Worker, WorkerOptions};
use bullpen_tests::{RedisServer, RunningHost, queue as open, wait_for_state};
use redis::AsyncCommands;
use serde_json::json;
use std::time::Duration;

async fn wait_for(queue: &Queue, id: &str, wanted: &str, timeout: Duration) {
    wait_for_state(queue, id, &[wanted], timeout).await;
}

/// One float where the crate wants an integer made it drop every option, so
/// the job below would fail at once instead of getting its 3 attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_float_in_the_options_does_not_wipe_them() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, "[queues.flaky]\nmodule = \"flaky.wasm\"\n");
    let queue = open(&redis, "flaky").await;
    // Added delayed, so its options can be rewritten as a Node producer
    // would have written them before any worker sees it.
    let job = queue
        .add("float", json!({"succeed_on": 3}))
        .options(JobOptions {
            delay: Some(500),
            ..JobOptions::default()
        })
        .await
        .unwrap();
    let mut connection = queue.connection().connection();
    let _: () = connection
        .hset(
            queue.keys().job_key(job.id()),
            "opts",
            r#"{"attempts":3,"backoff":{"type":"fixed","delay":100.5},"delay":500}"#,
        )
        .await
        .unwrap();
    wait_for(&queue, job.id(), "completed", Duration::from_secs(10)).await;
    let job = queue.get_job(job.id()).await.unwrap().unwrap();
    assert_eq!(job.attempts_made(), 3);
}

/// The crate's immediate retry pushes to the back of the wait list whatever
/// `lifo` says; BullMQ retries a lifo job next.
#[tokio::test(flavor = "multi_thread")]
async fn an_immediate_retry_of_a_lifo_job_comes_next() {
    let redis = RedisServer::start();
    let queue = open(&redis, "order").await;
    // Queue up: the lifo job that fails once, then three that block behind it.
    let lifo = queue
        .add("lifo", json!({"succeed_on": 2}))
        .options(JobOptions {
            attempts: Some(2),
            lifo: Some(true),
            ..JobOptions::default()
        })
        .await
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(
            queue
                .add("other", json!({"succeed_on": 1}))
                .await
                .unwrap()
                .id()
                .to_owned(),
        );
    }
    let _host = RunningHost::start(&redis, "[queues.order]\nmodule = \"flaky.wasm\"\n");
    for id in &others {
        wait_for(&queue, id, "completed", Duration::from_secs(10)).await;
    }
    wait_for(&queue, lifo.id(), "completed", Duration::from_secs(10)).await;
    let finished = |job: Job| job.finished_on().unwrap();
    let lifo_done = finished(queue.get_job(lifo.id()).await.unwrap().unwrap());
    let first_other = finished(queue.get_job(&others[0]).await.unwrap().unwrap());
    assert!(
        lifo_done <= first_other,
        "the lifo job's retry ran after the jobs added behind it"
    );
}

/// A panic in the processor future left the job active forever under the
/// crate's worker; under `guard_panics` it fails the attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_the_processor_fails_the_attempt() {
    let redis = RedisServer::start();
    let target = RedisTarget::server(redis.url(), "bull");
    let queue = open(&redis, "panics").await;
    let mut options = WorkerOptions::new();
    options.connection = target.connection();
    let worker = Worker::with_options(
        "panics",
        |job: Job, _cancel| async move {
            let id = job.id().to_owned();
            bullpen::worker::guard_panics("panics", &id, async {
                if job.name() == "boom" {
                    panic!("boom");
                }
                Ok(json!(null))
            })
            .await
        },
        options,
    )
    .await
    .unwrap();
    let job = queue
        .add("boom", json!({}))
        .options(JobOptions {
            backoff: Some(BackoffStrategy::Fixed(0)),
            ..JobOptions::default()
        })
        .await
        .unwrap();
    wait_for(&queue, job.id(), "failed", Duration::from_secs(10)).await;
    let job = queue.get_job(job.id()).await.unwrap().unwrap();
    assert_eq!(
        job.failed_reason(),
        "bullpen panicked while running the job: boom"
    );
    worker.close(1000).await.unwrap();
}

/// A backoff's jitter is stored inside `backoff`, as Node stores it, and read
/// back (the crate's patch 0004; the published crate drops it): a job a
/// processor adds with `{"backoff": {"type": "fixed", "delay": 1000,
/// "jitter": 0.5}}` keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backoffs_jitter_is_kept_on_a_job_the_crate_adds() {
    let redis = RedisServer::start();
    let queue = open(&redis, "jittery").await;
    let job = queue
        .add("t", json!({}))
        .options(JobOptions {
            attempts: Some(3),
            backoff: Some(BackoffStrategy::Fixed(1000)),
            backoff_jitter: Some(0.5),
            ..JobOptions::default()
        })
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(
        &bullpen_tests::field(&queue, job.id(), "opts")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        stored["backoff"],
        json!({"type": "fixed", "delay": 1000, "jitter": 0.5})
    );
    let read = queue.get_job(job.id()).await.unwrap().unwrap();
    assert_eq!(read.opts().backoff_jitter, Some(0.5));
}

/// The copy of the crate Cargo builds (`[patch.crates-io]`) is the published
/// `bullmq-official` 1.4.4, checked against its crates.io checksum, plus the
/// patches in patched/bullmq-official/patches, and nothing else.
#[test]
fn the_patched_crate_is_the_published_one_plus_its_patches() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/patch-crate"))
        .arg("--check")
        .output()
        .expect("scripts/patch-crate runs");
    assert_succeeded(&output, "scripts/patch-crate --check");
}

/// The patched crate's own unit tests, the patches' among them (0006's
/// `job::tests::the_data_is_kept_as_the_stored_text_too`, 0007's and
/// 0008's): the crate is outside the workspace, so `cargo test` alone never
/// runs them. They run on a copy, because Cargo writes a lockfile beside the
/// manifest and `crate/` must stay the published crate plus its patches;
/// the workspace's lockfile goes with it, so the versions are the ones
/// bullpen builds with.
#[test]
fn the_patched_crates_own_unit_tests_pass() {
    let root = bullpen_tests::workspace_root();
    let copy = tempfile::tempdir().unwrap();
    let crate_dir = copy.path().join("bullmq-official");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(root.join("patched/bullmq-official/crate"))
        .arg(&crate_dir)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "copying the patched crate failed");
    std::fs::copy(root.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let output = bullpen_tests::cargo_command(&crate_dir)
        .args(["test", "--lib", "--quiet"])
        .env(
            "CARGO_TARGET_DIR",
            bullpen_tests::target_dir().join("patched-crate"),
        )
        .output()
        .expect("cargo runs");
    assert_succeeded(&output, "the patched crate's unit tests");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("test result: ok."),
        "no test result from the patched crate's tests:\n{said}"
    );
}

/// Fails the test with what the command printed, unless it succeeded.
fn assert_succeeded(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
