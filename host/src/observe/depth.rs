//! Queue depth for the metrics: each queue's job counts by state, read from
//! Redis every [`DEPTH_EVERY`] by a task of its own (one pipelined round
//! trip), whatever the job rate.

use super::metrics::QueueMetrics;
use std::time::Duration;

/// How often a queue's job counts are read.
pub const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Reads `queue`'s counts into `metrics` until the task is aborted.
pub fn poll(queue: bullmq::Queue, metrics: QueueMetrics) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(DEPTH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let read = tokio::time::timeout(DEPTH_EVERY, queue.get_job_counts()).await;
            match read {
                Ok(Ok(counts)) => {
                    metrics.redis_answered();
                    metrics.depth(&[
                        ("wait", counts.waiting),
                        ("active", counts.active),
                        ("delayed", counts.delayed),
                        ("prioritized", counts.prioritized),
                        ("completed", counts.completed),
                        ("failed", counts.failed),
                        ("waiting-children", counts.waiting_children),
                    ]);
                }
                Ok(Err(e)) => {
                    metrics.redis_error();
                    tracing::debug!(queue = queue.name(), "cannot read the job counts: {e}");
                }
                Err(_) => {
                    metrics.redis_error();
                    tracing::debug!(
                        queue = queue.name(),
                        "the job counts did not come within {DEPTH_EVERY:?}"
                    );
                }
            }
        }
    })
}
