//! The `bullpen run` host: Redis (the configured one, or a `redis-server` of
//! its own), the sandbox, the modules, every queue's workers, and the orderly
//! shutdown.

use crate::config::{Config, ConfigError, QueueConfig};
use crate::embedded_redis::{EmbeddedRedis, EmbeddedRedisError};
use crate::observe::metrics::Metrics;
use crate::queue::RedisTarget;
use crate::registry::watch::{self, WatchError, Watcher};
use crate::registry::{Registry, Serving, state};
use crate::sandbox::{Mask, Sandbox, SandboxError, SandboxOptions};
use crate::worker::{QueueWorker, WorkerError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration or a module is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedded Redis did not start.
    #[error(transparent)]
    Redis(#[from] EmbeddedRedisError),
    /// The wasm engine did not start.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A worker did not start.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The module directories cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The process may not open as many files as the queues need.
    #[error(
        "{path}: the queues hold about {needed} Redis connections (1 + 2 × workers per queue, \
         one more per queue a processor adds to: docs/CONFIG.md), and this process may open \
         only {limit} files; raise the limit (`ulimit -n {suggest}`, or LimitNOFILE={suggest} \
         for a systemd unit) or give the queues fewer `workers`"
    )]
    OpenFiles {
        /// The config file.
        path: String,
        /// Connections the queues hold.
        needed: u64,
        /// The open-file limit.
        limit: u64,
        /// A limit that would do.
        suggest: u64,
    },
}

/// Files the host opens besides its queues' connections: modules, the
/// compile cache, the watcher, the runtime, the listener, an embedded Redis,
/// the Relay node's two connections.
const OTHER_FILES: u64 = 64;

/// Redis connections `config`'s queues hold: each its queue handle and two
/// per crate worker (one blocking), and one per queue its processors add to.
pub fn connections_needed(config: &Config) -> u64 {
    config
        .queues
        .values()
        .map(|q| 1 + 2 * u64::from(q.workers) + q.grants.add_jobs.queues.len() as u64)
        .sum()
}

/// Outbound connections `config`'s queues may hold open together, each at
/// its `max_queue_outbound_connections` (queues without the HTTP grant
/// hold none).
fn guest_connections_wanted(config: &Config) -> u64 {
    config
        .queues
        .values()
        .filter(|q| !q.grants.http.allowed_outbound_hosts.is_empty())
        .map(|q| u64::from(q.grants.http.max_queue_outbound_connections))
        .sum()
}

/// Makes room for the files the host needs, and for its guests'
/// connections: the soft open-file limit is raised towards the hard one if
/// it is short (as servers commonly do); an error says what is needed when
/// even the hard one cannot hold the host's own. Returns the descriptors
/// left for guests' connections, once the host's own are kept: its Redis
/// connections, the listener's, and [`OTHER_FILES`]. Without this a host
/// with many queues ran out of files ~45 s into its start, naming one
/// queue; and one guest opening connections made every other queue's fail.
fn ensure_open_files(config: &Config) -> Result<u64, StartError> {
    let needed = connections_needed(config);
    let own = needed + OTHER_FILES + crate::observe::MAX_CONNECTIONS as u64;
    let wanted = own + guest_connections_wanted(config);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Ok(wanted - own);
        }
        if limit.rlim_cur < wanted && limit.rlim_max > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max.min(wanted.saturating_mul(2)),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::info!(
                    "raised the open-file limit from {} to {} for {needed} Redis connections \
                     and the guests' outbound connections",
                    limit.rlim_cur,
                    raised.rlim_cur
                );
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        if limit.rlim_cur >= own {
            return Ok(limit.rlim_cur - own);
        }
    }
    Err(StartError::OpenFiles {
        path: config.path.display().to_string(),
        needed,
        limit: limit.rlim_cur,
        suggest: wanted.next_power_of_two(),
    })
}

/// Fits the queues' `max_queue_outbound_connections` into the
/// `budget` of descriptors left for guests, each shrunk in proportion when
/// they add up to more (said once), so that no queue's guests can use up
/// another's.
fn fit_connections(config: &mut Config, budget: u64) {
    let wanted = guest_connections_wanted(config);
    if wanted <= budget {
        return;
    }
    tracing::warn!(
        "the queues' max_queue_outbound_connections add up to {wanted}, and this process may \
         open {budget} more files once the host's own are kept: each queue's is shrunk in \
         proportion (raise the open-file limit, `ulimit -n`, to keep them)"
    );
    for queue in config.queues.values_mut() {
        let http = &mut queue.grants.http;
        let fitted = u64::from(http.max_queue_outbound_connections) * budget / wanted;
        http.max_queue_outbound_connections = fitted.clamp(1, u64::from(u32::MAX)) as u32;
    }
}

