//! The TOML configuration: its model, its defaults, and errors that name the
//! file, the line and the reason. Touches neither Redis nor wasm: checking
//! that each queue's module is a valid processor is the registry's job, which
//! reports through [`ConfigError::at`] so the message still points at the
//! line.
//!
//! ```
//! let config = bullpen::config::Config::parse(
//!     "bullpen.toml".as_ref(),
//!     r#"
//!         [queues.emails]
//!         module = "mailer.wasm"
//!         concurrency = 8
//!         timeout = "10s"
//!     "#,
//! )?;
//! let emails = &config.queues["emails"];
//! assert_eq!(emails.concurrency, 8);
//! assert_eq!(emails.timeout.0, std::time::Duration::from_secs(10));
//! # Ok::<(), bullpen::config::ConfigError>(())
//! ```

pub mod bounds;
mod outbound;

/// A queue's grants: each capability's keys, checked by its own unit
/// (`sandbox/grants/`).
///
/// ```
/// let config = bullpen::config::Config::parse(
///     "/etc/bullpen/bullpen.toml".as_ref(),
///     r#"
///         [queues.render]
///         module = "render.wasm"
///         files = [{ source = "/", destination = "/root-of-host" }]
///         environment = { REGION = "eu-west-1" }
///     "#,
/// )?;
/// let grants = &config.queues["render"].grants;
/// assert_eq!(grants.files[0].destination, "/root-of-host");
/// assert!(!grants.files[0].writable);
/// assert_eq!(grants.environment.environment["REGION"], "eu-west-1");
/// # Ok::<(), bullpen::config::ConfigError>(())
/// ```
pub use crate::sandbox::grants::{FileGrant, GrantFlags, GrantsConfig, Secret};
pub use outbound::OutboundHost;

use crate::sandbox::grants::{Checking, GrantsError};
use crate::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where Redis is.
    pub redis: RedisConfig,
    /// The host's own settings.
    pub host: HostConfig,
    /// The queues, by name.
    pub queues: BTreeMap<String, QueueConfig>,
    text: String,
    module_spans: BTreeMap<String, Range<usize>>,
    /// Where `[redis] url` is written, if it is.
    redis_url_span: Option<Range<usize>>,
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server's URL (`redis://host:port/db`, `rediss://…`,
    /// `unix:///path/redis.sock`). When absent, bullpen starts its own
    /// `redis-server` with its data under the data dir.
    pub url: Option<String>,
    /// The seed nodes of a Redis Cluster, instead of `url`; the rest of the
    /// cluster is found from them.
    pub nodes: Vec<String>,
    /// BullMQ's key prefix. Default `bull`, as BullMQ's. In a cluster it
    /// must hold a hash tag (`{bull}`), so that a queue's keys share a slot.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            nodes: Vec::new(),
            prefix: "bull".into(),
        }
    }
}

