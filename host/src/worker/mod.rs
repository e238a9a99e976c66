//! A queue's `bullmq-official` `Worker`s, set up from the queue's config,
//! whose processor runs each attempt in the sandbox ([`attempt`]); and their
//! shutdown. Does not parse TOML.
//!
//! A crate worker fetches one job at a time through one connection, which
//! caps a busy queue below what Redis and the sandbox can do; so a queue
//! gets `workers` of them, each with its share of the queue's concurrency.

mod attempt;
mod job_requests;
mod limiter;
mod lock;

use crate::config::QueueConfig;
use crate::observe::depth;
use crate::observe::metrics::QueueMetrics;
use crate::queue::RedisTarget;
use crate::registry::Serving;
use crate::sandbox::{CallOptions, Instances, Lane, Reuse};
use attempt::Attempts;
use bullmq::worker::{CancellationToken, WorkerEvent};
use bullmq::{Job, RateLimiterOptions, Worker, WorkerOptions};
use futures::FutureExt;
use limiter::Limiter;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The running workers of one queue.
pub struct QueueWorker {
    name: String,
    crew: Arc<Crew>,
    /// Replaces the crew when a new module version serves.
    rotation: tokio::task::JoinHandle<()>,
    wake: bullmq::Queue,
    attempts: Arc<Attempts>,
    /// Reads the queue's job counts for the metrics.
    depth: Option<tokio::task::JoinHandle<()>>,
}

/// What the fleet's settings say of a queue (`workers.<queue>.settings` on
/// BullMQ's Relay, as BullMQ's "controlling workers" example publishes
/// them). The queue's `concurrency` in the config is the ceiling: the
/// instance pool and the connections were sized for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steering {
    /// The queue's concurrency, if the fleet sets one: at least its
    /// `workers` (one job each), at most its configured concurrency.
    pub concurrency: Option<u32>,
    /// Whether the queue's workers stop fetching (jobs in flight finish).
    pub paused: bool,
}

/// What the fleet can do to a queue on this host: stop a run of one of its
/// jobs (a cancel), steer its workers (settings).
#[derive(Clone)]
pub struct QueueControl(Arc<Attempts>);

impl QueueControl {
    /// Stops this host's run of job `id` at once, if one runs here: the job
    /// fails for good with `cancelled: <reason>`, or, with `retry`, fails
    /// and is retried as any failure is. Whether a run was stopped.
    pub fn cancel(&self, id: &str, reason: &str, retry: bool) -> bool {
        self.0.cancel(id, reason.to_owned(), retry)
    }

    /// Applies `steering` to the queue's workers now, and to those a new
    /// module version brings later.
    pub fn steer(&self, steering: Steering) {
        self.0.crew.steer(steering);
    }
}

/// The crate's workers taking a queue's jobs, all named after the module
/// version they fetch for (BullMQ writes the name into each job as
/// `processedBy`), and the ones of earlier versions still finishing.
struct Crew {
    workers: std::sync::Mutex<Vec<Arc<Worker>>>,
    events: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    retiring: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    limiter: Limiter,
    /// Workers without a limiter, paused at the first rate limit until
    /// workers with one replace them: steering must not resume them.
    held_by_limiter: std::sync::Mutex<Vec<Arc<Worker>>>,
    /// The queue's configured concurrency: the ceiling of any steering.
    configured: u32,
    steering: std::sync::Mutex<Steering>,
}

