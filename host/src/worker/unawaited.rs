//! Redis writes that are sent at once but whose replies nobody waits for:
//! they are collected later, by whichever attempt comes next.
//!
//! Awaiting such a write in a task of its own costs a spawn and, when the
//! reply comes, a wake-up, each of which can hand the runtime's work to its
//! other thread. On a queue of short jobs that costs more than the write.
//! Here a write is polled once to put its command on the connection, then
//! parked; Redis's reply completes it without waking anyone, and the next
//! [`Unawaited::send`] (or [`Unawaited::finish`]) polls the completed ones
//! and drops them.
//!
//! A write whose first poll cannot send (its connection is reconnecting)
//! goes out when it is next polled: at the queue's next attempt, or at
//! `close`, which waits for every write still here.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Writes in flight, each a future that logs its own failure.
#[derive(Default)]
pub(crate) struct Unawaited {
    writes: Mutex<FuturesUnordered<BoxFuture<'static, ()>>>,
}

impl Unawaited {
    /// Polls `write` once, which sends its command, and keeps it until its
    /// reply is in; collects the writes whose replies have come.
    pub fn send(&self, write: BoxFuture<'static, ()>) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        writes.push(write);
        // A waker of no one: a reply marks its write ready inside the set,
        // and this poll (the next attempt's) finds it there.
        let mut nobody = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(())) = writes.poll_next_unpin(&mut nobody) {}
    }

    /// Waits, for at most `grace`, for the writes still in flight.
    pub async fn finish(&self, grace: Duration) {
        let mut writes =
            std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async { while writes.next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some job-log writes had no reply from Redis when the worker closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_write_is_started_at_once_and_finished_later() {
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (reply, replied) = tokio::sync::oneshot::channel::<()>();
        let unawaited = Unawaited::default();
        let write = {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = replied.await;
                finished.fetch_add(1, Ordering::SeqCst);
            }
        };
        unawaited.send(Box::pin(write));
        assert_eq!(started.load(Ordering::SeqCst), 1, "polled once on send");
        assert_eq!(finished.load(Ordering::SeqCst), 0);

        reply.send(()).unwrap();
        unawaited.send(Box::pin(async {}));
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "collected by the next send"
        );
        assert!(unawaited.writes.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn finish_waits_for_what_is_in_flight() {
        let (reply, replied) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicUsize::new(0));
        let unawaited = Unawaited::default();
        let counted = finished.clone();
        unawaited.send(Box::pin(async move {
            let _ = replied.await;
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            reply.send(()).unwrap();
        });
        unawaited.finish(Duration::from_secs(5)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
