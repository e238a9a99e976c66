//! What a processor asks of BullMQ while it runs (the `jobs` imports,
//! already granted and checked by the sandbox), carried out on Redis with the
//! crate: adding jobs (children of the running job, or follow-ups on other
//! queues), updating the running job's data, reading its children, moving it
//! to waiting-children.

use crate::queue::RedisTarget;
use crate::sandbox::Budget;
use crate::sandbox::job_api::AddAllowance;
use crate::sandbox::job_api::{AddJob, ChildrenSoFar};
use bullmq::{Job, JobOptions, ParentOptions, Queue};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The queues a queue's processors add jobs to, opened once each; and how
/// fast and how deep all its attempts together may add to them.
pub(crate) struct AddTargets {
    target: RedisTarget,
    queues: tokio::sync::Mutex<HashMap<String, Queue>>,
    /// Adds per second, a second's worth at once.
    bucket: Mutex<Bucket>,
    per_second: f64,
    max_depth: u64,
    /// Each target's waiting jobs as last read, and when; counted up by
    /// each add until read again.
    depths: Mutex<HashMap<String, (u64, Instant)>>,
}

/// Adds left, and when they were counted.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How long a target's depth, as read, is trusted.
const DEPTH_READ_EVERY: Duration = Duration::from_secs(1);

/// Why a job was not added.
pub(super) struct NotAdded {
    /// The budget that refused it, if one did.
    pub budget: Option<Budget>,
    /// What the guest is told.
    pub reason: String,
}

impl From<String> for NotAdded {
    fn from(reason: String) -> Self {
        NotAdded {
            budget: None,
            reason,
        }
    }
}

impl AddTargets {
    /// Targets on `target`, with the queue's `max_adds_per_second` and
    /// `max_target_depth` from `allowance`.
    pub fn new(target: RedisTarget, allowance: &AddAllowance) -> Self {
        let per_second = f64::from(allowance.per_second);
        AddTargets {
            target,
            queues: Default::default(),
            bucket: Mutex::new(Bucket {
                tokens: per_second,
                at: Instant::now(),
            }),
            per_second,
            max_depth: u64::from(allowance.max_target_depth),
            depths: Default::default(),
        }
    }

    /// One more add, if the queue's rate allows it now.
    fn take(&self) -> Result<(), NotAdded> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.per_second);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(NotAdded {
                budget: Some(Budget::AddRate),
                reason: format!(
                    "not added: this queue's attempts added {} jobs in the last second, its \
                     max_adds_per_second; try again later",
                    self.per_second
                ),
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Whether `queue` holds fewer waiting jobs than the bound: read from
    /// Redis at most once a second, counted up by each add meanwhile.
    async fn room_in(&self, name: &str, queue: &Queue) -> Result<(), NotAdded> {
        let known = self
            .depths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .filter(|(_, at)| at.elapsed() < DEPTH_READ_EVERY)
            .map(|(depth, _)| *depth);
        let depth = match known {
            Some(depth) => depth,
            None => {
                let depth = queue
                    .count()
                    .await
                    .map_err(|e| format!("cannot count the jobs of queue `{name}`: {e}"))?;
                self.depths
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_owned(), (depth, Instant::now()));
                depth
            }
        };
        if depth >= self.max_depth {
            return Err(NotAdded {
                budget: Some(Budget::AddDepth),
                reason: format!(
                    "not added: queue `{name}` holds {depth} waiting jobs, this queue's \
                     max_target_depth ({}); try again once they are processed",
                    self.max_depth
                ),
            });
        }
        if let Some((depth, _)) = self
            .depths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(name)
        {
            *depth += 1;
        }
        Ok(())
    }

    async fn queue(&self, name: &str) -> Result<Queue, String> {
        let mut queues = self.queues.lock().await;
        if let Some(queue) = queues.get(name) {
            return Ok(queue.clone());
        }
        let queue = self
            .target
            .queue(name)
            .await
            .map_err(|e| format!("cannot open queue `{name}`: {e}"))?;
        queues.insert(name.to_owned(), queue.clone());
        Ok(queue)
    }
}

/// One attempt's requests about jobs.
pub(super) struct JobRequests {
    /// The running job, shared with the task that writes its reports.
    pub job: Arc<tokio::sync::Mutex<Job>>,
    /// The running job's queue.
    pub queue: Queue,
    pub targets: Arc<AddTargets>,
    /// Whether the job was moved to waiting-children: its lock is gone.
    pub waiting_children: Arc<AtomicBool>,
}

impl JobRequests {
    /// Adds `job`, within the queue's rate and the target's depth.
    pub async fn add(&self, job: AddJob) -> Result<String, NotAdded> {
        let mut options = crate_options(job.options)?;
        if job.child {
            options.parent = Some(ParentOptions {
                queue: format!("{}:{}", self.queue.keys().prefix(), self.queue.name()),
                id: self.job.lock().await.id().to_owned(),
                wait_children: None,
            });
        }
        let queue = self.targets.queue(&job.queue).await?;
        self.targets.room_in(&job.queue, &queue).await?;
        self.targets.take()?;
        let added = queue
            .add(&job.name, job.data)
            .options(options)
            .await
            .map_err(|e| format!("cannot add the job to queue `{}`: {e}", job.queue))?;
        Ok(added.id().to_owned())
    }

