//! The host side of the `bullpen:processor/jobs` imports: what a processor
//! does with its own job (update its data, read its children, wait for them)
//! and the jobs it adds. A new job is checked here, where Redis is not known:
//! the queue against its grant (`add_to_queues`), the data and options
//! against what BullMQ accepts, the attempt's caps; only then does it reach
//! the [`JobApi`] of whoever runs the job.

use super::bindings::bullpen::processor::{jobs, types};
use crate::config::bounds;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A processor's requests about BullMQ jobs, for whoever runs the job to
/// carry out. Each call is awaited while the guest waits, within its
/// attempt's time budget.
///
/// The default answers refuse: a [`JobObserver`](super::JobObserver) that
/// runs no queue (a test's, say) has nothing to add jobs to.
pub trait JobApi: Send + Sync {
    /// Adds `job` (already checked) and returns its id.
    fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        let _ = job;
        refused("adding jobs")
    }

    /// Replaces the data of the job being processed.
    fn update_data(&self, data: Value) -> BoxFuture<'_, Result<(), String>> {
        let _ = data;
        refused("updating the job's data")
    }

    /// What the job's children came to so far.
    fn children(&self) -> BoxFuture<'_, Result<ChildrenSoFar, String>> {
        refused("reading the job's children")
    }

    /// Moves the job to waiting-children if a child is pending: `true` if
    /// it did.
    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, String>> {
        refused("waiting for children")
    }
}

fn refused<T: Send + 'static>(what: &'static str) -> BoxFuture<'static, Result<T, String>> {
    Box::pin(async move {
        Err(format!(
            "{what} is not available here: no queue runs this job"
        ))
    })
}

/// A job a processor adds, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AddJob {
    /// The queue, one the processor's queue grants.
    pub queue: String,
    /// The job's name.
    pub name: String,
    /// Its data.
    pub data: Value,
    /// BullMQ's job options, in BullMQ's names, only those in
    /// [`ADD_OPTIONS`].
    pub options: Map<String, Value>,
    /// Whether it is a child of the job being processed.
    pub child: bool,
}

/// What a job's children came to: each as BullMQ's getters answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChildrenSoFar {
    /// Key → return value, of the children that completed.
    pub values: Map<String, Value>,
    /// Keys of the children that failed and failed or continued the parent.
    pub failed: Vec<String>,
    /// Key → failed reason, of the children whose failure was ignored.
    pub ignored: Map<String, Value>,
}

/// The job options a processor may give a job it adds (BullMQ's names).
/// The others (`parent`, `repeat`, `timestamp`…) are the host's to set.
pub const ADD_OPTIONS: [&str; 14] = [
    "delay",
    "attempts",
    "backoff",
    "priority",
    "lifo",
    "jobId",
    "deduplication",
    "removeOnComplete",
    "removeOnFail",
    "keepLogs",
    "failParentOnFailure",
    "continueParentOnFailure",
    "ignoreDependencyOnFailure",
    "removeDependencyOnFailure",
];

/// BullMQ's highest priority number (`PRIORITY_LIMIT`).
const PRIORITY_LIMIT: u64 = (1 << 21) - 1;

/// Which queues an attempt may add jobs to, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddAllowance {
    /// The queues granted (`add_to_queues`).
    pub queues: BTreeSet<String>,
    /// Most jobs one attempt may add.
    pub max_jobs: u32,
    /// Most bytes (data and options as JSON text, and updated data) one
    /// attempt may write.
    pub max_size: u64,
    /// Most jobs the queue's attempts may add per second, together (a
    /// second's worth at once).
    pub per_second: u32,
    /// Most jobs waiting in a granted queue (BullMQ's `count`) for adding
    /// to it to go on.
    pub max_target_depth: u32,
}

impl Default for AddAllowance {
    /// No queue: adding is denied.
    fn default() -> Self {
        AddAllowance {
            queues: BTreeSet::new(),
            max_jobs: bounds::MAX_ADDED_JOBS.default,
            max_size: bounds::MAX_ADDED_SIZE.default.0,
            per_second: bounds::MAX_ADDS_PER_SECOND.default,
            max_target_depth: bounds::MAX_TARGET_DEPTH.default,
        }
    }
}

