//! Rust types and glue generated from `wit/processor.wit`, and from the
//! earlier contract versions in `wit/past/` the host still runs: the one
//! place the host's view of the contract comes from.
//!
//! The host works in the newest version's types; a processor built against
//! an earlier version gets its job in that version's types and answers in
//! them, converted here. A guest's answer reaches the host only through
//! [`Instance::process`], which passes its text through the gate
//! ([`Mask`]): the generated types that hold a guest's raw words never
//! leave this file.

// The generated items carry the WIT file's doc comments where it has them;
// the few it cannot document (generated helpers) are not ours to document.
#![allow(missing_docs)]

/// The newest contract, as generated: its world's types hold a guest's
/// raw words, so they stay in here.
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "processor",
        imports: {
            // Each is a Redis round trip, awaited while the guest waits.
            "bullpen:processor/jobs": async,
        },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub use generated::bullpen;
use generated::{Processor, ProcessorPre};

pub use self::bullpen::processor::host::Level;
pub use self::bullpen::processor::types::{BackoffDecision, BackoffOptions, Job};

use self::bullpen::processor::types as now;
use super::crash::Crash;
use super::mask::Mask;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// The newest contract version this host speaks: `bullpen:processor@<this>`.
pub const CONTRACT_VERSION: &str = "0.2.2";

/// Every contract version this host runs processors of, newest first. A
/// 0.2.0 or 0.2.1 processor runs on the newest bindings: wasmtime links an
/// import of `…@0.2.0` or `…@0.2.1` to the host's `…@0.2.2`, whose
/// interfaces only add functions (`host.failure-stack` in 0.2.1,
/// `jobs.queue-prefix` in 0.2.2).
pub const CONTRACT_VERSIONS: [&str; 4] = [CONTRACT_VERSION, V0_2_1, V0_2_0, V0_1_0];

const V0_2_1: &str = "0.2.1";
const V0_2_0: &str = "0.2.0";
const V0_1_0: &str = "0.1.0";

/// The WIT package name, without its version.
pub const CONTRACT_PACKAGE: &str = "bullpen:processor";

/// A failure as the host holds it: the guest's `failure`, its secrets
/// masked (only the gate makes one from a guest's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The human-readable reason; it becomes the job's `failedReason`.
    pub message: String,
    /// The error's kind, what backoff strategies see as `err.name`.
    pub name: Option<String>,
}

/// How a `process` call ended other than completing, as the host holds it:
/// the guest's `job-error`, its secrets masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// An ordinary error: retried with backoff while attempts remain.
    Failed(Failure),
    /// Fail now, whatever attempts remain, with this reason.
    Unrecoverable(String),
    /// The queue pauses this many ms; the job goes back to wait.
    RateLimited(u64),
    /// The job waits until this ms timestamp.
    Delayed(u64),
    /// The job waits for its children.
    WaitingChildren,
}

/// What `process` answered: the return value's JSON text, or how the attempt
/// ended.
pub type ProcessAnswer = Result<String, JobError>;

impl Failure {
    fn through(failure: now::Failure, mask: &Mask) -> Self {
        Failure {
            message: mask.mask_owned(failure.message),
            name: failure.name.map(|name| mask.mask_owned(name)),
        }
    }

    fn to_guest(&self) -> now::Failure {
        now::Failure {
            message: self.message.clone(),
            name: self.name.clone(),
        }
    }
}

impl JobError {
    fn through(error: now::JobError, mask: &Mask) -> Self {
        match error {
            now::JobError::Failed(failure) => JobError::Failed(Failure::through(failure, mask)),
            now::JobError::Unrecoverable(reason) => {
                JobError::Unrecoverable(mask.mask_owned(reason))
            }
            now::JobError::RateLimited(ms) => JobError::RateLimited(ms),
            now::JobError::Delayed(until) => JobError::Delayed(until),
            now::JobError::WaitingChildren => JobError::WaitingChildren,
        }
    }
}

/// A module linked for the contract version it was built against: the one
/// place that knows which versions exist and how each is called. A new
/// version adds a variant here, and nothing outside this file changes.
///
/// Generic over the store's data (the sandbox's `JobState`), so that the
/// contract's types do not depend on what a store holds.
pub(crate) enum Pre<T: 'static> {
    /// The newest, [`CONTRACT_VERSION`], and the earlier versions of its
    /// minor series (0.2.0, 0.2.1), which link to it unchanged: a patch version
    /// only adds imports.
    Now(ProcessorPre<T>),
    /// 0.1.0.
    V0_1(v0_1::ProcessorPre<T>),
}

impl<T: 'static> Clone for Pre<T> {
    fn clone(&self) -> Self {
        match self {
            Pre::Now(pre) => Pre::Now(pre.clone()),
            Pre::V0_1(pre) => Pre::V0_1(pre.clone()),
        }
    }
}

/// An instance of a processor, whatever its contract version.
pub(crate) enum Instance {
    Now(Processor),
    V0_1(v0_1::Processor),
}

