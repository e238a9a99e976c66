//! `bullpen status`: every queue's counts, workers and module.

use super::connect::{ConfigArg, Connected};
use crate::queue;
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
        ..SandboxOptions::default()
    })?;
    let mut rows = Vec::new();
    for (name, config) in &connected.config.queues {
        let queue = connected.target.queue(name).await?;
        let counts = queue::counts(&queue).await?;
        let workers = queue.get_workers_count().await.unwrap_or(0);
        queue.close().await;
        let module = match sandbox.load(&config.module) {
            Ok(module) => format!("{} ({})", module.file_name(), module.short_hash()),
            Err(e) => format!("unusable: {e}"),
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
    Ok(ExitCode::SUCCESS)
}
