//! One attempt of one job, as a short pipeline: the job is registered as
//! this host's run of it ([`lock`](super::lock)), mapped to what the guest
//! sees ([`guest`]), run in the sandbox on the module version its worker
//! fetched it for while its reports are written ([`reports`]), its lock
//! confirmed, and its verdict carried out as BullMQ's transition
//! ([`transitions`], on Redis through [`on_redis`]).

mod guest;
mod on_redis;
mod reports;
mod transitions;

use super::job_requests::{AddTargets, JobRequests};
use super::lock::{self, Claims, Trouble};
use crate::config::OnCrash;
use crate::observe::metrics::{Outcome, QueueMetrics, Spent};
use crate::outcome::{self, Verdict};
use crate::queue::fields;
use crate::registry::{Serving, Version};
use crate::sandbox::{CallOptions, Failure, JobError};
use crate::timer::now_ms;
use crate::units::ByteSize;
use bullmq::{Error, Job, Queue};
use reports::{Forward, Writer};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument;
use transitions::{Facts, Transition};

/// What every attempt on one queue shares.
pub(crate) struct Attempts {
    pub queue: Queue,
    /// The queue's workers, told when a rate limit is in force.
    pub(super) crew: Arc<super::Crew>,
    /// The queue's module as served: each attempt runs on the version
    /// serving when it starts.
    pub serving: Arc<Serving>,
    pub call_options: CallOptions,
    pub on_crash: OnCrash,
    /// Whether a `delayed` answer was already brought within bounds: a job
    /// that loops on a past time would log it ten times a second.
    pub delay_bounded: AtomicBool,
    /// This host's runs of the queue's jobs: one per job at a time, and
    /// the ones a shutdown leaves behind.
    pub runs: Claims,
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

/// How an attempt ended, for the metrics.
struct Ended {
    told: Result<Value, Error>,
    outcome: Outcome,
    /// What the sandbox call cost, when the guest ran.
    spent: Option<Spent>,
}

impl Ended {
    /// The run lost the job to another run: its outcome is discarded and
    /// the crate has nothing more to do.
    fn discarded(spent: Option<Spent>) -> Self {
        Ended {
            told: Err(Error::Delayed),
            outcome: Outcome::Discarded,
            spent,
        }
    }
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
        // The version the attempt starts on: everything it does (its call,
        // its stack trace, its backoff question) uses that one, whatever is
        // swapped in meanwhile.
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
        let _in_flight = self.metrics.as_ref().map(|metrics| metrics.started());
        // Boxed where it is made: the attempt's future is ~10 KB, and the
        // crate, the panic guard and the span would each move it again.
        let ended = Box::pin(self.attempt(job, &version)).instrument(span).await;
        if let Some(metrics) = &self.metrics {
            metrics.ended(&job_id, attempt_number, ended.outcome, ended.spent);
        }
        ended.told
    }

