//! `bullpen run`: the long-running host.

use super::connect::ConfigArg;
use crate::config::Config;
use crate::run::Host;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen run                       # ./bullpen.toml
  bullpen run -c /etc/bullpen.toml

Takes jobs from every queue of the config until SIGINT or SIGTERM, then stops
taking jobs, lets the jobs in flight finish within [host] shutdown_grace, and
exits. With no [redis] url, runs its own redis-server with its data under
[host] data_dir.";

/// Arguments of `bullpen run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let host = Host::start(&config).await?;
    eprintln!(
        "bullpen: taking jobs from {} queue(s) of {}",
        config.queues.len(),
        config.path.display()
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!(
        "bullpen: stopping (in-flight jobs get {:?})",
        config.host.shutdown_grace
    );
    host.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
