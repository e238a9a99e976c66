//! The host side of the `bullpen:processor/host` imports: what a guest
//! reports while it runs (logs, progress, job-log lines), handed to a
//! [`JobObserver`] chosen by whoever runs the job.

use super::bindings::{Level, bullpen::processor, v0_1};
use super::job_api::{AddJob, ChildrenSoFar, JobApi};
use futures::future::BoxFuture;
use std::sync::Mutex;

/// Receives what a guest reports while it runs one job, and carries out
/// what it asks of BullMQ ([`JobApi`], refused unless implemented).
///
/// Reports arrive synchronously inside the guest's call, so implementations
/// should be quick (record, or send on a channel). The worker forwards them to
/// BullMQ; `bullpen exec` collects them with a [`Recorder`].
pub trait JobObserver: JobApi {
    /// The guest wrote a log message.
    fn log(&self, level: Level, message: &str);
    /// The guest set the job's progress to this JSON text (already checked
    /// to be JSON).
    fn progress(&self, json: &str);
    /// The guest appended a line to the job's BullMQ log.
    fn add_log(&self, line: &str);
    /// A budget of what queues share held the guest back or refused it.
    fn over_budget(&self, budget: super::Budget) {
        let _ = budget;
    }
}

/// Most log messages one job may write; later ones are dropped (and
/// counted, and said in one line at the attempt's end), so a guest in a
/// logging loop cannot flood the host's log.
pub const MAX_REPORTS_PER_JOB: u32 = 1_000;

/// Most bytes of log messages one job may write (each counted at most
/// [`MAX_REPORT_LEN`]): a thousand lines of 64 KiB would be 64 MiB of log
/// from one attempt.
pub const MAX_LOG_BYTES_PER_JOB: u64 = 256 << 10;

/// Longest log message or job-log line kept, in bytes.
pub const MAX_REPORT_LEN: usize = 64 * 1024;

/// One thing a guest reported, as a [`Recorder`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A log message.
    Log {
        /// Its severity.
        level: Level,
        /// Its text.
        message: String,
    },
    /// A progress update, as JSON text.
    Progress(String),
    /// A line for the job's BullMQ log.
    JobLog(String),
    /// A job added (granted and checked), its data and options as JSON
    /// text.
    JobAdded {
        /// Its queue.
        queue: String,
        /// Its name.
        name: String,
        /// Its data.
        data: String,
        /// Its options.
        options: String,
        /// Whether it is a child of the job.
        child: bool,
    },
    /// The job's data replaced by this JSON text.
    DataUpdated(String),
}

/// A [`JobObserver`] that keeps every report in order, for `bullpen exec`
/// and tests.
#[derive(Debug, Default)]
pub struct Recorder {
    reports: Mutex<Vec<Report>>,
}

impl Recorder {
    /// What was reported so far.
    pub fn reports(&self) -> Vec<Report> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many reports so far match, without copying them.
    fn count(&self, matching: impl Fn(&Report) -> bool) -> usize {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| matching(r))
            .count()
    }

    fn push(&self, report: Report) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
    }
}

/// Records what the guest asks of BullMQ: jobs added get ids `added-1`,
/// `added-2`…; there are no children's values, and the job waits for its
/// children if it added one.
impl JobApi for Recorder {
    fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        let added = self.count(|r| matches!(r, Report::JobAdded { .. }));
        self.push(Report::JobAdded {
            queue: job.queue,
            name: job.name,
            data: job.data.to_string(),
            options: serde_json::Value::Object(job.options).to_string(),
            child: job.child,
        });
        Box::pin(async move { Ok(format!("added-{}", added + 1)) })
    }

    fn update_data(&self, data: serde_json::Value) -> BoxFuture<'_, Result<(), String>> {
        self.push(Report::DataUpdated(data.to_string()));
        Box::pin(async { Ok(()) })
    }

    fn children(&self) -> BoxFuture<'_, Result<ChildrenSoFar, String>> {
        Box::pin(async { Ok(ChildrenSoFar::default()) })
    }

    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, String>> {
        let waits = self.count(|r| matches!(r, Report::JobAdded { child: true, .. })) > 0;
        Box::pin(async move { Ok(waits) })
    }
}

impl JobObserver for Recorder {
    fn log(&self, level: Level, message: &str) {
        self.push(Report::Log {
            level,
            message: message.to_owned(),
        });
    }

    fn progress(&self, json: &str) {
        self.push(Report::Progress(json.to_owned()));
    }

    fn add_log(&self, line: &str) {
        self.push(Report::JobLog(line.to_owned()));
    }
}

/// A [`JobObserver`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ignore;

impl JobApi for Ignore {}

impl JobObserver for Ignore {
    fn log(&self, _: Level, _: &str) {}
    fn progress(&self, _: &str) {}
    fn add_log(&self, _: &str) {}
}

/// The lowercase name of a level: `trace` ... `error`.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// What one report costs against [`CallOptions::reports`](super::CallOptions) on top
/// of its own bytes: about what Redis keeps around a job-log line or a
/// progress event, so that many tiny reports are bounded too (1 MiB holds
/// 4,096 empty ones).
pub const REPORT_OVERHEAD: u64 = 256;

