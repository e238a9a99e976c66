//! `bullpen deploy` and `bullpen rollback`: put a module file in place for
//! the running host and wait until it serves it (or says why not).

use super::connect::ConfigArg;
use crate::config::Config;
use crate::registry::state::{self, HostState};
use crate::registry::watch::file_sha256;
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::units::HumanDuration;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(super) const DEPLOY_AFTER_HELP: &str = "\
Examples:
  bullpen deploy target/wasm32-wasip2/release/mailer.wasm            # the queues bound to mailer.wasm
  bullpen deploy build/mailer-v2.wasm --queue emails -c /etc/bullpen.toml

The file is checked first (a file that is not a processor this host can run is
not copied), then copied into place atomically; the running host loads it off
the job path and swaps it in: attempts that start afterwards run it, attempts
already running finish on the old version.

Exit code: 0 when the host serves the new version, 1 when it rejected it (the
reason is printed), the file is unusable, or the host did not answer in --wait.";

pub(super) const ROLLBACK_AFTER_HELP: &str = "\
Example:
  bullpen rollback --queue emails

Puts back the version the queue served before the current one (the host keeps
the last few under <data_dir>/versions) and waits until it serves it.";

/// Arguments of `bullpen deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The new module file.
    file: PathBuf,
    /// The queue to deploy it to (it replaces that queue's module file);
    /// default: every queue bound to a module of the same file name.
    #[arg(long)]
    queue: Option<String>,
    /// How long to wait for the running host to serve it.
    #[arg(long, default_value = "30s")]
    wait: HumanDuration,
    #[command(flatten)]
    config: ConfigArg,
}

/// Arguments of `bullpen rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The queue whose module goes back one version.
    #[arg(long)]
    queue: String,
    /// How long to wait for the running host to serve it.
    #[arg(long, default_value = "30s")]
    wait: HumanDuration,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let target = match &args.queue {
        Some(queue) => queue_file(&config, queue)?,
        None => {
            let name = args.file.file_name().context("the file has no name")?;
            let mut bound: Vec<&Path> = config
                .queues
                .values()
                .map(|q| q.module.as_path())
                .filter(|m| m.file_name() == Some(name))
                .collect();
            bound.dedup();
            match bound[..] {
                [one] => one.to_owned(),
                [] => bail!(
                    "{}: no queue is bound to a module named {}; give the queue with --queue",
                    config.path.display(),
                    name.to_string_lossy()
                ),
                _ => bail!(
                    "{}: queues are bound to several files named {}; give the queue with --queue",
                    config.path.display(),
                    name.to_string_lossy()
                ),
            }
        }
    };
    // Checked (and compiled into the host's cache) before anything changes.
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        cache_dir: Some(config.host.data_dir.join("cache")),
        ..SandboxOptions::default()
    })?;
    let module = sandbox.load(&args.file)?;
    put_in_place(&args.file, &target)?;
    super::say!(
        "bullpen: {} ({}) copied to {}",
        args.file.display(),
        module.short_hash(),
        target.display()
    )?;
    wait_until_served(&config, &target, module.sha256(), args.wait.0).await
}

pub(super) async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let target = queue_file(&config, &args.queue)?;
    let Some(host) = state::read(&config.host.data_dir) else {
        bail!(no_host(&config));
    };
    let queue = &host.queues[&args.queue];
    let Some(previous) = queue.previous.first() else {
        bail!(
            "queue {} has served only {} since its host started: nothing to go back to",
            args.queue,
            &queue.serving.sha256[..12]
        );
    };
    let kept = state::version_file(&config.host.data_dir, &previous.sha256);
    if file_sha256(&kept).as_deref() != Some(previous.sha256.as_str()) {
        bail!(
            "the copy of version {} is missing or changed ({})",
            &previous.sha256[..12],
            kept.display()
        );
    }
    put_in_place(&kept, &target)?;
    super::say!(
        "bullpen: queue {} goes back from {} to {}",
        args.queue,
        &queue.serving.sha256[..12],
        &previous.sha256[..12]
    )?;
    wait_until_served(&config, &target, &previous.sha256, args.wait.0).await
}

