//! Whether this host's workers of a queue carry a rate limiter.
//!
//! BullMQ's scripts honour a manual rate limit (`Queue.rateLimit`, which is
//! what a guest's `rate-limited` answer sets) only for workers that have a
//! limiter, and a limiter makes every fetch count the job against it: three
//! more Redis commands per job. So a queue without a `limiter` in its config
//! starts without one, and gets [`UNLIMITED`] the first time a rate limit is
//! in force for it: at its own processor's `rate-limited` answer, or when
//! [`in_force`] sees another host's. It then keeps it until the queue stops.

use bullmq::{Queue, RateLimiterOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// The value `Queue.rateLimit` writes into the limiter key
/// (`Number.MAX_SAFE_INTEGER`), and the most jobs [`UNLIMITED`] lets through:
/// a limiter that never limits by itself.
const MANUAL: u64 = 9_007_199_254_740_991;

/// The limiter a worker gets once its queue has been rate limited, when the
/// config gives none.
pub const UNLIMITED: RateLimiterOptions = RateLimiterOptions {
    max: MANUAL,
    duration: 1_000,
};

/// One queue's limiter on this host: the configured one, or none until a
/// rate limit is in force.
pub(crate) struct Limiter {
    configured: Option<RateLimiterOptions>,
    engaged: AtomicBool,
    wanted: Notify,
}

impl Limiter {
    /// A queue's limiter, from its config's `limiter`.
    pub fn new(configured: Option<RateLimiterOptions>) -> Self {
        Limiter {
            engaged: AtomicBool::new(configured.is_some()),
            configured,
            wanted: Notify::new(),
        }
    }

    /// The limiter a worker hired now gets.
    pub fn options(&self) -> Option<RateLimiterOptions> {
        self.configured
            .clone()
            .or_else(|| self.engaged().then_some(UNLIMITED))
    }

    /// Whether the workers hired from now on have a limiter.
    pub fn engaged(&self) -> bool {
        self.engaged.load(Ordering::Acquire)
    }

    /// Gives workers hired from now on a limiter; `true` the first time, when
    /// the workers running now have none and are to be replaced.
    pub fn engage(&self) -> bool {
        let first = !self.engaged.swap(true, Ordering::AcqRel);
        if first {
            self.wanted.notify_one();
        }
        first
    }

    /// Takes back [`engage`](Self::engage), when the workers with a limiter
    /// could not be started: the next rate limit tries again.
    pub fn disengage(&self) {
        if self.configured.is_none() {
            self.engaged.store(false, Ordering::Release);
        }
    }

    /// Waits until [`engage`](Self::engage) asks for workers with a limiter.
    pub async fn wanted(&self) {
        self.wanted.notified().await
    }
}

/// Whether a manual rate limit is in force on `queue` (set by any host, or
/// by a Node processor's `queue.rateLimit`): what an unlimited worker would
/// not see.
pub async fn in_force(queue: &Queue) -> bool {
    let mut connection = queue.connection().connection();
    let value: Result<Option<String>, _> = redis::cmd("GET")
        .arg(queue.keys().limiter())
        .query_async(&mut connection)
        .await;
    // A limiter counting jobs holds small numbers; only a manual rate limit
    // writes this one.
    matches!(value, Ok(Some(v)) if v.parse::<u64>().is_ok_and(|n| n >= MANUAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_without_a_limiter_gets_one_once_rate_limited() {
        let limiter = Limiter::new(None);
        assert_eq!(limiter.options().map(|l| l.max), None);
        assert!(limiter.engage());
        assert!(
            !limiter.engage(),
            "only the first rate limit replaces the workers"
        );
        assert_eq!(limiter.options().map(|l| l.max), Some(MANUAL));
        limiter.disengage();
        assert_eq!(limiter.options().map(|l| l.max), None);
    }

    #[test]
    fn a_configured_limiter_is_always_there() {
        let configured = RateLimiterOptions {
            max: 10,
            duration: 1_000,
        };
        let limiter = Limiter::new(Some(configured));
        assert!(!limiter.engage());
        limiter.disengage();
        assert_eq!(limiter.options().map(|l| l.max), Some(10));
    }
}