/// What a call's reports went over its budgets by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Reports dropped: logs past [`MAX_REPORTS_PER_JOB`], job-log lines and
    /// progress past the byte budget.
    pub reports: u32,
    /// The bytes of the job-log lines and progress values among them.
    pub bytes: u64,
}

/// One job's connection to its observer, with the report budgets applied:
/// a count for logs, bytes for what goes to Redis (job-log lines and
/// progress).
pub(crate) struct Reporter {
    observer: std::sync::Arc<dyn JobObserver>,
    logs: u32,
    log_bytes: u64,
    budget: u64,
    dropped: Dropped,
    /// The stack the guest gave for the failure it is about to answer,
    /// and whether it was cut (it is masked at the end of the call, by the
    /// gate, before it is cut again to [`MAX_REPORT_LEN`]).
    failure_stack: Option<(String, bool)>,
}

impl Reporter {
    /// A reporter that lets through `budget` bytes of job-log lines and
    /// progress, each charged [`REPORT_OVERHEAD`] more than its length.
    pub(crate) fn new(observer: std::sync::Arc<dyn JobObserver>, budget: u64) -> Self {
        Reporter {
            observer,
            logs: 0,
            log_bytes: 0,
            budget,
            dropped: Dropped::default(),
            failure_stack: None,
        }
    }

    /// The stack trace the guest gave last (`host.failure-stack`), if any,
    /// unmasked, and whether it was cut.
    pub(crate) fn failure_stack(&self) -> Option<(&str, bool)> {
        self.failure_stack
            .as_ref()
            .map(|(stack, cut)| (stack.as_str(), *cut))
    }

    /// What went over the budgets.
    pub(crate) fn dropped(&self) -> Dropped {
        self.dropped
    }

    fn admit_log(&mut self, len: usize) -> bool {
        let bytes = self.log_bytes + len.min(MAX_REPORT_LEN) as u64;
        if self.logs >= MAX_REPORTS_PER_JOB || bytes > MAX_LOG_BYTES_PER_JOB {
            if self.dropped.reports == 0 {
                // Counted here; said in one line when the attempt ends.
                self.observer.over_budget(super::Budget::LogLines);
            }
            self.dropped.reports = self.dropped.reports.saturating_add(1);
            // Nothing gets in after the first one dropped.
            self.logs = MAX_REPORTS_PER_JOB;
            return false;
        }
        self.logs += 1;
        self.log_bytes = bytes;
        true
    }

    fn admit_bytes(&mut self, len: usize) -> bool {
        let cost = (len as u64).saturating_add(REPORT_OVERHEAD);
        match self.budget.checked_sub(cost) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => {
                // Spent: nothing smaller gets in later either, so the count
                // says how many were refused, in order.
                self.budget = 0;
                self.dropped.reports = self.dropped.reports.saturating_add(1);
                self.dropped.bytes = self.dropped.bytes.saturating_add(len as u64);
                false
            }
        }
    }
}

/// The observer is the gate ([`Gated`](super::gate::Gated)): it masks and
/// then cuts what is passed on, so text goes to it whole. Budgets are
/// charged for at most [`MAX_REPORT_LEN`] bytes, what the gate keeps.
impl processor::host::Host for Reporter {
    fn log(&mut self, level: Level, message: String) {
        if self.admit_log(message.len()) {
            self.observer.log(level, &message);
        }
    }

    fn progress(&mut self, value: String) {
        if !self.admit_bytes(value.len().min(MAX_REPORT_LEN)) {
            return;
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(&value) {
            Ok(_) => self.observer.progress(&value),
            Err(e) => self.observer.log(
                Level::Warn,
                &format!("progress ignored: `{value}` is not JSON ({e})"),
            ),
        }
    }

    fn add_log(&mut self, line: String) {
        if self.admit_bytes(line.len().min(MAX_REPORT_LEN)) {
            self.observer.add_log(&line);
        }
    }

    fn failure_stack(&mut self, stack: String) {
        // Kept, not forwarded: it replaces the one before, so a guest
        // calling it in a loop holds one stack, never more than twice what
        // is kept of it (the room a secret straddling the cut needs).
        let mut stack = stack;
        let end = super::mask::floor_char_boundary(&stack, 2 * MAX_REPORT_LEN);
        let cut = end < stack.len();
        stack.truncate(end);
        self.failure_stack = Some((stack, cut));
    }
}

impl processor::types::Host for Reporter {}

// A processor built against 0.1.0 reports through the same reporter.
impl v0_1::bullpen::processor::host::Host for Reporter {
    fn log(&mut self, level: v0_1::bullpen::processor::host::Level, message: String) {
        processor::host::Host::log(self, level.into(), message)
    }

    fn progress(&mut self, value: String) {
        processor::host::Host::progress(self, value)
    }

    fn add_log(&mut self, line: String) {
        processor::host::Host::add_log(self, line)
    }
}

impl v0_1::bullpen::processor::types::Host for Reporter {}