fn queue_file(config: &Config, queue: &str) -> anyhow::Result<PathBuf> {
    Ok(config.queue(queue)?.module.clone())
}

fn no_host(config: &Config) -> String {
    format!(
        "no bullpen host is running on {} (start it with `bullpen run -c {}`)",
        config.host.data_dir.display(),
        config.path.display()
    )
}

/// Copies `from` over `to` atomically: a temp file beside `to`, renamed.
fn put_in_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().context("the module file has no directory")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(from, &tmp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot move {} into place", to.display())
    })
}

/// Waits until the host serves `sha256` on every queue bound to `file`, or
/// rejects it on one.
async fn wait_until_served(
    config: &Config,
    file: &Path,
    sha256: &str,
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + wait;
    loop {
        let Some(host) = state::read(&config.host.data_dir) else {
            super::say!(
                "bullpen: {}; it will load the new file when it starts",
                no_host(config)
            )?;
            return Ok(ExitCode::SUCCESS);
        };
        match verdict(&host, file, sha256) {
            Some(Ok(queues)) => {
                super::say!(
                    "bullpen: serving {} ({}) on {}",
                    file.display(),
                    &sha256[..12],
                    queues.join(", ")
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(Err((queue, reason))) => {
                eprintln!(
                    "bullpen: queue {queue} rejected the new file and keeps its version: {reason}"
                );
                return Ok(ExitCode::FAILURE);
            }
            None if Instant::now() >= deadline => {
                eprintln!(
                    "bullpen: the host did not serve {} within {}",
                    &sha256[..12],
                    HumanDuration(wait)
                );
                return Ok(ExitCode::FAILURE);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Served on every queue bound to `file` (their names), rejected by one
/// (its name and reason), or not yet either.
fn verdict(
    host: &HostState,
    file: &Path,
    sha256: &str,
) -> Option<Result<Vec<String>, (String, String)>> {
    let mut served = Vec::new();
    for (name, queue) in host.queues.iter().filter(|(_, q)| q.file == file) {
        if let Some(rejected) = queue.rejected.as_ref().filter(|r| r.sha256 == sha256) {
            return Some(Err((name.clone(), rejected.reason.clone())));
        }
        if queue.serving.sha256 != sha256 || queue.workers_on != sha256 {
            return None;
        }
        served.push(name.clone());
    }
    (!served.is_empty()).then_some(Ok(served))
}

pub(super) const RELOAD_AFTER_HELP: &str = "\
Example:
  bullpen reload -c /etc/bullpen.toml

Sends SIGHUP to the host running on the config's data dir and waits until it
has read the file again. Exit code 0 when the new file was applied (what
changed is printed), 1 when it was not (the reason is printed; nothing
changed).";

/// Arguments of `bullpen reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// How long to wait for the host to apply the file (changed queues
    /// finish their attempts in flight first).
    #[arg(long, default_value = "60s")]
    wait: HumanDuration,
    #[command(flatten)]
    config: ConfigArg,
}

pub(super) async fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let Some(host) = state::read(&config.host.data_dir) else {
        bail!(no_host(&config));
    };
    let before = host.reload.as_ref().map_or(0, |r| r.count);
    // SAFETY: sends a signal; no memory is involved.
    if unsafe { libc::kill(host.pid as libc::pid_t, libc::SIGHUP) } != 0 {
        bail!(
            "cannot signal the host (pid {}): {}",
            host.pid,
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + args.wait.0;
    loop {
        let reloaded = state::read(&config.host.data_dir)
            .and_then(|h| h.reload)
            .filter(|r| r.count > before);
        match reloaded {
            Some(r) if r.ok => {
                super::say!("bullpen: reloaded {}: {}", config.path.display(), r.message)?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(r) => {
                eprintln!("bullpen: not reloaded, nothing changed: {}", r.message);
                return Ok(ExitCode::FAILURE);
            }
            None if Instant::now() >= deadline => {
                eprintln!(
                    "bullpen: the host did not finish reloading within {}",
                    HumanDuration(args.wait.0)
                );
                return Ok(ExitCode::FAILURE);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
