//! The CPU time a call spends: the time its future spends being polled,
//! summed. The guest runs inside those polls (and so does the host's own
//! work for it: instantiation, imports), whichever runtime thread polls it;
//! the time it waits (I/O, a yield at an epoch tick, other tasks) is not
//! counted. It is the thread's CPU time except while the kernel has taken
//! the thread off its core in the middle of a poll.
//!
//! The monotonic clock costs about 20 ns a read (vDSO); the thread's own
//! CPU clock (`CLOCK_THREAD_CPUTIME_ID`) is a system call of about 0.4 µs,
//! which at two per poll cost 5% of a no-op job's throughput.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// `inner`, counting the CPU time of its polls when `on`.
pub struct CpuTimed<'a, F> {
    inner: Pin<&'a mut F>,
    on: bool,
    spent: Duration,
}

impl<'a, F: Future> CpuTimed<'a, F> {
    /// Wraps `inner`; counts only when `on`.
    pub fn new(inner: Pin<&'a mut F>, on: bool) -> Self {
        CpuTimed {
            inner,
            on,
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuTimed<'_, F> {
    /// The inner output, and the CPU time spent if counted.
    type Output = (F::Output, Option<Duration>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this.on {
            return this.inner.as_mut().poll(cx).map(|output| (output, None));
        }
        let before = Instant::now();
        let polled = this.inner.as_mut().poll(cx);
        this.spent += before.elapsed();
        polled.map(|output| (output, Some(this.spent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_polls_count_and_waiting_does_not() {
        let work = async {
            let until = std::time::Instant::now() + Duration::from_millis(30);
            while std::time::Instant::now() < until {}
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let started = std::time::Instant::now();
        let ((), spent) = CpuTimed::new(std::pin::pin!(work), true).await;
        let spent = spent.unwrap();
        assert!(spent >= Duration::from_millis(25), "{spent:?}");
        assert!(
            spent < started.elapsed() - Duration::from_millis(90),
            "{spent:?}"
        );
        let ((), none) = CpuTimed::new(std::pin::pin!(async {}), false).await;
        assert_eq!(none, None);
    }
}