/// A running host.
pub struct Host {
    config: Config,
    target: RedisTarget,
    sandbox: Arc<Sandbox>,
    /// The instance pool's size: a reload cannot grow past it.
    pool: SandboxOptions,
    registry: Registry,
    workers: BTreeMap<String, QueueWorker>,
    /// Workers of queues a reload removed, finishing their attempts.
    draining: Vec<tokio::task::JoinHandle<()>>,
    redis: Option<EmbeddedRedis>,
    /// Swaps in module files as they change; stops when dropped.
    watcher: Watcher,
    /// Keeps `<data_dir>/serving.json` up to date.
    state: tokio::task::JoinHandle<()>,
    last_reload: Option<state::ReloadState>,
    /// Where the queues record what they do, when the host exports metrics.
    metrics: Option<Arc<Metrics>>,
    /// This host's node on BullMQ's Relay, where cancels and settings come
    /// from.
    fleet: Option<crate::fleet::Fleet>,
}

/// Where Redis is for `config`: its URL; or, with none, the embedded
/// `redis-server` of a host already running on this data dir; or one started
/// now (returned, to be stopped by the caller).
pub async fn redis_for(
    config: &Config,
) -> Result<(RedisTarget, Option<EmbeddedRedis>), StartError> {
    if let Some(target) = configured_target(config) {
        return Ok((target, None));
    }
    let prefix = config.redis.prefix.clone();
    Ok(match EmbeddedRedis::running(&config.host.data_dir).await {
        Some(url) => (RedisTarget::server(url, prefix), None),
        None => {
            let redis = EmbeddedRedis::start(&config.host.data_dir, &config.path).await?;
            (RedisTarget::server(redis.url(), prefix), Some(redis))
        }
    })
}

/// The Redis `config` names (a server or a cluster); `None` when bullpen
/// runs its own.
fn configured_target(config: &Config) -> Option<RedisTarget> {
    let prefix = config.redis.prefix.clone();
    match &config.redis.url {
        Some(url) => Some(RedisTarget::server(url.clone(), prefix)),
        None if !config.redis.nodes.is_empty() => {
            Some(RedisTarget::cluster(config.redis.nodes.clone(), prefix))
        }
        None => None,
    }
}

/// Starts the embedded Redis for `bullpen run`. A client command (`add`,
/// `status`…) run while no host was up may hold the data dir for a moment
/// with a server of its own: wait for it to finish rather than fail.
async fn start_embedded(config: &Config) -> Result<EmbeddedRedis, StartError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match EmbeddedRedis::start(&config.host.data_dir, &config.path).await {
            Err(EmbeddedRedisError::InUse { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            result => return Ok(result?),
        }
    }
}

