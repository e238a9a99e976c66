//! Deploy by copying a file: the directories of the queues' modules are
//! watched (notify, debounced), and a changed module file is loaded off the
//! job path (a blocking thread, the compile cache) and swapped in for every
//! queue bound to it. A file that does not load changes nothing but the
//! queue's last rejection and a warning; one seen half-written is loaded
//! again when its writer is done, and never runs. Each file is looked at
//! once when watching starts, for what changed while nothing watched.

use super::{Registry, Serving, state};
use crate::sandbox::Sandbox;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a file must be quiet before it is loaded: a `cp` writes in
/// chunks, and each chunk is an event.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// How long a file that did not load is watched for more writes before it
/// is rejected: a copy that paused longer than [`DEBOUNCE`] between chunks
/// is still being written.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches the module files until dropped.
pub struct Watcher {
    _debouncer: Box<dyn std::any::Any + Send>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the module directories cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir} for new modules: {reason}")]
pub struct WatchError {
    dir: String,
    reason: String,
}

/// Starts watching the directory of every queue's module file.
/// After each deploy, what `data_dir` keeps of modules is pruned to
/// `cache_size`.
pub fn start(
    registry: &Registry,
    sandbox: Arc<Sandbox>,
    data_dir: &Path,
    cache_size: u64,
) -> Result<Watcher, WatchError> {
    // Keyed by the file's path in its canonical directory, which is how
    // the events name it whatever the config wrote (relative, a symlink).
    let mut by_file: BTreeMap<PathBuf, Vec<Arc<Serving>>> = BTreeMap::new();
    for serving in registry.queues() {
        let path = serving.path();
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let dir = std::fs::canonicalize(dir).map_err(|e| WatchError {
            dir: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        by_file
            .entry(dir.join(name))
            .or_default()
            .push(serving.clone());
    }
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    // A file written while no watcher ran (a reload pulled a new tag, a
    // deploy landed between two watchers) is looked at once now.
    for file in by_file.keys() {
        let _ = tx.send(file.clone());
    }
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        for event in events {
            if matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            ) {
                for path in &event.paths {
                    let _ = tx.send(path.clone());
                }
            }
        }
    })
    .map_err(|e| WatchError {
        dir: "the module directory".into(),
        reason: e.to_string(),
    })?;
    let dirs: BTreeSet<PathBuf> = by_file
        .keys()
        .filter_map(|file| file.parent().map(Path::to_owned))
        .collect();
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| WatchError {
                dir: dir.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    let swapper = Swapper {
        by_file,
        sandbox,
        data_dir: data_dir.to_owned(),
        cache_size,
    };
    let task = tokio::spawn(swapper.run(rx));
    Ok(Watcher {
        _debouncer: Box::new(debouncer),
        task,
    })
}

struct Swapper {
    by_file: BTreeMap<PathBuf, Vec<Arc<Serving>>>,
    sandbox: Arc<Sandbox>,
    data_dir: PathBuf,
    cache_size: u64,
}

impl Swapper {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<PathBuf>) {
        while let Some(path) = rx.recv().await {
            // Events come in bursts: take every path waiting, once each.
            let mut paths = BTreeSet::from([path]);
            while let Ok(path) = rx.try_recv() {
                paths.insert(path);
            }
            for path in paths {
                if let Some(queues) = self.by_file.get(&path) {
                    self.changed(&path, queues).await;
                }
            }
        }
    }

    /// `path` changed: swap it in for `queues` if it is new and loads.
    async fn changed(&self, path: &Path, queues: &[Arc<Serving>]) {
        let Some(sha256) = file_sha256(path) else {
            for serving in queues {
                tracing::warn!(
                    queue = serving.queue(),
                    file = %path.display(),
                    "module file removed or unreadable; still serving {} ({})",
                    serving.current().module.file_name(),
                    serving.current().module.short_hash()
                );
            }
            return;
        };
        let new_for: Vec<&Arc<Serving>> = queues
            .iter()
            .filter(|s| s.current().module.sha256() != sha256)
            .collect();
        if new_for.is_empty() {
            return;
        }
        let sandbox = self.sandbox.clone();
        let file = path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || sandbox.load(&file)).await;
        let loaded = match loaded {
            Ok(loaded) => loaded.map_err(|e| e.to_string()),
            Err(panic) => Err(format!("{}: loading panicked: {panic}", path.display())),
        };
        match loaded {
            Ok(module) if module.sha256() == sha256 => {
                state::keep_version(&self.data_dir, &module);
                for serving in new_for {
                    let old = serving.swap(module.clone());
                    tracing::info!(
                        queue = serving.queue(),
                        module = %module.file_name(),
                        hash = module.short_hash(),
                        from = module.loaded_from().as_str(),
                        "new module serving after {:.1} ms (was {}; {} attempt(s) finish on it)",
                        module.load_time().as_secs_f64() * 1e3,
                        old.module.short_hash(),
                        old.in_flight()
                    );
                }
                state::keep_within(
                    &self.data_dir,
                    self.cache_size,
                    self.by_file.values().flatten(),
                );
            }
            // Written again while it loaded: its last write brings an event.
            Ok(_) => {}
            Err(reason) => {
                // A copy still under way: its next chunk brings an event.
                tokio::time::sleep(SETTLE).await;
                if file_sha256(path).as_deref() != Some(sha256.as_str()) {
                    return;
                }
                for serving in new_for {
                    if serving.rejected().is_some_and(|r| r.sha256 == sha256) {
                        continue;
                    }
                    let current = serving.current();
                    tracing::warn!(
                        queue = serving.queue(),
                        file = %path.display(),
                        sha256 = &sha256[..12],
                        "new module rejected, still serving {}: {reason}",
                        current.module.short_hash()
                    );
                    serving.reject(&sha256, reason.clone());
                }
            }
        }
    }
}

/// The sha256 of a file, in hex; `None` when it cannot be read.
pub fn file_sha256(path: &Path) -> Option<String> {
    Some(sha256_hex(&crate::sandbox::read_module(path).ok()?))
}

pub use crate::sandbox::sha256_hex;
