//! The one gate for everything a guest says: its queue's secrets are masked
//! here, and nowhere else.
//!
//! A guest's words leave the sandbox in two ways only: while it runs,
//! through the [`JobObserver`] the call was given (log messages, progress,
//! job-log lines, jobs it adds, data it sets), and when it ends, in the
//! call's [`Run`](super::Run) (its answer, its failure's name, message and
//! stack, a crash's text, its stdout and stderr). Every call wraps its
//! observer in a [`Gated`] one before anything inside the sandbox sees it
//! (`call.rs`), and its `Run` is made of masked text only: the answer is
//! masked as it leaves the generated bindings (`bindings.rs`, the one place
//! that holds the guest's raw answer), and the stack, output and crash
//! text as the call ends (`call.rs`, `crash.rs`). No code outside the
//! sandbox ever holds the guest's raw words, so no path downstream (Redis,
//! the events stream, the log, `/attempts`, `bullpen jobs`, `bullpen
//! exec`) can forget to mask them.
//!
//! What masking does (longest first, overlaps, before any cut, JSON by
//! value) is [`Mask`]'s, in `mask.rs`.

use super::bindings::Level;
use super::job_api::{AddJob, ChildrenSoFar, JobApi};
use super::mask::Mask;
use super::report::{JobObserver, MAX_REPORT_LEN};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

/// The observer every call's guest reports through: what it says is masked
/// (then cut to [`MAX_REPORT_LEN`]) before the observer it wraps sees it.
pub(crate) struct Gated {
    inner: Arc<dyn JobObserver>,
    mask: Mask,
}

impl Gated {
    /// `inner`, behind `mask`.
    pub(crate) fn new(inner: Arc<dyn JobObserver>, mask: Mask) -> Arc<Self> {
        Arc::new(Gated { inner, mask })
    }
}

impl JobApi for Gated {
    fn add(&self, mut job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        job.name = self.mask.mask(&job.name).into_owned();
        self.mask.mask_value(&mut job.data);
        let mut options = Value::Object(std::mem::take(&mut job.options));
        self.mask.mask_value(&mut options);
        if let Value::Object(options) = options {
            job.options = options;
        }
        self.inner.add(job)
    }

    fn update_data(&self, mut data: Value) -> BoxFuture<'_, Result<(), String>> {
        self.mask.mask_value(&mut data);
        self.inner.update_data(data)
    }

    fn children(&self) -> BoxFuture<'_, Result<ChildrenSoFar, String>> {
        self.inner.children()
    }

    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, String>> {
        self.inner.move_to_waiting_children()
    }
}

impl JobObserver for Gated {
    fn log(&self, level: Level, message: &str) {
        self.inner
            .log(level, &self.mask.mask_clip(message, MAX_REPORT_LEN));
    }

    fn progress(&self, json: &str) {
        self.inner.progress(&self.mask.mask_json(json));
    }

    fn add_log(&self, line: &str) {
        self.inner
            .add_log(&self.mask.mask_clip(line, MAX_REPORT_LEN));
    }

    fn over_budget(&self, budget: super::Budget) {
        self.inner.over_budget(budget);
    }
}
