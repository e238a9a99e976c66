//! The `bullpen run` host: Redis (the configured one, or a `redis-server` of
//! its own), the sandbox, the modules, every queue's workers, and the orderly
//! shutdown.

use crate::config::{Config, ConfigError};
use crate::embedded_redis::{EmbeddedRedis, EmbeddedRedisError};
use crate::queue::RedisTarget;
use crate::registry::watch::{self, WatchError, Watcher};
use crate::registry::{Registry, state};
use std::sync::Arc;
use crate::sandbox::{Sandbox, SandboxError, SandboxOptions};
use crate::worker::{QueueWorker, WorkerError};

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
}

/// A running host.
pub struct Host {
    workers: Vec<QueueWorker>,
    redis: Option<EmbeddedRedis>,
    grace: std::time::Duration,
    /// Swaps in module files as they change; stops when dropped.
    _watcher: Watcher,
    /// Keeps `<data_dir>/serving.json` up to date.
    state: tokio::task::JoinHandle<()>,
}

/// Where Redis is for `config`: its URL; or, with none, the embedded
/// `redis-server` of a host already running on this data dir; or one started
/// now (returned, to be stopped by the caller).
pub async fn redis_for(
    config: &Config,
) -> Result<(RedisTarget, Option<EmbeddedRedis>), StartError> {
    let (url, embedded) = match &config.redis.url {
        Some(url) => (url.clone(), None),
        None => match EmbeddedRedis::running(&config.host.data_dir).await {
            Some(url) => (url, None),
            None => {
                let redis = EmbeddedRedis::start(&config.host.data_dir, &config.path).await?;
                (redis.url(), Some(redis))
            }
        },
    };
    Ok((
        RedisTarget {
            url,
            prefix: config.redis.prefix.clone(),
        },
        embedded,
    ))
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
async fn wait_for_redis(target: &RedisTarget) {
    let mut last_said: Option<std::time::Instant> = None;
    let started = std::time::Instant::now();
    while let Err(e) = target.ping().await {
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
}

impl Host {
    /// Starts everything `config` describes and begins taking jobs.
    pub async fn start(config: &Config) -> Result<Host, StartError> {
        let concurrency: u32 = config.queues.values().map(|q| q.concurrency).sum();
        let sandbox = Arc::new(Sandbox::new(SandboxOptions {
            // A process and a backoff instance may be alive per job slot.
            max_instances: concurrency.saturating_mul(2).saturating_add(2),
            max_memory: config
                .queues
                .values()
                .map(|q| q.memory.0)
                .max()
                .unwrap_or(64 << 20),
            cache_dir: Some(config.host.data_dir.join("cache")),
            ..SandboxOptions::default()
        })?);
        let registry = Registry::load(config, &sandbox)?;
        for serving in registry.queues() {
            state::keep_version(&config.host.data_dir, &serving.current().module);
        }
        let watcher = watch::start(&registry, sandbox.clone(), &config.host.data_dir)?;
        let (target, redis) = match &config.redis.url {
            Some(url) => (
                RedisTarget {
                    url: url.clone(),
                    prefix: config.redis.prefix.clone(),
                },
                None,
            ),
            None => {
                let redis = start_embedded(config).await?;
                let target = RedisTarget {
                    url: redis.url(),
                    prefix: config.redis.prefix.clone(),
                };
                (target, Some(redis))
            }
        };
        wait_for_redis(&target).await;
        let mut host = Host {
            workers: Vec::new(),
            redis,
            grace: config.host.shutdown_grace,
            _watcher: watcher,
            state: state::keep_written(registry.clone(), &config.host.data_dir),
        };
        for (name, queue) in &config.queues {
            let serving = registry
                .serving(name)
                .expect("the registry loads every queue")
                .clone();
            match QueueWorker::start(name, queue, serving, &target).await {
                Ok(worker) => host.workers.push(worker),
                Err(e) => {
                    host.shutdown().await;
                    return Err(e.into());
                }
            }
            tracing::info!(queue = name, concurrency = queue.concurrency, "taking jobs");
        }
        Ok(host)
    }

    /// Stops taking jobs, lets the jobs in flight finish within the grace
    /// period, and stops the embedded Redis if there is one.
    pub async fn shutdown(self) {
        let grace = self.grace;
        futures::future::join_all(self.workers.into_iter().map(|w| w.close(grace))).await;
        self.state.abort();
        if let Some(redis) = self.redis {
            redis.stop().await;
        }
    }
}
