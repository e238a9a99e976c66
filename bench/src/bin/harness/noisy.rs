//! The noisy neighbour: one host with two queues, `b` (the `echo` no-op,
//! concurrency 8) and `a` (`misbehave` spinning, concurrency 16). Queue
//! `b`'s throughput (a drained backlog) and its latency (jobs added one at
//! a time, from the `add` call to the `completed` event) are measured with
//! `a` idle, then with 16 of `a`'s guests spinning for the whole run.

use crate::events::EventStream;
use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::{BulkJob, Queue};
use std::path::Path;
use std::time::{Duration, Instant};

/// Queue `b`'s figures, one side.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub jobs_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Queue `b` alone and beside the spinners.
#[derive(Debug, Clone, Copy)]
pub struct Noisy {
    pub alone: Side,
    pub beside: Side,
}

/// Spinning guests in queue `a`.
pub const SPINNERS: usize = 16;

async fn host(redis_url: &str, bullpen: &Path) -> (tempfile::TempDir, tokio::process::Child) {
    let queues = format!(
        "[queues.b]\nmodule = \"echo.wasm\"\nconcurrency = 8\n\n\
         [queues.a]\nmodule = \"misbehave.wasm\"\nconcurrency = {SPINNERS}\ntimeout = \"1h\"\n"
    );
    crate::contender::bullpen_host(redis_url, &queues, &["echo", "misbehave"], bullpen).await
}

async fn open(redis_url: &str, name: &str) -> Queue {
    RedisTarget::server(redis_url.to_owned(), "bull")
        .queue(name)
        .await
        .unwrap()
}

/// `jobs` no-op jobs drained from `b`: jobs/s from `resume` to the last.
async fn drain(b: &Queue, jobs: usize) -> f64 {
    b.pause().await.unwrap();
    for start in (0..jobs).step_by(500) {
        let batch = (start..jobs.min(start + 500))
            .map(|i| BulkJob::new("bench", serde_json::json!({ "id": i })))
            .collect();
        b.add_bulk(batch).await.unwrap();
    }
    let before = b.get_completed_count().await.unwrap() as usize;
    let started = Instant::now();
    b.resume().await.unwrap();
    let deadline = started + Duration::from_secs(600);
    while (b.get_completed_count().await.unwrap() as usize) < before + jobs {
        assert!(Instant::now() < deadline, "queue b not drained in 600 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// `jobs` jobs added to `b` one at a time: p50 and p99 from `add` to
/// `completed`.
async fn trickle(redis_url: &str, b: &Queue, jobs: usize) -> (Duration, Duration) {
    let mut events = EventStream::open(redis_url, "b").await;
    let seen = crate::latency::trickle(b, &mut events, jobs, &["completed"]).await;
    crate::latency::percentiles(seen.into_iter().map(|s| s[0].unwrap()).collect())
}

async fn side(
    spinning: bool,
    jobs: usize,
    latency_jobs: usize,
    redis_url: &str,
    bullpen: &Path,
) -> Side {
    let _ = crate::throughput::empty_queue(redis_url).await;
    let (_dir, child) = host(redis_url, bullpen).await;
    let (a, b) = (open(redis_url, "a").await, open(redis_url, "b").await);
    if spinning {
        for _ in 0..SPINNERS {
            a.add("spin", serde_json::json!({"mode": "spin"}))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (a.get_active_count().await.unwrap() as usize) < SPINNERS {
            assert!(Instant::now() < deadline, "the spinners did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Settled: the module compiled, the workers in their wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jobs_per_second = drain(&b, jobs).await;
    let (p50, p99) = trickle(redis_url, &b, latency_jobs).await;
    crate::contender::terminate(child).await;
    a.close().await;
    b.close().await;
    Side {
        jobs_per_second,
        p50,
        p99,
    }
}

/// Queue `b` alone, then beside the spinners; the median of `runs` runs
/// of each (by throughput), rounds alternating.
pub async fn measure(
    runs: usize,
    jobs: usize,
    latency_jobs: usize,
    redis_url: &str,
    bullpen: &Path,
) -> Noisy {
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        for (spinning, samples) in [(false, &mut alone), (true, &mut beside)] {
            let side = side(spinning, jobs, latency_jobs, redis_url, bullpen).await;
            eprintln!(
                "round {round}: b {}: {:.0} jobs/s, p50 {:?}, p99 {:?}",
                if spinning {
                    "beside 16 spinners"
                } else {
                    "alone"
                },
                side.jobs_per_second,
                side.p50,
                side.p99
            );
            samples.push(side);
        }
    }
    let median = |mut sides: Vec<Side>| {
        sides.sort_by(|x, y| x.jobs_per_second.total_cmp(&y.jobs_per_second));
        sides[sides.len() / 2]
    };
    Noisy {
        alone: median(alone),
        beside: median(beside),
    }
}
