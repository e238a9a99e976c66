//! `bullpen status`: every queue's counts, workers and module.

use super::connect::{ConfigArg, Connected};
use crate::queue;
use crate::registry::oci::Origin;
use crate::registry::state::QueueState;
use crate::sandbox::{Sandbox, SandboxOptions};
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Example:
  bullpen status -c /etc/bullpen.toml";

/// Arguments of `bullpen status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let connected = Connected::open(&args.config).await?;
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        cache_dir: Some(connected.config.host.data_dir.join("cache")),
        trust: connected.config.host.trust.clone(),
        ..SandboxOptions::default()
    })?;
    // What the host running on this data dir serves, when one is.
    let host = crate::registry::state::read(&connected.config.host.data_dir);
    let mut notes = Vec::new();
    let mut rows = Vec::new();
    for (name, config) in &connected.config.queues {
        let queue = connected.target.queue(name).await?;
        let counts = queue::counts(&queue).await?;
        let workers = queue.get_workers_count().await.unwrap_or(0);
        queue.close().await;
        let file_name = config
            .module
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let served = host.as_ref().and_then(|h| h.queues.get(name));
        let module = match served {
            Some(queue) => {
                notes.extend(serving_notes(name, queue));
                // A module pulled from a registry is named by its reference.
                let file_name = Origin::of(&config.module, &queue.serving.sha256)
                    .map_or(file_name, |origin| origin.reference);
                let signed = queue
                    .serving
                    .signer
                    .as_ref()
                    .map_or_else(String::new, |s| format!(", signed by {s}"));
                format!(
                    "{file_name} ({}{signed}, serving for {})",
                    &queue.serving.sha256[..12],
                    age(queue.serving.since_ms)
                )
            }
            None => match sandbox.load(&config.module) {
                Ok(module) => format!("{} ({})", module.file_name(), module.short_hash()),
                Err(e) => format!("unusable: {e}"),
            },
        };
        let mut row = vec![name.clone()];
        row.extend(counts.iter().map(|(_, n)| n.to_string()));
        row.push(workers.to_string());
        row.push(module);
        rows.push(<[String; 9]>::try_from(row).expect("nine columns"));
    }
    connected.close().await;
    super::jobs::print_table(
        [
            "QUEUE",
            "WAITING",
            "ACTIVE",
            "DELAYED",
            "PRIORITIZED",
            "COMPLETED",
            "FAILED",
            "WORKERS",
            "MODULE",
        ],
        &rows,
    )?;
    for note in notes {
        super::say!("{note}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines about a served queue beyond its row: attempts still running on
/// earlier versions, and the last rejected file.
fn serving_notes(name: &str, queue: &QueueState) -> Vec<String> {
    let mut notes = Vec::new();
    let versions: Vec<String> = std::iter::once(&queue.serving)
        .chain(&queue.previous)
        .filter(|v| v.in_flight > 0)
        .map(|v| format!("{} on {}", v.in_flight, &v.sha256[..12]))
        .collect();
    if !versions.is_empty() {
        notes.push(format!("{name}: in flight: {}", versions.join(", ")));
    }
    if let Some(rejected) = &queue.rejected {
        notes.push(format!(
            "{name}: rejected {} ({} ago): {}",
            &rejected.sha256.get(..12).unwrap_or("unreadable"),
            age(rejected.at_ms),
            rejected.reason
        ));
    }
    notes
}

/// How long ago a time in milliseconds since the Unix epoch was, roughly.
fn age(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let seconds = now.saturating_sub(ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{}h", seconds / 86400, seconds % 86400 / 3600),
    }
}
