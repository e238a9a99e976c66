//! Queue depth for the metrics: each queue's job counts by state, read from
//! Redis every [`DEPTH_EVERY`] by a task of its own (the crate's pipelined
//! counts, then the delayed jobs already due), whatever the job rate.

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
            let read = tokio::time::timeout(DEPTH_EVERY, async {
                let counts = queue.get_job_counts().await.map_err(|e| e.to_string())?;
                let due = delayed_due(&queue).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((counts, due))
            })
            .await;
            match read {
                Ok(Ok((counts, due))) => {
                    metrics.redis_answered();
                    metrics.depth(&[
                        ("wait", counts.waiting),
                        ("active", counts.active),
                        ("delayed", counts.delayed),
                        ("delayed-due", due),
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

/// Delayed jobs whose time has come that no worker has moved to `wait` yet:
/// work waiting for a worker as much as `wait`'s, which an autoscaler must
/// count (deploy/kubernetes/scaledobject.yaml). BullMQ scores a delayed job
/// `due timestamp (ms) × 0x1000 + a counter`.
async fn delayed_due(queue: &bullmq::Queue) -> redis::RedisResult<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut connection = queue.connection().connection();
    redis::cmd("ZCOUNT")
        .arg(queue.keys().delayed())
        .arg("-inf")
        .arg(format!("({}", (now + 1) * 0x1000))
        .query_async(&mut connection)
        .await
}