    pub async fn update_data(&self, data: Value) -> Result<(), String> {
        let mut job = self.job.lock().await;
        job.update_data(data)
            .await
            .map_err(|e| format!("cannot update the job's data: {e}"))
    }

    pub async fn children(&self) -> Result<ChildrenSoFar, String> {
        let job = self.job.lock().await;
        let error = |e: bullmq::Error| format!("cannot read the job's children: {e}");
        let values = job.get_children_values().await.map_err(error)?;
        let ignored = job.get_ignored_children_failures().await.map_err(error)?;
        let unsuccessful = format!("{}:unsuccessful", self.queue.keys().job_key(job.id()));
        let mut connection = self.queue.connection().connection();
        let failed: Vec<String> = redis::cmd("ZRANGE")
            .arg(unsuccessful)
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(|e| error(e.into()))?;
        Ok(ChildrenSoFar {
            values: values.into_iter().collect(),
            failed,
            ignored: ignored
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        })
    }

    pub async fn move_to_waiting_children(&self) -> Result<bool, String> {
        let job = self.job.lock().await;
        let moved = job
            .move_to_waiting_children(None)
            .await
            .map_err(|e| e.to_string())?;
        if moved {
            self.waiting_children.store(true, Ordering::Release);
        }
        Ok(moved)
    }
}

/// Checked options (BullMQ's names) as the crate's; what the crate would
/// drop without a word is refused instead.
fn crate_options(mut options: Map<String, Value>) -> Result<JobOptions, String> {
    // Kept apart from the strategy by the crate (patch 0004).
    let mut jitter = None;
    match options.get("backoff") {
        // Node's shorthand: a number is a fixed delay.
        Some(Value::Number(delay)) => {
            let delay = delay.clone();
            options.insert(
                "backoff".into(),
                serde_json::json!({ "type": "fixed", "delay": delay }),
            );
        }
        Some(backoff) => {
            // Its range is checked with the rest of the request (`job_api`).
            jitter = backoff.get("jitter").and_then(Value::as_f64);
            let kind = backoff.get("type").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "fixed" | "exponential")
                && backoff.get("delay").is_some_and(|d| !d.is_null())
            {
                return Err(format!(
                    "a custom backoff type (`{kind}`) cannot carry a delay on a job a processor \
                     adds (bullmq-official drops it); leave the delay out"
                ));
            }
        }
        None => {}
    }
    let mut options: JobOptions = serde_json::from_value(Value::Object(options))
        .map_err(|e| format!("the new job's options: {e}"))?;
    options.backoff_jitter = jitter;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<JobOptions, String> {
        crate_options(serde_json::from_str(json).unwrap())
    }

    #[tokio::test]
    async fn a_queues_adds_come_at_most_at_its_rate() {
        let allowance = AddAllowance {
            per_second: 5,
            ..AddAllowance::default()
        };
        let targets = AddTargets::new(
            RedisTarget::server("redis://127.0.0.1:1", "bull"),
            &allowance,
        );
        for _ in 0..5 {
            assert!(targets.take().is_ok());
        }
        let refused = targets.take().unwrap_err();
        assert_eq!(refused.budget, Some(Budget::AddRate));
        assert!(
            refused.reason.contains("max_adds_per_second"),
            "{}",
            refused.reason
        );
        // A fifth of a second later, one more.
        targets.bucket.lock().unwrap().at -= Duration::from_millis(200);
        assert!(targets.take().is_ok());
        assert!(targets.take().is_err());
    }

    #[test]
    fn options_reach_the_crate_or_are_refused_with_the_reason() {
        let o = options(r#"{"attempts":3,"delay":50,"backoff":1000,"jobId":"a-1"}"#).unwrap();
        assert_eq!(o.attempts, Some(3));
        assert_eq!(o.delay, Some(50));
        assert!(matches!(
            o.backoff,
            Some(bullmq::types::BackoffStrategy::Fixed(1000))
        ));
        assert_eq!(o.job_id.as_deref(), Some("a-1"));
        let o = options(r#"{"deduplication":{"id":"d","ttl":100},"keepLogs":2}"#).unwrap();
        assert_eq!(o.deduplication.unwrap().ttl, Some(100));
        assert_eq!(o.keep_logs, Some(2));
        assert!(
            options(r#"{"attempts":"three"}"#)
                .unwrap_err()
                .starts_with("the new job's options: ")
        );
        let o = options(r#"{"backoff":{"type":"fixed","delay":5,"jitter":0.5}}"#).unwrap();
        assert_eq!(o.backoff_jitter, Some(0.5));
        assert!(
            options(r#"{"backoff":{"type":"linear","delay":5}}"#)
                .unwrap_err()
                .contains("`linear`")
        );
    }
}
