//! Write [bullpen] job processors in Rust.
//!
//! A processor is a type that implements [`Processor`], exported with
//! [`export!`] and built for `wasm32-wasip2`. bullpen runs a fresh instance
//! of it for every attempt of every BullMQ job on the queue it is bound to.
//!
//! What [`Processor::process`] returns decides the job's fate, with BullMQ's
//! semantics:
//!
//! | you return | the job |
//! |---|---|
//! | `Ok(value)` | completes; `value`, serialised to JSON, is its `returnvalue` |
//! | `Err(e)` from `?` or [`Error::failed`] | counts an attempt; retried after its backoff while attempts remain |
//! | [`Error::unrecoverable`] | fails now, whatever attempts remain |
//! | [`Error::rate_limited`] | goes back to wait; the queue pauses; no attempt counted |
//! | [`Error::delayed_until`] / [`Error::delayed_for`] | waits in the delayed set; no attempt counted |
//! | [`Error::waiting_children`] | waits until its children have finished ([`jobs`]); no attempt counted |
//!
//! ```no_run
//! use bullpen_guest::{Job, Processor, Result};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Resize {
//!     width: u32,
//!     height: u32,
//! }
//!
//! struct Thumbnails;
//!
//! impl Processor for Thumbnails {
//!     fn process(job: Job) -> Result<impl serde::Serialize> {
//!         let size: Resize = job.data()?;
//!         bullpen_guest::progress(50);
//!         Ok(serde_json::json!({ "pixels": size.width * size.height }))
//!     }
//! }
//!
//! bullpen_guest::export!(Thumbnails);
//! ```
//!
//! [bullpen]: https://github.com/bullpen-rs/bullpen

#![warn(missing_docs)]

mod error;
pub mod http;
mod job;
pub mod jobs;
mod report;

pub use error::{Error, Failure, Result};
pub use job::{BackoffOptions, Job};
pub use jobs::{JobOptions, queue};
pub use report::{Level, add_log, log, progress};

pub use serde_json::value::RawValue;

/// How long to wait before the next attempt of a failed job: the answer of
/// [`Processor::backoff`].
///
/// ```
/// use bullpen_guest::Backoff;
/// use std::time::Duration;
/// fn linear(attempts_made: u32) -> Backoff {
///     Backoff::After(Duration::from_secs(u64::from(attempts_made)))
/// }
/// assert_eq!(linear(3), Backoff::After(Duration::from_secs(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Retry after this long (rounded down to whole milliseconds).
    After(std::time::Duration),
    /// Retry immediately.
    Now,
    /// Do not retry: the job fails now.
    GiveUp,
    /// Use the job's own `fixed` or `exponential` settings.
    Builtin,
}

/// A job processor: the one trait a bullpen guest implements.
///
/// Export it with [`export!`].
///
/// ```no_run
/// use bullpen_guest::{Backoff, Failure, Job, Processor, Result};
/// use std::time::Duration;
///
/// struct Mailer;
///
/// impl Processor for Mailer {
///     fn process(job: Job) -> Result<impl serde::Serialize> {
///         let to: String = job.data()?;
///         Ok(format!("sent to {to}"))
///     }
///
///     fn backoff(attempts_made: u32, _strategy: &str, _error: &Failure, _job: &Job) -> Backoff {
///         Backoff::After(Duration::from_secs(u64::from(attempts_made) * 10))
///     }
/// }
///
/// bullpen_guest::export!(Mailer);
/// ```
pub trait Processor {
    /// Runs one attempt of `job`.
    ///
    /// `Ok(value)` completes the job with `value` serialised as its return
    /// value; an [`Error`] says what happens to it instead.
    fn process(job: Job) -> Result<impl serde::Serialize>;

    /// Decides when a job that failed is retried, for jobs whose backoff type
    /// is neither `fixed` nor `exponential` (a custom strategy name the
    /// producer chose). Runs on a fresh instance, not the one that failed.
    ///
    /// `attempts_made` counts the failure that just happened. The default
    /// returns [`Backoff::Builtin`].
    fn backoff(attempts_made: u32, strategy: &str, error: &Failure, job: &Job) -> Backoff {
        let _ = (attempts_made, strategy, error, job);
        Backoff::Builtin
    }
}

/// Exports a [`Processor`] as the component's `process` and `backoff`.
///
/// Use it once per crate, at the top level, with the processor's type.
///
/// ```no_run
/// struct Echo;
///
/// impl bullpen_guest::Processor for Echo {
///     fn process(job: bullpen_guest::Job) -> bullpen_guest::Result<impl serde::Serialize> {
///         Ok(job.raw_data())
///     }
/// }
///
/// bullpen_guest::export!(Echo);
/// ```
#[macro_export]
macro_rules! export {
    ($processor:ty) => {
        const _: () = {
            struct __BullpenExport;

            impl $crate::__private::bindings::Guest for __BullpenExport {
                fn process(
                    job: $crate::__private::bindings::Job,
                ) -> ::core::result::Result<
                    ::std::string::String,
                    $crate::__private::bindings::JobError,
                > {
                    $crate::__private::process::<$processor>(job)
                }

                fn backoff(
                    attempts_made: u32,
                    strategy: ::std::string::String,
                    error: $crate::__private::bindings::Failure,
                    job: $crate::__private::bindings::Job,
                ) -> $crate::__private::bindings::BackoffDecision {
                    $crate::__private::backoff::<$processor>(attempts_made, strategy, error, job)
                }
            }

            $crate::__private::bindings::__export_processor_world!(
                __BullpenExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Glue between [`export!`] and the generated bindings. Not a public API.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private {
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "processor",
            pub_export_macro: true,
            export_macro_name: "__export_processor_world",
            default_bindings_module: "bullpen_guest::__private::bindings",
        });
    }

    use crate::{Backoff, Processor};

    pub fn process<P: Processor>(job: bindings::Job) -> Result<String, bindings::JobError> {
        let job = crate::Job::from(job);
        match P::process(job) {
            Ok(value) => serde_json::to_string(&value).map_err(|e| {
                bindings::JobError::Failed(bindings::Failure {
                    message: format!("the return value is not serialisable to JSON: {e}"),
                    name: Some("SerializeError".into()),
                })
            }),
            Err(error) => Err(error.into()),
        }
    }

    pub fn backoff<P: Processor>(
        attempts_made: u32,
        strategy: String,
        error: bindings::Failure,
        job: bindings::Job,
    ) -> bindings::BackoffDecision {
        let error = crate::Failure::from(error);
        let job = crate::Job::from(job);
        match P::backoff(attempts_made, &strategy, &error, &job) {
            Backoff::After(delay) => bindings::BackoffDecision::After(
                u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            ),
            Backoff::Now => bindings::BackoffDecision::Now,
            Backoff::GiveUp => bindings::BackoffDecision::GiveUp,
            Backoff::Builtin => bindings::BackoffDecision::Builtin,
        }
    }
}