/// `[host]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The module directory (relative paths are relative to the config
    /// file). Default `modules`.
    pub modules: PathBuf,
    /// Compile cache and embedded Redis data (relative to the config file).
    /// Default `.bullpen`.
    pub data_dir: PathBuf,
    /// How long in-flight jobs may run after SIGINT/SIGTERM before the host
    /// exits anyway. Default 30 s.
    pub shutdown_grace: Duration,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/attempts` are served
    /// (`metrics = "ip:port"`). Default: nowhere, and no metrics recorded.
    pub metrics: Option<std::net::SocketAddr>,
    /// How `bullpen run` writes its log lines, unless `--log-format` says.
    /// Default: text.
    pub log_format: Option<LogFormat>,
    /// Bytes of compiled modules and kept versions `data_dir` holds at
    /// most; the least recently used go first, never one serving.
    /// Default 2 GiB.
    pub cache_size: u64,
    /// `trusted_keys` (OpenSSH ed25519 public keys, inline or in files)
    /// and `require_signatures`: which module signatures the host trusts,
    /// and whether it runs only modules one of them signed.
    pub trust: crate::sandbox::signature::Trust,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, the attempt's `job` span (queue, job id,
    /// attempt, module) in its `span` field.
    Json,
}

/// What a trap, timeout or memory-cap end of a processor counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCrash {
    /// An ordinary failure: retried with backoff while attempts remain.
    Retry,
    /// Unrecoverable: the job fails now.
    Fail,
}

/// `limiter = { max, duration }`: at most `max` jobs per `duration` on the
/// queue (BullMQ's rate limiter, shared by every worker of the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterConfig {
    /// Jobs per window.
    pub max: u64,
    /// The window.
    pub duration: HumanDuration,
}

/// `[queues.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The processor module's file, resolved against the module directory;
    /// for a module pulled from a registry, where the host keeps it (see
    /// [`crate::registry::oci::kept_file`]).
    pub module: PathBuf,
    /// The OCI reference the module is pulled from, when `module` is
    /// written `oci://registry/repository:tag` (or `@sha256:…`).
    pub oci: Option<oci_client::Reference>,
    /// Jobs processed at once. Default 1.
    pub concurrency: u32,
    /// How many `bullmq-official` workers take this queue's jobs, splitting
    /// `concurrency` between them. One worker fetches one job at a time, so
    /// a busy queue with high concurrency needs several to keep its jobs
    /// coming. Default: [`default_workers`].
    pub workers: u32,
    /// Wall-clock budget per attempt. Default 30 s.
    pub timeout: HumanDuration,
    /// Linear memory cap per instance. Default 64 MiB.
    pub memory: ByteSize,
    /// The queue's rate limiter, if any.
    pub limiter: Option<LimiterConfig>,
    /// How long a job's lock lasts before it must be renewed. Default 30 s.
    pub lock_duration: HumanDuration,
    /// How often stalled jobs are looked for. Default 2 s (BullMQ's is 30 s):
    /// a check only moves jobs whose lock has expired, so checking often costs
    /// one cheap script call and brings a crashed host's jobs back within
    /// `lock_duration` + about two intervals.
    pub stalled_interval: HumanDuration,
    /// Times a job may stall before it fails. Default 1.
    pub max_stalled_count: u32,
    /// What a crash counts as. Default `retry`.
    pub on_crash: OnCrash,
    /// Bytes of job-log lines and progress one attempt may write to Redis,
    /// each counted 256 bytes more than its length; the rest is dropped
    /// and counted in one job-log line. Default 1 MiB.
    pub report_budget: ByteSize,
    /// Times a job may be started (moved to active: attempts, rate-limited
    /// and delayed starts, stalls) before it fails with BullMQ's "job started
    /// more than allowable limit" (`maxStartedAttempts`). Default 10,000.
    pub max_started_attempts: u32,
    /// Largest job data (as JSON text) handed to the guest; a larger job
    /// fails as unrecoverable, saying its size. Default 16 MiB.
    pub max_data_size: ByteSize,
    /// The queue's share of the CPU while other queues are busy: its guests
    /// that compute past a millisecond take turns on this weight's part of
    /// the runtime's threads (one at least). Default 1.
    pub cpu_weight: u32,
    /// Attempts one instance runs before it is dropped, one at a time;
    /// 1 (the default) gives every attempt a fresh instance. Past 1, a job
    /// may see what an earlier job of the queue left in the instance's
    /// memory (docs/SECURITY.md).
    pub max_instance_reuse_count: u32,
    /// How long a reused instance waits for its next attempt before it is
    /// dropped. Default 10 s.
    pub idle_instance_timeout: HumanDuration,
    /// Linear memory past which a reused instance is dropped once its
    /// attempt ends. Default: half of `memory`.
    pub max_instance_memory: ByteSize,
    /// What the processor may reach: `files`, `environment`, `secrets`,
    /// `allowed_outbound_hosts` (and `max_response_size`).
    /// Default: nothing.
    pub grants: GrantsConfig,
}

/// A configuration that cannot be used. Its message names the file, the line
/// and column when it can, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.reason
            ),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    redis: RawRedis,
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    queues: BTreeMap<String, Spanned<RawQueue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<Spanned<String>>,
    nodes: Option<Spanned<Vec<Spanned<String>>>>,
    prefix: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    modules: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    shutdown_grace: Option<HumanDuration>,
    metrics: Option<Spanned<String>>,
    log_format: Option<LogFormat>,
    cache_size: Option<Spanned<ByteSize>>,
    trusted_keys: Option<Vec<Spanned<String>>>,
    require_signatures: Option<Spanned<bool>>,
}

/// The keys of a queue's table that are its own, in the order a refusal
/// lists them (the capabilities' follow).
const QUEUE_KEYS: [&str; 17] = [
    "module",
    "concurrency",
    "workers",
    "timeout",
    "memory",
    "limiter",
    "lock_duration",
    "stalled_interval",
    "max_stalled_count",
    "on_crash",
    "report_budget",
    "max_started_attempts",
    "max_data_size",
    "cpu_weight",
    "max_instance_reuse_count",
    "idle_instance_timeout",
    "max_instance_memory",
];

/// Every queue's keys, where they are written.
#[derive(Deserialize)]
struct QueueKeys {
    #[serde(default)]
    queues: BTreeMap<String, BTreeMap<Spanned<String>, serde::de::IgnoredAny>>,
}

/// The first key of a queue's table that neither the queue nor a
/// capability owns: where it is, and serde's words for it.
fn unknown_queue_keys(text: &str) -> Option<(Range<usize>, String)> {
    let keys: QueueKeys = toml::from_str(text).ok()?;
    let known: Vec<&str> = QUEUE_KEYS
        .iter()
        .copied()
        .chain(crate::sandbox::grants::keys())
        .collect();
    let unknown = keys
        .queues
        .into_values()
        .flat_map(BTreeMap::into_keys)
        .filter(|key| !known.contains(&key.get_ref().as_str()))
        .min_by_key(|key| key.span().start)?;
    let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    Some((
        unknown.span(),
        format!(
            "unknown field `{}`, expected one of {}",
            unknown.get_ref(),
            expected.join(", ")
        ),
    ))
}

