//! `delayed`: asks to run later on its first `times` starts, then completes.
//!
//! Data: `{"delay_ms": 1000, "times": 1}` (both optional; these are the
//! defaults). While attemptsStarted <= times the job moves to the delayed set
//! for `delay_ms` (no attempt counted); then it completes with
//! `{"attempts_started": n}`.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(default)]
struct Plan {
    delay_ms: u64,
    times: u32,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            delay_ms: 1000,
            times: 1,
        }
    }
}

struct Delayed;

impl Processor for Delayed {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let plan: Plan = job.data()?;
        if job.attempts_started <= plan.times {
            return Err(Error::delayed_for(Duration::from_millis(plan.delay_ms)));
        }
        Ok(serde_json::json!({ "attempts_started": job.attempts_started }))
    }
}

bullpen_guest::export!(Delayed);
