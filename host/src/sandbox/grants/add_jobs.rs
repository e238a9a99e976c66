//! `add_to_queues`: the queues a guest may add jobs to (follow-up jobs,
//! children), with the attempt's caps (`max_added_jobs`, `max_added_size`)
//! and the queue's across its attempts (`max_adds_per_second`,
//! `max_target_depth`: a job that adds copies of itself stops there).
//! Without it, the `jobs` interface's `add` is refused; the guest's own job
//! (its data, its children) needs no grant.

use super::{Capability, Checking, Grant, GrantApplyError, Granting, Refusal};
use crate::config::bounds;
use crate::sandbox::job_api::AddAllowance;
use crate::units::ByteSize;
use serde::Deserialize;
use toml::Spanned;

/// The keys as written.
#[derive(Deserialize, Default)]
pub struct Raw {
    #[serde(default)]
    add_to_queues: Vec<Spanned<String>>,
    max_added_jobs: Option<Spanned<u32>>,
    max_added_size: Option<Spanned<ByteSize>>,
    max_adds_per_second: Option<Spanned<u32>>,
    max_target_depth: Option<Spanned<u32>>,
}

/// The granted queues and caps.
#[derive(Debug)]
pub struct AddJobs {
    allowance: AddAllowance,
}

impl Capability for AddJobs {
    const KEYS: &'static [&'static str] = &[
        "add_to_queues",
        "max_added_jobs",
        "max_added_size",
        "max_adds_per_second",
        "max_target_depth",
    ];
    /// No flag of its own: `bullpen exec` takes it from `--config`.
    const FLAG: &'static str = "--config";
    type Raw = Raw;
    /// The queues and caps as the `jobs` imports apply them.
    type Config = AddAllowance;

    /// Queue names are names and listed once; the caps are in range.
    fn check(raw: Raw, _: &Checking<'_>) -> Result<AddAllowance, Refusal> {
        let mut queues: Vec<String> = Vec::new();
        for queue in raw.add_to_queues {
            let name = queue.get_ref();
            if name.is_empty() || name.contains(':') {
                return Err(Refusal::at(
                    queue.span(),
                    format!("add_to_queues: `{name}` is not a queue name (empty, or has a `:`)"),
                ));
            }
            if queues.contains(name) {
                return Err(Refusal::at(
                    queue.span(),
                    format!("add_to_queues: `{name}` is listed twice"),
                ));
            }
            queues.push(queue.into_inner());
        }
        Ok(AddAllowance {
            queues: queues.into_iter().collect(),
            max_jobs: bounds::MAX_ADDED_JOBS
                .read(raw.max_added_jobs)
                .map_err(Refusal::from)?,
            max_size: bounds::MAX_ADDED_SIZE
                .read(raw.max_added_size)
                .map_err(Refusal::from)?
                .0,
            per_second: bounds::MAX_ADDS_PER_SECOND
                .read(raw.max_adds_per_second)
                .map_err(Refusal::from)?,
            max_target_depth: bounds::MAX_TARGET_DEPTH
                .read(raw.max_target_depth)
                .map_err(Refusal::from)?,
        })
    }

    fn unit(allowance: &AddAllowance) -> Option<Self> {
        if allowance.queues.is_empty() {
            return None;
        }
        Some(AddJobs {
            allowance: allowance.clone(),
        })
    }
}

impl Grant for AddJobs {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        attempt.jobs.allow(self.allowance.clone());
        Ok(())
    }
}
