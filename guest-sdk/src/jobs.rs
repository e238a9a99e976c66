//! BullMQ's job API from inside a processor: add jobs (children of the job
//! being processed, or follow-ups on other queues), update the job's data,
//! read what its children returned, wait for them.
//!
//! Adding a job needs its queue granted in the processor's queue config
//! (`add_to_queues = ["emails"]`); the job's own data and children need no
//! grant. Each call is one round trip to Redis, made by the host.
//!
//! The step-job pattern of BullMQ's docs (add children, wait, then sum what
//! they returned):
//!
//! ```no_run
//! use bullpen_guest::{Error, Job, Processor, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Parent { step: u8, numbers: Vec<u64> }
//!
//! struct Sum;
//!
//! impl Processor for Sum {
//!     fn process(mut job: Job) -> Result<impl Serialize> {
//!         let mut parent: Parent = job.data()?;
//!         if parent.step == 0 {
//!             for n in &parent.numbers {
//!                 job.add_child("squares", "square", n)?;
//!             }
//!             parent.step = 1;
//!             job.update_data(&parent)?;
//!         }
//!         if job.move_to_waiting_children()? {
//!             return Err(Error::waiting_children());
//!         }
//!         let values = job.children_values::<u64>()?;
//!         Ok(values.values().sum::<u64>())
//!     }
//! }
//! # bullpen_guest::export!(Sum);
//! ```

use crate::__private::bindings::bullpen::processor::{jobs, types};
use crate::{Error, Job, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

/// BullMQ's options for a job being added, in BullMQ's names. Unset
/// options are left out, so BullMQ's defaults apply.
///
/// ```
/// use bullpen_guest::jobs::JobOptions;
/// use std::time::Duration;
/// let options = JobOptions::new()
///     .attempts(3)
///     .backoff_exponential(Duration::from_secs(1))
///     .delay(Duration::from_secs(10))
///     .job_id("welcome-42");
/// assert_eq!(
///     serde_json::to_string(&options).unwrap(),
///     r#"{"delay":10000,"attempts":3,"backoff":{"type":"exponential","delay":1000},"jobId":"welcome-42"}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backoff: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deduplication: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_on_complete: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_on_fail: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_logs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_parent_on_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continue_parent_on_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_dependency_on_failure: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_dependency_on_failure: Option<bool>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl JobOptions {
    /// No options: BullMQ's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// `delay`: the job waits this long before it can run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(millis(delay));
        self
    }

    /// `attempts`: how many times the job may be tried.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// `backoff: { type: "fixed", delay }`.
    pub fn backoff_fixed(mut self, delay: Duration) -> Self {
        self.backoff = Some(serde_json::json!({ "type": "fixed", "delay": millis(delay) }));
        self
    }

    /// `backoff: { type: "exponential", delay }`.
    pub fn backoff_exponential(mut self, delay: Duration) -> Self {
        self.backoff = Some(serde_json::json!({ "type": "exponential", "delay": millis(delay) }));
        self
    }

    /// `backoff: { type }`: a custom strategy the target queue's processor
    /// understands.
    pub fn backoff_custom(mut self, strategy: impl Into<String>) -> Self {
        self.backoff = Some(serde_json::json!({ "type": strategy.into() }));
        self
    }

    /// `priority`: 1 (highest) to 2,097,151; 0 is no priority.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// `lifo`: the job goes to the front of the queue.
    pub fn lifo(mut self, lifo: bool) -> Self {
        self.lifo = Some(lifo);
        self
    }

    /// `jobId`: a custom id (not a whole number, no `:`); adding a job whose
    /// id exists adds nothing and returns that id.
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }

    /// `deduplication: { id, ttl }`: while a job with this deduplication id
    /// exists (and, with a `ttl`, for at most that long), adding another
    /// adds nothing. Not for children.
    pub fn deduplication(mut self, id: impl Into<String>, ttl: Option<Duration>) -> Self {
        let mut dedup = serde_json::json!({ "id": id.into() });
        if let Some(ttl) = ttl {
            dedup["ttl"] = millis(ttl).into();
        }
        self.deduplication = Some(dedup);
        self
    }

    /// `removeOnComplete`: `true` removes the job when it completes.
    pub fn remove_on_complete(mut self, remove: bool) -> Self {
        self.remove_on_complete = Some(remove.into());
        self
    }

    /// `removeOnComplete: count`: keep at most this many completed jobs.
    pub fn keep_completed(mut self, count: u32) -> Self {
        self.remove_on_complete = Some(count.into());
        self
    }

    /// `removeOnFail`: `true` removes the job when it fails.
    pub fn remove_on_fail(mut self, remove: bool) -> Self {
        self.remove_on_fail = Some(remove.into());
        self
    }

    /// `keepLogs`: keep at most this many lines of the job's log.
    pub fn keep_logs(mut self, lines: u32) -> Self {
        self.keep_logs = Some(lines);
        self
    }

    /// `failParentOnFailure`: a child's failure fails its parent.
    pub fn fail_parent_on_failure(mut self) -> Self {
        self.fail_parent_on_failure = Some(true);
        self
    }

    /// `continueParentOnFailure`: a child's failure lets its parent run at
    /// once.
    pub fn continue_parent_on_failure(mut self) -> Self {
        self.continue_parent_on_failure = Some(true);
        self
    }

    /// `ignoreDependencyOnFailure`: a child's failure counts as done for its
    /// parent, its reason kept (see [`Job::ignored_children_failures`]).
    pub fn ignore_dependency_on_failure(mut self) -> Self {
        self.ignore_dependency_on_failure = Some(true);
        self
    }

    /// `removeDependencyOnFailure`: a child's failure removes it from its
    /// parent's dependencies.
    pub fn remove_dependency_on_failure(mut self) -> Self {
        self.remove_dependency_on_failure = Some(true);
        self
    }
}

