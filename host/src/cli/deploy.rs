//! `bullpen deploy` and `bullpen rollback`: put a module file (or one
//! pulled from an OCI registry) in place for the running host and wait
//! until it serves it (or says why not).

use super::connect::ConfigArg;
use crate::config::Config;
use crate::registry::oci::{self, Origin};
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
  bullpen deploy oci://registry.example.com/acme/mailer:2.1.0          # the queues bound to acme/mailer

The file is checked first (a file that is not a processor this host can run is
not copied), then copied into place atomically; the running host loads it off
the job path and swaps it in: attempts that start afterwards run it, attempts
already running finish on the old version.

An oci:// reference is resolved, pulled by digest and checked against its
digests first. A queue whose bullpen.toml names an oci:// module serves what
is deployed until the next `bullpen reload` or restart, which pull the
reference bullpen.toml names again: change it there to keep the new version.

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
    /// The new module: a file, or a component in an OCI registry
    /// (`oci://registry/repository:tag` or `@sha256:…`).
    #[arg(value_name = "FILE|oci://REFERENCE")]
    module: String,
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
    let reference = oci::parse(&args.module)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let target = match (&args.queue, &reference) {
        (Some(queue), _) => queue_file(&config, queue)?,
        (None, Some(reference)) => bound_to_repository(&config, reference)?,
        (None, None) => bound_to_file_name(&config, Path::new(&args.module))?,
    };
    // Checked (and compiled into the host's cache) before anything changes.
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        cache_dir: Some(config.host.data_dir.join("cache")),
        trust: config.host.trust.clone(),
        ..SandboxOptions::default()
    })?;
    let (sha256, from) = match &reference {
        None => {
            let file = Path::new(&args.module);
            let module = sandbox.load(file)?;
            put_in_place(file, &target)?;
            Origin::forget(&target);
            (module.sha256().to_owned(), file.display().to_string())
        }
        Some(reference) => {
            let artifact = oci::pull(reference).await?;
            let staged = staging(&target)?;
            std::fs::write(&staged, &artifact.bytes)
                .with_context(|| format!("cannot write {}", staged.display()))?;
            if let Err(e) = sandbox.load(&staged) {
                let _ = std::fs::remove_file(&staged);
                bail!("{}: {e}", artifact.origin.reference);
            }
            commit(&staged, &target)?;
            artifact
                .origin
                .write(&target)
                .with_context(|| format!("cannot record where {} came from", target.display()))?;
            let pinned = config
                .queues
                .values()
                .filter(|q| q.module == target)
                .find_map(|q| q.oci.as_ref().map(oci::display))
                .filter(|configured| *configured != artifact.origin.reference);
            if let Some(configured) = pinned {
                super::say!(
                    "bullpen: note: {} names {configured}: a reload or restart pulls that again",
                    config.path.display()
                )?;
            }
            let sha256 = artifact.origin.layer["sha256:".len()..].to_owned();
            (sha256, artifact.origin.describe())
        }
    };
    super::say!(
        "bullpen: {from} ({}) copied to {}",
        &sha256[..12],
        target.display()
    )?;
    wait_until_served(&config, &target, &sha256, args.wait.0).await
}

/// The one module file of the queues bound to a module named like `file`.
fn bound_to_file_name(config: &Config, file: &Path) -> anyhow::Result<PathBuf> {
    let name = file.file_name().context("the file has no name")?;
    let bound = config
        .queues
        .values()
        .map(|q| q.module.as_path())
        .filter(|m| m.file_name() == Some(name));
    one_bound(
        config,
        bound,
        &format!("a module named {}", name.to_string_lossy()),
    )
}

/// The one kept file of the queues bound to `reference`'s repository.
fn bound_to_repository(
    config: &Config,
    reference: &oci_client::Reference,
) -> anyhow::Result<PathBuf> {
    let bound = config
        .queues
        .values()
        .filter(|q| {
            q.oci.as_ref().is_some_and(|r| {
                r.registry() == reference.registry() && r.repository() == reference.repository()
            })
        })
        .map(|q| q.module.as_path());
    let repository = format!("oci://{}/{}", reference.registry(), reference.repository());
    one_bound(config, bound, &repository)
}

fn one_bound<'a>(
    config: &Config,
    bound: impl Iterator<Item = &'a Path>,
    what: &str,
) -> anyhow::Result<PathBuf> {
    let mut bound: Vec<&Path> = bound.collect();
    bound.dedup();
    match bound[..] {
        [one] => Ok(one.to_owned()),
        [] => bail!(
            "{}: no queue is bound to {what}; give the queue with --queue",
            config.path.display()
        ),
        _ => bail!(
            "{}: queues are bound to several files for {what}; give the queue with --queue",
            config.path.display()
        ),
    }
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

/// Copies `from` over `to` atomically.
fn put_in_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    let staged = staging(to)?;
    std::fs::copy(from, &staged)
        .with_context(|| format!("cannot copy {} to {}", from.display(), staged.display()))?;
    commit(&staged, to)
}

/// A temp file beside `to`, to be renamed over it by [`commit`]: the host's
/// watcher sees the old file or the new one, never a part.
fn staging(to: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    }
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    Ok(to.with_file_name(format!(".{name}.{}.tmp", std::process::id())))
}

fn commit(staged: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(staged, to).with_context(|| {
        let _ = std::fs::remove_file(staged);
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
