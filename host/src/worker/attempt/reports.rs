//! What a guest reports while it runs (progress, job-log lines, logs),
//! forwarded to the job on Redis and to bullpen's log; and the requests it
//! makes of BullMQ, handed to the queue's [`JobRequests`]. Its words
//! arrive masked: the sandbox's gate is before this.

use super::super::job_requests::JobRequests;
use super::super::lock::Trouble;
use crate::json;
use crate::observe::metrics::BudgetHits;
use crate::outcome::options as job_options;
use crate::queue::fields;
use crate::sandbox::job_api::{AddJob, ChildrenSoFar, JobApi};
use crate::sandbox::{Budget, CallOptions, JobObserver, Level, REPORT_OVERHEAD};
use bullmq::{Error, Job, JobProgress, Queue};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A report on its way to Redis.
pub(super) enum ToWrite {
    /// The progress changed: the newest value waits in
    /// [`Pending::progress`].
    Progress,
    JobLog(String),
}

/// Forwards progress and job-log lines to the attempt's writer; logs go to
/// tracing directly.
///
/// The channel is bounded by the report budget: each line or progress the
/// sandbox lets through costs at least [`REPORT_OVERHEAD`] bytes of it.
/// Progress is a state, so values the writer has not caught up with are
/// replaced by newer ones rather than queued.
pub(super) struct Forward {
    tx: mpsc::Sender<ToWrite>,
    pending: Arc<Pending>,
    requests: JobRequests,
    budget_hits: Option<BudgetHits>,
    /// The budgets already said in the log this attempt, a bit each.
    budgets_said: AtomicU32,
}

/// What the writer reads beside the channel. Kept apart from [`Forward`]
/// so that the channel closes when the run drops its observer.
#[derive(Default)]
pub(super) struct Pending {
    /// The newest progress not yet written.
    progress: Mutex<Option<String>>,
    /// Reports the channel refused (none while the budget bounds it).
    pub refused: AtomicU32,
}

impl Pending {
    fn take_progress(&self) -> Option<String> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Forward {
    /// A forwarder for a call with `call_options`, what it leaves pending, and the
    /// receiving end of its channel.
    pub(super) fn new(
        call_options: &CallOptions,
        requests: JobRequests,
        budget_hits: Option<BudgetHits>,
    ) -> (Arc<Self>, Arc<Pending>, mpsc::Receiver<ToWrite>) {
        let capacity = (call_options.reports / REPORT_OVERHEAD).clamp(1, 1 << 16) as usize + 1;
        let (tx, rx) = mpsc::channel(capacity);
        let pending = Arc::new(Pending::default());
        let forward = Forward {
            tx,
            pending: pending.clone(),
            requests,
            budget_hits,
            budgets_said: AtomicU32::new(0),
        };
        (Arc::new(forward), pending, rx)
    }

    fn send(&self, report: ToWrite) {
        if self.tx.try_send(report).is_err() {
            self.pending.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl JobApi for Forward {
    fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            self.requests.add(job).await.map_err(|not_added| {
                if let Some(budget) = not_added.budget {
                    self.over_budget(budget);
                }
                not_added.reason
            })
        })
    }

    fn update_data(&self, data: Value) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.requests.update_data(data))
    }

    fn children(&self) -> BoxFuture<'_, Result<ChildrenSoFar, String>> {
        Box::pin(self.requests.children())
    }

    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(self.requests.move_to_waiting_children())
    }
}

impl JobObserver for Forward {
    fn log(&self, level: Level, message: &str) {
        // The attempt's `job` span names the queue and the job.
        match level {
            Level::Error => tracing::error!("{message}"),
            Level::Warn => tracing::warn!("{message}"),
            Level::Info => tracing::info!("{message}"),
            Level::Debug => tracing::debug!("{message}"),
            Level::Trace => tracing::trace!("{message}"),
        }
    }

    fn progress(&self, json: &str) {
        let pending = self
            .pending
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(json.to_owned());
        if pending.is_none() {
            self.send(ToWrite::Progress);
        }
    }

    fn add_log(&self, line: &str) {
        self.send(ToWrite::JobLog(line.to_owned()));
    }

    /// Counted each time; said once an attempt (waits for a CPU turn are
    /// said by the queue's lane, once a minute; dropped log lines by the
    /// attempt's end, with their number).
    fn over_budget(&self, budget: Budget) {
        if let Some(hits) = &self.budget_hits {
            hits.hit(budget);
        }
        let bit = 1 << budget.index();
        if !matches!(budget, Budget::CpuTurn | Budget::LogLines)
            && self.budgets_said.fetch_or(bit, Ordering::Relaxed) & bit == 0
        {
            tracing::warn!(
                budget = budget.as_str(),
                "bullpen: {} (said once an attempt)",
                budget.explain()
            );
        }
    }
}

/// Writes reports into a job of `queue`.
pub(super) struct Writer<'a> {
    pub queue: &'a Queue,
    pub trouble: &'a Trouble,
}

impl Writer<'_> {
    /// Writes the guest's reports into the job until the run drops its
    /// observer.
    pub(super) async fn forward(
        &self,
        job: &tokio::sync::Mutex<Job>,
        pending: &Pending,
        mut reports: mpsc::Receiver<ToWrite>,
    ) {
        let mut keep_logs = None;
        // None: the run dropped the observer (its last sender).
        while let Some(report) = reports.recv().await {
            let mut job = job.lock().await;
            let result = match report {
                ToWrite::Progress => {
                    let Some(json) = pending.take_progress() else {
                        continue;
                    };
                    // A number goes in as a JSON value too: the crate's
                    // `Number(f64)` would store `10` as `10.0`.
                    match json::storable(&json, "the progress") {
                        Ok(progress) => job.update_progress(JobProgress::Object(progress)).await,
                        Err(reason) => {
                            tracing::warn!("{reason}");
                            continue;
                        }
                    }
                }
                ToWrite::JobLog(line) => self.append_log(&job, &line, &mut keep_logs).await,
            };
            if let Err(e) = result {
                self.trouble.saw();
                tracing::warn!("cannot record a report: {e}");
            }
        }
    }

    /// Writes bullpen's own `line` into the job's log.
    pub(super) async fn write_line(&self, job: &Job, line: String) {
        if let Err(e) = self.append_log(job, &line, &mut None).await {
            self.trouble.saw();
            tracing::warn!("cannot write to the job's log: {e}");
        }
    }

    /// Appends `line` to the job's log, then trims the log to the job's
    /// `keepLogs` as BullMQ's `addLog` does: the crate reads `keepLogs` only
    /// under its long name, and Node stores it as `kl`. `keep_logs` caches
    /// the option for the attempt, read at its first line.
    async fn append_log(
        &self,
        job: &Job,
        line: &str,
        keep_logs: &mut Option<Option<u32>>,
    ) -> Result<(), Error> {
        job.log(line).await?;
        let keep = match *keep_logs {
            Some(keep) => keep,
            None => {
                let raw = fields::raw_options(self.queue, job.id()).await?;
                let keep = job_options::parse(&raw).keep_logs;
                *keep_logs = Some(keep);
                keep
            }
        };
        if let Some(lines) = keep {
            job.clear_logs(Some(lines)).await?;
        }
        Ok(())
    }
}
