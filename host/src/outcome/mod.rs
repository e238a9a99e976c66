//! From a guest's answer to what happens to the job: BullMQ's rules for
//! retries, backoff, unrecoverable errors, rate limits, delays and waiting
//! for children. Pure
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
    /// The job waits for its children (or, none pending, runs again).
    WaitingChildren,
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
        Ok(Err(JobError::WaitingChildren)) => Verdict::WaitingChildren,
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

/// The shortest delay a guest's `delayed` answer gets: a time already past
/// (or about to be) would have the job taken again at once, and again, in
/// a loop as fast as Redis answers.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// The longest a job waits for a retry or a `delayed` answer, and the
/// longest a `rate-limited` answer pauses its queue; longer asks are cut
/// to these (and logged), where they would otherwise overflow timestamps or
/// stop a queue for years.
pub const MAX_DELAY: Duration = crate::units::MAX_DURATION;
/// See [`MAX_DELAY`].
pub const MAX_RATE_LIMIT: Duration = Duration::from_secs(3600);

/// The timestamp (ms) a job waits until: `delay` from `now_ms`, at most
/// [`MAX_DELAY`], never past `u64::MAX`.
///
/// ```
/// use bullpen::outcome::{retry_at, MAX_DELAY};
/// use std::time::Duration;
/// assert_eq!(retry_at(1_000, Duration::from_millis(500)), 1_500);
/// assert_eq!(retry_at(1_000, Duration::MAX), 1_000 + MAX_DELAY.as_millis() as u64);
/// ```
pub fn retry_at(now_ms: u64, delay: Duration) -> u64 {
    now_ms.saturating_add(delay.min(MAX_DELAY).as_millis() as u64)
}

/// A guest's `delayed` time (ms) brought within [`MIN_DELAY`] and
/// [`MAX_DELAY`] of `now_ms`.
///
/// ```
/// use bullpen::outcome::delayed_until;
/// assert_eq!(delayed_until(0, 10_000), 10_100);
/// assert_eq!(delayed_until(60_000, 10_000), 60_000);
/// assert_eq!(delayed_until(u64::MAX, 10_000), 10_000 + 365 * 24 * 3600 * 1000);
/// ```
pub fn delayed_until(until: u64, now_ms: u64) -> u64 {
    until.clamp(retry_at(now_ms, MIN_DELAY), retry_at(now_ms, MAX_DELAY))
}

/// A guest's `rate-limited` pause (ms), at most [`MAX_RATE_LIMIT`].
///
/// ```
/// assert_eq!(bullpen::outcome::rate_limit(1_000_000_000_000), 3_600_000);
/// assert_eq!(bullpen::outcome::rate_limit(250), 250);
/// ```
pub fn rate_limit(ms: u64) -> u64 {
    ms.min(MAX_RATE_LIMIT.as_millis() as u64)
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
