//! What a queue grants its processor, one unit per capability, each with
//! the same life cycle (as Spin's factors): its part of the queue's config
//! is checked at start (`config::grants`), made into a unit here once, and
//! applied to every attempt's WASI context. The attempt path applies
//! whatever units the queue has, with no branch per capability; a queue
//! with no grants has no units and costs what it did before grants.
//!
//! The imports the units serve (`wasi:cli/environment`,
//! `wasi:filesystem`, `wasi:http/outgoing-handler`, `bullpen:processor/jobs`)
//! are linked for every module once, by the sandbox: without a grant they
//! answer with nothing (no variables, no preopens, every request denied, no
//! queue to add jobs to).

//! What a queue grants its processor: one unit per capability, each with
//! the whole life cycle of Spin's factors in its own file:
//!
//! 1. its keys in a queue's table (Spin's names), as written ([`Capability::Raw`]);
//! 2. their check at start, with the line of what is refused
//!    ([`Capability::check`]), the same for `bullpen exec`'s flags
//!    ([`Capability::add_flags`]);
//! 3. the imports it serves, linked once per engine ([`Capability::link`]);
//! 4. what it adds to each attempt's store ([`Grant::apply`]).
//!
//! The attempt path applies whatever units a queue has, with no branch per
//! capability; a queue with no grants has no units and costs what it did
//! before grants. A new capability is a file here and one line in
//! the `capabilities!` list below (and its docs).
//!
//! Imports every module needs whatever its grants (`wasi:cli`,
//! `wasi:filesystem`, the contract's `jobs`) are linked by the sandbox:
//! without a grant they answer with nothing (no variables, no preopens, no
//! queue to add jobs to).

mod add_jobs;
mod env;
mod files;
mod http;
mod quota;

pub use add_jobs::AddJobs;
pub use env::{Environment, EnvironmentConfig, Secret};
pub use files::{Directories, FileGrant};
pub use http::{HttpConfig, Outbound, OutboundHttp, is_non_public};
pub use quota::{FileQuotas, MAX_OPEN_FILES, Quota, QuotaStore};

use super::job_api::Jobs;
use super::mask::Mask;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtxBuilder;

/// Descriptors all guests together may hold (outbound connections, open
/// files): what the host leaves them ([`set_guest_descriptors`]).
static GUEST_DESCRIPTORS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> =
    std::sync::OnceLock::new();

/// All guests' descriptors when the host has not said (`bullpen exec`,
/// tests).
const DEFAULT_GUEST_DESCRIPTORS: usize = 1024;

/// Sets how many descriptors all guests together may hold open (outbound
/// connections, open files): those the process may open less those the
/// host keeps for itself (its Redis connections, the listener, modules).
/// The first call wins.
pub fn set_guest_descriptors(descriptors: usize) {
    let _ = GUEST_DESCRIPTORS.set(Arc::new(tokio::sync::Semaphore::new(descriptors)));
}

fn guest_descriptors() -> &'static Arc<tokio::sync::Semaphore> {
    GUEST_DESCRIPTORS
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(DEFAULT_GUEST_DESCRIPTORS)))
}

/// One kind of grant, with its life cycle.
pub trait Capability: Grant + Sized + 'static {
    /// Its keys in a queue's table, as the docs list them.
    const KEYS: &'static [&'static str];
    /// The `bullpen exec` flag that grants it (named in that flag's
    /// refusals).
    const FLAG: &'static str;
    /// Its keys, as a queue's table writes them (all optional).
    type Raw: DeserializeOwned + Default;
    /// Its keys, checked: what the queue grants.
    type Config: Clone + std::fmt::Debug + PartialEq + Eq + Default;

    /// Checks its keys of one queue's table.
    fn check(raw: Self::Raw, cx: &Checking<'_>) -> Result<Self::Config, Refusal>;

    /// Adds `bullpen exec`'s flags for it to its keys.
    fn add_flags(raw: &mut Self::Raw, flags: &GrantFlags) -> Result<(), String> {
        let _ = (raw, flags);
        Ok(())
    }

    /// The unit for a queue's checked keys; `None` when they grant nothing.
    fn unit(config: &Self::Config) -> Option<Self>;

    /// Links the imports it serves, once per engine.
    fn link<S: GrantedStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
        let _ = linker;
        Ok(())
    }
}

/// What an attempt's store gives the imports the capabilities serve (the
/// sandbox's `JobState`).
pub trait GrantedStore: wasmtime_wasi_http::WasiHttpView + QuotaStore + Send + 'static {}

/// What a check may consult.
pub struct Checking<'a> {
    /// Makes a path from the config absolute (relative to the file).
    pub resolve: &'a dyn Fn(PathBuf) -> PathBuf,
    /// Reads the host's environment (secrets' sources).
    pub host_env: &'a dyn Fn(&str) -> Option<String>,
}

/// Keys that cannot be granted: where they are written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where, in the config file's text (`0..0` outside a file).
    pub span: Range<usize>,
    /// Why, starting with the key.
    pub reason: String,
}

impl Refusal {
    pub(crate) fn at(span: Range<usize>, reason: String) -> Self {
        Refusal { span, reason }
    }
}

/// A key out of its [`Bound`](crate::config::bounds::Bound): where, and why.
impl From<(Range<usize>, String)> for Refusal {
    fn from((span, reason): (Range<usize>, String)) -> Self {
        Refusal::at(span, reason)
    }
}

/// `bullpen exec`'s grant flags, as given.
#[derive(Debug, Clone, Default)]
pub struct GrantFlags {
    /// `--env NAME=VALUE`.
    pub env: Vec<String>,
    /// `--dir SRC:DST[:rw]`.
    pub dirs: Vec<String>,
    /// `--allow-host SCHEME://HOST[:PORT]`.
    pub allow_hosts: Vec<String>,
}

