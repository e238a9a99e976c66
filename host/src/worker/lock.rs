//! A job's lock as an attempt sees it: one run of a job at a time on this
//! host, renewal that belongs to the run it renews, and a check that the
//! lock is still the run's before its outcome is written.
//!
//! The crate renews every active job's lock and writes the outcome with the
//! run's token, but it cannot tell a lost lock from a Redis hiccup: after an
//! outage longer than `lock_duration` the stalled checker hands the job to a
//! new run (on this host too) while the first still runs; the first run's
//! outcome then fails to save and is reported as the job failing; and the
//! crate stops renewing the new run's lock when the old run ends (it drops
//! the job's every entry by id). (A finishing move sent while Redis is down
//! is sent again by the patched crate, patched/bullmq-official, patch 0001.)

use crate::observe::metrics::QueueMetrics;
use bullmq::{Error, Job};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// An attempt that ran at least this long checks its lock before its
/// outcome is written: it may have outlived a renewal or an outage. One
/// round trip, against a quarter of a second of work.
pub(crate) const CONFIRM_AFTER: Duration = Duration::from_millis(250);

/// How often a finished attempt asks Redis again while it does not answer.
const CONFIRM_RETRY: Duration = Duration::from_millis(100);

/// Why a run is asked to stop (`bullpen cancel`, a cancel on the Relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CancelRequest {
    /// What the job's failed reason says after `cancelled: `.
    pub reason: String,
    /// Whether the job is retried (an attempt counted) rather than failed
    /// for good.
    pub retry: bool,
}

/// What a run is told while it runs: a newer run took over, or it is
/// cancelled.
#[derive(Default)]
struct Signals {
    superseded: Notify,
    cancel: Mutex<Option<CancelRequest>>,
    cancelled: Notify,
}

/// The runs of a queue's jobs on this host, by job id.
#[derive(Default)]
pub(crate) struct Claims {
    by_job: Mutex<BTreeMap<String, Arc<Signals>>>,
}

impl Claims {
    fn by_job(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Signals>>> {
        self.by_job.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a run of job `id`. A run of the same job still registered
    /// lost its lock (only the stalled checker hands an active job out
    /// again): it is told to stop, and this claim [`Claim::took_over`].
    pub(crate) fn start(&self, id: &str) -> Claim<'_> {
        let signals = Arc::new(Signals::default());
        let earlier = self.by_job().insert(id.to_owned(), signals.clone());
        if let Some(earlier) = &earlier {
            // A stored permit: the earlier run sees it whenever it looks.
            earlier.superseded.notify_one();
        }
        Claim {
            runs: self,
            id: id.to_owned(),
            signals,
            took_over: earlier.is_some(),
        }
    }

    /// The ids of the jobs running now.
    pub(crate) fn running(&self) -> Vec<String> {
        self.by_job().keys().cloned().collect()
    }

    /// Asks the run of job `id` to stop, if one runs here: whether one did.
    pub(crate) fn cancel(&self, id: &str, request: CancelRequest) -> bool {
        let Some(signals) = self.by_job().get(id).cloned() else {
            return false;
        };
        *signals.cancel.lock().unwrap_or_else(|e| e.into_inner()) = Some(request);
        // A stored permit, as for `superseded`.
        signals.cancelled.notify_one();
        true
    }
}

/// One run of a job, registered in [`Claims`] until it is dropped.
pub(crate) struct Claim<'a> {
    runs: &'a Claims,
    id: String,
    signals: Arc<Signals>,
    /// Whether an earlier run of the job was still running here.
    pub took_over: bool,
}

impl Claim<'_> {
    /// Resolves once a newer run of the same job has started here.
    pub(crate) async fn superseded(&self) {
        self.signals.superseded.notified().await
    }

    /// Resolves once the run is cancelled, with why.
    pub(crate) async fn cancelled(&self) -> CancelRequest {
        loop {
            self.signals.cancelled.notified().await;
            let asked = self
                .signals
                .cancel
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(request) = asked {
                return request;
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut runs = self.runs.by_job();
        if runs
            .get(&self.id)
            .is_some_and(|run| Arc::ptr_eq(run, &self.signals))
        {
            runs.remove(&self.id);
        }
    }
}

/// When a queue's attempts or workers last saw Redis fail (ms since the
/// epoch; 0: never).
pub(crate) struct Trouble {
    last: AtomicU64,
    /// Counts each error, when the host exports metrics.
    metrics: Option<QueueMetrics>,
}

impl Trouble {
    /// No trouble yet; each error from now on counted in `metrics`.
    pub(crate) fn new(metrics: Option<QueueMetrics>) -> Self {
        Trouble {
            last: AtomicU64::new(0),
            metrics,
        }
    }

    /// Records a Redis error now.
    pub(crate) fn saw(&self) {
        self.last
            .store(crate::timer::now_ms().max(1), Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.redis_error();
        }
    }

    /// Whether Redis failed at or after `since_ms`.
    pub(crate) fn since(&self, since_ms: u64) -> bool {
        self.last.load(Ordering::Relaxed) >= since_ms.max(1)
    }
}

/// Renews `job`'s lock every half of `lock` with its own token, for as long
/// as it is awaited: for a run whose renewal the crate dropped.
pub(crate) async fn renew(job: &Job, lock: Duration) -> Infallible {
    loop {
        tokio::time::sleep(lock / 2).await;
        if let Some(token) = job.token()
            && let Err(e) = job.extend_lock(token, lock.as_millis() as u64).await
        {
            tracing::debug!(job = job.id(), "renewing the lock: {e}");
        }
    }
}

/// Whether a run may still write its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// The lock is the run's, renewed for `lock` from now.
    Held,
    /// Another run holds it, or nobody: the outcome must not be written.
    Lost,
}

/// Renews `job`'s lock with the run's token, asking again while Redis does
/// not answer (a result finished during an outage is kept, not run again),
/// and says whether the run still holds it.
pub(crate) async fn confirm(job: &Job, lock: Duration, trouble: &Trouble, queue: &str) -> Lock {
    let Some(token) = job.token() else {
        return Lock::Held;
    };
    let mut waiting = false;
    loop {
        match job.extend_lock(token, lock.as_millis() as u64).await {
            Ok(()) => {
                if waiting {
                    tracing::warn!(
                        queue,
                        job = job.id(),
                        "Redis answers again and the lock is still this run's: its outcome is written now"
                    );
                }
                return Lock::Held;
            }
            Err(Error::JobLocked(_)) => return Lock::Lost,
            Err(e) => {
                trouble.saw();
                if !waiting {
                    tracing::warn!(
                        queue,
                        job = job.id(),
                        "the attempt ended but Redis does not answer ({e}); its outcome waits for Redis"
                    );
                    waiting = true;
                }
                tokio::time::sleep(CONFIRM_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_run_of_a_job_supersedes_the_first_and_keeps_its_place() {
        let runs = Claims::default();
        let first = runs.start("7");
        assert!(!first.took_over);
        let second = runs.start("7");
        assert!(second.took_over);
        tokio::time::timeout(Duration::from_secs(1), first.superseded())
            .await
            .expect("the first run is told");
        drop(first);
        assert_eq!(runs.running(), ["7"], "the second run is still registered");
        drop(second);
        assert!(runs.running().is_empty());
    }

    #[test]
    fn trouble_is_seen_from_when_it_happened() {
        let trouble = Trouble::new(None);
        assert!(!trouble.since(0));
        let before = crate::timer::now_ms();
        trouble.saw();
        assert!(trouble.since(before));
        assert!(!trouble.since(before + 60_000));
    }
}
