//! `add_to_queues`: the queues a guest may add jobs to (follow-up jobs,
//! children), with the attempt's caps (`max_added_jobs`, `max_added_size`).
//! Without it, the `jobs` interface's `add` is refused; the guest's own job
//! (its data, its children) needs no grant.

use super::{Grant, GrantApplyError, Granting};
use crate::config::GrantsConfig;
use crate::sandbox::job_api::AddAllowance;

/// The granted queues and caps.
#[derive(Debug)]
pub struct AddJobs {
    allowance: AddAllowance,
}

impl AddJobs {
    /// A queue's `add_to_queues`, `max_added_jobs` and `max_added_size`.
    pub fn from_config(config: &GrantsConfig) -> Self {
        AddJobs {
            allowance: AddAllowance {
                queues: config.add_to_queues.iter().cloned().collect(),
                max_jobs: config.max_added_jobs,
                max_size: config.max_added_size,
            },
        }
    }
}

impl Grant for AddJobs {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        attempt.jobs.allow(self.allowance.clone());
        Ok(())
    }
}
