//! How an attempt ends when it does not complete.

use crate::__private::bindings;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The result of a processor: `Ok` completes the job, an [`Error`] decides
/// what happens to it instead.
///
/// ```
/// fn half(n: u32) -> bullpen_guest::Result<u32> {
///     if n % 2 == 1 {
///         return Err(bullpen_guest::Error::unrecoverable("odd"));
///     }
///     Ok(n / 2)
/// }
/// assert_eq!(half(4), Ok(2));
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an attempt failed: what a [`Processor::backoff`](crate::Processor::backoff)
/// strategy receives.
///
/// ```
/// use bullpen_guest::{Backoff, Failure};
/// fn retry_soon_unless_auth(error: &Failure) -> Backoff {
///     match error.name.as_deref() {
///         Some("AuthError") => Backoff::GiveUp,
///         _ => Backoff::Now,
///     }
/// }
/// let auth = Failure { message: "401".into(), name: Some("AuthError".into()) };
/// assert_eq!(retry_soon_unless_auth(&auth), Backoff::GiveUp);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason; it becomes the job's `failedReason`.
    pub message: String,
    /// The error's kind (BullMQ's `err.name`), if it has one.
    pub name: Option<String>,
}

impl From<bindings::Failure> for Failure {
    fn from(f: bindings::Failure) -> Self {
        Failure {
            message: f.message,
            name: f.name,
        }
    }
}

/// How an attempt ended when it did not complete.
///
/// `?` turns any [`std::error::Error`] into [`Error::failed`], named after
/// the error's type:
///
/// ```
/// fn parse(text: &str) -> bullpen_guest::Result<u32> {
///     Ok(text.parse::<u32>()?) // a ParseIntError fails the attempt
/// }
/// let err = parse("x").unwrap_err();
/// assert_eq!(err.name(), Some("ParseIntError"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An ordinary failure: counts an attempt, retried with backoff while
    /// attempts remain.
    Failed(Failure),
    /// Fails the job now, whatever attempts remain.
    Unrecoverable(String),
    /// The queue pauses for this long; the job goes back to wait and the
    /// attempt is not counted.
    RateLimited(Duration),
    /// The job waits in the delayed set until this time (milliseconds since
    /// the Unix epoch); the attempt is not counted.
    Delayed(u64),
    /// The job waits for its children (BullMQ's `WaitingChildrenError`);
    /// the attempt is not counted.
    WaitingChildren,
}

impl Error {
    /// An ordinary failure with a message; retried while attempts remain.
    ///
    /// ```
    /// let e = bullpen_guest::Error::failed("upstream returned 502");
    /// assert_eq!(e.to_string(), "upstream returned 502");
    /// ```
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(Failure {
            message: message.into(),
            name: None,
        })
    }

    /// An ordinary failure with an error name that backoff strategies see
    /// (BullMQ's `err.name`).
    ///
    /// ```
    /// let e = bullpen_guest::Error::failed_named("TimeoutError", "no answer in 5s");
    /// assert_eq!(e.name(), Some("TimeoutError"));
    /// ```
    pub fn failed_named(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Failed(Failure {
            message: message.into(),
            name: Some(name.into()),
        })
    }

    /// Fails the job now, whatever attempts remain (BullMQ's
    /// `UnrecoverableError`).
    ///
    /// ```
    /// let e = bullpen_guest::Error::unrecoverable("no such user");
    /// assert!(matches!(e, bullpen_guest::Error::Unrecoverable(_)));
    /// ```
    pub fn unrecoverable(message: impl Into<String>) -> Self {
        Error::Unrecoverable(message.into())
    }

    /// Pauses the queue for `wait` and puts the job back to wait, without
    /// counting an attempt (BullMQ's `RateLimitError`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let e = bullpen_guest::Error::rate_limited(Duration::from_secs(2));
    /// assert_eq!(e, bullpen_guest::Error::RateLimited(Duration::from_secs(2)));
    /// ```
    pub fn rate_limited(wait: Duration) -> Self {
        Error::RateLimited(wait)
    }

    /// Moves the job to the delayed set until `when`, without counting an
    /// attempt (BullMQ's `DelayedError`).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let when = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    /// let e = bullpen_guest::Error::delayed_until(when);
    /// assert_eq!(e, bullpen_guest::Error::Delayed(1_700_000_000_000));
    /// ```
    pub fn delayed_until(when: SystemTime) -> Self {
        let ms = when
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Error::Delayed(ms)
    }

    /// Moves the job to the delayed set for `wait` from now, without counting
    /// an attempt.
    ///
    /// ```
    /// let e = bullpen_guest::Error::delayed_for(std::time::Duration::from_secs(60));
    /// assert!(matches!(e, bullpen_guest::Error::Delayed(_)));
    /// ```
    pub fn delayed_for(wait: Duration) -> Self {
        Self::delayed_until(SystemTime::now() + wait)
    }

    /// The job waits until its children have finished, then runs again
    /// (BullMQ's `WaitingChildrenError`); the attempt is not counted. Call
    /// [`Job::move_to_waiting_children`](crate::Job::move_to_waiting_children)
    /// first to know whether any child is pending: if none is, the job goes
    /// back to wait and runs again at once.
    ///
    /// ```
    /// let e = bullpen_guest::Error::waiting_children();
    /// assert_eq!(e, bullpen_guest::Error::WaitingChildren);
    /// ```
    pub fn waiting_children() -> Self {
        Error::WaitingChildren
    }

    /// The error's name, for a failure that has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Error::Failed(f) => f.name.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed(failure) => f.write_str(&failure.message),
            Error::Unrecoverable(message) => f.write_str(message),
            Error::RateLimited(wait) => write!(f, "rate limited for {} ms", wait.as_millis()),
            Error::Delayed(until) => write!(f, "delayed until {until} ms"),
            Error::WaitingChildren => f.write_str("waiting for children"),
        }
    }
}

/// Any error type converts into [`Error::failed`], named after its type
/// (`ParseIntError`, `Utf8Error`, ...), so `?` works on everything.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Error::Failed(Failure {
            message: error.to_string(),
            name: Some(short_type_name::<E>().to_owned()),
        })
    }
}

/// `core::num::error::ParseIntError` -> `ParseIntError`; generics dropped.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
}

impl From<Error> for bindings::JobError {
    fn from(error: Error) -> Self {
        match error {
            Error::Failed(f) => bindings::JobError::Failed(bindings::Failure {
                message: f.message,
                name: f.name,
            }),
            Error::Unrecoverable(message) => bindings::JobError::Unrecoverable(message),
            Error::RateLimited(wait) => {
                bindings::JobError::RateLimited(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
            }
            Error::Delayed(until) => bindings::JobError::Delayed(until),
            Error::WaitingChildren => bindings::JobError::WaitingChildren,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_names_the_error_type() {
        let err: Error = "x".parse::<u8>().unwrap_err().into();
        assert_eq!(err.name(), Some("ParseIntError"));
        assert_eq!(err.to_string(), "invalid digit found in string");
    }

    #[test]
    fn delays_before_the_epoch_clamp_to_zero() {
        let e = Error::delayed_until(UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(e, Error::Delayed(0));
    }
}
