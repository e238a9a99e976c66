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

mod add_jobs;
mod env;
mod files;
mod http;

pub use add_jobs::AddJobs;
pub use env::Environment;
pub use files::Directories;
pub use http::{Outbound, OutboundHttp, is_non_public};

use super::gate::Mask;
use super::job_api::Jobs;
use crate::config::GrantsConfig;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;

/// What the grants of one attempt add to, before its store is built: the
/// WASI context, the `wasi:http` hooks and the `jobs` imports.
pub struct Granting<'a> {
    /// The attempt's WASI context (environment, preopens).
    pub wasi: &'a mut WasiCtxBuilder,
    /// The attempt's outbound HTTP hooks (deny-all until granted).
    pub outbound: &'a mut Outbound,
    /// The attempt's `jobs` imports (adding denied until granted).
    pub jobs: &'a mut Jobs,
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
        let mut units: Vec<Arc<dyn Grant>> = Vec::new();
        if !config.environment.is_empty() || !config.secrets.is_empty() {
            units.push(Arc::new(Environment::from_config(config)));
        }
        if !config.files.is_empty() {
            units.push(Arc::new(Directories::from_config(config)));
        }
        if !config.allowed_outbound_hosts.is_empty() {
            units.push(Arc::new(OutboundHttp::from_config(config)));
        }
        if !config.add_to_queues.is_empty() {
            units.push(Arc::new(AddJobs::from_config(config)));
        }
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
