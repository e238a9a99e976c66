//! The modules the queues run, and how they change while the host runs.
//!
//! At start every queue's module is loaded, checked and compiled (or read
//! from the compile cache) before any job is taken, so a missing or broken
//! module stops the start with an error that points at the config line.
//! Then each queue's [`Serving`] holds the version new attempts start on;
//! [`watch`] swaps in a new version when its file changes and loads, and
//! keeps the old one when it does not; [`state`] writes what is served where
//! `bullpen status` and `bullpen deploy` read it; [`oci`] brings modules
//! named by an OCI reference into the data dir, where they are files too.

pub mod oci;
pub mod prune;
pub mod state;
pub mod watch;

use crate::config::{Config, ConfigError};
use crate::observe::metrics::QueueMetrics;
use crate::sandbox::{Module, Sandbox};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

/// One loaded version of a queue's module.
#[derive(Debug)]
pub struct Version {
    /// The compiled module.
    pub module: Module,
    /// When it began to serve.
    pub since: SystemTime,
    in_flight: AtomicUsize,
    /// [`Version::worker_name`], made once: each attempt compares it.
    worker_name: String,
}

impl Version {
    fn new(module: Module) -> Arc<Self> {
        Arc::new(Version {
            worker_name: worker_name(&module),
            module,
            since: SystemTime::now(),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Counts an attempt on this version until the guard is dropped.
    pub fn attempt(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Attempts running on this version now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The name of the workers that fetch jobs for this version, which
    /// BullMQ writes into each job it hands them (`processedBy`): where a
    /// job's module version is found, with no write of its own.
    pub fn worker_name(&self) -> &str {
        &self.worker_name
    }
}

/// `echo.wasm@5a4b3adb383d`: a module's file name and short hash; for a
/// module a trusted key signed, with that key's fingerprint:
/// `echo.wasm@5a4b3adb383d,key=SHA256:…` (no space: Redis's `CLIENT
/// SETNAME` carries it).
pub fn worker_name(module: &Module) -> String {
    let name = format!("{}@{}", module.file_name(), module.short_hash());
    match module.signer() {
        Some(signer) => format!("{name},key={}", signer.key_id),
        None => name,
    }
}

/// An attempt running on a [`Version`]; holds the version alive.
#[derive(Debug)]
pub struct InFlight(Arc<Version>);

impl InFlight {
    /// The version the attempt runs on.
    pub fn version(&self) -> &Arc<Version> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A file that was not swapped in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The sha256 of the rejected file (empty when it could not be read).
    pub sha256: String,
    /// Why, starting with the file's path.
    pub reason: String,
    /// When.
    pub at: SystemTime,
}

/// Versions a queue keeps besides the one serving, newest first: what
/// `bullpen rollback` goes back to.
pub const KEPT_VERSIONS: usize = 4;

/// A queue's module as it is served.
#[derive(Debug)]
pub struct Serving {
    queue: String,
    path: PathBuf,
    current: RwLock<Arc<Version>>,
    history: Mutex<History>,
    /// Says when a new version serves.
    swapped: tokio::sync::watch::Sender<()>,
    /// The sha256 of the version the queue's workers fetch jobs for: the
    /// serving one once they have been replaced after a swap.
    fetching_for: Mutex<String>,
    /// Told of swaps and rejections, when the host exports metrics.
    metrics: OnceLock<QueueMetrics>,
}

#[derive(Debug, Default)]
struct History {
    /// Earlier versions, newest first, at most [`KEPT_VERSIONS`].
    previous: Vec<Arc<Version>>,
    rejected: Option<Rejection>,
}

impl Serving {
    /// `queue`'s module, bound to the file `path`, serving `module`.
    pub fn new(queue: &str, path: &Path, module: Module) -> Self {
        Serving {
            queue: queue.to_owned(),
            path: path.to_owned(),
            fetching_for: Mutex::new(module.sha256().to_owned()),
            current: RwLock::new(Version::new(module)),
            history: Mutex::default(),
            swapped: tokio::sync::watch::Sender::new(()),
            metrics: OnceLock::new(),
        }
    }

    /// From now on, the version serving, swaps and rejections are recorded
    /// in `metrics` (the first ones given, for the life of this binding).
    pub fn observe(&self, metrics: &QueueMetrics) {
        if self.metrics.set(metrics.clone()).is_ok() {
            let module = &self.current().module;
            metrics.serving(&module.file_name(), module.sha256(), None);
        }
    }

    /// Records that the queue's workers now fetch jobs for `version` only.
    pub fn fetching_for(&self, version: &Version) {
        *self.fetching_for.lock().unwrap_or_else(|e| e.into_inner()) =
            version.module.sha256().to_owned();
    }

    /// The sha256 of the version the queue's workers fetch jobs for.
    pub fn workers_on(&self) -> String {
        self.fetching_for
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A receiver that sees every swap from now on.
    pub fn swaps(&self) -> tokio::sync::watch::Receiver<()> {
        self.swapped.subscribe()
    }

    /// The version a worker of this name fetches jobs for (see
    /// [`Version::worker_name`]): the current one, or an earlier one whose
    /// workers are finishing; the current one for any other name.
    pub fn version_for(&self, worker_name: Option<&str>) -> Arc<Version> {
        let current = self.current();
        let Some(name) = worker_name else {
            return current;
        };
        if current.worker_name() == name {
            return current;
        }
        self.previous()
            .into_iter()
            .find(|v| v.worker_name() == name)
            .unwrap_or(current)
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The module file the queue is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version new attempts start on.
    pub fn current(&self) -> Arc<Version> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `module` the version new attempts start on; attempts running
    /// on the old one finish on it. Returns the old version.
    pub fn swap(&self, module: Module) -> Arc<Version> {
        let new = Version::new(module);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            new,
        );
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .previous
            .retain(|v| v.module.sha256() != old.module.sha256());
        history.previous.insert(0, old.clone());
        history.previous.truncate(KEPT_VERSIONS);
        drop(history);
        if let Some(metrics) = self.metrics.get() {
            let (now, before) = (&self.current().module, &old.module);
            metrics.serving(
                &now.file_name(),
                now.sha256(),
                Some((&before.file_name(), before.sha256())),
            );
        }
        self.swapped.send_replace(());
        old
    }

    /// Records that a file was not swapped in.
    pub fn reject(&self, sha256: &str, reason: String) {
        if let Some(metrics) = self.metrics.get() {
            metrics.deploy_rejected();
        }
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rejected = Some(Rejection {
            sha256: sha256.to_owned(),
            reason,
            at: SystemTime::now(),
        });
    }

    /// The last rejected file, if any.
    pub fn rejected(&self) -> Option<Rejection> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rejected
            .clone()
    }

    /// Earlier versions, newest first, with attempts still running on some.
    pub fn previous(&self) -> Vec<Arc<Version>> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .previous
            .clone()
    }
}

/// Every queue's [`Serving`].
#[derive(Debug, Clone)]
pub struct Registry {
    queues: BTreeMap<String, Arc<Serving>>,
}

impl Registry {
    /// Loads every queue's module. Queues that share a file share one
    /// compiled module.
    pub fn load(config: &Config, sandbox: &Sandbox) -> Result<Self, ConfigError> {
        let mut by_path: BTreeMap<PathBuf, Module> = BTreeMap::new();
        let mut queues = BTreeMap::new();
        for (name, queue) in &config.queues {
            let module = match by_path.get(&queue.module) {
                Some(module) => module.clone(),
                None => {
                    let module = sandbox
                        .load(&queue.module)
                        .map_err(|e| config.module_error(name, e))?;
                    tracing::info!(
                        queue = name,
                        module = %module.file_name(),
                        hash = module.short_hash(),
                        signer = module.signer().map(|s| s.to_string()),
                        from = module.loaded_from().as_str(),
                        "module ready in {:.1} ms",
                        module.load_time().as_secs_f64() * 1e3
                    );
                    by_path.insert(queue.module.clone(), module.clone());
                    module
                }
            };
            queues.insert(
                name.clone(),
                Arc::new(Serving::new(name, &queue.module, module)),
            );
        }
        Ok(Registry { queues })
    }

    /// A registry of these queues.
    pub fn from_servings(queues: BTreeMap<String, Arc<Serving>>) -> Self {
        Registry { queues }
    }

    /// Queue `queue`'s module as served.
    pub fn serving(&self, queue: &str) -> Option<&Arc<Serving>> {
        self.queues.get(queue)
    }

    /// Every queue's, by name.
    pub fn queues(&self) -> impl Iterator<Item = &Arc<Serving>> {
        self.queues.values()
    }
}