/// One attempt's side of the `jobs` imports.
pub struct Jobs {
    api: Arc<dyn JobApi>,
    prefix: Arc<str>,
    allowance: AddAllowance,
    added: u32,
    written: u64,
}

impl Jobs {
    /// The attempt's job API, with nothing granted yet, for a job of a
    /// queue whose keys start with `prefix`.
    pub fn new(api: Arc<dyn JobApi>, prefix: Arc<str>) -> Self {
        Jobs {
            api,
            prefix,
            allowance: AddAllowance::default(),
            added: 0,
            written: 0,
        }
    }

    /// Grants what `allowance` allows (the `add_to_queues` grant).
    pub fn allow(&mut self, allowance: AddAllowance) {
        self.allowance = allowance;
    }

    /// Charges `bytes` to the attempt's size cap.
    fn charge(&mut self, bytes: u64) -> Result<(), String> {
        let total = self.written.saturating_add(bytes);
        if total > self.allowance.max_size {
            return Err(format!(
                "this attempt may write at most {} of added jobs and data (max_added_size); \
                 this would make {}",
                crate::units::ByteSize(self.allowance.max_size),
                crate::units::ByteSize(total)
            ));
        }
        self.written = total;
        Ok(())
    }

    fn check(&self, job: types::NewJob) -> Result<AddJob, String> {
        if !self.allowance.queues.contains(&job.queue) {
            return Err(if self.allowance.queues.is_empty() {
                format!(
                    "cannot add a job to queue `{}`: this queue may add jobs to no queue \
                     (grant it with add_to_queues)",
                    job.queue
                )
            } else {
                format!(
                    "cannot add a job to queue `{}`: not in this queue's add_to_queues ({})",
                    job.queue,
                    self.allowance
                        .queues
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        if self.added >= self.allowance.max_jobs {
            return Err(format!(
                "this attempt already added {} jobs, the most its queue allows (max_added_jobs)",
                self.added
            ));
        }
        let data: Value = serde_json::from_str(&job.data)
            .map_err(|e| format!("the new job's data is not JSON: {e}"))?;
        let options = check_options(&job.options, job.child)?;
        Ok(AddJob {
            queue: job.queue,
            name: job.name,
            data,
            options,
            child: job.child,
        })
    }
}

/// `text` as BullMQ job options a processor may set, refused as BullMQ's
/// `Job.validateOptions` would, in its words.
pub fn check_options(text: &str, child: bool) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(if text.trim().is_empty() { "{}" } else { text })
        .map_err(|e| format!("the new job's options are not JSON: {e}"))?;
    let Value::Object(options) = value else {
        return Err(format!(
            "the new job's options must be a JSON object, not `{value}`"
        ));
    };
    for key in options.keys() {
        if !ADD_OPTIONS.contains(&key.as_str()) {
            return Err(format!(
                "unknown job option `{key}` (a processor may set: {})",
                ADD_OPTIONS.join(", ")
            ));
        }
    }
    let exclusive: Vec<&str> = [
        "removeDependencyOnFailure",
        "failParentOnFailure",
        "continueParentOnFailure",
        "ignoreDependencyOnFailure",
    ]
    .into_iter()
    .filter(|key| options.get(*key).is_some_and(truthy))
    .collect();
    if exclusive.len() > 1 {
        return Err(format!(
            "The following options cannot be used together: {}",
            exclusive.join(", ")
        ));
    }
    if let Some(priority) = options.get("priority") {
        match priority.as_u64() {
            Some(p) if p <= PRIORITY_LIMIT => {}
            Some(_) => return Err(format!("Priority should be between 0 and {PRIORITY_LIMIT}")),
            None => return Err(format!("`priority` must be a whole number, not {priority}")),
        }
    }
    if let Some(dedup) = options.get("deduplication") {
        let id = dedup.get("id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() {
            return Err("Deduplication id must be provided".into());
        }
        if child {
            return Err("Deduplication and parent options cannot be used together".into());
        }
    }
    if let Some(jitter) = options.get("backoff").and_then(|b| b.get("jitter"))
        && !jitter.as_f64().is_some_and(|j| (0.0..=1.0).contains(&j))
    {
        return Err("Jitter should be between 0 and 1".into());
    }
    Ok(options)
}

fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

impl jobs::Host for Jobs {
    async fn add(&mut self, job: types::NewJob) -> Result<String, String> {
        let size = (job.data.len() + job.options.len()) as u64;
        let job = self.check(job)?;
        self.charge(size)?;
        let id = self.api.add(job).await?;
        self.added += 1;
        Ok(id)
    }

    async fn update_data(&mut self, data: String) -> Result<(), String> {
        let value: Value =
            serde_json::from_str(&data).map_err(|e| format!("the new data is not JSON: {e}"))?;
        self.charge(data.len() as u64)?;
        self.api.update_data(value).await
    }

    async fn read_children(&mut self) -> Result<types::Children, String> {
        let children = self.api.children().await?;
        Ok(types::Children {
            values: Value::Object(children.values).to_string(),
            failed: Value::from(children.failed).to_string(),
            ignored: Value::Object(children.ignored).to_string(),
        })
    }

    async fn move_to_waiting_children(&mut self) -> Result<bool, String> {
        self.api.move_to_waiting_children().await
    }

    async fn queue_prefix(&mut self) -> String {
        self.prefix.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_as_bullmq_checks_them() {
        assert!(check_options("", false).unwrap().is_empty());
        assert!(check_options(r#"{"delay":5,"attempts":3}"#, false).is_ok());
        let refused = |text: &str, child: bool| check_options(text, child).unwrap_err();
        assert!(
            refused(r#"{"repeat":{"every":5}}"#, false).starts_with("unknown job option `repeat`")
        );
        assert!(refused("[1]", false).contains("must be a JSON object"));
        assert!(refused("{", false).starts_with("the new job's options are not JSON"));
        assert_eq!(
            refused(
                r#"{"failParentOnFailure":true,"ignoreDependencyOnFailure":true}"#,
                true
            ),
            "The following options cannot be used together: failParentOnFailure, ignoreDependencyOnFailure"
        );
        assert_eq!(
            refused(r#"{"priority":2097152}"#, false),
            "Priority should be between 0 and 2097151"
        );
        assert!(refused(r#"{"priority":1.5}"#, false).contains("whole number"));
        assert_eq!(
            refused(r#"{"deduplication":{}}"#, false),
            "Deduplication id must be provided"
        );
        assert_eq!(
            refused(r#"{"deduplication":{"id":"x"}}"#, true),
            "Deduplication and parent options cannot be used together"
        );
        assert_eq!(
            refused(r#"{"backoff":{"type":"fixed","jitter":2}}"#, false),
            "Jitter should be between 0 and 1"
        );
    }

    struct Nothing;
    impl JobApi for Nothing {
        fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
            Box::pin(async move { Ok(format!("{}-id", job.name)) })
        }
    }

    fn new_job(queue: &str, data: &str) -> types::NewJob {
        types::NewJob {
            queue: queue.into(),
            name: "n".into(),
            data: data.into(),
            options: "{}".into(),
            child: false,
        }
    }

    #[tokio::test]
    async fn adding_is_denied_unless_granted_and_capped() {
        use jobs::Host;
        let mut jobs = Jobs::new(Arc::new(Nothing), Arc::from("bull"));
        let denied = jobs.add(new_job("emails", "{}")).await.unwrap_err();
        assert!(denied.contains("may add jobs to no queue"), "{denied}");
        jobs.allow(AddAllowance {
            queues: ["emails".to_owned()].into(),
            max_jobs: 2,
            max_size: 10,
            ..AddAllowance::default()
        });
        let other = jobs.add(new_job("thumbs", "{}")).await.unwrap_err();
        assert!(
            other.contains("not in this queue's add_to_queues (emails)"),
            "{other}"
        );
        let not_json = jobs.add(new_job("emails", "{x")).await.unwrap_err();
        assert!(
            not_json.starts_with("the new job's data is not JSON"),
            "{not_json}"
        );
        assert_eq!(jobs.add(new_job("emails", "1")).await.unwrap(), "n-id");
        let too_big = jobs
            .add(new_job("emails", "[1,2,3,4,5]"))
            .await
            .unwrap_err();
        assert!(too_big.contains("max_added_size"), "{too_big}");
        assert_eq!(jobs.add(new_job("emails", "2")).await.unwrap(), "n-id");
        let third = jobs.add(new_job("emails", "3")).await.unwrap_err();
        assert!(third.contains("already added 2 jobs"), "{third}");
    }
}
