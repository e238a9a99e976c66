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