/// A queue a processor adds jobs to (granted in `add_to_queues`).
///
/// ```no_run
/// # fn demo() -> bullpen_guest::Result<()> {
/// let id = bullpen_guest::queue("emails").add("welcome", &serde_json::json!({ "to": "ada@example.com" }))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    name: String,
}

/// The queue `name`, to add jobs to.
pub fn queue(name: impl Into<String>) -> Queue {
    Queue { name: name.into() }
}

impl Queue {
    /// Adds a job (BullMQ's `queue.add(name, data)`) and returns its id.
    pub fn add(&self, name: &str, data: &impl Serialize) -> Result<String> {
        self.add_with(name, data, &JobOptions::new())
    }

    /// Adds a job with options (BullMQ's `queue.add(name, data, opts)`) and
    /// returns its id.
    pub fn add_with(
        &self,
        name: &str,
        data: &impl Serialize,
        options: &JobOptions,
    ) -> Result<String> {
        add(&self.name, name, data, options, false)
    }
}

fn add(
    queue: &str,
    name: &str,
    data: &impl Serialize,
    options: &JobOptions,
    child: bool,
) -> Result<String> {
    let data = serde_json::to_string(data)
        .map_err(|e| Error::failed_named("AddJobError", format!("the job's data: {e}")))?;
    let options = serde_json::to_string(options).expect("job options serialise");
    jobs::add(&types::NewJob {
        queue: queue.to_owned(),
        name: name.to_owned(),
        data,
        options,
        child,
    })
    .map_err(|reason| Error::failed_named("AddJobError", reason))
}

fn host_error(name: &str) -> impl FnOnce(String) -> Error + '_ {
    move |reason| Error::failed_named(name, reason)
}

/// The key prefix of the job's queue (`[redis] prefix`; `bull` unless
/// set): BullMQ's qualified name of the queue is `<prefix>:<queue>`, a job's
/// key `<prefix>:<queue>:<id>`.
pub fn queue_prefix() -> String {
    jobs::queue_prefix()
}

/// What the host sent back as JSON, read as `T`.
fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::failed_named("ChildrenError", format!("{what}: {e}")))
}

impl Job {
    /// Adds a child of this job to `queue` (BullMQ's `queue.add` with
    /// `opts.parent` = this job) and returns its id. The child's queue must
    /// be granted (`add_to_queues`), this job's own included.
    pub fn add_child(&self, queue: &str, name: &str, data: &impl Serialize) -> Result<String> {
        self.add_child_with(queue, name, data, &JobOptions::new())
    }

    /// [`Job::add_child`] with options, such as
    /// [`JobOptions::fail_parent_on_failure`].
    pub fn add_child_with(
        &self,
        queue: &str,
        name: &str,
        data: &impl Serialize,
        options: &JobOptions,
    ) -> Result<String> {
        add(queue, name, data, options, true)
    }

    /// Replaces this job's data (BullMQ's `job.updateData`): what the next
    /// attempt sees, or the run after its children finish. [`Job::data`]
    /// reads the new data from now on.
    pub fn update_data(&mut self, data: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string(data)
            .map_err(|e| Error::failed_named("UpdateDataError", format!("the new data: {e}")))?;
        jobs::update_data(&text).map_err(host_error("UpdateDataError"))?;
        self.data = text;
        Ok(())
    }

    /// The return values of this job's children that completed, by child
    /// key (`<prefix>:<queue>:<id>`, see [`queue_prefix`]), as BullMQ's `getChildrenValues`.
    pub fn children_values<T: DeserializeOwned>(&self) -> Result<BTreeMap<String, T>> {
        let children = jobs::read_children().map_err(host_error("ChildrenError"))?;
        parse(&children.values, "a child's return value")
    }

    /// The keys of this job's children that failed with
    /// `failParentOnFailure` or `continueParentOnFailure`.
    pub fn failed_children(&self) -> Result<Vec<String>> {
        let children = jobs::read_children().map_err(host_error("ChildrenError"))?;
        parse(&children.failed, "the failed children")
    }

    /// The failed reasons of this job's children whose failure was ignored
    /// (`ignoreDependencyOnFailure`), by child key, as BullMQ's
    /// `getIgnoredChildrenFailures`.
    pub fn ignored_children_failures(&self) -> Result<BTreeMap<String, String>> {
        let children = jobs::read_children().map_err(host_error("ChildrenError"))?;
        parse(&children.ignored, "the ignored failures")
    }

    /// BullMQ's qualified name of this job's queue (`job.queueQualifiedName`):
    /// `<prefix>:<queue>`, as parents and children name each other.
    pub fn queue_qualified_name(&self) -> String {
        format!("{}:{}", queue_prefix(), self.queue)
    }

    /// Moves this job to waiting-children if a child has not finished
    /// (BullMQ's `job.moveToWaitingChildren`): `true` if it did, and the
    /// processor should then return [`Error::waiting_children`]; `false` if
    /// every child is done, and the processor goes on.
    pub fn move_to_waiting_children(&self) -> Result<bool> {
        jobs::move_to_waiting_children().map_err(host_error("WaitingChildrenError"))
    }
}