impl<T: Send + 'static> Pre<T> {
    /// `pre` linked as a processor of contract `version` (one of
    /// [`CONTRACT_VERSIONS`]).
    pub(crate) fn new(version: &str, pre: InstancePre<T>) -> wasmtime::Result<Self> {
        Ok(match version {
            V0_1_0 => Pre::V0_1(v0_1::ProcessorPre::new(pre)?),
            _ => Pre::Now(ProcessorPre::new(pre)?),
        })
    }

    /// A fresh instance in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Now(pre) => Instance::Now(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    /// Calls `process`; the answer comes back through the gate, `mask`.
    pub(crate) async fn process<T: Send>(
        &self,
        store: &mut Store<T>,
        job: &Job,
        mask: &Mask,
    ) -> wasmtime::Result<Result<ProcessAnswer, Crash>> {
        let answer = match self {
            Instance::Now(processor) => processor.call_process(store, job).await?,
            Instance::V0_1(processor) => processor
                .call_process(store, &job.into())
                .await?
                .map_err(Into::into),
        };
        Ok(match answer {
            Ok(json) => match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                Ok(_) => Ok(Ok(match mask.mask_json(&json) {
                    std::borrow::Cow::Borrowed(_) => json,
                    std::borrow::Cow::Owned(masked) => masked,
                })),
                Err(e) => Err(Crash::InvalidReturnValue(
                    mask.mask(&e.to_string()).into_owned(),
                )),
            },
            Err(error) => Ok(Err(JobError::through(error, mask))),
        })
    }

    /// Calls `backoff`; its answer holds no text.
    pub(crate) async fn backoff<T: Send>(
        &self,
        store: &mut Store<T>,
        attempts_made: u32,
        strategy: &str,
        failure: &Failure,
        job: &Job,
    ) -> wasmtime::Result<BackoffDecision> {
        let failure = failure.to_guest();
        match self {
            Instance::Now(processor) => {
                processor
                    .call_backoff(store, attempts_made, strategy, &failure, job)
                    .await
            }
            Instance::V0_1(processor) => processor
                .call_backoff(
                    store,
                    attempts_made,
                    strategy,
                    &(&failure).into(),
                    &job.into(),
                )
                .await
                .map(Into::into),
        }
    }
}

/// The contract as it was at 0.1.0: `process` and `backoff`, the `host`
/// imports (log, progress, job-log lines), and no `jobs` interface.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/past/0.1.0",
        world: "processor",
        exports: { default: async },
        additional_derives: [PartialEq],
    });

    use self::bullpen::processor::{host, types};
    use super::bullpen::processor::{host as now_host, types as now};

    impl From<&now::Job> for types::Job {
        fn from(job: &now::Job) -> Self {
            types::Job {
                id: job.id.clone(),
                name: job.name.clone(),
                queue: job.queue.clone(),
                data: job.data.clone(),
                attempts_made: job.attempts_made,
                attempts_started: job.attempts_started,
                max_attempts: job.max_attempts,
                timestamp: job.timestamp,
                backoff: job.backoff.as_ref().map(|b| types::BackoffOptions {
                    kind: b.kind.clone(),
                    delay: b.delay,
                    jitter: b.jitter,
                }),
            }
        }
    }

    impl From<&now::Failure> for types::Failure {
        fn from(failure: &now::Failure) -> Self {
            types::Failure {
                message: failure.message.clone(),
                name: failure.name.clone(),
            }
        }
    }

    impl From<types::Failure> for now::Failure {
        fn from(failure: types::Failure) -> Self {
            now::Failure {
                message: failure.message,
                name: failure.name,
            }
        }
    }

    impl From<types::JobError> for now::JobError {
        fn from(error: types::JobError) -> Self {
            match error {
                types::JobError::Failed(failure) => now::JobError::Failed(failure.into()),
                types::JobError::Unrecoverable(reason) => now::JobError::Unrecoverable(reason),
                types::JobError::RateLimited(ms) => now::JobError::RateLimited(ms),
                types::JobError::Delayed(until) => now::JobError::Delayed(until),
            }
        }
    }

    impl From<types::BackoffDecision> for now::BackoffDecision {
        fn from(decision: types::BackoffDecision) -> Self {
            match decision {
                types::BackoffDecision::After(ms) => now::BackoffDecision::After(ms),
                types::BackoffDecision::Now => now::BackoffDecision::Now,
                types::BackoffDecision::GiveUp => now::BackoffDecision::GiveUp,
                types::BackoffDecision::Builtin => now::BackoffDecision::Builtin,
            }
        }
    }

    impl From<host::Level> for now_host::Level {
        fn from(level: host::Level) -> Self {
            match level {
                host::Level::Trace => now_host::Level::Trace,
                host::Level::Debug => now_host::Level::Debug,
                host::Level::Info => now_host::Level::Info,
                host::Level::Warn => now_host::Level::Warn,
                host::Level::Error => now_host::Level::Error,
            }
        }
    }
}
