//! What the guest sees and is asked: its job (the crate's job mapped to
//! the contract's, its data given faithfully or refused with the reason),
//! and its own backoff strategy.

use super::transitions::{Asked, Strategy};
use crate::json;
use crate::outcome::{self, Verdict};
use crate::queue::fields;
use crate::sandbox::{BackoffDecision, BackoffOptions, Failure, Ignore, Job as GuestJob};
use crate::sandbox::{CallOptions, Module};
use crate::units::ByteSize;
use bullmq::types::BackoffStrategy;
use bullmq::{Job, Queue};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The job's data as the text the guest gets: the text the crate read
/// (the producer's, as stored), or the stored bytes (one more read) when
/// the crate's decoding replaced some; `Err` names why the data cannot be
/// given to the guest faithfully (the job fails for good) or that it could
/// not be read (the attempt fails).
pub(super) async fn data(queue: &Queue, job: &Job, max_data_size: u64) -> Result<String, Verdict> {
    let data = match json::data_text(job.data_json()) {
        Ok(text) => text,
        Err(Some(not_json)) => return Err(Verdict::Unrecoverable(not_json)),
        Err(None) => match fields::raw_data(queue, job.id()).await {
            Ok(bytes) => json::stored_data(bytes).map_err(Verdict::Unrecoverable)?,
            Err(e) => {
                return Err(Verdict::Failed(Failure {
                    message: format!("cannot read the job's data: {e}"),
                    name: Some("RedisError".into()),
                }));
            }
        },
    };
    if data.len() as u64 > max_data_size {
        return Err(Verdict::Unrecoverable(format!(
            "job data is {}, more than this queue's max_data_size of {}",
            ByteSize(data.len() as u64),
            ByteSize(max_data_size)
        )));
    }
    Ok(data)
}

/// The job as the guest sees it on `queue`, with `data` as its data.
pub(super) fn job(queue: &str, job: &Job, data: String) -> GuestJob {
    let opts = job.opts();
    GuestJob {
        id: job.id().to_owned(),
        name: job.name().to_owned(),
        queue: queue.to_owned(),
        data,
        attempts_made: job.attempts_made(),
        attempts_started: job.attempts_started().max(1),
        max_attempts: opts.attempts.unwrap_or(1).max(1),
        timestamp: job.timestamp(),
        backoff: opts.backoff.as_ref().map(|b| {
            let (kind, delay) = match b {
                BackoffStrategy::Fixed(delay) => ("fixed".into(), *delay),
                BackoffStrategy::Exponential(delay) => ("exponential".into(), *delay),
                BackoffStrategy::Custom(kind) => (kind.clone(), 0),
            };
            BackoffOptions {
                kind,
                delay,
                jitter: 0.0,
            }
        }),
    }
}

/// A stack trace entry: `Name: message`, then the module that ran it, as
/// a JS stack names the file.
pub(super) fn stack_entry(failure: &Failure, module: &Module) -> String {
    format!(
        "{}: {}\n    at {} (sha256 {})",
        failure.name.as_deref().unwrap_or("Error"),
        failure.message,
        module.file_name(),
        module.short_hash()
    )
}

/// The `backoff` export of the module version an attempt ran on.
pub(super) struct ModuleStrategy<'a> {
    pub module: &'a Module,
    pub call_options: &'a CallOptions,
    /// The job as the attempt's guest saw it.
    pub job: &'a GuestJob,
}

impl Strategy for ModuleStrategy<'_> {
    fn ask<'a>(
        &'a self,
        attempts_made: u32,
        strategy: &'a str,
        failure: &'a Failure,
    ) -> BoxFuture<'a, Asked> {
        Box::pin(async move {
            let job = GuestJob {
                attempts_made,
                ..self.job.clone()
            };
            let run = self
                .module
                .backoff(
                    attempts_made,
                    strategy,
                    failure,
                    &job,
                    self.call_options,
                    Arc::new(Ignore),
                )
                .await;
            match run.outcome {
                Ok(BackoffDecision::After(ms)) => Asked::After(Duration::from_millis(ms)),
                Ok(BackoffDecision::Now) => Asked::After(Duration::ZERO),
                Ok(BackoffDecision::GiveUp) => Asked::GiveUp,
                Ok(BackoffDecision::Builtin) => Asked::Fails(outcome::unknown_strategy(strategy)),
                Err(crash) => {
                    tracing::error!("the module's backoff crashed ({crash}); the job fails");
                    Asked::Fails(format!(
                        "{} (backoff strategy {strategy} crashed: {crash})",
                        failure.message
                    ))
                }
            }
        })
    }
}
