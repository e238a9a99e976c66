//! Rust types and glue generated from `wit/processor.wit`, and from the
//! earlier contract versions in `wit/past/` the host still runs: the one
//! place the host's view of the contract comes from.
//!
//! The host works in the newest version's types; a processor built against
//! an earlier version gets its job in that version's types and answers in
//! them, converted here.

// The generated items carry the WIT file's doc comments where it has them;
// the few it cannot document (generated helpers) are not ours to document.
#![allow(missing_docs)]

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

pub use self::bullpen::processor::host::Level;
pub use self::bullpen::processor::types::BackoffOptions;

/// The newest contract version this host speaks: `bullpen:processor@<this>`.
pub const CONTRACT_VERSION: &str = "0.2.1";

/// Every contract version this host runs processors of, newest first. A
/// 0.2.0 processor runs on the newest bindings: wasmtime links an import of
/// `…@0.2.0` to the host's `…@0.2.1`, whose `host` interface only adds a
/// function.
pub const CONTRACT_VERSIONS: [&str; 3] = [CONTRACT_VERSION, "0.2.0", "0.1.0"];

/// The WIT package name, without its version.
pub const CONTRACT_PACKAGE: &str = "bullpen:processor";

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
