//! One attempt of one job: hand it to the sandbox, forward what the guest
//! reports, and turn its answer into BullMQ's transition.
//!
//! The crate's worker owns fetching, locks and the final moves to completed
//! and failed. Retries are decided here, because the crate cannot decide them
//! as BullMQ does: it ignores `backoff.jitter`, cannot pass a failure's name
//! or the job to a custom strategy, writes no `failedReason`/`stacktrace` on a
//! retry, and ignores `lifo` on an immediate retry. So a retry is carried out
//! with the job's own moves (`move_to_delayed`, `move_to_wait`) and the
//! crate is told `Delayed` (nothing more to do), or, for the plain
//! immediate retry the crate does right, handed back to it.

use super::jobs::{AddTargets, JobRequests};
use super::lock::{self, Runs, Trouble};
use crate::config::OnCrash;
use crate::json;
use crate::observe::metrics::{Outcome, QueueMetrics, Spent};
use crate::outcome::options::{self as job_options, JobOptions};
use crate::outcome::{self, RetryPlan, Verdict};
use crate::queue::fields;
use crate::registry::{Serving, Version};
use crate::sandbox::REPORT_OVERHEAD;
use crate::sandbox::jobs::{AddJob, ChildrenSoFar, JobApi};
use crate::sandbox::{
    BackoffDecision, BackoffOptions, Failure, Job as GuestJob, JobError, JobObserver, Level,
    Limits, Module,
};
use crate::units::ByteSize;
use bullmq::types::BackoffStrategy;
use bullmq::{Error, Job, JobProgress, Queue};
use futures::future::BoxFuture;
use serde_json::Value;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::Instrument;

tokio::task_local! {
    /// The module version of the attempt this task runs.
    static RUNNING_ON: Arc<Version>;
    /// How the attempt this task runs ends, for the metrics: noted where
    /// it is decided, read when it is over.
    static ENDING: Ending;
}

#[derive(Default)]
struct Ending {
    outcome: Cell<Option<Outcome>>,
    spent: Cell<Option<Spent>>,
}

/// Notes how the attempt this task runs ends.
fn ends(outcome: Outcome) {
    let _ = ENDING.try_with(|ending| ending.outcome.set(Some(outcome)));
}

/// What every attempt on one queue shares.
pub(crate) struct Attempts {
    pub queue: Queue,
    /// The queue's workers, told when a rate limit is in force.
    pub(super) crew: Arc<super::Crew>,
    /// The queue's module as served: each attempt runs on the version
    /// serving when it starts.
    pub serving: Arc<Serving>,
    pub limits: Limits,
    pub on_crash: OnCrash,
    /// Whether a `delayed` answer was already brought within bounds: a job
    /// that loops on a past time would log it ten times a second.
    pub delay_bounded: AtomicBool,
    /// This host's runs of the queue's jobs: one per job at a time, and
    /// the ones a shutdown leaves behind.
    pub runs: Runs,
    /// When Redis last failed for this queue.
    pub trouble: Trouble,
    /// The queue's `lock_duration`.
    pub lock: Duration,
    /// The queue's `max_data_size`, in bytes.
    pub max_data_size: u64,
    /// The queues its processors add jobs to.
    pub targets: Arc<AddTargets>,
    /// Where attempts are counted, when the host exports metrics.
    pub metrics: Option<QueueMetrics>,
}

/// What a guest reported, on its way to Redis.
enum Report {
    /// The progress changed: the newest value waits in
    /// [`Pending::progress`].
    Progress,
    JobLog(String),
}

/// Forwards progress and job-log lines to the attempt's task; logs go to
/// tracing directly.
///
/// The channel is bounded by the report budget: each line or progress the
/// sandbox lets through costs at least [`REPORT_OVERHEAD`] bytes of it.
/// Progress is a state, so values the writer has not caught up with are
/// replaced by newer ones rather than queued.
struct Forward {
    tx: mpsc::Sender<Report>,
    pending: Arc<Pending>,
    requests: JobRequests,
}

