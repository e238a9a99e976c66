//! bullpen's Prometheus metrics: the families, and the per-queue handles
//! the job path records into.
//!
//! Everything a queue records goes through a [`QueueMetrics`] made once
//! when the queue starts, holding its own counters, gauges and histograms:
//! recording is an atomic add, never a label lookup or a lock. Queue depth
//! is read from Redis by a task of its own ([`super::depth`]), never on the
//! job path.

use super::costs::{AttemptCost, Costs};
use super::histogram::Histogram;
use super::process::ProcessCollector;
use crate::sandbox::Budget;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How an attempt ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job completed.
    Completed,
    /// It failed and will be retried (after its backoff).
    Retried,
    /// It failed with no attempts left (or its backoff gave up).
    Failed,
    /// It failed for good at once (`unrecoverable`, or a crash with
    /// `on_crash = "fail"`, or data that cannot be given to the guest).
    Unrecoverable,
    /// The guest gave the job back on a rate limit.
    RateLimited,
    /// The guest delayed the job.
    Delayed,
    /// The job waits for its children.
    WaitingChildren,
    /// The run's lock was lost (an outage or stall longer than
    /// `lock_duration`): its outcome was not written.
    Discarded,
    /// A cancel stopped it (`bullpen cancel`, the Relay's
    /// `jobs.<queue>.cancel`).
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Completed,
        Outcome::Retried,
        Outcome::Failed,
        Outcome::Unrecoverable,
        Outcome::RateLimited,
        Outcome::Delayed,
        Outcome::WaitingChildren,
        Outcome::Discarded,
        Outcome::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Unrecoverable => "unrecoverable",
            Outcome::RateLimited => "rate_limited",
            Outcome::Delayed => "delayed",
            Outcome::WaitingChildren => "waiting_children",
            Outcome::Discarded => "discarded",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The crash kinds, as [`crate::sandbox::Crash::kind`] names them.
const CRASH_KINDS: [&str; 7] = [
    "timeout",
    "memory-limit",
    "stack-overflow",
    "panic",
    "trap",
    "invalid-return-value",
    "instantiate",
];

/// Attempt durations, in seconds: 100 µs to 5 minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Instantiation times, in seconds: 10 µs to 1 s.
const INSTANTIATE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1.0,
];

/// Peak linear memory, in bytes: 64 KiB (one wasm page) to 4 GiB, ×4.
const MEMORY_BUCKETS: &[f64] = &[
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// How many finished attempts each queue keeps for `bullpen jobs`.
const COSTS_KEPT: usize = 1024;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrashLabels {
    queue: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    queue: String,
    instance: &'static str,
}

/// The `instance` labels of `bullpen_attempt_instances_total`: an attempt
/// ran in a fresh instance, or in one an earlier attempt of its queue ran
/// in (`max_instance_reuse_count`).
const INSTANCE_KINDS: [&str; 2] = ["fresh", "reused"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    queue: String,
    budget: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabels {
    queue: String,
    file: String,
    sha256: String,
}

/// Makes a family's histograms with these bounds.
#[derive(Debug, Clone, Copy)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0)
    }
}

type HistogramFamily = Family<QueueLabel, Histogram, Buckets>;

fn histograms(bounds: &'static [f64]) -> HistogramFamily {
    Family::new_with_constructor(Buckets(bounds))
}

/// Every metric the host exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    attempts: Family<OutcomeLabels, Counter>,
    crashes: Family<CrashLabels, Counter>,
    budget_hits: Family<BudgetLabels, Counter>,
    instances: Family<InstanceLabels, Counter>,
    duration: HistogramFamily,
    instantiate: HistogramFamily,
    peak_memory: HistogramFamily,
    cpu: HistogramFamily,
    in_flight: Family<QueueLabel, Gauge>,
    concurrency: Family<QueueLabel, Gauge>,
    jobs: Family<StateLabels, Gauge>,
    module: Family<ModuleLabels, Gauge>,
    deploys: Family<QueueLabel, Counter>,
    rejected_deploys: Family<QueueLabel, Counter>,
    redis_errors: Family<QueueLabel, Counter>,
    redis: RedisHealth,
    /// Connections to this listener closed to make room for newer ones.
    listener_evictions: Counter,
    costs: Mutex<HashMap<String, Arc<Costs>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Whether Redis answers, as the host last saw it.
