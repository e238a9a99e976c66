//! The thin layer over `bullmq-official` (lib `bullmq`): connections,
//! producer operations (add, retry, list, counts) and the worker options we
//! pass it. Knows nothing of wasm.
//!
//! Where the crate falls short of BullMQ's Node worker, the fix lives here or
//! in [`fields`], each with its reason (see docs/ARCHITECTURE.md).

pub mod fields;

use bullmq::options::RedisConnectionOptions;
use bullmq::{Job, JobOptions, JobState, Queue, QueueOptions, RetryOptions};
use std::time::Duration;

pub use bullmq;

/// Where the queues live: a Redis URL and BullMQ's key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://…`, `rediss://…` or `unix://…`; for a cluster, its seed
    /// nodes' URLs joined by commas (for messages).
    pub url: String,
    /// A Redis Cluster's seed nodes; empty for one server at `url`.
    pub nodes: Vec<String>,
    /// BullMQ's key prefix (`bull` by default).
    pub prefix: String,
}

impl RedisTarget {
    /// The crate's connection options for this target.
    pub fn connection(&self) -> RedisConnectionOptions {
        let options = RedisConnectionOptions::default().url(self.url.clone());
        if self.nodes.is_empty() {
            options
        } else {
            options.cluster_nodes(self.nodes.clone())
        }
    }

    /// One Redis server at `url`.
    pub fn server(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        RedisTarget {
            url: url.into(),
            nodes: Vec::new(),
            prefix: prefix.into(),
        }
    }

    /// The Redis Cluster these seed nodes belong to.
    pub fn cluster(nodes: Vec<String>, prefix: impl Into<String>) -> Self {
        RedisTarget {
            url: nodes.join(","),
            nodes,
            prefix: prefix.into(),
        }
    }

    /// Opens the queue `name`. Fails within [`CONNECT_TIMEOUT`] when Redis
    /// does not answer (the crate alone retries for about 40 s).
    pub async fn queue(&self, name: &str) -> Result<Queue, QueueError> {
        let mut options = QueueOptions::new();
        options.connection = self.connection();
        options.prefix = self.prefix.clone();
        match tokio::time::timeout(CONNECT_TIMEOUT, Queue::with_options(name, options)).await {
            Ok(Ok(queue)) => Ok(queue),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(no_answer())),
        }
    }

    /// Whether Redis answers a `PING` within [`CONNECT_TIMEOUT`] (in a
    /// cluster, whether a seed node does); the error says why not (refused,
    /// unknown host, no answer).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let ping_one = |url: &str| {
            let url = url.to_owned();
            async move {
                let client = redis::Client::open(url.as_str())?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut connection).await
            }
        };
        let ping = async {
            if self.nodes.is_empty() {
                return ping_one(&self.url).await;
            }
            let mut last = None;
            for node in &self.nodes {
                match ping_one(node).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("a cluster has nodes"))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(no_answer())),
        }
    }

    fn unreachable(&self, reason: String) -> QueueError {
        QueueError::Connect {
            url: redact(&self.url),
            reason,
        }
    }
}

/// How long a command waits for Redis to answer before it says it cannot
/// reach it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn no_answer() -> String {
    format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())
}

/// Hides the password of a URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A queue operation that failed, with what a user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached.
    #[error("cannot connect to Redis at {url}: {reason}")]
    Connect {
        /// The URL (password hidden).
        url: String,
        /// Why.
        reason: String,
    },
    /// No job with this id (BullMQ's -1).
    #[error("queue {queue}: job {id} does not exist")]
    NoSuchJob {
        /// The queue.
        queue: String,
        /// The job id.
        id: String,
    },
    /// The job is not in the state the operation needs (BullMQ's -3).
    #[error("queue {queue}: job {id} is not in the {state} state (it is {actual})")]
    NotInState {
        /// The queue.
        queue: String,
        /// The job id.
        id: String,
        /// The state it needed.
        state: String,
        /// The state it is in.
        actual: String,
    },
    /// Any other error from the crate or Redis.
    #[error("queue {queue}: {reason}")]
    Redis {
        /// The queue.
        queue: String,
        /// What happened.
        reason: String,
    },
}

fn redis_error(queue: &Queue) -> impl Fn(bullmq::Error) -> QueueError + '_ {
    move |e| QueueError::Redis {
        queue: queue.name().to_owned(),
        reason: e.to_string(),
    }
}