/// What the attempt's task reads beside the channel. Kept apart from
/// [`Forward`] so that the channel closes when the run drops its observer.
#[derive(Default)]
struct Pending {
    /// The newest progress not yet written.
    progress: Mutex<Option<String>>,
    /// Reports the channel refused (none while the budget bounds it).
    refused: AtomicU32,
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
    /// A forwarder for a call with `limits`, what it leaves pending, and the
    /// receiving end of its channel.
    fn new(
        limits: &Limits,
        requests: JobRequests,
    ) -> (Arc<Self>, Arc<Pending>, mpsc::Receiver<Report>) {
        let capacity = (limits.reports / REPORT_OVERHEAD).clamp(1, 1 << 16) as usize + 1;
        let (tx, rx) = mpsc::channel(capacity);
        let pending = Arc::new(Pending::default());
        let forward = Forward {
            tx,
            pending: pending.clone(),
            requests,
        };
        (Arc::new(forward), pending, rx)
    }

    fn send(&self, report: Report) {
        if self.tx.try_send(report).is_err() {
            self.pending.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl JobApi for Forward {
    fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(self.requests.add(job))
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
        // The attempt's `job` span names the queue and the job; the
        // sandbox's gate masked the message.
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
            self.send(Report::Progress);
        }
    }

    fn add_log(&self, line: &str) {
        self.send(Report::JobLog(line.to_owned()));
    }
}

/// A stack trace entry: `Name: message`, then the module that ran it, as
/// a JS stack names the file.
fn stack_entry(failure: &Failure, module: &Module) -> String {
    format!(
        "{}: {}\n    at {} (sha256 {})",
        failure.name.as_deref().unwrap_or("Error"),
        failure.message,
        module.file_name(),
        module.short_hash()
    )
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Attempts {
    fn queue_name(&self) -> &str {
        self.queue.name()
    }

    /// The ids of the jobs whose attempt is running now.
    pub fn running(&self) -> Vec<String> {
        self.runs.running()
    }

    /// Runs one attempt, on the module version its worker fetched it for
    /// (the one serving then), and returns what the crate's worker should
    /// do next.
    ///
    /// Everything logged about the attempt is in a `job` span naming the
    /// queue, the job, the attempt (`attemptsMade + 1`) and the module
    /// version.
    pub async fn run(&self, job: Job) -> Result<Value, Error> {
        let attempt = self.serving.version_for(job.processed_by()).attempt();
        let version = attempt.version().clone();
        // BullMQ's attempt number: a rate-limited or stalled start does not
        // count.
        let (job_id, attempt_number) = (job.id().to_owned(), job.attempts_made() + 1);
        // At error level: present on every line logged, whatever the filter.
        let span = tracing::error_span!(
            "job",
            queue = self.queue_name(),
            job_id,
            attempt = attempt_number,
            module = version.worker_name(),
        );
        let run = RUNNING_ON.scope(version, self.run_on_version(job));
        let Some(metrics) = &self.metrics else {
            return run.instrument(span).await;
        };
        let _in_flight = metrics.started();
        let (result, outcome, spent) = ENDING
            .scope(Ending::default(), async {
                let result = run.await;
                let (outcome, spent) =
                    ENDING.with(|ending| (ending.outcome.get(), ending.spent.get()));
                (result, outcome, spent)
            })
            .instrument(span)
            .await;
        if let Some(outcome) = outcome {
            metrics.ended(&job_id, attempt_number, outcome, spent);
        }
        result
    }

    /// The version the current attempt started on: everything it does (its
    /// call, its stack trace, its backoff question) uses that one, whatever
    /// is swapped in meanwhile.
    fn module(&self) -> Module {
        RUNNING_ON.with(|version| version.module.clone())
    }

    async fn run_on_version(&self, job: Job) -> Result<Value, Error> {
        let this_run = self.runs.start(job.id());
        if this_run.took_over {
            tracing::warn!(
                "taken again (its lock expired) while an earlier run on this host still ran: \
                 the earlier run is cancelled and its outcome discarded"
            );
        }
        let started_ms = now_ms();
        self.say_if_stalled(&job).await;
        let data = match self.guest_data(&job).await {
            Ok(data) => data,
            Err(verdict) => {
                let why = match &verdict {
                    Verdict::Unrecoverable(reason) => reason,
                    Verdict::Failed(failure) => &failure.message,
                    _ => "",
                };
                tracing::warn!("not run: {why}");
                let guest_job = self.guest_job(&job, String::new());
                return self.apply(job, &guest_job, verdict, None).await;
            }
        };
        let guest_job = self.guest_job(&job, data);
        tracing::debug!("attempt started");

        // The guest's job requests and the report writer share the job;
        // both are done with it when the run ends.
        let moved = Arc::new(AtomicBool::new(false));
        let renewal = this_run.took_over.then(|| job.clone());
        let shared = Arc::new(tokio::sync::Mutex::new(job));
        let requests = JobRequests {
            job: shared.clone(),
            queue: self.queue.clone(),
            targets: self.targets.clone(),
            waiting_children: moved.clone(),
        };
        let (observer, reports, rx) = Forward::new(&self.limits, requests);
        let module = self.module();
        let run = module.process(&guest_job, &self.limits, observer);
        let ran = async {
            let (run, ()) = tokio::join!(run, self.forward(&shared, &reports, rx));
            run
        };
        // The crate stopped renewing a run that took over when the earlier
        // run ended: this one renews its own.
        let renewing = async {
            match &renewal {
                Some(job) => lock::renew(job, self.lock).await,
                None => std::future::pending().await,
            }
        };
        let run = tokio::select! {
            biased;
            () = this_run.superseded() => {
                tracing::warn!(
                    "a newer run of the job holds its lock: this run is cancelled, its outcome discarded"
                );
                ends(Outcome::Discarded);
                return Err(Error::Delayed);
            }
            ran = ran => ran,
            never = renewing => match never {},
        };
        let _ = ENDING.try_with(|ending| {
            ending.spent.set(Some(Spent {
                wall: run.cost.wall,
                instantiate: run.cost.instantiate,
                peak_memory: run.cost.peak_memory,
                cpu: run.cost.cpu,
            }))
        });
        if let (Err(crash), Some(metrics)) = (&run.outcome, &self.metrics) {
            metrics.crashed(crash.kind());
        }
        let job = match Arc::try_unwrap(shared) {
            Ok(job) => job.into_inner(),
            Err(shared) => shared.lock().await.clone(),
        };
        let moved = moved.load(Ordering::Acquire);
        // An outcome is written only while the lock is this run's: a long
        // run may have outlived it, and a run that ended during an outage
        // waits for Redis rather than losing its result.
        // (A job moved to waiting-children has given its lock up.)
        if !moved
            && (run.cost.wall >= lock::CONFIRM_AFTER
                || this_run.took_over
                || self.trouble.since(started_ms))
            && lock::confirm(&job, self.lock, &self.trouble, self.queue_name()).await
                == lock::Lock::Lost
        {
            tracing::warn!(
                "the job's lock was lost while this run went on (an outage or a stall longer \
                 than lock_duration): its outcome is discarded, the run that holds the lock decides"
            );
            ends(Outcome::Discarded);
            return Err(Error::Delayed);
        }
        let refused = reports.refused.load(Ordering::Relaxed);
        if run.reports_dropped.reports > 0 || refused > 0 {
            // Once per attempt, whatever the number dropped.
            let line = format!(
                "bullpen: {} report(s) ({} bytes of job-log lines and progress) over this attempt's \
                 budget of {} were dropped",
                run.reports_dropped.reports + refused,
                run.reports_dropped.bytes,
                ByteSize(self.limits.reports)
            );
            tracing::warn!("{line}");
            self.write_line(&job, line).await;
        }
        if !run.stderr.text.is_empty() {
            tracing::debug!(stderr = %run.stderr.text, "guest stderr");
        }
        // The guest's own stack, for a failure it answered (a crash has
        // the host's entry, whatever the guest said before it).
        let guest_stack = match &run.outcome {
            Ok(Err(JobError::Failed(_) | JobError::Unrecoverable(_))) => run.failure_stack,
            _ => None,
        };
        let verdict = outcome::verdict(run.outcome, self.on_crash);
        tracing::debug!(
            ms = run.cost.wall.as_secs_f64() * 1e3,
            peak_memory = run.cost.peak_memory,
            ?verdict,
            "attempt ended"
        );
        let verdict = match verdict {
            Verdict::Completed(json) => match json::storable_return_value(&json) {
                Ok(value) => Ok(value),
                Err(message) => Err(Verdict::Failed(Failure {
                    message,
                    name: Some("ReturnValueError".into()),
                })),
            },
            other => Err(other),
        };
        match verdict {
            Ok(value) => {
                ends(Outcome::Completed);
                Ok(value)
            }
            Err(Verdict::WaitingChildren) => self.wait_for_children(&job, moved).await,
            Err(verdict) => {
                self.apply(job, &guest_job, verdict, guest_stack.as_deref())
                    .await
            }
        }
    }

    /// Writes the guest's reports into the job until the run drops its
    /// observer.
    async fn forward(
        &self,
        job: &tokio::sync::Mutex<Job>,
        pending: &Pending,
        mut reports: mpsc::Receiver<Report>,
    ) {
        let mut keep_logs = None;
        // None: the run dropped the observer (its last sender).
        while let Some(report) = reports.recv().await {
            let mut job = job.lock().await;
            let result = match report {
                Report::Progress => {
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
                Report::JobLog(line) => self.append_log(&job, &line, &mut keep_logs).await,
            };
            if let Err(e) = result {
                self.trouble.saw();
                tracing::warn!("cannot record a report: {e}");
            }
        }
    }

    /// Writes `line` into the job's log.
    async fn write_line(&self, job: &Job, line: String) {
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
                let raw = fields::raw_options(&self.queue, job.id()).await?;
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

    /// Says so when the job comes back from a stall. The crate's stalled
    /// checker reports none of the jobs it recovers (it misreads its
    /// script's answer); a job started more often than its attempts count
    /// was handed back without one (a stall, a delay or a rate limit), and
    /// only then is its stall counter read.
    async fn say_if_stalled(&self, job: &Job) {
        if job.attempts_started() <= job.attempts_made() + 1 {
            return;
        }
        match fields::stalled_count(&self.queue, job.id()).await {
            Ok(0) => {}
            Ok(stalls) => tracing::warn!(
                stalls,
                start = job.attempts_started(),
                "runs again after stalling: a run lost its lock (its host died or Redis was \
                 away longer than lock_duration) and the stalled checker put the job back"
            ),
            Err(e) => {
                self.trouble.saw();
                tracing::debug!("cannot read stc: {e}");
            }
        }
    }

    /// The job's data as the text the guest gets: the crate's parsed copy
    /// written out again when that is the producer's value, else the stored
    /// bytes (one more read); `Err` names why the data cannot be given to
    /// the guest faithfully (the job fails for good) or that it could not be
    /// read (the attempt fails).
    async fn guest_data(&self, job: &Job) -> Result<String, Verdict> {
        let data = if !json::may_differ(job.data()) {
            job.data().to_string()
        } else {
            match fields::raw_data(&self.queue, job.id()).await {
                Ok(bytes) => json::stored_data(bytes).map_err(Verdict::Unrecoverable)?,
                Err(e) => {
                    return Err(Verdict::Failed(Failure {
                        message: format!("cannot read the job's data: {e}"),
                        name: Some("RedisError".into()),
                    }));
                }
            }
        };
        if data.len() as u64 > self.max_data_size {
            return Err(Verdict::Unrecoverable(format!(
                "job data is {}, more than this queue's max_data_size of {}",
                ByteSize(data.len() as u64),
                ByteSize(self.max_data_size)
            )));
        }
        Ok(data)
    }

    /// The job as the guest sees it, with `data` as its data.
    fn guest_job(&self, job: &Job, data: String) -> GuestJob {
        let opts = job.opts();
        GuestJob {
            id: job.id().to_owned(),
            name: job.name().to_owned(),
            queue: self.queue_name().to_owned(),
            data,
            attempts_made: job.attempts_made(),
            attempts_started: job.attempts_started().max(1),
            max_attempts: opts.attempts.unwrap_or(1).max(1),
            timestamp: job.timestamp(),
            backoff: opts.backoff.as_ref().map(|b| match b {
                BackoffStrategy::Fixed(delay) => BackoffOptions {
                    kind: "fixed".into(),
                    delay: *delay,
                    jitter: 0.0,
                },
                BackoffStrategy::Exponential(delay) => BackoffOptions {
                    kind: "exponential".into(),
                    delay: *delay,
                    jitter: 0.0,
                },
                BackoffStrategy::Custom(kind) => BackoffOptions {
                    kind: kind.clone(),
                    delay: 0,
                    jitter: 0.0,
                },
            }),
        }
    }

    /// Carries out `verdict`; a failure's stack entry is `guest_stack` when
    /// the guest gave one.
    async fn apply(
        &self,
        job: Job,
        guest_job: &GuestJob,
        verdict: Verdict,
        guest_stack: Option<&str>,
    ) -> Result<Value, Error> {
        match verdict {
            Verdict::Completed(json) => {
                ends(Outcome::Completed);
                json::storable_return_value(&json).map_err(Error::ProcessingError)
            }
            Verdict::Unrecoverable(reason) => {
                ends(Outcome::Unrecoverable);
                let failure = Failure {
                    message: reason.clone(),
                    name: Some("UnrecoverableError".into()),
                };
                let opts = self.options(&job).await;
                self.record(&job, &failure, guest_stack, &opts, false).await;
                Err(Error::Unrecoverable(reason))
            }
            Verdict::RateLimited(asked) => {
                ends(Outcome::RateLimited);
                let ms = outcome::rate_limit(asked);
                if ms != asked {
                    tracing::warn!(
                        "the module asked to pause the queue {asked} ms; paused {ms} ms, the most bullpen allows"
                    );
                }
                self.queue.rate_limit(ms).await?;
                self.crew.rate_limited();
                Err(Error::RateLimited { delay_ms: ms })
            }
            Verdict::Delayed(asked) => {
                ends(Outcome::Delayed);
                let until = outcome::delayed_until(asked, now_ms());
                if until != asked && !self.delay_bounded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the module asked to delay the job until {asked}; delayed until {until} \
                         (between {:?} and {} from now; said once per queue)",
                        outcome::MIN_DELAY,
                        crate::units::HumanDuration(outcome::MAX_DELAY)
                    );
                }
                job.move_to_delayed(until).await?;
                Err(Error::Delayed)
            }
            Verdict::Failed(failure) => self.fail(job, guest_job, failure, guest_stack).await,
            Verdict::WaitingChildren => self.wait_for_children(&job, false).await,
        }
    }

    /// BullMQ's `WaitingChildrenError`: the job waits in waiting-children
    /// (moved there by the guest already, or now); with no child pending it
    /// goes back to wait and runs again, no attempt counted (the crate's
    /// `RateLimited` path is exactly that move when no rate limit is set).
    async fn wait_for_children(&self, job: &Job, moved: bool) -> Result<Value, Error> {
        ends(Outcome::WaitingChildren);
        if moved || job.move_to_waiting_children(None).await? {
            return Err(Error::WaitingChildren);
        }
        tracing::debug!("waiting-children with no child pending: back to wait");
        Err(Error::RateLimited { delay_ms: 0 })
    }

    async fn options(&self, job: &Job) -> JobOptions {
        match fields::raw_options(&self.queue, job.id()).await {
            Ok(raw) => job_options::parse(&raw),
            Err(e) => {
                tracing::warn!("cannot read the job's options: {e}");
                JobOptions {
                    attempts: job.opts().attempts.unwrap_or(1).max(1),
                    ..JobOptions::default()
                }
            }
        }
    }

    /// A failure's stack trace entry: the guest's own, or one shaped like a
    /// JS one.
    fn stack(&self, failure: &Failure, guest_stack: Option<&str>) -> String {
        match guest_stack {
            Some(stack) => stack.to_owned(),
            None => stack_entry(failure, &self.module()),
        }
    }

    /// Adds the stack trace entry Node writes for a job the crate failed on
    /// its own (a child's failure deferred to its parent, too many starts,
    /// a move that failed).
    pub async fn backfill_stack(self: Arc<Self>, job_id: String) {
        let module = self.serving.current().module.clone();
        let stack = |reason: &str| {
            let failure = Failure {
                message: reason.to_owned(),
                name: Some(fields::crate_failure_name(reason).into()),
            };
            stack_entry(&failure, &module)
        };
        if let Err(e) = fields::backfill_stack(&self.queue, &job_id, stack).await {
            tracing::debug!(
                queue = self.queue_name(),
                job = job_id,
                "cannot complete the failed job's stack trace: {e}"
            );
        }
    }

    async fn record(
        &self,
        job: &Job,
        failure: &Failure,
        guest_stack: Option<&str>,
        opts: &JobOptions,
        count_attempt: bool,
    ) {
        let stack = self.stack(failure, guest_stack);
        if let Err(e) = fields::record_failure(
            &self.queue,
            job.id(),
            &failure.message,
            &stack,
            opts.stack_trace_limit,
            count_attempt,
        )
        .await
        {
            self.trouble.saw();
            tracing::warn!("cannot record the failure: {e}");
        }
    }

    async fn fail(
        &self,
        job: Job,
        guest_job: &GuestJob,
        failure: Failure,
        guest_stack: Option<&str>,
    ) -> Result<Value, Error> {
        let opts = self.options(&job).await;
        let attempts_made = job.attempts_made() + 1;
        let plan = outcome::plan_retry(
            attempts_made,
            opts.attempts,
            opts.backoff.as_ref(),
            rand::random::<f64>(),
        );
        let delay = match plan {
            RetryPlan::Exhausted => None,
            RetryPlan::After(delay) => Some(Ok(delay)),
            RetryPlan::AskModule { strategy } => {
                self.ask_module(attempts_made, &strategy, &failure, guest_job)
                    .await
            }
        };
        ends(match delay {
            Some(Ok(_)) => Outcome::Retried,
            _ => Outcome::Failed,
        });
        match delay {
            None => {
                self.record(&job, &failure, guest_stack, &opts, false).await;
                Err(Error::Unrecoverable(failure.message))
            }
            Some(Err(reason)) => {
                // The reason is the host's (the strategy crashed or is
                // unknown): so is the entry.
                self.record(
                    &job,
                    &Failure {
                        message: reason.clone(),
                        name: failure.name.clone(),
                    },
                    None,
                    &opts,
                    false,
                )
                .await;
                Err(Error::Unrecoverable(reason))
            }
            Some(Ok(delay)) => self.retry(job, &failure, guest_stack, &opts, delay).await,
        }
    }

    /// The module's answer for a custom strategy: a delay, `None` to give
    /// up, or `Err(reason)` when the job must fail with another reason.
    async fn ask_module(
        &self,
        attempts_made: u32,
        strategy: &str,
        failure: &Failure,
        guest_job: &GuestJob,
    ) -> Option<Result<Duration, String>> {
        let job = GuestJob {
            attempts_made,
            ..guest_job.clone()
        };
        let run = self
            .module()
            .backoff(
                attempts_made,
                strategy,
                failure,
                &job,
                &self.limits,
                Arc::new(crate::sandbox::Ignore),
            )
            .await;
        match run.outcome {
            Ok(BackoffDecision::After(ms)) => Some(Ok(Duration::from_millis(ms))),
            Ok(BackoffDecision::Now) => Some(Ok(Duration::ZERO)),
            Ok(BackoffDecision::GiveUp) => None,
            Ok(BackoffDecision::Builtin) => Some(Err(outcome::unknown_strategy(strategy))),
            Err(crash) => {
                tracing::error!(
                    job = guest_job.id,
                    "the module's backoff crashed ({crash}); the job fails"
                );
                Some(Err(format!(
                    "{} (backoff strategy {strategy} crashed: {crash})",
                    failure.message
                )))
            }
        }
    }

    async fn retry(
        &self,
        job: Job,
        failure: &Failure,
        guest_stack: Option<&str>,
        opts: &JobOptions,
        delay: Duration,
    ) -> Result<Value, Error> {
        if delay.is_zero() && !opts.lifo && self.crate_retries_at_once(&job) {
            // The crate's own immediate retry is BullMQ's (LPUSH to wait,
            // attemptsMade + 1, a `waiting` event); it only lacks the fields.
            self.record(&job, failure, guest_stack, opts, false).await;
            return Err(Error::ProcessingError(failure.message.clone()));
        }
        self.record(&job, failure, guest_stack, opts, true).await;
        if delay > outcome::MAX_DELAY {
            tracing::warn!(
                "the retry's backoff of {} is cut to {}, the longest bullpen waits",
                crate::units::HumanDuration(delay),
                crate::units::HumanDuration(outcome::MAX_DELAY)
            );
        }
        if delay.is_zero() && opts.lifo {
            // RPUSH to wait: the next job taken, as BullMQ's lifo retry.
            job.move_to_wait(None).await?;
        } else {
            job.move_to_delayed(outcome::retry_at(now_ms(), delay))
                .await?;
        }
        Err(Error::Delayed)
    }

    /// Whether the crate, handed a failure for this job, would retry it at
    /// once: it reads the job's options its own way.
    fn crate_retries_at_once(&self, job: &Job) -> bool {
        let opts = job.opts();
        let attempts = opts.attempts.unwrap_or(0);
        let retries = attempts > 0 && job.attempts_made() + 1 < attempts;
        let immediate = match &opts.backoff {
            None | Some(BackoffStrategy::Custom(_)) => true,
            Some(BackoffStrategy::Fixed(d) | BackoffStrategy::Exponential(d)) => *d == 0,
        };
        retries && immediate
    }
}
