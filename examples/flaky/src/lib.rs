//! `flaky`: fails until attempt `succeed_on`, then completes.
//!
//! Data: `{"succeed_on": 3, "error_name": "FlakyError"}` (both optional;
//! these are the defaults). Attempt n (n = attemptsMade + 1) fails with
//! `attempt n of succeed_on failed`, named `error_name`, while n < succeed_on;
//! then the job completes with `{"attempt": n}`.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Plan {
    succeed_on: u32,
    error_name: String,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            succeed_on: 3,
            error_name: "FlakyError".into(),
        }
    }
}

struct Flaky;

impl Processor for Flaky {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let plan: Plan = job.data()?;
        let attempt = job.attempts_made + 1;
        if attempt < plan.succeed_on {
            return Err(Error::failed_named(
                plan.error_name,
                format!("attempt {attempt} of {} failed", plan.succeed_on),
            ));
        }
        Ok(serde_json::json!({ "attempt": attempt }))
    }
}

bullpen_guest::export!(Flaky);
