//! Throughput: a contender drains N jobs added to a paused queue before the
//! clock starts; the clock runs from `resume` until all N are completed.

use crate::contender::{self, Case, QUEUE, Work};
use crate::probe;
use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::{BulkJob, Queue};
use std::path::Path;
use std::time::{Duration, Instant};

/// `--commandstats`: each run prints Redis's calls and time per job of
/// every command to stderr.
pub static COMMAND_STATS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Records per `json-transform` job.
pub const RECORDS: usize = 100;

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub jobs_per_second: f64,
    /// The contender's CPU (its whole process tree) per job, during the run.
    pub worker_cpu: Duration,
    /// The Redis server's CPU per job, during the run.
    pub redis_cpu: Duration,
    /// Redis's time running BullMQ's scripts per job, during the run.
    pub redis_scripts: Duration,
    /// The contender's peak resident memory (its main process).
    pub peak_rss: u64,
}

/// Flushes Redis and opens the bench queue: every measurement starts empty.
/// Returns a plain connection too, for `INFO`.
pub async fn empty_queue(redis_url: &str) -> (redis::aio::MultiplexedConnection, Queue) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let queue = RedisTarget::server(redis_url.to_owned(), "bull")
        .queue(QUEUE)
        .await
        .unwrap();
    (connection, queue)
}

async fn add_paused(queue: &Queue, work: Work, jobs: usize) {
    queue.pause().await.unwrap();
    let transform: serde_json::Value = match work {
        Work::Noop => serde_json::Value::Null,
        Work::Transform => serde_json::from_str(&bullpen_bench::records(RECORDS)).unwrap(),
        Work::Webhook => serde_json::Value::Null,
    };
    let hook = crate::contender::HOOK_SERVER
        .get()
        .map(|s| format!("{s}/ok"));
    for start in (0..jobs).step_by(500) {
        let batch = (start..jobs.min(start + 500))
            .map(|i| {
                let data = match work {
                    Work::Noop => serde_json::json!({
                        "id": i, "user": "ada@example.com", "tags": ["a", "b"]
                    }),
                    Work::Transform => transform.clone(),
                    Work::Webhook => serde_json::json!({
                        "url": hook.as_deref().expect("the hook server runs"),
                        "payload": {"id": i, "user": "ada@example.com", "tags": ["a", "b"]}
                    }),
                };
                BulkJob::new("bench", data)
            })
            .collect();
        queue.add_bulk(batch).await.unwrap();
    }
}

/// One run of `case` on `jobs` jobs.
pub async fn run_once(case: Case, jobs: usize, redis_url: &str, bullpen: &Path) -> Sample {
    let (mut connection, queue) = empty_queue(redis_url).await;
    add_paused(&queue, case.work, jobs).await;
    let running = contender::start(case, redis_url, bullpen).await;
    let pid = running.pid();
    let per_command = COMMAND_STATS.get() == Some(&true);
    let stats_before = if per_command {
        probe::command_stats(&mut connection).await
    } else {
        Default::default()
    };
    let (cpu_before, redis_before, commands_before) = (
        probe::tree_cpu(pid),
        probe::redis_cpu(&mut connection).await,
        probe::redis_script_time(&mut connection).await,
    );
    let started = Instant::now();
    queue.resume().await.unwrap();
    let deadline = started + Duration::from_secs(600);
    // Two plain ZCARDs in one round trip: Redis's CPU during the run counts
    // this poll too, and a slower contender is polled more often (the
    // crate's counts run a script each, about 1 µs of Redis a job at 1).
    let mut poll = redis::pipe();
    poll.cmd("ZCARD")
        .arg(queue.keys().completed())
        .cmd("ZCARD")
        .arg(queue.keys().failed());
    loop {
        let (done, failed): (usize, usize) = poll.query_async(&mut connection).await.unwrap();
        if done >= jobs {
            break;
        }
        assert_eq!(failed, 0, "{case:?}: {failed} jobs failed");
        assert!(
            Instant::now() < deadline,
            "{case:?}: {done} of {jobs} after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let worker_cpu = probe::tree_cpu(pid) - cpu_before;
    let redis_cpu = probe::redis_cpu(&mut connection).await - redis_before;
    let redis_scripts = probe::redis_script_time(&mut connection).await - commands_before;
    if per_command {
        let after = probe::command_stats(&mut connection).await;
        print_command_stats(case, jobs, &stats_before, &after);
    }
    let (_, peak_rss) = probe::memory(pid);
    if case.work == Work::Transform {
        same_work(&queue, case).await;
    }
    if case.work == Work::Webhook {
        // Each job's request reached the server and came back as 200.
        let job = queue.get_job("1").await.unwrap().expect("job 1 is kept");
        let answer: serde_json::Value = serde_json::from_str(job.returnvalue()).unwrap();
        assert_eq!(answer["status"], 200, "{case:?}: {answer}");
    }
    running.stop().await;
    queue.close().await;
    Sample {
        jobs_per_second: jobs as f64 / elapsed.as_secs_f64(),
        worker_cpu: worker_cpu / jobs as u32,
        redis_cpu: redis_cpu / jobs as u32,
        redis_scripts: redis_scripts / jobs as u32,
        peak_rss,
    }
}

/// Redis's calls and µs per job of each command `case` ran, busiest first
/// (the harness's own `INFO` and count polls included).
fn print_command_stats(
    case: Case,
    jobs: usize,
    before: &std::collections::HashMap<String, (u64, u64)>,
    after: &std::collections::HashMap<String, (u64, u64)>,
) {
    let mut rows: Vec<(&str, f64, f64)> = after
        .iter()
        .map(|(name, (calls, usec))| {
            let (calls0, usec0) = before.get(name).copied().unwrap_or_default();
            (
                name.as_str(),
                (calls - calls0) as f64 / jobs as f64,
                (usec - usec0) as f64 / jobs as f64,
            )
        })
        .filter(|(_, calls, _)| *calls > 0.0)
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let label = format!(
        "{} {} @ {}",
        case.contender.label(),
        case.work.label(),
        case.concurrency
    );
    for (name, calls, usec) in rows {
        eprintln!("  {label}: {name:<16} {calls:>8.3} calls/job {usec:>8.2} µs/job");
    }
}

/// Checks that a contender's `json-transform` answer is the guest's (run
/// natively here): the same work, not merely the same number of jobs.
async fn same_work(queue: &Queue, case: Case) {
    let job = queue.get_job("1").await.unwrap().expect("job 1 is kept");
    let theirs: serde_json::Value = serde_json::from_str(job.returnvalue()).unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&json_transform::transform(&bullpen_bench::records(RECORDS)).unwrap())
            .unwrap();
    for field in ["count", "top", "digest"] {
        assert_eq!(theirs[field], ours[field], "{case:?}: {field} differs");
    }
    for (field, tolerance) in [("total", 1e-9), ("mean", 1e-9)] {
        let (a, b) = (
            theirs[field].as_f64().unwrap(),
            ours[field].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= tolerance * b.abs().max(1.0),
            "{case:?}: {field} {a} != {b}"
        );
    }
    let tags = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v["by_tag"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| (k.clone(), s["count"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(tags(&theirs), tags(&ours), "{case:?}: by_tag differs");
}

/// The sample with the median rate (its CPU and memory figures with it).
pub fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.jobs_per_second.total_cmp(&b.jobs_per_second));
    samples[samples.len() / 2]
}
