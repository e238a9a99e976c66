//! `bullpen add`: a producer for the shell.

use super::connect::{ConfigArg, Connected};
use crate::queue::{self, NewJob};
use crate::units::HumanDuration;
use anyhow::{Context, bail};
use bullmq::types::BackoffStrategy;
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen add emails '{\"to\":\"ada@example.com\"}'
  bullpen add thumbs '{\"id\":7}' --attempts 5 --backoff exponential:1s
  bullpen add reports '{}' --delay 10m --job-id report-2026-11 --priority 3

Prints the new job's id.";

/// Arguments of `bullpen add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
    /// The job's data, as JSON.
    data: String,
    /// The job's name.
    #[arg(long, default_value = "job")]
    name: String,
    /// Most attempts.
    #[arg(long)]
    attempts: Option<u32>,
    /// Backoff as TYPE:DELAY (fixed:500ms, exponential:1s, or a custom type).
    #[arg(long)]
    backoff: Option<String>,
    /// Run no earlier than this from now.
    #[arg(long)]
    delay: Option<HumanDuration>,
    /// A job id of your own.
    #[arg(long)]
    job_id: Option<String>,
    /// Priority: 1 is the highest, 2,097,152 (2^21, BullMQ's limit) the
    /// lowest; 0 is no priority.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=MAX_PRIORITY))]
    priority: Option<u32>,
}

/// BullMQ's largest priority (`2 ** 21`): its scripts refuse more.
const MAX_PRIORITY: i64 = 1 << 21;

fn parse_backoff(text: &str) -> anyhow::Result<BackoffStrategy> {
    let (kind, delay) = text.split_once(':').unwrap_or((text, "0ms"));
    let delay: HumanDuration = delay
        .parse()
        .with_context(|| format!("--backoff `{text}`"))?;
    let ms = delay.0.as_millis() as u64;
    Ok(match kind {
        "fixed" => BackoffStrategy::Fixed(ms),
        "exponential" => BackoffStrategy::Exponential(ms),
        "" => bail!("--backoff `{text}`: the type is missing (e.g. exponential:1s)"),
        custom => BackoffStrategy::Custom(custom.to_owned()),
    })
}

pub(super) async fn run(args: AddArgs) -> anyhow::Result<ExitCode> {
    let data: serde_json::Value =
        serde_json::from_str(&args.data).with_context(|| "the job's data is not JSON")?;
    let backoff = args.backoff.as_deref().map(parse_backoff).transpose()?;
    let connected = Connected::open(&args.config).await?;
    connected.check_queue(&args.queue)?;
    let queue = connected.target.queue(&args.queue).await?;
    let id = queue::add(
        &queue,
        NewJob {
            name: args.name,
            data,
            attempts: args.attempts,
            backoff,
            delay: args.delay.map(|d| d.0),
            job_id: args.job_id,
            priority: args.priority,
        },
    )
    .await;
    queue.close().await;
    connected.close().await;
    super::say!("{}", id?)?;
    Ok(ExitCode::SUCCESS)
}
