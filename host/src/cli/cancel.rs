//! `bullpen cancel`: stops a running job wherever it runs, through BullMQ's
//! Relay, as any BullMQ process can (`jobs.<queue>.cancel`).

use super::connect::{ConfigArg, Connected};
use crate::fleet::{CancelMessage, cancel_topic as topic};
use crate::queue::state_name;
use crate::relay::{Relay, RelayOptions};
use anyhow::{Context, bail};
use std::process::ExitCode;
use std::time::Duration;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen cancel emails 42
  bullpen cancel emails 42 --reason 'customer withdrew' --retry

The host running the job stops its attempt at once, without asking the
processor: the job fails for good with `cancelled: <reason>` (with --retry:
fails and is retried as any failure is). A job that is not running (waiting,
delayed, finished) is left as it is, and the command says its state: as
BullMQ's worker.cancelJob, a cancel stops runs, not jobs. The same request
from Node is relay.publish('jobs.<queue>.cancel', { jobId, reason }) with
BullMQ's own Relay.";

/// How long the command waits for the job to leave `active`.
const WAIT: Duration = Duration::from_secs(10);

/// Arguments of `bullpen cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
    /// The job to stop.
    job_id: String,
    /// Why: the job's failed reason is `cancelled: <reason>`.
    #[arg(long, default_value = "cancelled by bullpen cancel")]
    reason: String,
    /// Retry the job (the attempt counts) instead of failing it for good.
    #[arg(long)]
    retry: bool,
}

pub(super) async fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let connected = Connected::open(&args.config).await?;
    connected.check_queue(&args.queue)?;
    let result = cancel(&connected, &args).await;
    connected.close().await;
    result
}

async fn cancel(connected: &Connected, args: &CancelArgs) -> anyhow::Result<ExitCode> {
    let queue = connected.target.queue(&args.queue).await?;
    let state = |queue: bullmq::Queue| {
        let id = args.job_id.clone();
        async move {
            let job = queue
                .get_job(&id)
                .await
                .with_context(|| format!("{}: reading job {id}", queue.name()))?;
            let Some(job) = job else {
                bail!("{}: no job {id}", queue.name());
            };
            let state = job
                .get_state()
                .await
                .with_context(|| format!("{}: reading job {id}", queue.name()))?;
            Ok((
                state_name(&state),
                job.failed_reason().to_owned(),
                job.attempts_made(),
            ))
        }
    };
    let (before, _, attempts_before) = state(queue.clone()).await?;
    if before != "active" {
        super::say!(
            "{}: job {} is {before}, not running: nothing cancelled",
            args.queue,
            args.job_id
        )?;
        queue.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    let relay = Relay::connect(&connected.target, RelayOptions::default()).await?;
    let message = CancelMessage {
        job_id: args.job_id.clone(),
        reason: Some(args.reason.clone()),
        retry: args.retry,
    };
    let published = relay
        .publish(
            &topic(&args.queue),
            &serde_json::to_value(&message)?,
            Duration::ZERO,
        )
        .await;
    let _ = relay.stop().await;
    // The node this command made is not a listener of its own topic.
    if published?.endpoints == 0 {
        queue.close().await;
        bail!(
            "{}: no host listens for cancels on {} (is `bullpen run` running on this Redis?)",
            args.queue,
            topic(&args.queue)
        );
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (now, reason, attempts) = state(queue.clone()).await?;
        // Retried at once, a job may be active again: its count of failed
        // attempts says the cancelled run ended.
        if now != "active" || attempts != attempts_before {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            super::say!(
                "{}: job {} no longer runs: {now} (attemptsMade {attempts}){why}",
                args.queue,
                args.job_id
            )?;
            queue.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= deadline {
            queue.close().await;
            bail!(
                "{}: job {} is still active {}s after the cancel: no host listening runs it \
                 (a BullMQ worker in Node must stop it itself)",
                args.queue,
                args.job_id,
                WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
