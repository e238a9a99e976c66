//! Pickup latency: jobs added one at a time to an idle queue, each timed
//! from the `add` call until the worker made it active and until it was
//! completed (as seen on the queue's event stream).

use crate::contender::{self, Case, Contender, QUEUE, Work};
use crate::events::EventStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// p50 and p99 of one contender.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub active: (Duration, Duration),
    pub completed: (Duration, Duration),
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
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
    for i in 0..jobs {
        events.skip_to_now().await;
        let added = Instant::now();
        let job = queue
            .add("latency", serde_json::json!({ "i": i }))
            .await
            .unwrap();
        let seen = events
            .wait_for(
                job.id(),
                &["active", "completed"],
                "completed",
                Duration::from_secs(10),
            )
            .await;
        active.push(seen[0].expect("an active event before completed") - added);
        completed.push(seen[1].unwrap() - added);
        // Idle again before the next one, as a quiet queue is.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.stop().await;
    queue.close().await;
    Latency {
        active: percentiles(active),
        completed: percentiles(completed),
    }
}
