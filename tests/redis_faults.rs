//! Redis faults (issue 12): Redis down when the host starts, signals while
//! it waits, commands that fail fast instead of hanging, and a Redis restart
//! under a running host.

use bullpen_tests::{RedisServer, RunningHost, queue as open, wait_for_state};
use serde_json::json;
use std::time::{Duration, Instant};

const ECHO: &str = "[queues.q]\nmodule = \"echo.wasm\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_host_started_before_its_redis_says_so_at_once_and_takes_jobs_once_it_is_up() {
    let mut redis = RedisServer::start_persistent();
    redis.stop();
    let host = RunningHost::launch(&redis, ECHO);
    let down = format!("cannot connect to Redis at {}", redis.url());
    assert!(
        host.wait_for_log(&down, Duration::from_secs(3)),
        "nothing said within 3 s:\n{}",
        host.log()
    );
    assert!(host.log().contains("waiting for Redis"), "{}", host.log());

    // The other commands fail in seconds, with the same reason.
    let started = Instant::now();
    let (code, _, stderr) = host.cli(&["status"]);
    assert_ne!(code, 0);
    assert!(stderr.contains(&down), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let (code, _, stderr) = host.cli(&["add", "q", "{}"]);
    assert_ne!(code, 0);
    assert!(stderr.contains(&down), "{stderr}");

    redis.restart();
    assert!(
        host.wait_for_log("bullpen: taking jobs", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let queue = open(&redis, "q").await;
    let job = queue.add("t", json!({"n": 1})).await.unwrap();
    wait_for_state(&queue, job.id(), &["completed"], Duration::from_secs(10)).await;
}

#[test]
fn a_signal_while_waiting_for_redis_stops_the_host_at_once() {
    let mut redis = RedisServer::start();
    redis.stop();
    for signal in ["TERM", "INT"] {
        let mut host = RunningHost::launch(&redis, ECHO);
        assert!(host.wait_for_log("waiting for Redis", Duration::from_secs(3)));
        host.signal(signal);
        let status = host
            .wait_exit(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("SIG{signal} ignored during start-up:\n{}", host.log()));
        assert_eq!(status.code(), Some(130));
        assert!(
            host.log().contains("during start-up; stopping"),
            "{}",
            host.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_without_waiting_out_the_grace() {
    let redis = RedisServer::start();
    let mut host = RunningHost::start(&redis, "[queues.slow]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "slow").await;
    let job = queue
        .add("t", json!({"mode": "work", "ms": 20_000}))
        .await
        .unwrap();
    wait_for_state(&queue, job.id(), &["active"], Duration::from_secs(10)).await;
    host.signal("TERM");
    assert!(host.wait_for_log("a second signal exits at once", Duration::from_secs(2)));
    host.signal("TERM");
    let status = host
        .wait_exit(Duration::from_secs(2))
        .expect("the second signal exits at once (grace is 5 s)");
    assert_eq!(status.code(), Some(130));
    assert!(
        host.log().contains("SIGTERM again: exiting now"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn processing_resumes_promptly_after_a_redis_restart() {
    let mut redis = RedisServer::start_persistent();
    let host = RunningHost::start(&redis, ECHO);
    let queue = open(&redis, "q").await;
    let first = queue.add("t", json!({"n": 1})).await.unwrap();
    wait_for_state(&queue, first.id(), &["completed"], Duration::from_secs(10)).await;

    redis.stop();
    std::thread::sleep(Duration::from_secs(1));
    redis.restart();
    let back = Instant::now();
    let queue = open(&redis, "q").await;
    let second = queue.add("t", json!({"n": 2})).await.unwrap();
    wait_for_state(&queue, second.id(), &["completed"], Duration::from_secs(20)).await;
    // The crate's own retry delay after a failed fetch is 15 s.
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "the job waited {:?} after Redis came back:\n{}",
        back.elapsed(),
        host.log()
    );
}

/// How many `completed` entries the queue's event stream holds, by job.
async fn completions_by_job(
    queue: &bullpen::queue::bullmq::Queue,
) -> std::collections::HashMap<String, usize> {
    use redis::AsyncCommands;
    let mut connection = queue.connection().connection();
    let entries: Vec<(String, Vec<(String, String)>)> =
        connection.xrange_all(queue.keys().events()).await.unwrap();
    let mut counts = std::collections::HashMap::new();
    for (_, fields) in &entries {
        if fields.contains(&("event".into(), "completed".into()))
            && let Some((_, id)) = fields.iter().find(|(k, _)| k == "jobId")
        {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
    counts
}

/// How many `completed` entries the queue's event stream holds for `id`.
async fn completions(queue: &bullpen::queue::bullmq::Queue, id: &str) -> usize {
    completions_by_job(queue)
        .await
        .get(id)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_finishes_while_redis_is_down_is_completed_once_redis_is_back() {
    let mut redis = RedisServer::start_persistent();
    let host = RunningHost::start(&redis, "[queues.slow]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "slow").await;
    let job = queue
        .add("t", json!({"mode": "work", "ms": 1500}))
        .await
        .unwrap();
    let id = job.id().to_owned();
    wait_for_state(&queue, &id, &["active"], Duration::from_secs(10)).await;
    std::thread::sleep(Duration::from_millis(300));
    redis.stop();
    // The attempt ends 1.2 s into the outage.
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    let queue = open(&redis, "slow").await;
    // The outcome is written once Redis answers, with the run's token, and
    // the job is not run again when its lock expires. (Here redis-rs holds
    // the crate's move until it has reconnected too; the probe saw the move
    // fail on the dead socket instead, which the lock check covers.)
    wait_for_state(&queue, &id, &["completed"], Duration::from_secs(10)).await;
    assert_eq!(
        bullpen_tests::field(&queue, &id, "ats").await.as_deref(),
        Some("1"),
        "started again:\n{}",
        host.log()
    );
    assert_eq!(completions(&queue, &id).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_the_lock_never_runs_a_job_twice_at_once_nor_fails_it() {
    let mut redis = RedisServer::start_persistent();
    let host = RunningHost::start(
        &redis,
        "[queues.long]\nmodule = \"misbehave.wasm\"\nconcurrency = 16\n\
         lock_duration = \"2s\"\nstalled_interval = \"500ms\"\n",
    );
    let queue = open(&redis, "long").await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let job = queue
            .add("t", json!({"mode": "work", "ms": 6000}))
            .await
            .unwrap();
        ids.push(job.id().to_owned());
    }
    for id in &ids {
        wait_for_state(&queue, id, &["active"], Duration::from_secs(10)).await;
    }
    redis.stop();
    // Longer than lock_duration: every lock expires.
    std::thread::sleep(Duration::from_secs(4));
    redis.restart();
    let queue = open(&redis, "long").await;
    for id in &ids {
        let state = wait_for_state(
            &queue,
            id,
            &["completed", "failed"],
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            state,
            "completed",
            "job {id}: {:?}\n{}",
            bullpen_tests::field(&queue, id, "failedReason").await,
            host.log()
        );
        assert_eq!(completions(&queue, id).await, 1, "job {id}");
    }
    let log = host.log();
    assert!(
        !log.contains("failed:"),
        "an attempt was counted as failed:\n{log}"
    );
    assert!(!log.contains("Job lock mismatch"), "{log}");
    // Each job that was taken again here stopped its earlier run first.
    assert_eq!(
        log.matches("taken again (its lock expired)").count(),
        log.matches("this run is cancelled, its outcome discarded")
            .count(),
        "{log}"
    );
}

/// Redis restarts while jobs flow, and a processor that counts its runs
/// outside Redis (a request to the test's server per run, one path per job):
/// every job runs exactly once and is completed once. A finishing move sent
/// while Redis goes away is sent again once it is back, and the job stays
/// active, its lock renewed, meanwhile (the crate's patch 0001). The lock
/// outlasts the outage with its renewal period to spare: the connection's
/// reconnect backoff can leave a renewal due during the outage unsent for
/// seconds after Redis is back (a lock shorter than that is D10's case).
#[tokio::test(flavor = "multi_thread")]
async fn ten_redis_restarts_with_jobs_flowing_run_every_job_once() {
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 2_000;
    let runs = bullpen_tests::hook_server::HookServer::start().await;
    let mut redis = RedisServer::start_persistent();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.flow]\nmodule = \"misbehave.wasm\"\nconcurrency = 8\n\
             lock_duration = \"10s\"\nallowed_outbound_hosts = [\"http://{}\"]\n",
            runs.addr
        ),
    );
    let mut queue = open(&redis, "flow").await;
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            let data = json!({"mode": "http", "url": runs.url("http", &format!("/count/{n}"))});
            queue.add("t", data).await.unwrap();
            if i == PER_ROUND / 2 {
                // Jobs are running and more are waiting: Redis goes away.
                redis.stop();
                std::thread::sleep(Duration::from_millis(1000));
                redis.restart();
                queue = open(&redis, "flow").await;
            }
        }
    }
    let total = ROUNDS * PER_ROUND;
    bullpen_tests::wait_until_all_completed(&queue, total as u64, Duration::from_secs(180), &host)
        .await;
    let not_once = runs.not_once((0..total).map(|n| format!("/count/{n}")));
    assert!(
        not_once.is_empty(),
        "{} jobs did not run exactly once (path, runs): {not_once:?}\n{}",
        not_once.len(),
        host.log()
    );
}
