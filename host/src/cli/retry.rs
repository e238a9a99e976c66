//! `bullpen retry`: BullMQ's `Job.retry()` from the shell.

use super::connect::{ConfigArg, Connected};
use crate::queue::{self, Finished};
use bullmq::RetryOptions;
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen retry emails 42
  bullpen retry emails 42 --reset-attempts-made --reset-attempts-started
  bullpen retry emails --all --state completed

A retried job goes back to wait with its failedReason (or returnvalue) and
finishedOn cleared. A job that does not exist, or is not in the --state given
(failed by default), is an error (BullMQ's -1 and -3).";

/// Arguments of `bullpen retry`.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
    /// The job to retry.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    job_id: Option<String>,
    /// Retry every job in --state.
    #[arg(long)]
    all: bool,
    /// The state the job(s) must be in.
    #[arg(long, default_value = "failed", value_parser = ["failed", "completed"])]
    state: String,
    /// Reset attemptsMade to 0.
    #[arg(long)]
    reset_attempts_made: bool,
    /// Reset attemptsStarted to 0.
    #[arg(long)]
    reset_attempts_started: bool,
}

pub(super) async fn run(args: RetryArgs) -> anyhow::Result<ExitCode> {
    let connected = Connected::open(&args.config).await?;
    connected.check_queue(&args.queue)?;
    let queue = connected.target.queue(&args.queue).await?;
    let state = if args.state == "completed" {
        Finished::Completed
    } else {
        Finished::Failed
    };
    let options = RetryOptions {
        reset_attempts_made: args.reset_attempts_made,
        reset_attempts_started: args.reset_attempts_started,
    };
    let ids: Vec<String> = match &args.job_id {
        Some(id) => vec![id.clone()],
        None => queue::list(&queue, &[state.as_str()], usize::MAX >> 1)
            .await?
            .into_iter()
            .map(|(job, _)| job.id().to_owned())
            .collect(),
    };
    let mut result = Ok(());
    for id in &ids {
        match queue::retry(&queue, id, state, options.clone()).await {
            Ok(()) => super::say!("{id}: back to wait")?,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    queue.close().await;
    connected.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
