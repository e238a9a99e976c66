//! Instances kept between attempts, for the queues that opt in
//! (`max_instance_reuse_count`): one instance runs up to that many
//! attempts of one queue and one module version, one at a time, the way
//! BullMQ's sandboxes keep their child process and Fastly's, Spin's and
//! `wasmtime serve`'s reusable instances keep theirs. Nothing is reset
//! between attempts (a job may see what an earlier job of its queue left
//! in memory); everything an attempt is given is its own (its time, its
//! reports, its job and what it may add, the gate), through a [`Relay`]
//! that the instance's imports hold instead of the attempt's observer.
//!
//! An instance is dropped after its count of attempts, after any crash
//! (a trap, a timeout, the memory cap, a bad answer), when its memory has
//! grown past a threshold, when it has been idle too long, and when the
//! queue serves another version.

use super::bindings::{Instance, Level};
use super::job_api::{AddJob, ChildrenSoFar, JobApi};
use super::output::CapturePipe;
use super::report::{Ignore, JobObserver};
use super::state::JobState;
use super::{Budget, Module};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// When a queue's instances are dropped: what `max_instance_reuse_count`,
/// `idle_instance_timeout` and `max_instance_memory` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Attempts one instance runs, the first included (1: a fresh instance
    /// for every attempt).
    pub max_count: u32,
    /// How long an instance waits for its next attempt before it is
    /// dropped.
    pub idle_timeout: Duration,
    /// Linear memory past which an instance is dropped once its attempt
    /// ends, in bytes.
    pub max_memory: u64,
}

/// A queue's instances that wait for their next attempt: at most its
/// concurrency, all of the version its last attempt asked for.
pub struct Instances {
    reuse: Reuse,
    capacity: usize,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// The sha256 of the version the last attempt ran: the only one kept.
    version: String,
    waiting: Vec<Warm>,
    /// Whether a task drops the instances that waited too long.
    reaping: bool,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("reuse", &self.reuse)
            .field("idle", &self.idle())
            .finish_non_exhaustive()
    }
}

/// One pool is one queue's: two are equal only if they are the same.
impl PartialEq for Instances {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Instances {}

/// An instance between two attempts, with the store it lives in.
pub(crate) struct Warm {
    pub store: Store<JobState>,
    pub instance: Instance,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
    /// What its imports report to: the attempt it serves.
    pub relay: Arc<Relay>,
    /// The module version it is an instance of.
    pub version: String,
    /// Attempts it has run.
    pub runs: u32,
    idle_since: Instant,
}

impl Warm {
    /// `instance`, which has just run its `runs`th attempt of `module`.
    pub fn new(
        store: Store<JobState>,
        instance: Instance,
        pipes: (CapturePipe, CapturePipe),
        relay: Arc<Relay>,
        module: &Module,
        runs: u32,
    ) -> Self {
        Warm {
            store,
            instance,
            stdout: pipes.0,
            stderr: pipes.1,
            relay,
            version: module.sha256().to_owned(),
            runs,
            idle_since: Instant::now(),
        }
    }
}

impl Instances {
    /// A queue's pool: at most `capacity` instances wait (its concurrency).
    pub fn new(reuse: Reuse, capacity: u32) -> Arc<Self> {
        Arc::new(Instances {
            reuse,
            capacity: capacity.max(1) as usize,
            idle: Mutex::default(),
        })
    }

    /// What drops the queue's instances.
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// Instances waiting now.
    pub fn idle(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A waiting instance of `module`, the one used last (its pages are
    /// the likeliest to be in the cache). Instances of any other version
    /// are dropped: the queue has moved on.
    pub(crate) fn take(&self, module: &Module) -> Option<Warm> {
        let mut idle = self.lock();
        let dropped = if idle.version != module.sha256() {
            idle.version = module.sha256().to_owned();
            std::mem::take(&mut idle.waiting)
        } else {
            Vec::new()
        };
        let warm = idle.waiting.pop();
        drop(idle);
        // Dropped outside the lock: a store's teardown resets its slot.
        drop(dropped);
        warm
    }

    /// Keeps `warm` for a next attempt unless it has run its count, holds
    /// too much memory, is of a version the queue no longer runs, or the
    /// pool is full.
    pub(crate) fn give_back(self: &Arc<Self>, warm: Warm) {
        let memory = warm.store.data().limiter.in_use();
        if warm.runs >= self.reuse.max_count || memory > self.reuse.max_memory {
            return;
        }
        let mut idle = self.lock();
        if warm.version != idle.version || idle.waiting.len() >= self.capacity {
            drop(idle);
            return;
        }
        idle.waiting.push(warm);
        if !idle.reaping {
            idle.reaping = true;
            tokio::spawn(reap(Arc::downgrade(self), self.reuse.idle_timeout));
        }
    }
}

/// Drops the instances of `pool` that wait longer than `timeout`, as long
/// as any wait.
async fn reap(pool: Weak<Instances>, timeout: Duration) {
    // Checked a few times per timeout: an instance lives at most a quarter
    // of it longer.
    let every = (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.lock();
        let (expired, kept) = std::mem::take(&mut idle.waiting)
            .into_iter()
            .partition(|warm| warm.idle_since.elapsed() >= timeout);
        idle.waiting = kept;
        let done = idle.waiting.is_empty();
        if done {
            idle.reaping = false;
        }
        drop(idle);
        drop::<Vec<Warm>>(expired);
        if done {
            return;
        }
    }
}

/// What an instance's imports report to: the observer of the attempt it
/// runs, and nothing between attempts. Anything the guest keeps from one
/// attempt to the next (an open file's stream, a request in flight) holds
/// this, never an attempt's own observer, so an attempt ends when it ends
/// and nothing it is given reaches the next one.
pub(crate) struct Relay {
    attempt: RwLock<Arc<dyn JobObserver>>,
}

impl Relay {
    /// A relay to nothing yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Relay {
            attempt: RwLock::new(Arc::new(Ignore)),
        })
    }

    /// From now on, reports go to `observer` (the attempt's, gated).
    pub fn serve(&self, observer: Arc<dyn JobObserver>) {
        *self.attempt.write().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// The attempt ended: reports go nowhere until the next one.
    pub fn end(&self) {
        self.serve(Arc::new(Ignore));
    }

    fn now(&self) -> Arc<dyn JobObserver> {
        self.attempt
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl JobApi for Relay {
    fn add(&self, job: AddJob) -> BoxFuture<'_, Result<String, String>> {
        let attempt = self.now();
        Box::pin(async move { attempt.add(job).await })
    }

    fn update_data(&self, data: Value) -> BoxFuture<'_, Result<(), String>> {
        let attempt = self.now();
        Box::pin(async move { attempt.update_data(data).await })
    }

    fn children(&self) -> BoxFuture<'_, Result<ChildrenSoFar, String>> {
        let attempt = self.now();
        Box::pin(async move { attempt.children().await })
    }

    fn move_to_waiting_children(&self) -> BoxFuture<'_, Result<bool, String>> {
        let attempt = self.now();
        Box::pin(async move { attempt.move_to_waiting_children().await })
    }
}

impl JobObserver for Relay {
    fn log(&self, level: Level, message: &str) {
        self.now().log(level, message);
    }

    fn progress(&self, json: &str) {
        self.now().progress(json);
    }

    fn add_log(&self, line: &str) {
        self.now().add_log(line);
    }

    fn over_budget(&self, budget: Budget) {
        self.now().over_budget(budget);
    }
}