#[derive(Debug, Clone, Default)]
struct RedisHealth {
    connected: Gauge,
    reconnects: Counter,
    /// Whether it ever answered: the first answer is no reconnect.
    answered_once: Arc<AtomicBool>,
}

impl RedisHealth {
    fn answered(&self) {
        if self.connected.set(1) == 0 && self.answered_once.swap(true, Ordering::Relaxed) {
            self.reconnects.inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered, with none of their series yet.
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::default(),
            attempts: Family::default(),
            crashes: Family::default(),
            budget_hits: Family::default(),
            instances: Family::default(),
            duration: histograms(DURATION_BUCKETS),
            instantiate: histograms(INSTANTIATE_BUCKETS),
            peak_memory: histograms(MEMORY_BUCKETS),
            cpu: histograms(DURATION_BUCKETS),
            in_flight: Family::default(),
            concurrency: Family::default(),
            jobs: Family::default(),
            module: Family::default(),
            deploys: Family::default(),
            rejected_deploys: Family::default(),
            redis_errors: Family::default(),
            redis: RedisHealth::default(),
            listener_evictions: Counter::default(),
            costs: Mutex::default(),
        };
        // The registry encodes clones: they share their series with the
        // families kept beside it.
        let registry = &mut metrics.registry;
        registry.register(
            "bullpen_attempts",
            "Attempts ended, by how they ended",
            metrics.attempts.clone(),
        );
        registry.register(
            "bullpen_crashes",
            "Attempts whose guest crashed, by kind (timeout, memory-limit, …)",
            metrics.crashes.clone(),
        );
        registry.register(
            "bullpen_budget_hits",
            "Times a budget of what queues share held a guest back or refused it, by budget \
             (cpu-turn, attempt-connections, file-bytes, add-rate, log-lines, …)",
            metrics.budget_hits.clone(),
        );
        registry.register(
            "bullpen_attempt_instances",
            "Attempts the guest ran, by instance: fresh, or reused from an earlier attempt of the \
             queue (max_instance_reuse_count)",
            metrics.instances.clone(),
        );
        registry.register(
            "bullpen_attempt_duration_seconds",
            "Wall time of an attempt in its sandbox, instantiation included",
            metrics.duration.clone(),
        );
        registry.register(
            "bullpen_instantiate_duration_seconds",
            "Time to set up an attempt's sandbox and instantiate its module",
            metrics.instantiate.clone(),
        );
        registry.register(
            "bullpen_attempt_peak_memory_bytes",
            "The most linear memory an attempt's guest held at once",
            metrics.peak_memory.clone(),
        );
        registry.register(
            "bullpen_attempt_cpu_seconds",
            "CPU time an attempt spent: its guest, and the host's work for it in the sandbox",
            metrics.cpu.clone(),
        );
        registry.register(
            "bullpen_attempts_in_flight",
            "Attempts running now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "bullpen_concurrency",
            "The queue's configured concurrency on this host",
            metrics.concurrency.clone(),
        );
        registry.register(
            "bullpen_queue_jobs",
            "Jobs in the queue by state, read from Redis every few seconds (all hosts' jobs)",
            metrics.jobs.clone(),
        );
        registry.register(
            "bullpen_module_info",
            "The module version a queue serves: 1 for the serving one",
            metrics.module.clone(),
        );
        registry.register(
            "bullpen_deploys",
            "Module versions swapped in while running",
            metrics.deploys.clone(),
        );
        registry.register(
            "bullpen_rejected_deploys",
            "Module files that changed but were not swapped in (broken, not a processor)",
            metrics.rejected_deploys.clone(),
        );
        registry.register(
            "bullpen_listener_evictions",
            "Connections to the metrics listener closed, oldest first, to make room for a new \
             one once it held its most",
            metrics.listener_evictions.clone(),
        );
        registry.register(
            "bullpen_redis_errors",
            "Redis commands of the host's own that failed",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "bullpen_redis_connected",
            "1 while Redis answers the host, 0 from its last error until it answers again",
            metrics.redis.connected.clone(),
        );
        registry.register(
            "bullpen_redis_reconnects",
            "Times Redis answered again after an error",
            metrics.redis.reconnects.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::default()));
        metrics
    }

    /// The handles queue `name` records into, every series created (at
    /// zero) so that rates exist from the start.
    pub fn queue(&self, name: &str, concurrency: u32) -> QueueMetrics {
        let queue = QueueLabel {
            queue: name.to_owned(),
        };
        self.concurrency
            .get_or_create(&queue)
            .set(i64::from(concurrency));
        let costs = self
            .costs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Costs::new(COSTS_KEPT)))
            .clone();
        QueueMetrics {
            attempts: Outcome::ALL.map(|outcome| {
                self.attempts.get_or_create_owned(&OutcomeLabels {
                    queue: name.to_owned(),
                    outcome: outcome.as_str(),
                })
            }),
            crashes: CRASH_KINDS.map(|kind| {
                self.crashes.get_or_create_owned(&CrashLabels {
                    queue: name.to_owned(),
                    kind,
                })
            }),
            budget_hits: BudgetHits(Arc::new(Budget::ALL.map(|budget| {
                self.budget_hits.get_or_create_owned(&BudgetLabels {
                    queue: name.to_owned(),
                    budget: budget.as_str(),
                })
            }))),
            instances: INSTANCE_KINDS.map(|instance| {
                self.instances.get_or_create_owned(&InstanceLabels {
                    queue: name.to_owned(),
                    instance,
                })
            }),
            duration: self.duration.get_or_create_owned(&queue),
            instantiate: self.instantiate.get_or_create_owned(&queue),
            peak_memory: self.peak_memory.get_or_create_owned(&queue),
            cpu: self.cpu.get_or_create_owned(&queue),
            in_flight: self.in_flight.get_or_create_owned(&queue),
            deploys: self.deploys.get_or_create_owned(&queue),
            rejected_deploys: self.rejected_deploys.get_or_create_owned(&queue),
            redis_errors: self.redis_errors.get_or_create_owned(&queue),
            depth: self.jobs.clone(),
            module: self.module.clone(),
            redis: self.redis.clone(),
            costs,
            name: name.into(),
        }
    }

    /// Redis answered the host.
    pub fn redis_answered(&self) {
        self.redis.answered();
    }

    /// A connection to the listener was closed to make room for a new one.
    pub fn listener_evicted(&self) {
        self.listener_evictions.inc();
    }

    /// The text a scrape gets, in Prometheus's text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Queue `name`'s last finished attempts, newest first.
    pub fn costs(&self, name: &str) -> Option<Vec<AttemptCost>> {
        let costs = self
            .costs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()?;
        Some(costs.newest_first())
    }
}

