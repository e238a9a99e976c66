//! The transitions' [`Moves`] as they are done on Redis: the crate's job
//! moves, and the fields the crate does not write (`queue::fields`).

use super::super::Crew;
use super::super::lock::Trouble;
use super::transitions::Moves;
use crate::outcome::options::{self as job_options, JobOptions};
use crate::queue::fields;
use bullmq::types::BackoffStrategy;
use bullmq::{Error, Job, Queue};
use futures::future::BoxFuture;

/// One job's moves on Redis.
pub(super) struct OnRedis<'a> {
    pub job: &'a Job,
    pub queue: &'a Queue,
    /// The queue's workers, told when a rate limit is in force.
    pub crew: &'a Crew,
    pub trouble: &'a Trouble,
}

impl Moves for OnRedis<'_> {
    fn options(&self) -> BoxFuture<'_, JobOptions> {
        Box::pin(async {
            match fields::raw_options(self.queue, self.job.id()).await {
                Ok(raw) => job_options::parse(&raw),
                Err(e) => {
                    tracing::warn!("cannot read the job's options: {e}");
                    JobOptions {
                        attempts: self.job.opts().attempts.unwrap_or(1).max(1),
                        ..JobOptions::default()
                    }
                }
            }
        })
    }

    fn record_failure<'a>(
        &'a self,
        reason: &'a str,
        stack: &'a str,
        opts: &'a JobOptions,
        count_attempt: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let written = fields::record_failure(
                self.queue,
                self.job.id(),
                reason,
                stack,
                opts.stack_trace_limit,
                count_attempt,
            )
            .await;
            if let Err(e) = written {
                self.trouble.saw();
                tracing::warn!("cannot record the failure: {e}");
            }
        })
    }

    fn move_to_delayed(&self, until_ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.job.move_to_delayed(until_ms))
    }

    fn move_to_wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { self.job.move_to_wait(None).await.map(drop) })
    }

    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(self.job.move_to_waiting_children(None))
    }

    fn rate_limit(&self, ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.queue.rate_limit(ms).await?;
            self.crew.rate_limited();
            Ok(())
        })
    }

    fn return_json(&self, json: String) -> Result<(), Error> {
        self.job.set_return_json(json)
    }
}

/// Whether the crate, handed a failure for `job`, would retry it at once:
/// it reads the job's options its own way.
pub(super) fn crate_retries_at_once(job: &Job) -> bool {
    let opts = job.opts();
    let attempts = opts.attempts.unwrap_or(0);
    let retries = attempts > 0 && job.attempts_made() + 1 < attempts;
    let immediate = match &opts.backoff {
        None | Some(BackoffStrategy::Custom(_)) => true,
        Some(BackoffStrategy::Fixed(d) | BackoffStrategy::Exponential(d)) => *d == 0,
    };
    retries && immediate
}
