//! What a running host serves, written to `<data_dir>/serving.json` for
//! `bullpen status`, `bullpen deploy` and `bullpen rollback` to read; and
//! the module files it served, kept in `<data_dir>/versions/` for
//! `bullpen rollback`.

use super::{Registry, Rejection, Version};
use crate::sandbox::Module;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file a host writes, in its data dir.
pub const FILE: &str = "serving.json";

/// How often the host writes the file when something changed (a swap, a
/// rejection, attempts starting or ending).
pub const WRITE_EVERY: Duration = Duration::from_millis(100);

/// What a host serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// The host's process id.
    pub pid: u32,
    /// Every queue's module, by queue name.
    pub queues: BTreeMap<String, QueueState>,
    /// The last config reload (SIGHUP, `bullpen reload`), if any.
    pub reload: Option<ReloadState>,
}

/// How a config reload went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadState {
    /// Reloads since the host started, this one included.
    pub count: u64,
    /// Whether it was applied.
    pub ok: bool,
    /// What changed, or why nothing did.
    pub message: String,
}

/// One queue's module as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// The module file the queue is bound to.
    pub file: PathBuf,
    /// The version new attempts start on.
    pub serving: VersionState,
    /// The sha256 of the version the queue's workers fetch jobs for: after
    /// a swap, the serving one once its workers replaced the old ones.
    pub workers_on: String,
    /// Earlier versions, newest first.
    pub previous: Vec<VersionState>,
    /// The last file that was not swapped in.
    pub rejected: Option<RejectionState>,
}

/// One version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    /// The file's sha256, in hex.
    pub sha256: String,
    /// When it began to serve, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Attempts running on it.
    pub in_flight: usize,
    /// The trusted key that signed it (`SHA256:… (comment)`), if one did.
    #[serde(default)]
    pub signer: Option<String>,
}

/// A rejected file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionState {
    /// Its sha256.
    pub sha256: String,
    /// Why.
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl VersionState {
    fn of(version: &Version) -> Self {
        VersionState {
            sha256: version.module.sha256().to_owned(),
            since_ms: ms(version.since),
            in_flight: version.in_flight(),
            signer: version.module.signer().map(ToString::to_string),
        }
    }
}

impl From<Rejection> for RejectionState {
    fn from(r: Rejection) -> Self {
        RejectionState {
            sha256: r.sha256,
            reason: r.reason,
            at_ms: ms(r.at),
        }
    }
}

impl HostState {
    /// What `registry` serves now, and how the last reload went.
    pub fn of(registry: &Registry, reload: Option<ReloadState>) -> Self {
        let queues = registry
            .queues()
            .map(|serving| {
                let state = QueueState {
                    file: serving.path().to_owned(),
                    serving: VersionState::of(&serving.current()),
                    workers_on: serving.workers_on(),
                    previous: serving
                        .previous()
                        .iter()
                        .map(|v| VersionState::of(v))
                        .collect(),
                    rejected: serving.rejected().map(Into::into),
                };
                (serving.queue().to_owned(), state)
            })
            .collect();
        HostState {
            pid: std::process::id(),
            queues,
            reload,
        }
    }
}

/// Writes `registry`'s state into `data_dir` whenever it changes, until the
/// task is aborted; the file is replaced atomically.
pub fn keep_written(
    registry: Registry,
    data_dir: &Path,
    reload: Option<ReloadState>,
) -> tokio::task::JoinHandle<()> {
    let path = data_dir.join(FILE);
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let state = HostState::of(&registry, reload.clone());
            if last.as_ref() != Some(&state) {
                if let Err(e) = write(&path, &state) {
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
                last = Some(state);
            }
            tokio::time::sleep(WRITE_EVERY).await;
        }
    })
}

fn write(path: &Path, state: &HostState) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, path)
}

/// The state of the host running on `data_dir`, if one is.
pub fn read(data_dir: &Path) -> Option<HostState> {
    let text = std::fs::read(data_dir.join(FILE)).ok()?;
    let state: HostState = serde_json::from_slice(&text).ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(state.pid as libc::pid_t, 0) } == 0;
    alive.then_some(state)
}

/// Where a served version's file is kept.
pub fn version_file(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir.join("versions").join(format!("{sha256}.wasm"))
}

/// Prunes what `data_dir` keeps of modules (compiled, and kept for
/// rollback) to `cache_size` bytes, never the versions `servings` serve.
pub fn keep_within<'a>(
    data_dir: &Path,
    cache_size: u64,
    servings: impl IntoIterator<Item = &'a std::sync::Arc<super::Serving>>,
) {
    let serving: std::collections::HashSet<String> = servings
        .into_iter()
        .map(|s| s.current().module.sha256().to_owned())
        .collect();
    super::prune::prune(data_dir, cache_size, &serving);
}

/// Keeps a copy of `module`'s file under `data_dir/versions` (once per
/// sha256), for `bullpen rollback`; only a copy whose bytes are the
/// module's is kept.
pub fn keep_version(data_dir: &Path, module: &Module) {
    let kept = version_file(data_dir, module.sha256());
    if kept.exists() {
        super::prune::touch(&kept);
        return;
    }
    let result = (|| {
        std::fs::create_dir_all(kept.parent().expect("under versions/"))?;
        let bytes = crate::sandbox::read_module(module.path()).map_err(std::io::Error::other)?;
        if super::watch::sha256_hex(&bytes) != module.sha256() {
            return Ok(()); // changed since it was loaded: its own event keeps it
        }
        let tmp = kept.with_extension("wasm.tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &kept)
    })();
    if let Err(e) = result {
        tracing::warn!(
            "cannot keep a copy of {} for rollback: {e}",
            module.path().display()
        );
    }
}