/// A value given outside a file: nowhere to point at.
pub(crate) fn unplaced<T>(value: T) -> toml::Spanned<T> {
    toml::Spanned::new(0..0, value)
}

/// A config file's queues, as one capability reads them (its keys only).
#[derive(Deserialize)]
struct Queues<R> {
    #[serde(default = "BTreeMap::new")]
    queues: BTreeMap<String, R>,
}

/// Why a file's grants cannot be given.
#[derive(Debug)]
pub enum GrantsError {
    /// A key does not parse (a type the key does not take).
    Parse {
        /// Where, if the parser said.
        span: Option<Range<usize>>,
        /// The parser's words.
        reason: String,
    },
    /// A queue's grant is refused.
    Refused {
        /// The queue.
        queue: String,
        /// Where and why.
        refusal: Refusal,
    },
}

/// The capabilities, in the order their keys are listed and checked.
macro_rules! capabilities {
    ($($field:ident: $unit:ty),* $(,)?) => {
        /// What a queue grants, checked: each capability's part.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct GrantsConfig {
            $(
                #[doc = concat!("The `", stringify!($field), "` capability's keys, checked.")]
                pub $field: <$unit as Capability>::Config,
            )*
        }

        /// Every capability's keys in a queue's table, in order.
        pub fn keys() -> Vec<&'static str> {
            let mut keys = Vec::new();
            $(keys.extend_from_slice(<$unit as Capability>::KEYS);)*
            keys
        }

        /// Links every capability's imports.
        pub(crate) fn link<S: GrantedStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
            $(<$unit as Capability>::link(linker)?;)*
            Ok(())
        }

        impl GrantsConfig {
            /// Checks the grants of every queue of a config file's `text`.
            pub fn check_file(
                text: &str,
                cx: &Checking<'_>,
            ) -> Result<BTreeMap<String, GrantsConfig>, GrantsError> {
                let mut all: BTreeMap<String, GrantsConfig> = BTreeMap::new();
                $(
                    let queues: Queues<<$unit as Capability>::Raw> =
                        toml::from_str(text).map_err(|e| GrantsError::Parse {
                            span: e.span(),
                            reason: e.message().trim().to_owned(),
                        })?;
                    for (queue, raw) in queues.queues {
                        let checked = <$unit as Capability>::check(raw, cx)
                            .map_err(|refusal| GrantsError::Refused {
                                queue: queue.clone(),
                                refusal,
                            })?;
                        all.entry(queue).or_default().$field = checked;
                    }
                )*
                Ok(all)
            }

            /// The grants of queue `queue` of a config file's `text` (none
            /// without a file) with `bullpen exec`'s `flags` added, checked
            /// whole; a refusal names the flag.
            pub fn with_flags(
                text: Option<&str>,
                queue: &str,
                flags: &GrantFlags,
                cx: &Checking<'_>,
            ) -> Result<GrantsConfig, String> {
                Ok(GrantsConfig {
                    $($field: {
                        let mut raw = text
                            .and_then(|text| {
                                toml::from_str::<Queues<<$unit as Capability>::Raw>>(text).ok()
                            })
                            .and_then(|mut queues| queues.queues.remove(queue))
                            .unwrap_or_default();
                        <$unit as Capability>::add_flags(&mut raw, flags)?;
                        <$unit as Capability>::check(raw, cx).map_err(|refusal| {
                            format!("{}: {}", <$unit as Capability>::FLAG, refusal.reason)
                        })?
                    },)*
                })
            }

            /// The unit of each capability the queue grants.
            fn units(&self) -> Vec<Arc<dyn Grant>> {
                let mut units: Vec<Arc<dyn Grant>> = Vec::new();
                $(
                    if let Some(unit) = <$unit as Capability>::unit(&self.$field) {
                        units.push(Arc::new(unit));
                    }
                )*
                units
            }
        }
    };
}

capabilities! {
    files: Directories,
    environment: Environment,
    http: OutboundHttp,
    add_jobs: AddJobs,
}

/// What the grants of one attempt add to, before its store is built: the
/// WASI context, the `wasi:http` hooks and the `jobs` imports.
pub struct Granting<'a> {
    /// The attempt's WASI context (environment, preopens).
    pub wasi: &'a mut WasiCtxBuilder,
    /// The attempt's outbound HTTP hooks (deny-all until granted).
    pub outbound: &'a mut Outbound,
    /// The attempt's `jobs` imports (adding denied until granted).
    pub jobs: &'a mut Jobs,
    /// The attempt's file quotas (none until a writable grant).
    pub files: &'a mut FileQuotas,
}

/// One capability given to a queue's guests.
pub trait Grant: Send + Sync + std::fmt::Debug {
    /// Adds the capability to one attempt.
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError>;

    /// Values the gate masks in everything the guest says: a grant's
    /// secrets.
    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// A grant that could not be applied to an attempt (a granted directory
/// removed since start, say): the attempt fails, saying which.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GrantApplyError(pub String);

/// Every grant of a queue. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    units: Arc<[Arc<dyn Grant>]>,
    mask: Mask,
}

impl PartialEq for Grants {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.units, &other.units)
    }
}

impl Eq for Grants {}

impl Grants {
    /// The units for a queue's checked grants.
    pub fn from_config(config: &GrantsConfig) -> Self {
        let units = config.units();
        let mask = Mask::new(units.iter().flat_map(|unit| unit.secrets()));
        Grants {
            units: units.into(),
            mask,
        }
    }

    /// Applies every unit to one attempt.
    pub fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        self.units.iter().try_for_each(|unit| unit.apply(attempt))
    }

    /// The gate's mask for this queue: its secrets.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }
}