/// A job to add, as `bullpen add` describes it.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The job's name.
    pub name: String,
    /// Its data.
    pub data: serde_json::Value,
    /// `attempts`.
    pub attempts: Option<u32>,
    /// `backoff`.
    pub backoff: Option<bullmq::types::BackoffStrategy>,
    /// `delay`.
    pub delay: Option<Duration>,
    /// A custom job id.
    pub job_id: Option<String>,
    /// `priority`.
    pub priority: Option<u32>,
}

/// Adds a job and returns its id.
pub async fn add(queue: &Queue, job: NewJob) -> Result<String, QueueError> {
    let options = JobOptions {
        attempts: job.attempts,
        backoff: job.backoff,
        delay: job.delay.map(|d| d.as_millis() as u64),
        job_id: job.job_id,
        priority: job.priority,
        ..JobOptions::default()
    };
    let added = queue
        .add(&job.name, job.data)
        .options(options)
        .await
        .map_err(redis_error(queue))?;
    Ok(added.id().to_owned())
}

/// The states `retry` can take jobs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// `failed`.
    Failed,
    /// `completed`.
    Completed,
}

impl Finished {
    /// BullMQ's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Finished::Failed => "failed",
            Finished::Completed => "completed",
        }
    }
}

/// Retries one finished job by hand (BullMQ's `Job.retry(state, opts)`):
/// back to wait, `failedReason`/`returnvalue` and `finishedOn` cleared,
/// `attemptsMade` / `attemptsStarted` reset when asked.
pub async fn retry(
    queue: &Queue,
    id: &str,
    state: Finished,
    options: RetryOptions,
) -> Result<(), QueueError> {
    let mut job = queue
        .get_job(id)
        .await
        .map_err(redis_error(queue))?
        .ok_or_else(|| QueueError::NoSuchJob {
            queue: queue.name().to_owned(),
            id: id.to_owned(),
        })?;
    let actual = job.get_state().await.map_err(redis_error(queue))?;
    if state_name(&actual) != state.as_str() {
        return Err(QueueError::NotInState {
            queue: queue.name().to_owned(),
            id: id.to_owned(),
            state: state.as_str().to_owned(),
            actual: state_name(&actual).to_owned(),
        });
    }
    job.retry(state.as_str(), Some(options))
        .await
        .map_err(|e| match e.to_string() {
            m if m.contains("code -1") => QueueError::NoSuchJob {
                queue: queue.name().to_owned(),
                id: id.to_owned(),
            },
            m if m.contains("code -3") => QueueError::NotInState {
                queue: queue.name().to_owned(),
                id: id.to_owned(),
                state: state.as_str().to_owned(),
                actual: "another state".to_owned(),
            },
            reason => QueueError::Redis {
                queue: queue.name().to_owned(),
                reason,
            },
        })
}

/// BullMQ's name for a state.
pub fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Delayed => "delayed",
        JobState::Active => "active",
        JobState::Waiting => "waiting",
        JobState::Prioritized => "prioritized",
        JobState::WaitingChildren => "waiting-children",
        JobState::Unknown => "unknown",
    }
}

/// The states `bullpen jobs` lists, in BullMQ's names.
pub const LISTED_STATES: [&str; 6] = [
    "active",
    "waiting",
    "prioritized",
    "delayed",
    "failed",
    "completed",
];

/// Up to `limit` jobs in `states`, newest first, each with its state.
pub async fn list(
    queue: &Queue,
    states: &[&str],
    limit: usize,
) -> Result<Vec<(Job, &'static str)>, QueueError> {
    let mut listed = Vec::new();
    for &state in states {
        let wanted = if state == "waiting" {
            vec!["wait"]
        } else {
            vec![state]
        };
        let jobs = queue
            .get_jobs(&wanted, 0, limit as i64 - 1, false)
            .await
            .map_err(redis_error(queue))?;
        let name = LISTED_STATES
            .iter()
            .find(|s| **s == state)
            .copied()
            .unwrap_or("unknown");
        listed.extend(jobs.into_iter().map(|job| (job, name)));
    }
    listed.truncate(limit);
    Ok(listed)
}

/// Job counts by state, in BullMQ's names.
pub async fn counts(queue: &Queue) -> Result<Vec<(&'static str, u64)>, QueueError> {
    let counts = queue.get_job_counts().await.map_err(redis_error(queue))?;
    Ok(vec![
        ("waiting", counts.waiting),
        ("active", counts.active),
        ("delayed", counts.delayed),
        ("prioritized", counts.prioritized),
        ("completed", counts.completed),
        ("failed", counts.failed),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
