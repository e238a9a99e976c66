//! `bullpen run`: the long-running host.

use super::connect::ConfigArg;
use crate::config::Config;
use crate::host::Host;
use crate::observe::health::Health;
use crate::observe::metrics::Metrics;
use crate::observe::{self, Observed};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen run                       # ./bullpen.toml
  bullpen run -c /etc/bullpen.toml

SIGHUP (or `bullpen reload`) reads the config again: queues added start, queues
removed finish their jobs in flight and stop, changed queues finish theirs and
start again with the new settings; a file that cannot be used changes nothing.
Module files are watched: a changed file that loads serves new attempts.

Takes jobs from every queue of the config until SIGINT or SIGTERM, then stops
taking jobs, lets the jobs in flight finish within [host] shutdown_grace, and
exits. A second signal exits at once: jobs still running come back to the queue
when their locks expire. While Redis does not answer, waits for it (saying so)
until it does or a signal comes. With no [redis] url, runs its own
redis-server with its data under [host] data_dir.";

/// Arguments of `bullpen run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
}

impl RunArgs {
    /// The config's `[host] log_format`, if the file says one (a file that
    /// cannot be read is reported by `run` itself, once logging is set up).
    pub(super) fn configured_log_format(&self) -> Option<crate::config::LogFormat> {
        Config::load(&self.config.config).ok()?.host.log_format
    }
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let mut signals = Signals::new()?;
    let health = Arc::new(Health::default());
    // Metrics are recorded only when they can be read.
    let (metrics, _listener) = match config.host.metrics {
        Some(addr) => {
            let metrics = Arc::new(Metrics::new());
            let observed = Observed {
                health: health.clone(),
                metrics: metrics.clone(),
            };
            (Some(metrics), Some(observe::serve(addr, observed).await?))
        }
        None => (None, None),
    };
    // Start-up can wait on Redis for as long as it is down: a signal stops
    // it at once (dropping the start stops what it started).
    let mut host = tokio::select! {
        host = Host::start(&config, metrics) => host?,
        signal = signals.stop() => {
            eprintln!("bullpen: {signal} during start-up; stopping");
            return Ok(ExitCode::from(INTERRUPTED));
        }
    };
    health.serving(host.target().clone());
    eprintln!(
        "bullpen: taking jobs from {} queue(s) of {}",
        config.queues.len(),
        config.path.display()
    );
    let signal = loop {
        match signals.next().await {
            Got::Stop(signal) => break signal,
            Got::Reload => {
                tokio::select! {
                    () = host.reload() => {}
                    signal = signals.stop() => {
                        eprintln!("bullpen: {signal} during a config reload");
                        break signal;
                    }
                }
            }
        }
    };
    health.stopping();
    eprintln!(
        "bullpen: {signal}: stopping (in-flight jobs get {:?}; a second signal exits at once)",
        config.host.shutdown_grace
    );
    tokio::select! {
        () = host.shutdown() => Ok(ExitCode::SUCCESS),
        signal = signals.stop() => {
            eprintln!(
                "bullpen: {signal} again: exiting now; jobs still running keep their locks \
                 until those expire, then any host's stalled checker puts them back in the queue"
            );
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// The exit code when a signal cut start-up or shutdown short (128 + SIGINT).
const INTERRUPTED: u8 = 130;

/// SIGINT and SIGTERM (stop), SIGHUP (reload the config), installed once,
/// read as they come.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

/// What a signal asks for.
enum Got {
    /// Stop; the signal's name.
    Stop(&'static str),
    Reload,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    async fn next(&mut self) -> Got {
        tokio::select! {
            _ = self.interrupt.recv() => Got::Stop("SIGINT"),
            _ = self.terminate.recv() => Got::Stop("SIGTERM"),
            _ = self.hangup.recv() => Got::Reload,
        }
    }

    /// Waits for the next stop signal; its name.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
