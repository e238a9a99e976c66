//! What producers' job schedulers and deduplication leave when bullpen
//! processes the jobs: the scheduler's iterations, its `limit` and its
//! removal; a deduplication id held while its job lives and released when it
//! completes; and the one timing that differs from BullMQ's Node worker.

use bullpen::queue::bullmq::job_scheduler::RepeatOptions;
use bullpen::queue::bullmq::{DeduplicationOptions, Queue};
use bullpen_tests::{RedisServer, RunningHost, finished, queue as open};
use serde_json::json;
use std::time::{Duration, Instant};

const SECONDS_15: Duration = Duration::from_secs(15);

async fn completed(queue: &Queue) -> u64 {
    queue.get_completed_count().await.unwrap()
}

/// Waits until `queue` has `n` completed jobs; panics after `timeout`.
async fn until_completed(queue: &Queue, n: u64, timeout: Duration, host: &RunningHost) {
    let deadline = Instant::now() + timeout;
    while completed(queue).await < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} completed after {timeout:?}\n{}",
            completed(queue).await,
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_every_with_a_limit_runs_that_many_iterations() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.ticks]\nmodule = \"echo.wasm\"\n");
    let queue = open(&redis, "ticks").await;
    let repeat = RepeatOptions {
        every: Some(200),
        limit: Some(3),
        ..Default::default()
    };
    queue
        .upsert_job_scheduler("tick", repeat, Some("tick"), Some(json!({"t": 1})), None)
        .await
        .unwrap();
    until_completed(&queue, 3, SECONDS_15, &host).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(completed(&queue).await, 3, "the limit was passed");
    let done = queue.get_completed(0, -1).await.unwrap();
    assert!(
        done.iter()
            .all(|job| job.name() == "tick" && job.data() == &json!({"t": 1}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_scheduler_runs_on_its_pattern_until_removed() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.cron]\nmodule = \"echo.wasm\"\n");
    let queue = open(&redis, "cron").await;
    // Every second (the pattern's first field is the seconds).
    let repeat = RepeatOptions {
        pattern: Some("* * * * * *".into()),
        ..Default::default()
    };
    queue
        .upsert_job_scheduler("every-second", repeat, None, Some(json!({})), None)
        .await
        .unwrap();
    until_completed(&queue, 2, SECONDS_15, &host).await;
    let done = queue.get_completed(0, -1).await.unwrap();
    let mut started: Vec<u64> = done.iter().filter_map(|j| j.processed_on()).collect();
    started.sort();
    assert!(
        started.windows(2).all(|w| w[1] - w[0] >= 900),
        "iterations a second apart: {started:?}"
    );
    assert!(queue.remove_job_scheduler("every-second").await.unwrap());
    // An iteration already in flight may still complete; then none.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after_removal = completed(&queue).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(completed(&queue).await, after_removal, "{}", host.log());
}

/// BullMQ's Node worker adds a scheduler's next iteration when the current
/// one starts; `bullmq-official` when it finishes (its scheduling call is
/// private, and bullpen writes no Lua), so an iteration that outlasts
/// `every` delays the next one. docs/COMPATIBILITY.md says so; this shows it.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_iteration_is_added_when_the_current_one_finishes() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.slow]\nmodule = \"misbehave.wasm\"\nconcurrency = 2\n",
    );
    let queue = open(&redis, "slow").await;
    let repeat = RepeatOptions {
        every: Some(300),
        limit: Some(2),
        ..Default::default()
    };
    queue
        .upsert_job_scheduler(
            "slow",
            repeat,
            Some("slow"),
            Some(json!({"mode": "work", "ms": 1500})),
            None,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + SECONDS_15;
    while queue.get_active_count().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "{}", host.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first iteration runs (1.5 s, `every` is 0.3 s): no next one yet.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(queue.get_active_count().await.unwrap(), 1);
    let waiting =
        queue.get_delayed_count().await.unwrap() + queue.get_waiting_count().await.unwrap();
    assert_eq!(
        waiting, 0,
        "the next iteration was added before this one finished"
    );
    until_completed(&queue, 2, SECONDS_15, &host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deduplication_id_holds_until_its_job_completes() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.dedup]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "dedup").await;
    let dedup = |ttl: Option<u64>| DeduplicationOptions {
        id: "report-42".into(),
        ttl,
        ..Default::default()
    };
    let add = |data: serde_json::Value, ttl: Option<u64>| {
        let queue = queue.clone();
        async move {
            queue
                .add("report", data)
                .deduplication(dedup(ttl))
                .await
                .unwrap()
                .id()
                .to_owned()
        }
    };
    let first = add(json!({"mode": "work", "ms": 800}), None).await;
    // While the first lives, the same id adds nothing.
    let second = add(json!({"mode": "ok"}), None).await;
    assert_eq!(second, first);
    let (state, _) = finished(&queue, &first, SECONDS_15).await;
    assert_eq!(state, "completed", "{}", host.log());
    // Completed: the id is released, and a new job is added.
    let third = add(json!({"mode": "ok"}), None).await;
    assert_ne!(third, first);
    assert_eq!(finished(&queue, &third, SECONDS_15).await.0, "completed");

    // With a ttl, the id is held that long even after completion.
    let fourth = add(json!({"mode": "ok"}), Some(1_500)).await;
    assert_eq!(finished(&queue, &fourth, SECONDS_15).await.0, "completed");
    assert_eq!(add(json!({"mode": "ok"}), Some(1_500)).await, fourth);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_ne!(add(json!({"mode": "ok"}), Some(1_500)).await, fourth);
}