/// How often `bullpen run` tries Redis again while it does not answer.
pub const REDIS_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits, however long it takes, until Redis answers: a host started before
/// its Redis (a reboot, a deploy) takes jobs once Redis is up. Says so at
/// once, then every minute; a signal stops the wait (see `cli::run`).
/// Waits until Redis answers, saying so while it does not; a refusal that
/// waiting cannot mend (the database `[redis] url` names does not exist)
/// stops the start, naming the key.
async fn wait_for_redis(target: &RedisTarget, config: &Config) -> Result<(), StartError> {
    let mut last_said: Option<std::time::Instant> = None;
    let started = std::time::Instant::now();
    while let Err(e) = target.ping().await {
        if e.to_string().contains("DB index is out of range") {
            return Err(config
                .redis_url_error(format!(
                    "Redis refuses the database it names ({e}): its `databases` setting is lower"
                ))
                .into());
        }
        if last_said.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
            tracing::warn!("{e}; waiting for Redis, trying again every {REDIS_RETRY:?}");
            last_said = Some(std::time::Instant::now());
        }
        tokio::time::sleep(REDIS_RETRY).await;
    }
    if last_said.is_some() {
        tracing::warn!(
            "Redis at {} answers after {:.1}s; starting",
            crate::queue::redact(&target.url),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Instances alive at once for a total concurrency: a process and a
/// backoff instance per job slot, and two to spare.
fn instances_for(concurrency: u32) -> u32 {
    concurrency.saturating_mul(2).saturating_add(2)
}

/// The instance pool of a host started on `config`: room for twice its
/// total concurrency (at least 16 slots more, at most the 4,000 a config
/// may have), so that a reload can raise concurrency without a restart.
fn pool_instances(config: &Config) -> u32 {
    let total: u32 = config.queues.values().map(|q| q.concurrency).sum();
    let room = total
        .saturating_mul(2)
        .max(total + 16)
        .min(crate::config::MAX_TOTAL_CONCURRENCY.max(total));
    instances_for(room)
}

/// Every queue's secrets, which the log writer masks in every line.
fn secrets_of(config: &Config) -> Mask {
    Mask::new(config.queues.values().flat_map(|queue| {
        queue
            .grants
            .environment
            .secrets
            .values()
            .map(|s| s.expose())
    }))
}

impl Host {
    /// Starts everything `config` describes and begins taking jobs,
    /// recording what the queues do in `metrics` if given.
    pub async fn start(config: &Config, metrics: Option<Arc<Metrics>>) -> Result<Host, StartError> {
        let pool = SandboxOptions {
            max_instances: pool_instances(config),
            // Any cap a reload may set: the pool reserves the same address
            // space per memory whatever the cap.
            max_memory: SandboxOptions::default().max_memory,
            cache_dir: Some(config.host.data_dir.join("cache")),
            trust: config.host.trust.clone(),
            ..SandboxOptions::default()
        };
        let guest_connections = ensure_open_files(config)?;
        crate::sandbox::grants::set_guest_descriptors(guest_connections as usize);
        let mut config = config.clone();
        fit_connections(&mut config, guest_connections);
        let config = &config;
        crate::observe::log::mask_secrets(secrets_of(config));
        let sandbox = Arc::new(Sandbox::new(pool.clone())?);
        crate::registry::oci::refresh(config).await?;
        let registry = Registry::load(config, &sandbox)?;
        for serving in registry.queues() {
            state::keep_version(&config.host.data_dir, &serving.current().module);
        }
        state::keep_within(
            &config.host.data_dir,
            config.host.cache_size,
            registry.queues(),
        );
        let watcher = watch::start(
            &registry,
            sandbox.clone(),
            &config.host.data_dir,
            config.host.cache_size,
        )?;
        let (target, redis) = match configured_target(config) {
            Some(target) => (target, None),
            None => {
                let redis = start_embedded(config).await?;
                let target = RedisTarget::server(redis.url(), config.redis.prefix.clone());
                (target, Some(redis))
            }
        };
        wait_for_redis(&target, config).await?;
        if let Some(metrics) = &metrics {
            metrics.redis_answered();
        }
        let mut host = Host {
            config: config.clone(),
            target,
            sandbox,
            pool,
            state: state::keep_written(registry.clone(), &config.host.data_dir, None),
            registry,
            workers: BTreeMap::new(),
            draining: Vec::new(),
            redis,
            watcher,
            last_reload: None,
            metrics,
            fleet: None,
        };
        // Joined before the queues start: a queue takes no job against the
        // settings the fleet retained for it.
        host.fleet = crate::fleet::Fleet::join(&host.target).await;
        for (name, queue) in &config.queues {
            if let Err(e) = host.start_queue(name, queue).await {
                host.shutdown().await;
                return Err(e.into());
            }
        }
        Ok(host)
    }

    async fn start_queue(&mut self, name: &str, queue: &QueueConfig) -> Result<(), WorkerError> {
        let serving = self
            .registry
            .serving(name)
            .expect("the registry has every queue")
            .clone();
        let metrics = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.queue(name, queue.concurrency));
        let lane = self.sandbox.lane(name, queue.cpu_weight);
        let steering = match &self.fleet {
            Some(fleet) => fleet.steering(name).await,
            None => Default::default(),
        };
        let worker =
            QueueWorker::start(name, queue, serving, &self.target, lane, metrics, steering).await?;
        if let Some(fleet) = &self.fleet {
            fleet.serve(name, worker.control(), steering);
        }
        self.workers.insert(name.to_owned(), worker);
        tracing::info!(queue = name, concurrency = queue.concurrency, "taking jobs");
        Ok(())
    }

    /// Reads the config file again and applies it: queues added start,
    /// queues removed finish their attempts and stop, queues whose table
    /// changed finish their attempts and start again with the new one. A
    /// file that cannot be used, or that changes what needs a restart,
    /// changes nothing. The outcome is logged and written for
    /// `bullpen reload`.
    pub async fn reload(&mut self) {
        let outcome = self.apply_reload().await;
        let count = self.last_reload.as_ref().map_or(0, |r| r.count) + 1;
        match &outcome {
            Ok(what) => tracing::warn!(
                "config reloaded from {}: {what}",
                self.config.path.display()
            ),
            Err(why) => tracing::error!("config not reloaded, nothing changed: {why}"),
        }
        self.last_reload = Some(state::ReloadState {
            count,
            ok: outcome.is_ok(),
            message: outcome.unwrap_or_else(|why| why),
        });
        self.state.abort();
        self.state = state::keep_written(
            self.registry.clone(),
            &self.config.host.data_dir,
            self.last_reload.clone(),
        );
    }

    async fn apply_reload(&mut self) -> Result<String, String> {
        let mut new = Config::load(&self.config.path).map_err(|e| e.to_string())?;
        // The old queues' secrets stay masked too: their attempts may still
        // be running.
        crate::observe::log::mask_secrets(secrets_of(&self.config).union(&secrets_of(&new)));
        let guest_connections = ensure_open_files(&new).map_err(|e| e.to_string())?;
        fit_connections(&mut new, guest_connections);
        let mut restart = Vec::new();
        if new.redis != self.config.redis {
            restart.push("[redis]");
        }
        if new.host != self.config.host {
            restart.push("[host]");
        }
        if !restart.is_empty() {
            return Err(format!(
                "{}: {} changed, which only a restart applies",
                new.path.display(),
                restart.join(" and ")
            ));
        }
        let concurrency: u32 = new.queues.values().map(|q| q.concurrency).sum();
        if instances_for(concurrency) > self.pool.max_instances {
            return Err(format!(
                "{}: the queues' concurrency adds up to {concurrency}, more than the {} this host's instance pool holds; restart to apply",
                new.path.display(),
                (self.pool.max_instances - 2) / 2
            ));
        }

        // Tags resolved again; what they now name lands in the kept files,
        // which the watcher swaps in for the queues already serving them.
        let pulled = crate::registry::oci::refresh(&new)
            .await
            .map_err(|e| e.to_string())?;

        // Every module a new or rebound queue needs, loaded before anything
        // changes: one that does not load leaves everything as it is.
        let mut servings: BTreeMap<String, Arc<Serving>> = BTreeMap::new();
        for (name, queue) in &new.queues {
            let kept = self
                .registry
                .serving(name)
                .filter(|s| s.path() == queue.module);
            let serving = match kept {
                Some(serving) => serving.clone(),
                None => {
                    let module = match self.registry.queues().find(|s| s.path() == queue.module) {
                        Some(other) => other.current().module.clone(),
                        None => {
                            let sandbox = self.sandbox.clone();
                            let path = queue.module.clone();
                            tokio::task::spawn_blocking(move || sandbox.load(&path))
                                .await
                                .map_err(|e| e.to_string())?
                                .map_err(|e| new.module_error(name, e).to_string())?
                        }
                    };
                    state::keep_version(&new.host.data_dir, &module);
                    Arc::new(Serving::new(name, &queue.module, module))
                }
            };
            servings.insert(name.clone(), serving);
        }

        let mut changes = pulled;
        let grace = self.config.host.shutdown_grace;
        let mut closing = Vec::new();
        for name in self.config.queues.keys() {
            match new.queues.get(name) {
                None => {
                    if let Some(fleet) = &self.fleet {
                        fleet.forget(name);
                    }
                    let worker = self.workers.remove(name).expect("a worker per queue");
                    self.draining.push(tokio::spawn(worker.close(grace)));
                    changes.push(format!("{name} removed"));
                }
                Some(queue) if Some(queue) != self.config.queues.get(name) => {
                    if let Some(worker) = self.workers.remove(name) {
                        closing.push(worker.close(grace));
                    }
                    changes.push(format!("{name} changed"));
                }
                Some(_) => {}
            }
        }
        // A changed queue's attempts in flight finish under its old table
        // before it starts again: the instance pool holds one set of slots.
        futures::future::join_all(closing).await;
        self.registry = Registry::from_servings(servings);
        for (name, queue) in &new.queues {
            if self.workers.contains_key(name) {
                continue;
            }
            if !self.config.queues.contains_key(name) {
                changes.push(format!("{name} added"));
            }
            if let Err(e) = self.start_queue(name, queue).await {
                changes.push(format!("{name} not started: {e}"));
            }
        }
        state::keep_within(
            &new.host.data_dir,
            new.host.cache_size,
            self.registry.queues(),
        );
        self.watcher = watch::start(
            &self.registry,
            self.sandbox.clone(),
            &new.host.data_dir,
            new.host.cache_size,
        )
        .map_err(|e| e.to_string())?;
        self.draining.retain(|task| !task.is_finished());
        self.config = new;
        Ok(if changes.is_empty() {
            "nothing changed".to_owned()
        } else {
            changes.join(", ")
        })
    }

    /// The Redis the host takes jobs from.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Stops taking jobs, lets the jobs in flight finish within the grace
    /// period, and stops the embedded Redis if there is one.
    pub async fn shutdown(self) {
        if let Some(fleet) = &self.fleet {
            fleet.leave().await;
        }
        let grace = self.config.host.shutdown_grace;
        futures::future::join_all(self.workers.into_values().map(|w| w.close(grace))).await;
        futures::future::join_all(self.draining).await;
        self.state.abort();
        if let Some(redis) = self.redis {
            redis.stop().await;
        }
    }
}