impl Crew {
    fn new(limiter: Limiter, configured: u32, steering: Steering) -> Self {
        Crew {
            workers: Default::default(),
            events: Default::default(),
            retiring: Default::default(),
            limiter,
            held_by_limiter: Default::default(),
            configured,
            steering: std::sync::Mutex::new(steering),
        }
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Worker>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn steering(&self) -> Steering {
        *self.steering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The concurrency the workers share now.
    fn concurrency(&self) -> u32 {
        self.steering()
            .concurrency
            .map_or(self.configured, |c| c.clamp(1, self.configured))
    }

    /// A rate limit is in force: the first time, the workers without a
    /// limiter stop fetching at once (before the rate-limited job is back in
    /// the queue, or they would take it again) and workers with one replace
    /// them.
    fn rate_limited(&self) {
        if self.limiter.engage() {
            let workers = self.workers();
            for worker in workers.iter() {
                worker.pause();
            }
            self.held().extend(workers.iter().cloned());
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Worker>>> {
        self.held_by_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The workers with a limiter could not be started: the ones without
    /// fetch again, as the steering says.
    fn limiter_refused(&self) {
        self.limiter.disengage();
        self.held().clear();
        let workers = self.workers();
        self.shape(&workers);
    }

    /// `old` workers were replaced and retire.
    fn replaced(&self, old: &[Arc<Worker>]) {
        self.held()
            .retain(|held| !old.iter().any(|worker| Arc::ptr_eq(held, worker)));
    }

    /// Applies `steering` to the workers fetching now.
    fn steer(&self, steering: Steering) {
        *self.steering.lock().unwrap_or_else(|e| e.into_inner()) = steering;
        let workers = self.workers();
        self.shape(&workers);
        tracing::info!(
            concurrency = self.concurrency(),
            paused = steering.paused,
            "the fleet's settings apply"
        );
    }

    /// Gives `workers` their share of the concurrency, and pauses or
    /// resumes them as the steering says.
    fn shape(&self, workers: &[Arc<Worker>]) {
        let steering = self.steering();
        let held = self.held();
        let mut share = shares(self.concurrency(), workers.len() as u32);
        for worker in workers {
            // Fewer jobs than workers: one each.
            worker.set_concurrency(share.next().unwrap_or(1));
            if steering.paused {
                worker.pause();
            } else if !held.iter().any(|h| Arc::ptr_eq(h, worker)) {
                worker.resume();
            }
        }
    }
}

/// `concurrency` split as evenly as can be between `workers`.
fn shares(concurrency: u32, workers: u32) -> impl Iterator<Item = usize> {
    let workers = workers.clamp(1, concurrency.max(1));
    (0..workers)
        .map(move |i| (concurrency / workers + u32::from(i < concurrency % workers)) as usize)
}

/// A worker that could not start.
#[derive(Debug, thiserror::Error)]
#[error("queue {queue}: cannot start its worker: {reason}")]
pub struct WorkerError {
    /// The queue.
    pub queue: String,
    /// Why.
    pub reason: String,
}

/// The options the crate's `Worker` gets for a queue.
pub fn worker_options(config: &QueueConfig, target: &RedisTarget) -> WorkerOptions {
    let mut options = WorkerOptions::new();
    options.connection = target.connection();
    options.prefix = target.prefix.clone();
    options.concurrency = config.concurrency as usize;
    options.lock_duration = config.lock_duration.0.as_millis() as u64;
    // The crate's stalled-check timer and the `stalled-check` key share one
    // period and race, so only every other tick checks: halve the period to
    // check at the configured rate.
    options.stalled_interval = (config.stalled_interval.0.as_millis() as u64 / 2).max(1);
    options.max_stalled_count = config.max_stalled_count;
    options.limiter = configured_limiter(config);
    // Only reached for failures whose retry the crate may do itself (see
    // `attempt`): those are immediate by our decision.
    options.backoff_strategy = Some(Arc::new(|_, _, _, _| Box::pin(async { 0 })));
    // An idle worker's blocking wait for a job marker, in seconds: each
    // time it ends, a fetch script runs. New jobs, the markers a close writes
    // and due delayed jobs (the crate waits for those on their own) end it
    // sooner; BullMQ's default.
    options.drain_delay = DRAIN_DELAY_SECS;
    // The crate's fetch loop sleeps this long after any Redis error (15 s by
    // default): after an outage, fetching resumes within this of Redis
    // coming back.
    options.run_retry_delay = RUN_RETRY_DELAY.as_millis() as u64;
    options.max_started_attempts = Some(config.max_started_attempts);
    options
}

/// The queue's `limiter`, in the crate's terms.
fn configured_limiter(config: &QueueConfig) -> Option<RateLimiterOptions> {
    config.limiter.map(|l| RateLimiterOptions {
        max: l.max,
        duration: l.duration.0.as_millis() as u64,
    })
}

/// How often a queue whose workers have no limiter looks for a rate limit
/// set by another host.
const RATE_LIMIT_POLL: Duration = Duration::from_secs(1);

/// An idle worker's blocking wait for a job marker (BullMQ's `drainDelay`).
const DRAIN_DELAY_SECS: u64 = 5;

/// How long a worker waits after a failed fetch before trying again.
pub const RUN_RETRY_DELAY: Duration = Duration::from_millis(250);

impl QueueWorker {
    /// Starts taking jobs from queue `name` and running them with the
    /// module `serving` serves, taking CPU turns in `lane`; recording in
    /// `metrics`, if given.
    pub async fn start(
        name: &str,
        config: &QueueConfig,
        serving: Arc<Serving>,
        target: &RedisTarget,
        lane: Arc<Lane>,
        metrics: Option<QueueMetrics>,
        steering: Steering,
    ) -> Result<Self, WorkerError> {
        let error = |reason: String| WorkerError {
            queue: name.to_owned(),
            reason,
        };
        let queue = target.queue(name).await.map_err(|e| error(e.to_string()))?;
        let crew = Arc::new(Crew::new(
            Limiter::new(configured_limiter(config)),
            config.concurrency,
            steering,
        ));
        if let Some(metrics) = &metrics {
            serving.observe(metrics);
        }
        let depth = metrics
            .as_ref()
            .map(|metrics| depth::poll(queue.clone(), metrics.clone()));
        let attempts = Arc::new(Attempts {
            queue: queue.clone(),
            crew: crew.clone(),
            serving,
            call_options: CallOptions {
                timeout: config.timeout.0,
                memory: config.memory.0,
                reports: config.report_budget.0,
                grants: crate::sandbox::grants::Grants::from_config(&config.grants),
                // Counted for the metrics only: two clock reads per poll.
                cpu_time: metrics.is_some(),
                lane: Some(lane),
                instances: (config.max_instance_reuse_count > 1).then(|| {
                    Instances::new(
                        Reuse {
                            max_count: config.max_instance_reuse_count,
                            idle_timeout: config.idle_instance_timeout.0,
                            max_memory: config.max_instance_memory.0,
                        },
                        config.concurrency,
                    )
                }),
                queue_prefix: Arc::from(target.prefix.as_str()),
                ..CallOptions::default()
            },
            on_crash: config.on_crash,
            delay_bounded: Default::default(),
            runs: Default::default(),
            trouble: lock::Trouble::new(metrics.clone()),
            lock: config.lock_duration.0,
            max_data_size: config.max_data_size.0,
            targets: Arc::new(job_requests::AddTargets::new(
                target.clone(),
                &config.grants.add_jobs,
            )),
            metrics,
        });
        let processing = attempts.clone();
        let processor = move |job: Job, _cancel: CancellationToken| {
            let attempts = processing.clone();
            async move {
                let id = job.id().to_owned();
                // A panic in our own code must not leave the job active with
                // its lock renewed forever (the crate never catches it).
                guard_panics(attempts.queue.name(), &id, attempts.run(job)).await
            }
        };
        // Workers are started for a version, and again for each version
        // that serves after it; the old ones then finish their jobs (within
        // the attempt's time budget) and close.
        let hire = {
            let (name, config, target) = (name.to_owned(), config.clone(), target.clone());
            let (crew, attempts) = (crew.clone(), attempts.clone());
            move |worker_name: String| {
                let (name, config, target) = (name.clone(), config.clone(), target.clone());
                let (crew, attempts, processor) =
                    (crew.clone(), attempts.clone(), processor.clone());
                async move {
                    let mut hired = Vec::new();
                    for share in shares(crew.concurrency(), config.workers) {
                        let mut options = worker_options(&config, &target);
                        options.concurrency = share;
                        options.limiter = crew.limiter.options();
                        options.name = Some(worker_name.clone());
                        // Paused before it runs, when the fleet says so: a
                        // running worker may fetch before a pause is seen.
                        options.autorun = false;
                        let worker = Worker::with_options(&name, processor.clone(), options)
                            .await
                            .map_err(|e| e.to_string())?;
                        if crew.steering().paused {
                            worker.pause();
                        }
                        worker.run().await.map_err(|e| e.to_string())?;
                        let worker = Arc::new(worker);
                        crew.events
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(tokio::spawn(drain_events(
                                name.clone(),
                                worker.clone(),
                                attempts.clone(),
                            )));
                        hired.push(worker);
                    }
                    Ok::<_, String>(std::mem::replace(&mut *crew.workers(), hired))
                }
            }
        };
        let serving = attempts.serving.clone();
        let mut swaps = serving.swaps();
        let first = hire(serving.current().worker_name().to_owned()).await;
        let retire_after = config.timeout.0 + Duration::from_secs(5);
        let rotation = {
            let (crew, wake, queue_name) = (crew.clone(), queue.clone(), name.to_owned());
            tokio::spawn(async move {
                let mut poll = tokio::time::interval(RATE_LIMIT_POLL);
                poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let for_limiter = tokio::select! {
                        changed = swaps.changed() => match changed {
                            Ok(()) => false,
                            Err(_) => break,
                        },
                        () = crew.limiter.wanted() => true,
                        _ = poll.tick(), if !crew.limiter.engaged() => {
                            if limiter::in_force(&wake).await {
                                crew.rate_limited();
                            }
                            continue;
                        }
                    };
                    let why = if for_limiter {
                        "a rate limit"
                    } else {
                        "the new version"
                    };
                    let version = serving.current();
                    let worker_name = version.worker_name().to_owned();
                    match hire(worker_name.clone()).await {
                        Ok(old) => {
                            // From here only the new workers fetch: a job
                            // added now runs on the new version.
                            for worker in &old {
                                worker.pause();
                            }
                            crew.replaced(&old);
                            serving.fetching_for(&version);
                            tracing::debug!(
                                queue = queue_name,
                                worker = worker_name,
                                limiter = crew.limiter.engaged(),
                                "workers started for {why}"
                            );
                            let wake = wake.clone();
                            crew.retiring
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(tokio::spawn(async move {
                                    close_workers(&old, retire_after, &wake).await;
                                }));
                        }
                        Err(e) => {
                            tracing::error!(
                                queue = queue_name,
                                "cannot start workers for {why}; the old ones keep fetching: {e}"
                            );
                            if for_limiter {
                                crew.limiter_refused();
                            }
                        }
                    }
                }
            })
        };
        let running = QueueWorker {
            name: name.to_owned(),
            crew,
            rotation,
            wake: queue,
            attempts,
            depth,
        };
        if let Err(e) = first {
            running.close(Duration::ZERO).await;
            return Err(error(e));
        }
        Ok(running)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the fleet can do to this queue here.
    pub fn control(&self) -> QueueControl {
        QueueControl(self.attempts.clone())
    }

    /// Stops taking jobs and waits up to `grace` for the jobs in flight. A job
    /// still running at the deadline keeps its lock until it expires; then the
    /// stalled checker of any worker gives it back to the queue.
    pub async fn close(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.rotation.abort();
        if let Some(depth) = &self.depth {
            depth.abort();
        }
        let workers = std::mem::take(&mut *self.crew.workers());
        let retiring =
            std::mem::take(&mut *self.crew.retiring.lock().unwrap_or_else(|e| e.into_inner()));
        close_workers(&workers, grace, &self.wake).await;
        let _ = tokio::time::timeout_at(deadline, futures::future::join_all(retiring)).await;
        for events in
            std::mem::take(&mut *self.crew.events.lock().unwrap_or_else(|e| e.into_inner()))
        {
            events.abort();
        }
        let abandoned = self.attempts.running();
        if !abandoned.is_empty() {
            tracing::warn!(
                queue = self.name,
                "{} job(s) still running at the end of the shutdown grace are left to the \
                 stalled checker: their locks expire within lock_duration, then any host puts \
                 them back in the queue: {}",
                abandoned.len(),
                abandoned.join(", ")
            );
        }
    }
}

/// Closes `workers`, waiting up to `grace` for their jobs in flight.
async fn close_workers(workers: &[Arc<Worker>], grace: Duration, queue: &bullmq::Queue) {
    let closing: Vec<_> = workers
        .iter()
        .map(|worker| {
            let worker = worker.clone();
            tokio::spawn(async move { worker.close(grace.as_millis() as u64).await })
        })
        .collect();
    // The crate's idle fetch loop sleeps in a blocking pop on the marker
    // key and does not notice `close` until it times out; a marker per
    // worker wakes them (other hosts' workers that wake too find nothing
    // and sleep again).
    tokio::time::sleep(Duration::from_millis(5)).await;
    wake(queue, workers.len()).await;
    for result in futures::future::join_all(closing).await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(queue = queue.name(), "closing the worker: {e}"),
            Err(e) => tracing::warn!(queue = queue.name(), "closing the worker: {e}"),
        }
    }
}

/// Adds `count` markers: each blocking pop takes one.
async fn wake(queue: &bullmq::Queue, count: usize) {
    let marker = queue.keys().marker();
    let mut connection = queue.connection().connection();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(&marker);
    for i in 0..count {
        // "0" is BullMQ's own base marker; the others are ours, and a fetch
        // loop treats any member as a wake-up.
        zadd.arg(0).arg(if i == 0 {
            "0".to_owned()
        } else {
            format!("bullpen-wake-{i}")
        });
    }
    let result = zadd.query_async::<()>(&mut connection).await;
    if let Err(e) = result {
        tracing::debug!(queue = queue.name(), "cannot wake the worker: {e}");
    }
}

/// Runs a processor future, turning a panic into a failed attempt.
///
/// The crate does not catch a panic in the processor: the job would stay
/// active with its lock renewed forever, and `close` would wait out its whole
/// timeout. A panic in bullpen's own code is a bug, but it must cost one
/// attempt, not the job.
pub async fn guard_panics(
    queue: &str,
    job_id: &str,
    attempt: impl std::future::Future<Output = Result<serde_json::Value, bullmq::Error>>,
) -> Result<serde_json::Value, bullmq::Error> {
    match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic_text(&panic);
            tracing::error!(queue, job = job_id, "panic while running the job: {what}");
            Err(bullmq::Error::ProcessingError(format!(
                "bullpen panicked while running the job: {what}"
            )))
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// How long the event reader rests after a batch of events.
const EVENTS_REST: Duration = Duration::from_millis(10);

/// Reads the worker's event channel, which is unbounded: unread, it grows by
/// one event per job forever.
async fn drain_events(queue: String, worker: Arc<Worker>, attempts: Arc<Attempts>) {
    in_batches(
        || worker.next_event(),
        |event| {
            match &event {
                // The crate's own Redis errors: attempts running now check
                // their lock before their outcome is written.
                WorkerEvent::Error(_) => attempts.trouble.saw(),
                // A failure the crate may have made without running the
                // processor, and so without a stack trace.
                WorkerEvent::Failed { job_id, .. } => {
                    tokio::spawn(attempts.clone().backfill_stack(job_id.clone()));
                }
                _ => {}
            }
            log_event(&queue, event)
        },
    )
    .await;
}

/// Takes items from `next` until it ends or `take` returns `false`.
///
/// A reader that waits on every item of a worker's events is woken twice a
/// job (`active`, `completed`), and each wake-up hands work to another runtime
/// thread. So this waits for one item, takes what else is already there
/// without waiting, then rests: a busy queue costs one wake-up per
/// [`EVENTS_REST`], and an event's log line comes at most that late.
async fn in_batches<T, F: Future<Output = Option<T>>>(
    mut next: impl FnMut() -> F,
    mut take: impl FnMut(T) -> bool,
) {
    while let Some(first) = next().await {
        let mut item = Some(first);
        while let Some(current) = item {
            if !take(current) {
                return;
            }
            // A waker of no one: the rest below must not be cut short. And no
            // task budget, which would end the batch after 128 items while
            // the channel fills faster than that per rest.
            let mut nobody = Context::from_waker(Waker::noop());
            let ready = tokio::task::coop::unconstrained(next());
            item = match std::pin::pin!(ready).poll(&mut nobody) {
                Poll::Ready(next) => next,
                Poll::Pending => None,
            };
        }
        tokio::time::sleep(EVENTS_REST).await;
    }
}

/// Logs one worker event; `false` once the worker has closed.
fn log_event(queue: &str, event: WorkerEvent) -> bool {
    match event {
        WorkerEvent::Error(e) => tracing::warn!(queue, "worker: {e}"),
        WorkerEvent::Stalled { job_id } => {
            tracing::warn!(queue, job = job_id, "job stalled; back to wait")
        }
        WorkerEvent::Failed { job_id, error } => {
            tracing::info!(queue, job = job_id, "failed: {error}")
        }
        WorkerEvent::Completed { job_id, .. } => {
            tracing::debug!(queue, job = job_id, "completed")
        }
        WorkerEvent::Closed => return false,
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    /// A channel holding `items`, its receiver shared the way the crate
    /// shares a worker's event receiver.
    fn sent(
        items: std::ops::Range<i32>,
    ) -> (
        UnboundedSender<i32>,
        tokio::sync::Mutex<UnboundedReceiver<i32>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for i in items {
            tx.send(i).unwrap();
        }
        (tx, tokio::sync::Mutex::new(rx))
    }

    #[tokio::test]
    async fn a_batch_takes_everything_already_sent() {
        let (_tx, rx) = sent(0..1000);
        let mut taken = Vec::new();
        let reading = in_batches(
            || async { rx.lock().await.recv().await },
            |i| {
                taken.push(i);
                true
            },
        );
        // One batch, then the rest: the 1000 are all taken before it ends.
        let _ = tokio::time::timeout(EVENTS_REST / 2, reading).await;
        assert_eq!(taken.len(), 1000, "taken in the first batch");
        assert!(taken.iter().copied().eq(0..1000));
    }

    #[tokio::test]
    async fn reading_stops_when_told_or_when_the_channel_ends() {
        let (tx, rx) = sent(0..10);
        let mut taken = Vec::new();
        in_batches(
            || async { rx.lock().await.recv().await },
            |i| {
                taken.push(i);
                i < 3
            },
        )
        .await;
        assert_eq!(taken, [0, 1, 2, 3]);

        drop(tx);
        let mut rest = 0;
        in_batches(
            || async { rx.lock().await.recv().await },
            |_| {
                rest += 1;
                true
            },
        )
        .await;
        assert_eq!(rest, 6);
    }
}
