//! What a processor tells the host while it runs: logs and progress.

use crate::__private::bindings::bullpen::processor::host;

/// The severity of a [`log`] message.
///
/// ```no_run
/// use bullpen_guest::{Level, log};
/// log(Level::Warn, "retrying with a smaller batch");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very fine-grained detail.
    Trace,
    /// Detail for whoever debugs the processor.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the processor handled.
    Warn,
    /// Something went wrong.
    Error,
}

/// Writes `message` to the host's log, tagged with the queue and job.
///
/// ```no_run
/// bullpen_guest::log(bullpen_guest::Level::Info, "resizing 3 images");
/// ```
pub fn log(level: Level, message: impl AsRef<str>) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message.as_ref());
}

/// Sets the job's progress (BullMQ's `job.updateProgress`) to `value`, a
/// number or anything serialisable to a JSON object, and emits BullMQ's
/// `progress` event.
///
/// ```no_run
/// bullpen_guest::progress(42);
/// bullpen_guest::progress(serde_json::json!({ "done": 3, "of": 7 }));
/// ```
pub fn progress(value: impl serde::Serialize) {
    // Serialising a plain value cannot fail; a type whose Serialize impl
    // errors reports nothing rather than failing the job.
    if let Ok(json) = serde_json::to_string(&value) {
        host::progress(&json);
    }
}

/// Appends `line` to the job's BullMQ log (what `Queue.getJobLogs` returns).
///
/// ```no_run
/// bullpen_guest::add_log("fetched 12 rows");
/// ```
pub fn add_log(line: impl AsRef<str>) {
    host::add_log(line.as_ref());
}
