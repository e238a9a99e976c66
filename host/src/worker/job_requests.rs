//! What a processor asks of BullMQ while it runs (the `jobs` imports,
//! already granted and checked by the sandbox), carried out on Redis with the
//! crate: adding jobs (children of the running job, or follow-ups on other
//! queues), updating the running job's data, reading its children, moving it
//! to waiting-children.

use crate::queue::RedisTarget;
use crate::sandbox::job_api::{AddJob, ChildrenSoFar};
use bullmq::{Job, JobOptions, ParentOptions, Queue};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The queues a queue's processors add jobs to, opened once each.
pub(crate) struct AddTargets {
    target: RedisTarget,
    queues: tokio::sync::Mutex<HashMap<String, Queue>>,
}

impl AddTargets {
    pub fn new(target: RedisTarget) -> Self {
        AddTargets {
            target,
            queues: Default::default(),
        }
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
    pub async fn add(&self, job: AddJob) -> Result<String, String> {
        let mut options = crate_options(job.options)?;
        if job.child {
            options.parent = Some(ParentOptions {
                queue: format!("{}:{}", self.queue.keys().prefix(), self.queue.name()),
                id: self.job.lock().await.id().to_owned(),
                wait_children: None,
            });
        }
        let queue = self.targets.queue(&job.queue).await?;
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
            if backoff.get("jitter").is_some_and(|j| !j.is_null()) {
                return Err(
                    "backoff.jitter cannot be kept on a job a processor adds (bullmq-official \
                     drops it); leave it out"
                        .into(),
                );
            }
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
    serde_json::from_value(Value::Object(options))
        .map_err(|e| format!("the new job's options: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<JobOptions, String> {
        crate_options(serde_json::from_str(json).unwrap())
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
        assert!(
            options(r#"{"backoff":{"type":"fixed","delay":5,"jitter":0.5}}"#)
                .unwrap_err()
                .contains("jitter")
        );
        assert!(
            options(r#"{"backoff":{"type":"linear","delay":5}}"#)
                .unwrap_err()
                .contains("`linear`")
        );
    }
}
