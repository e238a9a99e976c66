//! Cancels through BullMQ's Relay: how long from publishing
//! `jobs.<queue>.cancel` until the spinning attempt it names has ended (its
//! `failed` event seen), on an idle host and on one draining no-op jobs as
//! fast as it can; and what a Relay node costs while nothing happens.

use crate::events::EventStream;
use crate::latency::percentiles;
use crate::many_queues::info_number;
use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::{BulkJob, Queue};
use bullpen::relay::{Relay, RelayOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Cancel latency on one host.
#[derive(Debug)]
pub struct Cancels {
    /// What else the host did meanwhile.
    pub load: &'static str,
    /// Publish → `failed` seen: p50, p99.
    pub latency: (Duration, Duration),
    pub max: Duration,
    /// No-op jobs/s the host completed on its other queue meanwhile.
    pub load_rate: f64,
}

/// What a Relay node costs idle, over [`IDLE_FOR`].
#[derive(Debug)]
pub struct IdleNode {
    /// The node's own CPU (heartbeat, inbox reads), as a share of one core.
    pub node_cpu: f64,
    /// Redis's CPU with the node, and with no client at all, as shares of
    /// one core.
    pub redis_cpu: (f64, f64),
    /// Redis commands/s, those the node's scripts run counted.
    pub commands_per_second: f64,
}

/// How long an idle Relay node is watched.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// The host's queues: `spin`, whose jobs loop until cancelled (their
/// timeout is a minute), and `load`, no-op jobs.
const QUEUES: &str = "[queues.spin]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\ntimeout = \"60s\"\n\n\
                      [queues.load]\nmodule = \"echo.wasm\"\nconcurrency = 8\n";

/// `cancels` spinning jobs cancelled one at a time, with the host idle
/// otherwise, then with it draining the `load` queue.
pub async fn measure(cancels: usize, redis_url: &str, bullpen: &Path) -> Vec<Cancels> {
    let _ = crate::throughput::empty_queue(redis_url).await;
    let target = RedisTarget::server(redis_url.to_owned(), "bull");
    let (_dir, child) =
        crate::contender::bullpen_host(redis_url, QUEUES, &["echo", "misbehave"], bullpen).await;
    let relay = Relay::connect(&target, RelayOptions::default())
        .await
        .expect("joining the Relay");
    let spin = target.queue("spin").await.unwrap();
    let load = target.queue("load").await.unwrap();
    let mut events = EventStream::open(redis_url, "spin").await;
    let mut results = Vec::new();
    for loaded in [false, true] {
        let flooding = Arc::new(AtomicBool::new(loaded));
        let flood = tokio::spawn(flood(load.clone(), flooding.clone()));
        let completed = load.get_completed_count().await.unwrap();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(cancels);
        for i in 0..cancels {
            latencies.push(cancel_one(&spin, &relay, &mut events, i).await);
        }
        let load_rate = (load.get_completed_count().await.unwrap() - completed) as f64
            / started.elapsed().as_secs_f64();
        flooding.store(false, Ordering::Release);
        flood.await.unwrap();
        let max = latencies.iter().copied().max().unwrap_or_default();
        results.push(Cancels {
            load: if loaded {
                "draining no-op jobs (concurrency 8) beside it"
            } else {
                "idle otherwise"
            },
            latency: percentiles(latencies),
            max,
            load_rate,
        });
    }
    let _ = relay.stop().await;
    crate::contender::terminate(child).await;
    spin.close().await;
    load.close().await;
    results
}

/// Adds a spinning job, waits until it runs, cancels it: how long from the
/// publish until its `failed` event.
async fn cancel_one(spin: &Queue, relay: &Relay, events: &mut EventStream, i: usize) -> Duration {
    events.skip_to_now().await;
    let job = spin
        .add("spin", serde_json::json!({"mode": "spin", "i": i}))
        .await
        .unwrap();
    events
        .wait_for(job.id(), &[], "active", Duration::from_secs(30))
        .await;
    // Some of the spin well under way: the epoch ticks, not the call's start.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let published = Instant::now();
    let heard = relay
        .publish(
            "jobs.spin.cancel",
            &serde_json::json!({"jobId": job.id(), "reason": "bench"}),
            Duration::ZERO,
        )
        .await
        .expect("publishing a cancel");
    assert_eq!(heard.nodes, 1, "the host's node did not get the cancel");
    let ended = events
        .wait_for(job.id(), &["failed"], "failed", Duration::from_secs(30))
        .await;
    ended[0].expect("a failed event") - published
}

/// While `on`, keeps `load` holding no-op jobs to take.
async fn flood(load: Queue, on: Arc<AtomicBool>) {
    while on.load(Ordering::Acquire) {
        let waiting = load.get_job_count_by_types(&["wait"]).await.unwrap_or(0);
        if waiting < 20_000 {
            let batch = (0..2_000)
                .map(|n| BulkJob::new("load", serde_json::json!({ "n": n })))
                .collect();
            load.add_bulk(batch).await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A Relay node subscribed as a host is (`jobs.*.cancel` and one queue's
/// settings), alone on the Redis at `redis_url` for [`IDLE_FOR`], against
/// that Redis with no client at all for as long.
pub async fn idle_node(redis_url: &str) -> IdleNode {
    let (mut connection, _) = crate::throughput::empty_queue(redis_url).await;
    let commands = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move { info_number(&mut c, "stats", "total_commands_processed").await }
    };
    // The INFO calls of one reading: themselves among the commands counted.
    const OWN_COMMANDS: f64 = 3.0;
    let window = async |connection: &mut redis::aio::MultiplexedConnection| {
        let (redis, count, cpu) = (
            crate::probe::redis_cpu(connection).await,
            commands(connection).await,
            own_cpu(),
        );
        tokio::time::sleep(IDLE_FOR).await;
        (
            (crate::probe::redis_cpu(connection).await - redis).as_secs_f64(),
            commands(connection).await - count - OWN_COMMANDS,
            (own_cpu() - cpu).as_secs_f64(),
        )
    };
    let (quiet_redis, _, _) = window(&mut connection).await;
    let target = RedisTarget::server(redis_url.to_owned(), "bull");
    let relay = Relay::connect(&target, RelayOptions::default())
        .await
        .expect("joining the Relay");
    let _cancels = relay.subscribe("jobs.*.cancel").await.unwrap();
    let _settings = relay.subscribe("workers.q.settings").await.unwrap();
    let (redis, commands, node) = window(&mut connection).await;
    let _ = relay.stop().await;
    let secs = IDLE_FOR.as_secs_f64();
    IdleNode {
        node_cpu: node / secs,
        redis_cpu: (redis / secs, quiet_redis / secs),
        commands_per_second: commands.max(0.0) / secs,
    }
}

/// This process's CPU time (its threads only: Redis is a child).
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