/// A queue's table, its own keys; the grant keys are each capability's
/// (`sandbox::grants`), and any other key is refused
/// ([`unknown_queue_keys`]).
#[derive(Deserialize)]
struct RawQueue {
    module: Spanned<PathBuf>,
    #[serde(default = "one")]
    concurrency: Spanned<u32>,
    workers: Option<Spanned<u32>>,
    timeout: Option<Spanned<HumanDuration>>,
    memory: Option<Spanned<ByteSize>>,
    limiter: Option<Spanned<LimiterConfig>>,
    lock_duration: Option<Spanned<HumanDuration>>,
    stalled_interval: Option<Spanned<HumanDuration>>,
    max_stalled_count: Option<u32>,
    on_crash: Option<OnCrash>,
    report_budget: Option<Spanned<ByteSize>>,
    max_started_attempts: Option<Spanned<u32>>,
    max_data_size: Option<Spanned<ByteSize>>,
    cpu_weight: Option<Spanned<u32>>,
    max_instance_reuse_count: Option<Spanned<u32>>,
    idle_instance_timeout: Option<Spanned<HumanDuration>>,
    max_instance_memory: Option<Spanned<ByteSize>>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// The number of workers a queue gets when its config does not say: one
/// per 4 jobs of concurrency, at most 4. One crate worker fetches one job at
/// a time; on 2 cores, with Redis's CPU the limit, 2 workers at concurrency
/// 8 and 2 to 4 at 64 did best, each worker's connection batching fewer
/// commands per read for Redis than one (docs/BENCHMARKS.md).
///
/// ```
/// use bullpen::config::default_workers;
/// assert_eq!(default_workers(1), 1);
/// assert_eq!(default_workers(4), 1);
/// assert_eq!(default_workers(8), 2);
/// assert_eq!(default_workers(16), 4);
/// assert_eq!(default_workers(1000), 4);
/// ```
pub fn default_workers(concurrency: u32) -> u32 {
    concurrency.div_ceil(4).clamp(1, 4)
}

pub use bounds::MAX_CONCURRENCY;
/// Most jobs all queues together may run at once: each job slot reserves
/// address space for two instances in the engine's pool (about 8 GiB of it,
/// most never touched), and a process has 128 TiB.
pub const MAX_TOTAL_CONCURRENCY: u32 = 4_000;

impl Config {
    /// Reads and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            position: None,
            reason: format!("cannot read the configuration: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Checks the configuration `text`, read from `path` (which relative
    /// paths are resolved against).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            position: e.span().map(|span| line_column(text, span.start)),
            reason: e.message().trim().to_owned(),
        })?;
        if let Some((span, reason)) = unknown_queue_keys(text) {
            return Err(ConfigError {
                path: path.to_path_buf(),
                position: Some(line_column(text, span.start)),
                reason,
            });
        }
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let host = HostConfig {
            modules: resolve(raw.host.modules.unwrap_or_else(|| "modules".into())),
            // BULLPEN_DATA_DIR: a default set where the config is not
            // writable (the OCI image's /var/lib/bullpen volume).
            data_dir: resolve(
                raw.host
                    .data_dir
                    .or_else(|| std::env::var_os("BULLPEN_DATA_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| ".bullpen".into()),
            ),
            shutdown_grace: raw
                .host
                .shutdown_grace
                .map_or(Duration::from_secs(30), |d| d.0),
            metrics: None,
            log_format: raw.host.log_format,
            cache_size: bounds::CACHE_SIZE
                .read(raw.host.cache_size.clone())
                .map_err(|(span, reason)| ConfigError {
                    path: path.to_path_buf(),
                    position: Some(line_column(text, span.start)),
                    reason: format!("host: {reason}"),
                })?
                .0,
            trust: Default::default(),
        };
        let redis = RedisConfig {
            url: raw.redis.url.as_ref().map(|u| u.get_ref().clone()),
            nodes: raw
                .redis
                .nodes
                .as_ref()
                .map(|nodes| {
                    nodes
                        .get_ref()
                        .iter()
                        .map(|n| n.get_ref().clone())
                        .collect()
                })
                .unwrap_or_default(),
            prefix: raw
                .redis
                .prefix
                .as_ref()
                .map_or_else(|| "bull".into(), |p| p.get_ref().clone()),
        };
        let mut config = Config {
            path: path.to_path_buf(),
            redis,
            host,
            queues: BTreeMap::new(),
            text: text.to_owned(),
            module_spans: BTreeMap::new(),
            redis_url_span: None,
        };
        config.host.trust = config.trust(
            raw.host.trusted_keys.as_deref().unwrap_or_default(),
            raw.host.require_signatures.as_ref(),
            &resolve,
        )?;
        if let Some(metrics) = &raw.host.metrics {
            match metrics.get_ref().parse() {
                Ok(addr) => config.host.metrics = Some(addr),
                Err(_) => {
                    return Err(config.at(
                        metrics.span(),
                        format!(
                            "host.metrics: `{}` is not an address such as \"127.0.0.1:9464\" \
                             (an IP address and a port)",
                            metrics.get_ref()
                        ),
                    ));
                }
            }
        }
        if let Some(url) = &raw.redis.url {
            use redis::IntoConnectionInfo;
            let db = match url.get_ref().as_str().into_connection_info() {
                Ok(info) => info.redis_settings().db(),
                Err(e) => return Err(config.at(url.span(), format!("redis.url: {e}"))),
            };
            if !(0..=i64::from(i32::MAX)).contains(&db) {
                return Err(config.at(
                    url.span(),
                    format!(
                        "redis.url: database {db} is out of range (Redis numbers its databases \
                         from 0, up to its `databases` setting)"
                    ),
                ));
            }
            config.redis_url_span = Some(url.span());
        }
        if let Some(nodes) = &raw.redis.nodes {
            config.check_cluster(nodes, &raw.redis)?;
        }
        let mut total_concurrency: u32 = 0;
        let checking = Checking {
            resolve: &resolve,
            host_env: &|var| std::env::var(var).ok(),
        };
        let mut grants = GrantsConfig::check_file(text, &checking).map_err(|e| match e {
            GrantsError::Parse { span, reason } => ConfigError {
                path: path.to_path_buf(),
                position: span.map(|span| line_column(text, span.start)),
                reason,
            },
            GrantsError::Refused { queue, refusal } => {
                config.at(refusal.span, format!("queues.{queue}: {}", refusal.reason))
            }
        })?;
        for (name, queue) in raw.queues {
            let queue_grants = grants.remove(&name).unwrap_or_default();
            let (queue, module_span) =
                config.check_queue(&name, queue, queue_grants, &mut total_concurrency)?;
            config.module_spans.insert(name.clone(), module_span);
            config.queues.insert(name, queue);
        }
        if config.queues.is_empty() {
            return Err(config.at(
                0..0,
                "no queues: add a [queues.<name>] table with a module".into(),
            ));
        }
        Ok(config)
    }

    /// Checks queue `name`'s table, adding its concurrency to
    /// `total_concurrency`; the queue, and where its module is written.
    fn check_queue(
        &self,
        name: &str,
        queue: Spanned<RawQueue>,
        grants: GrantsConfig,
        total_concurrency: &mut u32,
    ) -> Result<(QueueConfig, Range<usize>), ConfigError> {
        let span = queue.span();
        let queue = queue.into_inner();
        let error =
            |span: Range<usize>, reason: String| self.at(span, format!("queues.{name}: {reason}"));
        if name.is_empty() || name.contains(':') {
            return Err(error(
                span,
                "a queue name must be non-empty and without `:`".into(),
            ));
        }
        let bounded = |reason: (Range<usize>, String)| error(reason.0, reason.1);
        let concurrency = bounds::CONCURRENCY
            .read(Some(queue.concurrency.clone()))
            .map_err(bounded)?;
        *total_concurrency = match total_concurrency.checked_add(concurrency) {
            Some(total) if total <= MAX_TOTAL_CONCURRENCY => total,
            _ => {
                return Err(error(
                    queue.concurrency.span(),
                    format!(
                        "the queues' concurrency adds up to more than \
                         {MAX_TOTAL_CONCURRENCY}, the most one host runs at once"
                    ),
                ));
            }
        };
        let workers = match queue.workers {
            None => default_workers(concurrency),
            Some(w) if (1..=concurrency).contains(w.get_ref()) => *w.get_ref(),
            Some(w) => {
                return Err(error(
                    w.span(),
                    format!("workers must be between 1 and concurrency ({concurrency})"),
                ));
            }
        };
        let memory = bounds::MEMORY.read(queue.memory).map_err(bounded)?;
        let timeout = bounds::TIMEOUT.read(queue.timeout).map_err(bounded)?;
        let report_budget = bounds::REPORT_BUDGET
            .read(queue.report_budget)
            .map_err(bounded)?;
        let max_data_size = bounds::MAX_DATA_SIZE
            .read(queue.max_data_size)
            .map_err(bounded)?;
        let max_started_attempts = bounds::MAX_STARTED_ATTEMPTS
            .read(queue.max_started_attempts)
            .map_err(bounded)?;
        let cpu_weight = bounds::CPU_WEIGHT.read(queue.cpu_weight).map_err(bounded)?;
        let max_instance_reuse_count = bounds::MAX_INSTANCE_REUSE_COUNT
            .read(queue.max_instance_reuse_count)
            .map_err(bounded)?;
        let idle_instance_timeout = bounds::IDLE_INSTANCE_TIMEOUT
            .read(queue.idle_instance_timeout)
            .map_err(bounded)?;
        let max_instance_memory = match queue.max_instance_memory {
            None => ByteSize(memory.0 / 2),
            Some(given) if *given.get_ref() > memory => {
                return Err(error(
                    given.span(),
                    format!("max_instance_memory must be at most the queue's memory ({memory})"),
                ));
            }
            given => bounds::MAX_INSTANCE_MEMORY.read(given).map_err(bounded)?,
        };
        let lock_duration = bounds::LOCK_DURATION
            .read(queue.lock_duration)
            .map_err(bounded)?;
        let stalled_interval = bounds::STALLED_INTERVAL
            .read(queue.stalled_interval)
            .map_err(bounded)?;
        let limiter = match queue.limiter {
            Some(l) if l.get_ref().max == 0 || l.get_ref().duration.0.is_zero() => {
                return Err(error(
                    l.span(),
                    "limiter needs max >= 1 and a duration of at least 1ms".into(),
                ));
            }
            other => other.map(Spanned::into_inner),
        };

        let module_span = queue.module.span();
        let module = queue.module.into_inner();
        let oci = match module.to_str().and_then(crate::registry::oci::parse) {
            Some(reference) => {
                Some(reference.map_err(|e| error(module_span.clone(), format!("module: {e}")))?)
            }
            None => None,
        };
        let module = match &oci {
            Some(reference) => crate::registry::oci::kept_file(&self.host.data_dir, reference),
            None if module.is_absolute() => module,
            None => self.host.modules.join(module),
        };
        Ok((
            QueueConfig {
                module,
                oci,
                concurrency,
                workers,
                timeout,
                memory,
                limiter,
                lock_duration,
                stalled_interval,
                max_stalled_count: queue.max_stalled_count.unwrap_or(1),
                on_crash: queue.on_crash.unwrap_or(OnCrash::Retry),
                report_budget,
                max_started_attempts,
                max_data_size,
                cpu_weight,
                max_instance_reuse_count,
                idle_instance_timeout,
                max_instance_memory,
                grants,
            },
            module_span,
        ))
    }

    /// `[redis] nodes`: node URLs that parse, no `url` beside them, and a
    /// prefix with a hash tag.
    fn check_cluster(
        &self,
        nodes: &Spanned<Vec<Spanned<String>>>,
        raw: &RawRedis,
    ) -> Result<(), ConfigError> {
        use redis::IntoConnectionInfo;
        if let Some(url) = &raw.url {
            return Err(self.at(
                url.span(),
                "redis: give either `url` (one server) or `nodes` (a Redis Cluster), not both"
                    .into(),
            ));
        }
        if nodes.get_ref().is_empty() {
            return Err(self.at(
                nodes.span(),
                "redis.nodes: list at least one node of the cluster, e.g. [\"redis://10.0.0.1:7000\"]"
                    .into(),
            ));
        }
        for node in nodes.get_ref() {
            if let Err(e) = node.get_ref().as_str().into_connection_info() {
                return Err(self.at(
                    node.span(),
                    format!("redis.nodes: `{}`: {e}", node.get_ref()),
                ));
            }
        }
        if hash_tag(&self.redis.prefix).is_none() {
            let span = raw.prefix.as_ref().map_or(nodes.span(), |p| p.span());
            return Err(self.at(
                span,
                format!(
                    "redis.prefix: `{}` has no hash tag: in a Redis Cluster all of a queue's keys \
                     must be in one slot, so the prefix must hold one, e.g. \"{{{}}}\" (and your \
                     producers must use the same prefix)",
                    self.redis.prefix,
                    if self.redis.prefix.is_empty() {
                        "bull"
                    } else {
                        &self.redis.prefix
                    }
                ),
            ));
        }
        Ok(())
    }

    /// The file's text, as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// An error about `[redis] url`, at its line (Redis refused what it
    /// names).
    pub fn redis_url_error(&self, reason: String) -> ConfigError {
        self.at(
            self.redis_url_span.clone().unwrap_or(0..0),
            format!("redis.url: {reason}"),
        )
    }

    /// An error about the text at `span` of this file.
    pub fn at(&self, span: Range<usize>, reason: String) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            position: (span != (0..0)).then(|| line_column(&self.text, span.start)),
            reason,
        }
    }

    /// Queue `name`'s table, or an error naming the file and the queues it
    /// has.
    pub fn queue(&self, name: &str) -> Result<&QueueConfig, ConfigError> {
        self.queues.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.queues.keys().map(String::as_str).collect();
            ConfigError {
                path: self.path.clone(),
                position: None,
                reason: format!("no queue named `{name}` (configured: {})", known.join(", ")),
            }
        })
    }

    /// `[host] trusted_keys` and `require_signatures`, each key read and
    /// checked: an entry is a key (`ssh-ed25519 AAAA… comment`) or a file
    /// of keys, one per line.
    fn trust(
        &self,
        entries: &[Spanned<String>],
        required: Option<&Spanned<bool>>,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<crate::sandbox::signature::Trust, ConfigError> {
        use crate::sandbox::signature::{Trust, TrustedKey};
        let mut keys = Vec::new();
        for entry in entries {
            let error = |reason: String| {
                self.at(
                    entry.span(),
                    format!("host.trusted_keys: {}: {reason}", entry.get_ref()),
                )
            };
            let text = entry.get_ref();
            if text.starts_with("ssh-") {
                keys.push(TrustedKey::parse(text).map_err(error)?);
                continue;
            }
            let file = resolve(PathBuf::from(text));
            let read = std::fs::read_to_string(&file)
                .map_err(|e| error(format!("cannot read {}: {e}", file.display())))?;
            let found = TrustedKey::parse_all(&read)
                .map_err(|(line, reason)| error(format!("line {line}: {reason}")))?;
            if found.is_empty() {
                return Err(error("no key in it".into()));
            }
            keys.extend(found);
        }
        if let Some(required) = required.filter(|r| *r.get_ref() && keys.is_empty()) {
            return Err(self.at(
                required.span(),
                "host.require_signatures: no key to check them with: list the signers' public keys in trusted_keys".into(),
            ));
        }
        Ok(Trust {
            keys,
            required: required.is_some_and(|r| *r.get_ref()),
        })
    }

    /// An error about queue `queue`'s `module` value.
    pub fn module_error(&self, queue: &str, reason: impl fmt::Display) -> ConfigError {
        let span = self.module_spans.get(queue).cloned().unwrap_or(0..0);
        self.at(span, format!("queues.{queue}.module: {reason}"))
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The hash tag Redis Cluster would hash for a key starting with `prefix`:
/// what is between the first `{` and the next `}`, if not empty.
pub fn hash_tag(prefix: &str) -> Option<&str> {
    let open = prefix.find('{')?;
    let close = prefix[open + 1..].find('}')? + open + 1;
    (close > open + 1).then(|| &prefix[open + 1..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("/etc/bullpen/bullpen.toml".as_ref(), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_cluster_is_its_nodes_and_a_hash_tagged_prefix() {
        let q = "[queues.q]\nmodule = \"a.wasm\"\n";
        let config = parse(&format!(
            "[redis]\nnodes = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\nprefix = \"{{bull}}\"\n{q}"
        ))
        .unwrap();
        assert_eq!(
            config.redis.nodes,
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        assert_eq!(config.redis.url, None);
        assert_eq!(
            error(&format!(
                "[redis]\nnodes = [\"redis://10.0.0.1:7000\"]\n{q}"
            )),
            "/etc/bullpen/bullpen.toml:2:9: redis.prefix: `bull` has no hash tag: in a Redis \
             Cluster all of a queue's keys must be in one slot, so the prefix must hold one, \
             e.g. \"{bull}\" (and your producers must use the same prefix)"
        );
        assert!(
            error(&format!(
                "[redis]\nnodes = [\"redis://10.0.0.1:7000\"]\nprefix = \"bull{{}}\"\n{q}"
            ))
            .starts_with("/etc/bullpen/bullpen.toml:3:10: redis.prefix: `bull{}` has no hash tag"),
        );
        assert_eq!(
            error(&format!("[redis]\nnodes = []\nprefix = \"{{b}}\"\n{q}")),
            "/etc/bullpen/bullpen.toml:2:9: redis.nodes: list at least one node of the cluster, \
             e.g. [\"redis://10.0.0.1:7000\"]"
        );
        assert!(
            error(&format!(
                "[redis]\nurl = \"redis://a:1\"\nnodes = [\"redis://b:1\"]\nprefix = \"{{b}}\"\n{q}"
            ))
            .starts_with("/etc/bullpen/bullpen.toml:2:7: redis: give either `url`"),
        );
        assert!(
            error(&format!(
                "[redis]\nnodes = [\"redis://b:1\", \"nope://x\"]\nprefix = \"{{b}}\"\n{q}"
            ))
            .starts_with("/etc/bullpen/bullpen.toml:2:25: redis.nodes: `nope://x`: "),
        );
        assert_eq!(hash_tag("{bull}"), Some("bull"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("{}x"), None);
        assert_eq!(hash_tag("bull"), None);
    }

    #[test]
    fn defaults() {
        let config = parse("[queues.q]\nmodule = \"echo.wasm\"\n").unwrap();
        assert_eq!(config.redis, RedisConfig::default());
        assert_eq!(config.host.modules, Path::new("/etc/bullpen/modules"));
        assert_eq!(config.host.data_dir, Path::new("/etc/bullpen/.bullpen"));
        let q = &config.queues["q"];
        assert_eq!(q.module, Path::new("/etc/bullpen/modules/echo.wasm"));
        assert_eq!(q.concurrency, 1);
        assert_eq!(q.workers, 1);
        assert_eq!(q.timeout.0, Duration::from_secs(30));
        assert_eq!(q.memory, ByteSize(64 << 20));
        assert_eq!(q.lock_duration.0, Duration::from_secs(30));
        assert_eq!(q.max_stalled_count, 1);
        assert_eq!(q.stalled_interval.0, Duration::from_secs(2));
        assert_eq!(q.on_crash, OnCrash::Retry);
        assert_eq!(q.limiter, None);
    }

    #[test]
    fn every_key() {
        let config = parse(
            r#"
[redis]
url = "redis://127.0.0.1:7000"
prefix = "jobs"

[host]
modules = "/srv/modules"
data_dir = "/var/lib/bullpen"
shutdown_grace = "5s"

[queues.thumbs]
module = "thumbnail.wasm"
concurrency = 8
timeout = "2m"
memory = "128MiB"
limiter = { max = 10, duration = "1s" }
lock_duration = "10s"
stalled_interval = "5s"
max_stalled_count = 3
on_crash = "fail"
"#,
        )
        .unwrap();
        assert_eq!(config.redis.url.as_deref(), Some("redis://127.0.0.1:7000"));
        assert_eq!(config.host.shutdown_grace, Duration::from_secs(5));
        let q = &config.queues["thumbs"];
        assert_eq!(q.module, Path::new("/srv/modules/thumbnail.wasm"));
        assert_eq!(q.memory, ByteSize(128 << 20));
        assert_eq!(q.limiter.unwrap().max, 10);
        assert_eq!(q.on_crash, OnCrash::Fail);
        assert_eq!(q.stalled_interval.0, Duration::from_secs(5));
    }

    #[test]
    fn the_metrics_address_is_checked_with_its_line() {
        let config = Config::parse(
            "/etc/bullpen/bullpen.toml".as_ref(),
            "[host]\nmetrics = \"127.0.0.1:9464\"\n[queues.q]\nmodule = \"a.wasm\"\n",
        )
        .unwrap();
        assert_eq!(config.host.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            error("[host]\nmetrics = \"localhost\"\n[queues.q]\nmodule = \"a.wasm\"\n"),
            "/etc/bullpen/bullpen.toml:2:11: host.metrics: `localhost` is not an address such as \"127.0.0.1:9464\" (an IP address and a port)"
        );
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let q = "[queues.q]\nmodule = \"a.wasm\"\n";
        let config = parse(&format!("[host]\nlog_format = \"json\"\n{q}")).unwrap();
        assert_eq!(config.host.log_format, Some(LogFormat::Json));
        assert_eq!(parse(q).unwrap().host.log_format, None);
        let refused = error(&format!("[host]\nlog_format = \"xml\"\n{q}"));
        assert!(
            refused.starts_with(
                "/etc/bullpen/bullpen.toml:2:14: unknown variant `xml`, expected `text` or `json`"
            ),
            "{refused}"
        );
    }

    #[test]
    fn instance_reuse_is_off_by_default_and_its_memory_within_the_cap() {
        let q = "[queues.q]\nmodule = \"a.wasm\"\nmemory = \"64MiB\"\n";
        let config = parse(q).unwrap();
        let queue = &config.queues["q"];
        assert_eq!(queue.max_instance_reuse_count, 1);
        assert_eq!(queue.idle_instance_timeout.0, Duration::from_secs(10));
        assert_eq!(queue.max_instance_memory, ByteSize(32 << 20));
        let reusing = parse(&format!(
            "{q}max_instance_reuse_count = 500\nidle_instance_timeout = \"2s\"\nmax_instance_memory = \"48MiB\"\n"
        ))
        .unwrap();
        let queue = &reusing.queues["q"];
        assert_eq!(queue.max_instance_reuse_count, 500);
        assert_eq!(queue.idle_instance_timeout.0, Duration::from_secs(2));
        assert_eq!(queue.max_instance_memory, ByteSize(48 << 20));
        assert_eq!(
            error(&format!("{q}max_instance_memory = \"65MiB\"\n")),
            "/etc/bullpen/bullpen.toml:4:23: queues.q: max_instance_memory must be at most the queue's memory (64 MiB)"
        );
        assert_eq!(
            error(&format!("{q}max_instance_reuse_count = 0\n")),
            "/etc/bullpen/bullpen.toml:4:28: queues.q: max_instance_reuse_count must be at least 1"
        );
    }

    #[test]
    fn unknown_keys_name_the_line() {
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nconcurency = 4\n"),
            "/etc/bullpen/bullpen.toml:3:1: unknown field `concurency`, expected one of `module`, `concurrency`, `workers`, `timeout`, `memory`, `limiter`, `lock_duration`, `stalled_interval`, `max_stalled_count`, `on_crash`, `report_budget`, `max_started_attempts`, `max_data_size`, `cpu_weight`, `max_instance_reuse_count`, `idle_instance_timeout`, `max_instance_memory`, `files`, `environment`, `secrets`, `allowed_outbound_hosts`, `max_response_size`, `max_outbound_connections`, `max_queue_outbound_connections`, `add_to_queues`, `max_added_jobs`, `max_added_size`, `max_adds_per_second`, `max_target_depth`"
        );
    }

    #[test]
    fn bad_values_name_the_line_and_reason() {
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\ntimeout = \"30\"\n"),
            "/etc/bullpen/bullpen.toml:3:11: `30` is not a duration: the unit is missing: write ms, s, m or h, e.g. 30s"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nmemory = \"1KiB\"\n"),
            "/etc/bullpen/bullpen.toml:3:10: queues.q: memory must be between 2 MiB and 4 GiB"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nconcurrency = 0\n"),
            "/etc/bullpen/bullpen.toml:3:15: queues.q: concurrency must be between 1 and 1000"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nconcurrency = 2\nworkers = 3\n"),
            "/etc/bullpen/bullpen.toml:4:11: queues.q: workers must be between 1 and concurrency (2)"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\non_crash = \"ignore\"\n"),
            "/etc/bullpen/bullpen.toml:3:12: unknown variant `ignore`, expected `retry` or `fail`"
        );
        assert!(error("[queues.q]\n").contains("missing field `module`"));
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nlimiter = { max = 0, duration = \"1s\" }\n"),
            "/etc/bullpen/bullpen.toml:3:11: queues.q: limiter needs max >= 1 and a duration of at least 1ms"
        );
    }

    #[test]
    fn limits_and_sums_are_checked_where_they_are_written() {
        let two = |c: &str| {
            format!(
                "[queues.a]\nmodule = \"a.wasm\"\nconcurrency = {c}\n\
                 [queues.b]\nmodule = \"b.wasm\"\nconcurrency = {c}\n"
            )
        };
        // 2^31 twice wrapped to 0 in a u32 sum once.
        assert_eq!(
            error(&two("2147483648")),
            "/etc/bullpen/bullpen.toml:3:15: queues.a: concurrency must be between 1 and 1000"
        );
        let many: String = (0..5)
            .map(|i| format!("[queues.q{i}]\nmodule = \"a.wasm\"\nconcurrency = 1000\n"))
            .collect();
        assert_eq!(
            error(&many),
            "/etc/bullpen/bullpen.toml:15:15: queues.q4: the queues' concurrency adds up to more than 4000, the most one host runs at once"
        );
        assert_eq!(
            error("[redis]\nurl = \"redis://[::1\"\n[queues.q]\nmodule = \"a.wasm\"\n"),
            "/etc/bullpen/bullpen.toml:2:7: redis.url: Redis URL did not parse - InvalidClientConfig"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\ntimeout = \"0s\"\n"),
            "/etc/bullpen/bullpen.toml:3:11: queues.q: timeout must be at least 1ms"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\ntimeout = \"3000000000000h\"\n"),
            "/etc/bullpen/bullpen.toml:3:11: `3000000000000h` is not a duration: too large: at most 365 days"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nreport_budget = \"2GiB\"\n"),
            "/etc/bullpen/bullpen.toml:3:17: queues.q: report_budget must be between 1 KiB and 1 GiB"
        );
        assert_eq!(
            error("[queues.q]\nmodule = \"a.wasm\"\nmax_started_attempts = 0\n"),
            "/etc/bullpen/bullpen.toml:3:24: queues.q: max_started_attempts must be at least 1"
        );
        let q = &parse("[queues.q]\nmodule = \"a.wasm\"\nreport_budget = \"64KiB\"\n")
            .unwrap()
            .queues["q"];
        assert_eq!(
            (q.report_budget, q.max_started_attempts),
            (ByteSize(64 << 10), 10_000)
        );
    }

    #[test]
    fn broken_toml_and_no_queues() {
        assert!(error("[queues.q\n").starts_with("/etc/bullpen/bullpen.toml:1:"));
        assert_eq!(
            error(""),
            "/etc/bullpen/bullpen.toml: no queues: add a [queues.<name>] table with a module"
        );
    }

    #[test]
    fn module_errors_point_at_the_module_line() {
        let config = parse("\n[queues.q]\nmodule = \"gone.wasm\"\n").unwrap();
        assert_eq!(
            config.module_error("q", "cannot read").to_string(),
            "/etc/bullpen/bullpen.toml:3:10: queues.q.module: cannot read"
        );
    }
}
