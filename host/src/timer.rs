//! Deadlines that arm a tokio timer only when a future has to wait.
//!
//! Registering a tokio timer that expires before every other one wakes the
//! runtime's timer driver (an eventfd write, and a context switch on the
//! thread parked in it). Most attempts finish within their first poll, in
//! microseconds, so a timer armed up front for each of them costs more
//! than the job itself; these helpers poll once first and arm a timer only
//! if the future is still pending.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::time::{Instant, error::Elapsed};

/// Polls `future` once, within the calling task: `Ready` with its output, or
/// `Pending` with `future` left as it was, to be polled on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bullpen::timer::poll_once;
/// use std::task::Poll;
///
/// let mut ready = std::pin::pin!(async { 7 });
/// assert_eq!(poll_once(ready.as_mut()).await, Poll::Ready(7));
///
/// let mut waiting = std::pin::pin!(tokio::task::yield_now());
/// assert!(poll_once(waiting.as_mut()).await.is_pending());
/// # }
/// ```
pub async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// `future`'s output, or [`Elapsed`] if `deadline` passes first; no timer is
/// registered when `future` completes at its first poll.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use bullpen::timer::within;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let soon = Instant::now() + Duration::from_millis(10);
/// assert_eq!(within(soon, async { 1 }).await, Ok(1));
/// assert!(within(soon, std::future::pending::<()>()).await.is_err());
/// # }
/// ```
pub async fn within<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    match poll_once(future.as_mut()).await {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout_at(deadline, future).await,
    }
}

/// Milliseconds since the Unix epoch, BullMQ's unit for timestamps (0 if
/// the clock is set before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