    /// The pipeline of one attempt on `version`.
    async fn attempt(&self, job: Job, version: &Version) -> Ended {
        let module = &version.module;
        let this_run = self.runs.start(job.id());
        if this_run.took_over {
            tracing::warn!(
                "taken again (its lock expired) while an earlier run on this host still ran: \
                 the earlier run is cancelled and its outcome discarded"
            );
        }
        let started_ms = now_ms();
        self.say_if_stalled(&job).await;
        let data = match guest::data(&self.queue, &job, self.max_data_size).await {
            Ok(data) => data,
            Err(verdict) => {
                let why = match &verdict {
                    Verdict::Unrecoverable(reason) => reason,
                    Verdict::Failed(failure) => &failure.message,
                    _ => "",
                };
                tracing::warn!("not run: {why}");
                let guest_job = guest::job(self.queue_name(), &job, String::new());
                let (told, outcome) = self
                    .transit(&job, version, &guest_job, false, verdict, None)
                    .await;
                return Ended {
                    told,
                    outcome,
                    spent: None,
                };
            }
        };
        let guest_job = guest::job(self.queue_name(), &job, data);
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
        let (observer, reports, rx) = Forward::new(
            &self.call_options,
            requests,
            self.metrics.as_ref().map(QueueMetrics::budget_hits),
        );
        let writer = Writer {
            queue: &self.queue,
            trouble: &self.trouble,
        };
        let run = module.process(&guest_job, &self.call_options, observer);
        let ran = async {
            let (run, ()) = tokio::join!(run, writer.forward(&shared, &reports, rx));
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
                return Ended::discarded(None);
            }
            asked = this_run.cancelled() => {
                // The guest's call is dropped here, wherever it is: at its
                // next epoch tick if it computes, at once if it waits.
                let job = match Arc::try_unwrap(shared) {
                    Ok(job) => job.into_inner(),
                    Err(shared) => shared.lock().await.clone(),
                };
                return self.cancelled(&job, version, &guest_job, asked).await;
            }
            ran = ran => ran,
            never = renewing => match never {},
        };
        let spent = Some(Spent {
            wall: run.cost.wall,
            instantiate: run.cost.instantiate,
            peak_memory: run.cost.peak_memory,
            cpu: run.cost.cpu,
            reused: run.cost.reused,
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
            return Ended::discarded(spent);
        }
        let refused = reports.refused.load(Ordering::Relaxed);
        if run.reports_dropped.reports > 0 || refused > 0 {
            // Once per attempt, whatever the number dropped.
            let line = format!(
                "bullpen: {} report(s) ({} bytes of job-log lines and progress) over this attempt's \
                 budget of {} were dropped",
                run.reports_dropped.reports + refused,
                run.reports_dropped.bytes,
                ByteSize(self.call_options.reports)
            );
            tracing::warn!("{line}");
            writer.write_line(&job, line).await;
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
        let (told, outcome) = self
            .transit(&job, version, &guest_job, moved, verdict, guest_stack)
            .await;
        Ended {
            told,
            outcome,
            spent,
        }
    }

    /// Ends `job`'s attempt, stopped by a cancel: failed for good with
    /// `cancelled: <reason>`, as BullMQ's documented cancel does, or failed
    /// and retried (`retry`).
    async fn cancelled(
        &self,
        job: &Job,
        version: &Version,
        guest_job: &crate::sandbox::Job,
        asked: lock::CancelRequest,
    ) -> Ended {
        let reason = format!("cancelled: {}", asked.reason);
        tracing::info!(retry = asked.retry, "{reason}");
        let verdict = if asked.retry {
            Verdict::Failed(Failure {
                message: reason,
                name: Some("CancelledError".into()),
            })
        } else {
            Verdict::Unrecoverable(reason)
        };
        let (told, outcome) = self
            .transit(job, version, guest_job, false, verdict, None)
            .await;
        Ended {
            told,
            // Retried or failed as any failure; counted as cancelled.
            outcome: match outcome {
                Outcome::Retried | Outcome::Failed | Outcome::Unrecoverable => Outcome::Cancelled,
                other => other,
            },
            spent: None,
        }
    }

    /// Asks this host's run of job `id` to stop: whether one runs here.
    pub fn cancel(&self, id: &str, reason: String, retry: bool) -> bool {
        self.runs.cancel(id, lock::CancelRequest { reason, retry })
    }

    /// Carries out the verdict of `job`'s attempt on `version`, whose guest
    /// saw `guest_job` (and `moved` it to waiting-children itself or not).
    async fn transit(
        &self,
        job: &Job,
        version: &Version,
        guest_job: &crate::sandbox::Job,
        moved: bool,
        verdict: Verdict,
        guest_stack: Option<String>,
    ) -> (Result<Value, Error>, Outcome) {
        let moves = on_redis::OnRedis {
            job,
            queue: &self.queue,
            crew: &self.crew,
            trouble: &self.trouble,
        };
        let strategy = guest::ModuleStrategy {
            module: &version.module,
            call_options: &self.call_options,
            job: guest_job,
        };
        let stack_entry = |failure: &Failure| guest::stack_entry(failure, &version.module);
        Transition {
            moves: &moves,
            strategy: &strategy,
            stack_entry: &stack_entry,
            facts: Facts {
                attempts_made: job.attempts_made(),
                crate_retries_at_once: on_redis::crate_retries_at_once(job),
                moved_to_waiting_children: moved,
            },
            delay_bounded: &self.delay_bounded,
            now_ms: now_ms(),
            random: rand::random::<f64>(),
        }
        .apply(verdict, guest_stack)
        .await
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
            guest::stack_entry(&failure, &module)
        };
        if let Err(e) = fields::backfill_stack(&self.queue, &job_id, stack).await {
            tracing::debug!(
                queue = self.queue_name(),
                job = job_id,
                "cannot complete the failed job's stack trace: {e}"
            );
        }
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
}
