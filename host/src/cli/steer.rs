//! `bullpen pause`, `bullpen resume`, `bullpen concurrency`: a queue's
//! settings for the whole fleet, retained on BullMQ's Relay
//! (`workers.<queue>.settings`, `{ concurrency, paused }`), as BullMQ's
//! "controlling workers" example publishes them. Running hosts apply them at
//! once; a host that starts later, before it takes a job.

use super::connect::{ConfigArg, Connected};
use crate::fleet::{SettingsMessage, settings_topic};
use crate::relay::{Relay, RelayOptions};
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen pause emails            # every host stops fetching emails' jobs; jobs in flight finish
  bullpen resume emails
  bullpen concurrency emails 2    # at most the queue's configured concurrency

The settings are retained for a year: a host started meanwhile applies them
before it takes a job. BullMQ's own Relay publishes the same message:
relay.publish('workers.emails.settings', { concurrency: 2, paused: false },
{ retain: ms }). (BullMQ's Queue.pause() is another thing, and works too: the
queue's jobs wait in its paused list until Queue.resume().)";

/// How long settings stay retained.
const RETAIN: Duration = Duration::from_secs(365 * 24 * 3600);

/// Arguments naming one queue.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
}

/// Arguments of `bullpen concurrency`.
#[derive(Debug, clap::Args)]
pub struct ConcurrencyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
    /// The queue's concurrency on each host (at most its configured one).
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
}

pub(super) async fn pause(args: QueueArgs) -> anyhow::Result<ExitCode> {
    steer(&args.config, &args.queue, |settings| settings.paused = true).await
}

pub(super) async fn resume(args: QueueArgs) -> anyhow::Result<ExitCode> {
    steer(&args.config, &args.queue, |settings| {
        settings.paused = false
    })
    .await
}

pub(super) async fn concurrency(args: ConcurrencyArgs) -> anyhow::Result<ExitCode> {
    let concurrency = args.concurrency;
    steer(&args.config, &args.queue, |settings| {
        settings.concurrency = Some(concurrency)
    })
    .await
}

/// Publishes `queue`'s retained settings, changed by `change`.
async fn steer(
    config: &ConfigArg,
    queue: &str,
    change: impl FnOnce(&mut SettingsMessage),
) -> anyhow::Result<ExitCode> {
    let connected = Connected::open(config).await?;
    connected.check_queue(queue)?;
    let relay = Relay::connect(&connected.target, RelayOptions::default()).await?;
    let published = async {
        let topic = settings_topic(queue);
        // The settings as retained now: what this command does not change
        // stays as it is.
        let mut current = relay.subscribe(&topic).await?;
        let mut settings = match current.messages.try_recv() {
            Ok(message) => SettingsMessage::read(&message).unwrap_or_default(),
            Err(_) => SettingsMessage::default(),
        };
        relay.unsubscribe(&current.endpoint).await?;
        change(&mut settings);
        let published = relay
            .publish(&topic, &serde_json::to_value(settings)?, RETAIN)
            .await?;
        Ok::<_, anyhow::Error>((settings, published))
    }
    .await;
    let _ = relay.stop().await;
    connected.close().await;
    let (settings, published) =
        published.with_context(|| format!("{queue}: publishing its settings"))?;
    super::say!(
        "{queue}: {}, concurrency {}; heard by {} host(s) now, retained for those that start later",
        if settings.paused { "paused" } else { "running" },
        settings
            .concurrency
            .map_or("as configured".to_owned(), |c| c.to_string()),
        published.endpoints
    )?;
    Ok(ExitCode::SUCCESS)
}