/// One queue's handles: cheap to clone, each record an atomic operation.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    name: Arc<str>,
    attempts: [Counter; Outcome::ALL.len()],
    crashes: [Counter; CRASH_KINDS.len()],
    budget_hits: BudgetHits,
    instances: [Counter; INSTANCE_KINDS.len()],
    duration: Histogram,
    instantiate: Histogram,
    peak_memory: Histogram,
    cpu: Histogram,
    in_flight: Gauge,
    deploys: Counter,
    rejected_deploys: Counter,
    redis_errors: Counter,
    depth: Family<StateLabels, Gauge>,
    module: Family<ModuleLabels, Gauge>,
    redis: RedisHealth,
    costs: Arc<Costs>,
}

/// What an attempt cost, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    /// Its wall time in the sandbox.
    pub wall: Duration,
    /// Of which setting up the store and instantiating.
    pub instantiate: Duration,
    /// The most linear memory it held.
    pub peak_memory: u64,
    /// The CPU time it spent.
    pub cpu: Option<Duration>,
    /// Attempts its instance had run before it (0: a fresh instance).
    pub reused: u32,
}

impl QueueMetrics {
    /// An attempt starts; it is in flight until the guard drops.
    pub fn started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Attempt `attempt` (`attemptsMade + 1`) of job `job_id` ended so.
    pub fn ended(&self, job_id: &str, attempt: u32, outcome: Outcome, spent: Option<Spent>) {
        self.attempts[Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is listed")]
        .inc();
        if let Some(spent) = spent {
            self.instances[usize::from(spent.reused > 0)].inc();
            self.duration.observe(spent.wall.as_secs_f64());
            self.instantiate.observe(spent.instantiate.as_secs_f64());
            self.peak_memory.observe(spent.peak_memory as f64);
            if let Some(cpu) = spent.cpu {
                self.cpu.observe(cpu.as_secs_f64());
            }
        }
        self.costs.record(AttemptCost {
            job_id: job_id.to_owned(),
            attempt,
            outcome: outcome.as_str().to_owned(),
            duration_ms: spent.map(|s| s.wall.as_secs_f64() * 1e3),
            peak_memory: spent.map(|s| s.peak_memory),
            cpu_ms: spent.and_then(|s| s.cpu).map(|cpu| cpu.as_secs_f64() * 1e3),
            reused: spent.map(|s| s.reused),
            finished_at: crate::timer::now_ms(),
        });
    }

    /// The guest crashed (`kind` as [`crate::sandbox::Crash::kind`]).
    pub fn crashed(&self, kind: &str) {
        if let Some(i) = CRASH_KINDS.iter().position(|k| *k == kind) {
            self.crashes[i].inc();
        }
    }

    /// Where the queue's attempts count their budget hits: one handle for
    /// all of them (an attempt clones it, not the whole of this).
    pub fn budget_hits(&self) -> BudgetHits {
        self.budget_hits.clone()
    }

    /// A Redis command of the queue failed.
    pub fn redis_error(&self) {
        self.redis_errors.inc();
        self.redis.connected.set(0);
    }

    /// Redis answered the queue.
    pub fn redis_answered(&self) {
        self.redis.answered();
    }

    /// The queue's job counts by state, just read.
    pub fn depth(&self, counts: &[(&'static str, u64)]) {
        for &(state, count) in counts {
            self.depth
                .get_or_create(&StateLabels {
                    queue: self.name.to_string(),
                    state,
                })
                .set(count.min(i64::MAX as u64) as i64);
        }
    }

    /// The queue now serves `file` with this sha256; `old` is the version
    /// it served before, if any (a deploy).
    pub fn serving(&self, file: &str, sha256: &str, old: Option<(&str, &str)>) {
        if let Some((file, sha256)) = old {
            self.module.remove(&self.module_labels(file, sha256));
            self.deploys.inc();
        }
        self.module
            .get_or_create(&self.module_labels(file, sha256))
            .set(1);
    }

    fn module_labels(&self, file: &str, sha256: &str) -> ModuleLabels {
        ModuleLabels {
            queue: self.name.to_string(),
            file: file.to_owned(),
            sha256: sha256.to_owned(),
        }
    }

    /// A changed module file was not swapped in.
    pub fn deploy_rejected(&self) {
        self.rejected_deploys.inc();
    }
}

/// A queue's `bullpen_budget_hits_total` series, one per budget.
#[derive(Debug, Clone)]
pub struct BudgetHits(Arc<[Counter; Budget::ALL.len()]>);

impl BudgetHits {
    /// A budget of what queues share held one of the queue's guests back
    /// or refused it.
    pub fn hit(&self, budget: Budget) {
        self.0[budget.index()].inc();
    }
}

/// An attempt in flight: counted until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
