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

use super::unawaited::Unawaited;
use crate::config::OnCrash;
use crate::outcome::options::{self as job_options, JobOptions};
use crate::outcome::{self, RetryPlan, Verdict};
use crate::queue::fields;
use crate::sandbox::{
    BackoffDecision, BackoffOptions, Failure, Job as GuestJob, JobObserver, Level, Limits, Module,
};
use crate::timer::poll_once;
use bullmq::types::BackoffStrategy;
use bullmq::{Error, Job, JobProgress, Queue};
use serde_json::Value;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What every attempt on one queue shares.
pub(crate) struct Attempts {
    pub queue: Queue,
    pub module: Module,
    pub limits: Limits,
    pub on_crash: OnCrash,
    /// The attempts' log lines still waiting for Redis's reply.
    pub unawaited: Unawaited,
}

/// What a guest reported, on its way to Redis.
enum Report {
    Progress(String),
    JobLog(String),
}

/// Forwards progress and job-log lines to the attempt's task; logs go to
/// tracing directly.
struct Forward {
    tx: mpsc::UnboundedSender<Report>,
    queue: String,
    job_id: String,
}

impl JobObserver for Forward {
    fn log(&self, level: Level, message: &str) {
        let (queue, job) = (&self.queue, &self.job_id);
        match level {
            Level::Error => tracing::error!(queue, job, "{message}"),
            Level::Warn => tracing::warn!(queue, job, "{message}"),
            Level::Info => tracing::info!(queue, job, "{message}"),
            Level::Debug => tracing::debug!(queue, job, "{message}"),
            Level::Trace => tracing::trace!(queue, job, "{message}"),
        }
    }

    fn progress(&self, json: &str) {
        let _ = self.tx.send(Report::Progress(json.to_owned()));
    }

    fn add_log(&self, line: &str) {
        let _ = self.tx.send(Report::JobLog(line.to_owned()));
    }
}

/// How long an attempt runs before its log line is written even though
/// the guest has reported nothing yet.
const ATTEMPT_LINE_AFTER: Duration = Duration::from_millis(20);

