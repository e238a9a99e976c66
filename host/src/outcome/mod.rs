//! From a guest's answer to what happens to the job: BullMQ's rules for
//! retries, backoff, unrecoverable errors, rate limits and delays. Pure
//! functions; the worker does the I/O.

pub mod backoff;
pub mod options;

use crate::config::OnCrash;
use crate::sandbox::{Crash, Failure, JobError, ProcessAnswer};
use backoff::Builtin;
use options::JobBackoff;
use std::time::Duration;

/// How an attempt ended, with crashes already turned into failures per the
/// queue's `on_crash`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Completed with this JSON return value.
    Completed(String),
    /// An ordinary failure: counts an attempt, may be retried.
    Failed(Failure),
    /// Fails now with this reason.
    Unrecoverable(String),
    /// The queue pauses for this many ms; the job goes back to wait.
    RateLimited(u64),
    /// The job waits in the delayed set until this ms timestamp.
    Delayed(u64),
}

/// The error name a crash carries, for backoff strategies and stack traces.
pub fn crash_name(crash: &Crash) -> &'static str {
    match crash {
        Crash::Timeout(_) => "TimeoutError",
        Crash::MemoryLimit(_) => "MemoryLimitError",
        Crash::StackOverflow => "StackOverflowError",
        Crash::Panic(_) => "PanicError",
        Crash::Trap(_) => "TrapError",
        Crash::InvalidReturnValue(_) => "InvalidReturnValueError",
        Crash::Instantiate(_) => "InstantiateError",
    }
}

/// Turns a run's outcome into a [`Verdict`].
pub fn verdict(outcome: Result<ProcessAnswer, Crash>, on_crash: OnCrash) -> Verdict {
    match outcome {
        Ok(Ok(value)) => Verdict::Completed(value),
        Ok(Err(JobError::Failed(failure))) => Verdict::Failed(failure),
        Ok(Err(JobError::Unrecoverable(reason))) => Verdict::Unrecoverable(reason),
        Ok(Err(JobError::RateLimited(ms))) => Verdict::RateLimited(ms),
        Ok(Err(JobError::Delayed(until))) => Verdict::Delayed(until),
        // The host could not start the instance: not the guest's fault, so
        // never final, whatever on_crash says.
        Err(crash @ Crash::Instantiate(_)) => Verdict::Failed(Failure {
            message: crash.to_string(),
            name: Some(crash_name(&crash).into()),
        }),
        Err(crash) => match on_crash {
            OnCrash::Retry => Verdict::Failed(Failure {
                message: crash.to_string(),
                name: Some(crash_name(&crash).into()),
            }),
            OnCrash::Fail => Verdict::Unrecoverable(crash.to_string()),
        },
    }
}

/// What to do with a failed attempt, before any guest is asked.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryPlan {
    /// No attempts left: the job fails with the failure's message.
    Exhausted,
    /// Retry after this long (zero: at once).
    After(Duration),
    /// The backoff type is custom: ask the module's `backoff` export.
    AskModule {
        /// The strategy name.
        strategy: String,
    },
}

/// BullMQ's retry rule: retried while `attempts_made` (this failure
/// included) is below the job's `attempts`; the delay from its backoff.
///
/// `random` (0.0–1.0) is the draw for jitter.
pub fn plan_retry(
    attempts_made: u32,
    max_attempts: u32,
    backoff: Option<&JobBackoff>,
    random: f64,
) -> RetryPlan {
    if attempts_made >= max_attempts {
        return RetryPlan::Exhausted;
    }
    let Some(backoff) = backoff else {
        return RetryPlan::After(Duration::ZERO);
    };
    match Builtin::named(&backoff.kind) {
        Some(kind) => RetryPlan::After(kind.delay(
            attempts_made,
            Duration::from_millis(backoff.delay),
            backoff.jitter,
            random,
        )),
        None => RetryPlan::AskModule {
            strategy: backoff.kind.clone(),
        },
    }
}

/// BullMQ's message when a job names a backoff type nobody implements.
pub fn unknown_strategy(strategy: &str) -> String {
    format!(
        "Unknown backoff strategy {strategy}. If a custom backoff strategy is used, specify it when the Worker is created."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(kind: &str, delay: u64) -> JobBackoff {
        JobBackoff {
            kind: kind.into(),
            delay,
            jitter: 0.0,
        }
    }

    #[test]
    fn retries_while_attempts_remain() {
        let exp = backoff("exponential", 1000);
        assert_eq!(
            plan_retry(1, 3, Some(&exp), 0.0),
            RetryPlan::After(Duration::from_secs(1))
        );
        assert_eq!(
            plan_retry(2, 3, Some(&exp), 0.0),
            RetryPlan::After(Duration::from_secs(2))
        );
        assert_eq!(plan_retry(3, 3, Some(&exp), 0.0), RetryPlan::Exhausted);
        assert_eq!(plan_retry(1, 1, None, 0.0), RetryPlan::Exhausted);
        assert_eq!(
            plan_retry(1, 2, None, 0.0),
            RetryPlan::After(Duration::ZERO)
        );
        assert_eq!(
            plan_retry(1, 5, Some(&backoff("linear", 10)), 0.0),
            RetryPlan::AskModule {
                strategy: "linear".into()
            }
        );
    }

    #[test]
    fn crashes_follow_on_crash() {
        let timeout = || Err(Crash::Timeout(Duration::from_secs(1)));
        assert_eq!(
            verdict(timeout(), OnCrash::Retry),
            Verdict::Failed(Failure {
                message: "timeout after 1s".into(),
                name: Some("TimeoutError".into())
            })
        );
        assert_eq!(
            verdict(timeout(), OnCrash::Fail),
            Verdict::Unrecoverable("timeout after 1s".into())
        );
        assert!(matches!(
            verdict(Err(Crash::Instantiate("pool".into())), OnCrash::Fail),
            Verdict::Failed(_)
        ));
    }
}
