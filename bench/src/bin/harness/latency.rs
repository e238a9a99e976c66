//! Pickup latency: jobs added one at a time to an idle queue, each timed
//! from the `add` call until the worker made it active and until it was
//! completed (as seen on the queue's event stream).

use crate::contender::{self, Case, Contender, QUEUE, Work};
use crate::events::EventStream;
use bullpen::queue::bullmq::Queue;
use std::path::Path;
use std::time::{Duration, Instant};

/// p50 and p99 of one contender.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub active: (Duration, Duration),
    pub completed: (Duration, Duration),
}

/// Adds `jobs` jobs to `queue` one at a time, each once the one before is
/// completed: for each, how long after its `add` call `events` saw each of
/// the `wanted` events (`completed` last).
pub async fn trickle(
    queue: &Queue,
    events: &mut EventStream,
    jobs: usize,
    wanted: &[&str],
) -> Vec<Vec<Option<Duration>>> {
    let mut all = Vec::with_capacity(jobs);
    for i in 0..jobs {
        events.skip_to_now().await;
        let added = Instant::now();
        let job = queue
            .add("latency", serde_json::json!({ "i": i }))
            .await
            .unwrap();
        let seen = events
            .wait_for(job.id(), wanted, "completed", Duration::from_secs(10))
            .await;
        all.push(seen.into_iter().map(|at| at.map(|at| at - added)).collect());
        // Idle again before the next one, as a quiet queue is.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    all
}

/// p50 and p99 of `samples`.
pub fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Trickles `jobs` jobs to `contender` (concurrency 8, no-op work).
pub async fn measure(
    contender: Contender,
    jobs: usize,
    redis_url: &str,
    bullpen: &Path,
) -> Latency {
    let (_, queue) = crate::throughput::empty_queue(redis_url).await;
    let case = Case {
        contender,
        work: Work::Noop,
        concurrency: 8,
    };
    let running = contender::start(case, redis_url, bullpen).await;
    let mut events = EventStream::open(redis_url, QUEUE).await;
    // Let the worker settle into its idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut active, mut completed) = (Vec::new(), Vec::new());
    for seen in trickle(&queue, &mut events, jobs, &["active", "completed"]).await {
        active.push(seen[0].expect("an active event before completed"));
        completed.push(seen[1].unwrap());
    }
    running.stop().await;
    queue.close().await;
    Latency {
        active: percentiles(active),
        completed: percentiles(completed),
    }
}
