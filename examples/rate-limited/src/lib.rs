//! `rate-limited`: hits a rate limit on its first `times` starts, then
//! completes.
//!
//! Data: `{"wait_ms": 1000, "times": 1}` (both optional; these are the
//! defaults). While attemptsStarted <= times the job is handed back with a
//! rate limit of `wait_ms` (no attempt counted); then it completes with
//! `{"attempts_started": n}`.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(default)]
struct Plan {
    wait_ms: u64,
    times: u32,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            wait_ms: 1000,
            times: 1,
        }
    }
}

struct RateLimited;

impl Processor for RateLimited {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let plan: Plan = job.data()?;
        if job.attempts_started <= plan.times {
            bullpen_guest::log(bullpen_guest::Level::Info, "upstream says: slow down");
            return Err(Error::rate_limited(Duration::from_millis(plan.wait_ms)));
        }
        Ok(serde_json::json!({ "attempts_started": job.attempts_started }))
    }
}

bullpen_guest::export!(RateLimited);