/// Writes an attempt's line into `job`'s log; a failure is only logged.
async fn log_attempt(queue: &str, job: &Job, line: &str) {
    if let Err(e) = job.log(line).await {
        tracing::warn!(
            queue,
            job = job.id(),
            "cannot record the attempt in the job's log: {e}"
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Attempts {
    fn queue_name(&self) -> &str {
        self.queue.name()
    }

    /// Runs one attempt and returns what the crate's worker should do next.
    pub async fn run(&self, mut job: Job) -> Result<Value, Error> {
        let guest_job = self.guest_job(&job);
        let attempt = job.attempts_made() + 1;
        tracing::debug!(
            queue = self.queue_name(),
            job = job.id(),
            attempt,
            module = %self.module.file_name(),
            hash = self.module.short_hash(),
            "attempt started"
        );
        let attempt_line = format!(
            "bullpen: attempt {attempt} (start {}) on {} (sha256 {})",
            job.attempts_started(),
            self.module.file_name(),
            self.module.short_hash()
        );

        let (tx, rx) = mpsc::unbounded_channel();
        let observer: Arc<dyn JobObserver> = Arc::new(Forward {
            tx,
            queue: self.queue_name().to_owned(),
            job_id: job.id().to_owned(),
        });
        let mut run = std::pin::pin!(self.module.process(&guest_job, &self.limits, observer));
        // Most runs end at their first poll: then every report is already
        // in the channel and no timer need be armed for the line.
        let (run, unwritten) = match poll_once(run.as_mut()).await {
            Poll::Ready(run) => (run, self.forward(&mut job, attempt_line, rx, false).await),
            Poll::Pending => tokio::join!(run, self.forward(&mut job, attempt_line, rx, true)),
        };
        if !run.stderr.text.is_empty() {
            tracing::debug!(queue = self.queue_name(), job = job.id(), stderr = %run.stderr.text, "guest stderr");
        }
        let verdict = outcome::verdict(run.outcome, self.on_crash);
        tracing::debug!(
            queue = self.queue_name(),
            job = job.id(),
            ms = run.cost.wall.as_secs_f64() * 1e3,
            peak_memory = run.cost.peak_memory,
            ?verdict,
            "attempt ended"
        );
        match (unwritten, verdict) {
            (Some(line), Verdict::Completed(json)) => {
                self.send_line(job, line);
                Ok(serde_json::from_str(&json)?)
            }
            (unwritten, verdict) => {
                if let Some(line) = unwritten {
                    self.write_line(&job, line).await;
                }
                self.apply(job, &guest_job, verdict).await
            }
        }
    }

    /// Writes the guest's reports into the job, the attempt's `line` first,
    /// until the run drops its observer; returns the line if nothing made
    /// it due. Once the run has lasted [`ATTEMPT_LINE_AFTER`], the line is
    /// due anyway, if `running` says the run may still be going.
    async fn forward(
        &self,
        job: &mut Job,
        line: String,
        mut reports: mpsc::UnboundedReceiver<Report>,
        running: bool,
    ) -> Option<String> {
        // The attempt's line must precede the guest's own reports, but needs
        // no round trip of its own: it is written before the first report,
        // once the run has lasted ATTEMPT_LINE_AFTER, or else at the end, on
        // the wire together with the crate's next move.
        let mut line = Some(line);
        let late = tokio::time::sleep(ATTEMPT_LINE_AFTER);
        tokio::pin!(late);
        loop {
            let report = tokio::select! {
                biased;
                report = reports.recv() => report,
                () = &mut late, if running && line.is_some() => {
                    self.write_line(job, line.take().unwrap_or_default()).await;
                    continue;
                }
            };
            // None: the run dropped the observer (its last sender).
            let Some(report) = report else { break };
            if let Some(line) = line.take() {
                self.write_line(job, line).await;
            }
            let result = match report {
                Report::Progress(json) => {
                    // A number goes in as a JSON value too: the crate's
                    // `Number(f64)` would store `10` as `10.0`.
                    let Ok(progress) = serde_json::from_str(&json) else {
                        continue;
                    };
                    job.update_progress(JobProgress::Object(progress)).await
                }
                Report::JobLog(line) => job.log(&line).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::warn!(
                    queue = self.queue_name(),
                    job = job.id(),
                    "cannot record a report: {e}"
                );
            }
        }
        line
    }

    /// Writes `line` into the job's log.
    async fn write_line(&self, job: &Job, line: String) {
        log_attempt(self.queue_name(), job, &line).await;
    }

    /// Puts `line`'s write on the job's connection now, ahead of the move
    /// the crate sends next, and leaves its reply to be collected later:
    /// Redis runs them in order, so the line is in the log before the job is
    /// completed.
    fn send_line(&self, job: Job, line: String) {
        let queue = self.queue_name().to_owned();
        self.unawaited.send(Box::pin(
            async move { log_attempt(&queue, &job, &line).await },
        ));
    }

    /// The job as the guest sees it.
    fn guest_job(&self, job: &Job) -> GuestJob {
        let opts = job.opts();
        GuestJob {
            id: job.id().to_owned(),
            name: job.name().to_owned(),
            queue: self.queue_name().to_owned(),
            data: serde_json::to_string(job.data()).unwrap_or_else(|_| "null".into()),
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

    async fn apply(
        &self,
        job: Job,
        guest_job: &GuestJob,
        verdict: Verdict,
    ) -> Result<Value, Error> {
        match verdict {
            Verdict::Completed(json) => Ok(serde_json::from_str(&json)?),
            Verdict::Unrecoverable(reason) => {
                let failure = Failure {
                    message: reason.clone(),
                    name: Some("UnrecoverableError".into()),
                };
                let opts = self.options(&job).await;
                self.record(&job, &failure, &opts, false).await;
                Err(Error::Unrecoverable(reason))
            }
            Verdict::RateLimited(ms) => {
                self.queue.rate_limit(ms).await?;
                Err(Error::RateLimited { delay_ms: ms })
            }
            Verdict::Delayed(until) => {
                job.move_to_delayed(until).await?;
                Err(Error::Delayed)
            }
            Verdict::Failed(failure) => self.fail(job, guest_job, failure).await,
        }
    }

    async fn options(&self, job: &Job) -> JobOptions {
        match fields::raw_options(&self.queue, job.id()).await {
            Ok(raw) => job_options::parse(&raw),
            Err(e) => {
                tracing::warn!(
                    queue = self.queue_name(),
                    job = job.id(),
                    "cannot read the job's options: {e}"
                );
                JobOptions {
                    attempts: job.opts().attempts.unwrap_or(1).max(1),
                    ..JobOptions::default()
                }
            }
        }
    }

    /// A stack trace for a guest failure, shaped like a JS one.
    fn stack(&self, failure: &Failure) -> String {
        format!(
            "{}: {}\n    at {} (sha256 {})",
            failure.name.as_deref().unwrap_or("Error"),
            failure.message,
            self.module.file_name(),
            self.module.short_hash()
        )
    }

    async fn record(&self, job: &Job, failure: &Failure, opts: &JobOptions, count_attempt: bool) {
        let stack = self.stack(failure);
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
            tracing::warn!(
                queue = self.queue_name(),
                job = job.id(),
                "cannot record the failure: {e}"
            );
        }
    }

    async fn fail(&self, job: Job, guest_job: &GuestJob, failure: Failure) -> Result<Value, Error> {
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
        match delay {
            None => {
                self.record(&job, &failure, &opts, false).await;
                Err(Error::Unrecoverable(failure.message))
            }
            Some(Err(reason)) => {
                self.record(
                    &job,
                    &Failure {
                        message: reason.clone(),
                        name: failure.name.clone(),
                    },
                    &opts,
                    false,
                )
                .await;
                Err(Error::Unrecoverable(reason))
            }
            Some(Ok(delay)) => self.retry(job, &failure, &opts, delay).await,
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
            .module
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
                    queue = self.queue_name(),
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
        opts: &JobOptions,
        delay: Duration,
    ) -> Result<Value, Error> {
        if delay.is_zero() && !opts.lifo && self.crate_retries_at_once(&job) {
            // The crate's own immediate retry is BullMQ's (LPUSH to wait,
            // attemptsMade + 1, a `waiting` event); it only lacks the fields.
            self.record(&job, failure, opts, false).await;
            return Err(Error::ProcessingError(failure.message.clone()));
        }
        self.record(&job, failure, opts, true).await;
        if delay.is_zero() && opts.lifo {
            // RPUSH to wait: the next job taken, as BullMQ's lifo retry.
            job.move_to_wait(None).await?;
        } else {
            job.move_to_delayed(now_ms() + delay.as_millis() as u64)
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
