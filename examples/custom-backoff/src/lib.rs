//! `custom-backoff`: a processor with its own backoff strategy.
//!
//! Data: `{"errors": ["Transient", "RetryNow", "Fatal"]}`. Attempt n
//! (n = attemptsMade + 1) fails with the error named `errors[n-1]`; once the
//! list is used up the job completes with `{"attempt": n}`.
//!
//! Its `backoff` export answers, for a failure named:
//! - `RetryNow`: retry now;
//! - `Fatal`: give up (the job fails now);
//! - anything else, with the job's backoff type `linear`: after
//!   attemptsMade × the job's backoff delay (1000 ms when unset);
//! - anything else: the job's builtin fixed/exponential settings.

use bullpen_guest::{Backoff, Error, Failure, Job, Processor, Result};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Plan {
    errors: Vec<String>,
}

struct CustomBackoff;

impl Processor for CustomBackoff {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let plan: Plan = job.data()?;
        let attempt = job.attempts_made + 1;
        match plan.errors.get(job.attempts_made as usize) {
            Some(name) => Err(Error::failed_named(
                name.clone(),
                format!("attempt {attempt} failed with {name}"),
            )),
            None => Ok(serde_json::json!({ "attempt": attempt })),
        }
    }

    fn backoff(attempts_made: u32, strategy: &str, error: &Failure, job: &Job) -> Backoff {
        match error.name.as_deref() {
            Some("RetryNow") => Backoff::Now,
            Some("Fatal") => Backoff::GiveUp,
            _ if strategy == "linear" => {
                let base = job
                    .backoff
                    .as_ref()
                    .map(|b| b.delay)
                    .filter(|&d| d > 0)
                    .unwrap_or(1000);
                Backoff::After(Duration::from_millis(base * u64::from(attempts_made)))
            }
            _ => Backoff::Builtin,
        }
    }
}

bullpen_guest::export!(CustomBackoff);
