//! Many queues on one host: a hundred idle queues (the host's and Redis's
//! CPU, the connections held, Redis commands per second), and the same jobs
//! drained from one queue and spread over a hundred.

use crate::probe;
use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::{BulkJob, Queue};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a hundred idle queues cost.
#[derive(Debug)]
pub struct Idle {
    pub queues: usize,
    /// The host's CPU, as a share of one core.
    pub host_cpu: f64,
    /// Redis's CPU, as a share of one core.
    pub redis_cpu: f64,
    /// Redis clients the host holds.
    pub connections: u64,
    pub commands_per_second: f64,
}

/// How long idle queues are watched.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// A host on `queues` queues named `q0`…, each with `concurrency`, running
/// `echo`; its directory and process.
async fn host(
    queues: usize,
    concurrency: usize,
    redis_url: &str,
    bullpen: &Path,
) -> (tempfile::TempDir, tokio::process::Child) {
    let mut config = String::new();
    for i in 0..queues {
        config +=
            &format!("[queues.q{i}]\nmodule = \"echo.wasm\"\nconcurrency = {concurrency}\n\n");
    }
    crate::contender::bullpen_host(redis_url, &config, &["echo"], bullpen).await
}

/// A number `INFO <section>` gives as `field:<number>`.
pub async fn info_number(
    connection: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `queues` idle queues (concurrency 1) watched for [`IDLE_FOR`].
pub async fn idle(queues: usize, redis_url: &str, bullpen: &Path) -> Idle {
    let (mut connection, _) = crate::throughput::empty_queue(redis_url).await;
    let before_host = info_number(&mut connection, "clients", "connected_clients").await;
    let (_dir, child) = host(queues, 1, redis_url, bullpen).await;
    let pid = child.id().unwrap();
    // Start-up done (its compile, its first fetches).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu, redis, commands) = (
        probe::tree_cpu(pid),
        probe::redis_cpu(&mut connection).await,
        info_number(&mut connection, "stats", "total_commands_processed").await,
    );
    tokio::time::sleep(IDLE_FOR).await;
    let host_cpu = (probe::tree_cpu(pid) - cpu).as_secs_f64() / IDLE_FOR.as_secs_f64();
    let redis_cpu =
        (probe::redis_cpu(&mut connection).await - redis).as_secs_f64() / IDLE_FOR.as_secs_f64();
    // The INFO calls themselves are a few of these.
    let commands =
        info_number(&mut connection, "stats", "total_commands_processed").await - commands;
    let connections =
        info_number(&mut connection, "clients", "connected_clients").await - before_host;
    crate::contender::terminate(child).await;
    Idle {
        queues,
        host_cpu,
        redis_cpu,
        connections: connections as u64,
        commands_per_second: commands / IDLE_FOR.as_secs_f64(),
    }
}

/// `jobs` no-op jobs spread evenly over `queues` queues of `concurrency`
/// each, drained by one host: jobs/s from `resume` to the last completed.
pub async fn spread(
    jobs: usize,
    queues: usize,
    concurrency: usize,
    redis_url: &str,
    bullpen: &Path,
) -> f64 {
    let _ = crate::throughput::empty_queue(redis_url).await;
    let target = RedisTarget::server(redis_url.to_owned(), "bull");
    let mut handles: Vec<Queue> = Vec::new();
    for i in 0..queues {
        let queue = target.queue(&format!("q{i}")).await.unwrap();
        queue.pause().await.unwrap();
        let share = jobs / queues + usize::from(i < jobs % queues);
        for start in (0..share).step_by(500) {
            let batch = (start..share.min(start + 500))
                .map(|n| {
                    BulkJob::new(
                        "bench",
                        serde_json::json!({"id": n, "user": "ada@example.com", "tags": ["a", "b"]}),
                    )
                })
                .collect();
            queue.add_bulk(batch).await.unwrap();
        }
        handles.push(queue);
    }
    let (_dir, child) = host(queues, concurrency, redis_url, bullpen).await;
    let started = Instant::now();
    for queue in &handles {
        queue.resume().await.unwrap();
    }
    let deadline = started + Duration::from_secs(600);
    loop {
        let mut done = 0;
        for queue in &handles {
            done += queue.get_completed_count().await.unwrap() as usize;
        }
        if done >= jobs {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {jobs} after 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    crate::contender::terminate(child).await;
    for queue in handles {
        queue.close().await;
    }
    jobs as f64 / elapsed.as_secs_f64()
}
