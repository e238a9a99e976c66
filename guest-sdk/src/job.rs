//! The job a processor receives.

use crate::__private::bindings;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// One attempt of a BullMQ job.
///
/// ```
/// let job = bullpen_guest::Job::for_test("{}");
/// let last_attempt = job.attempts_made + 1 == job.max_attempts;
/// assert!(last_attempt);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's id, unique within its queue.
    pub id: String,
    /// The job's name, as the producer set it.
    pub name: String,
    /// The queue the job was taken from.
    pub queue: String,
    /// Failed attempts so far (BullMQ's `attemptsMade`); 0 on the first.
    pub attempts_made: u32,
    /// Times the job was made active, this attempt included
    /// (BullMQ's `attemptsStarted`).
    pub attempts_started: u32,
    /// The most attempts the job may make (`opts.attempts`; 1 when unset).
    pub max_attempts: u32,
    /// When the job was created, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The job's backoff options, if the producer set any.
    pub backoff: Option<BackoffOptions>,
    pub(crate) data: String,
}

/// A job's backoff options (BullMQ's `opts.backoff`).
///
/// ```
/// # let job = bullpen_guest::Job::for_test("{}");
/// let base_ms = job.backoff.as_ref().map_or(1000, |b| b.delay);
/// assert_eq!(base_ms, 1000);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffOptions {
    /// `fixed`, `exponential`, or a custom strategy name.
    pub kind: String,
    /// The base delay in milliseconds; 0 when unset.
    pub delay: u64,
    /// BullMQ's jitter, 0.0 to 1.0.
    pub jitter: f64,
}

impl Job {
    /// The job's data, deserialised into `T`.
    ///
    /// Data that does not fit `T` will not fit it on the next attempt either,
    /// so the error is [`Error::Unrecoverable`], naming what did not fit.
    ///
    /// ```
    /// # let job = bullpen_guest::Job::for_test("{\"to\":\"ada@example.com\"}");
    /// #[derive(serde::Deserialize)]
    /// struct Mail { to: String }
    /// let mail: Mail = job.data()?;
    /// assert_eq!(mail.to, "ada@example.com");
    /// # Ok::<(), bullpen_guest::Error>(())
    /// ```
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.data).map_err(|e| {
            Error::unrecoverable(format!(
                "job data does not match {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The job's data as JSON text, exactly as the producer stored it.
    ///
    /// ```
    /// # let job = bullpen_guest::Job::for_test("[1, 2]");
    /// assert_eq!(job.data_text(), "[1, 2]");
    /// ```
    pub fn data_text(&self) -> &str {
        &self.data
    }

    /// The job's data as a raw JSON value: returning it completes the job
    /// with its data, byte for byte.
    ///
    /// ```
    /// # let job = bullpen_guest::Job::for_test("{\"b\":1,\"a\":2}");
    /// assert_eq!(job.raw_data().get(), "{\"b\":1,\"a\":2}");
    /// ```
    pub fn raw_data(&self) -> Box<RawValue> {
        RawValue::from_string(self.data.clone())
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("null is JSON"))
    }

    /// A job with this data and otherwise default fields, for unit tests of a
    /// processor's logic outside the host.
    ///
    /// ```
    /// let job = bullpen_guest::Job::for_test("{}");
    /// assert_eq!(job.attempts_made, 0);
    /// assert_eq!(job.max_attempts, 1);
    /// ```
    pub fn for_test(data: impl Into<String>) -> Self {
        Job {
            id: "1".into(),
            name: "test".into(),
            queue: "test".into(),
            attempts_made: 0,
            attempts_started: 1,
            max_attempts: 1,
            timestamp: 0,
            backoff: None,
            data: data.into(),
        }
    }
}

impl From<bindings::Job> for Job {
    fn from(job: bindings::Job) -> Self {
        Job {
            id: job.id,
            name: job.name,
            queue: job.queue,
            attempts_made: job.attempts_made,
            attempts_started: job.attempts_started,
            max_attempts: job.max_attempts,
            timestamp: job.timestamp,
            backoff: job.backoff.map(|b| BackoffOptions {
                kind: b.kind,
                delay: b.delay,
                jitter: b.jitter,
            }),
            data: job.data,
        }
    }
}
