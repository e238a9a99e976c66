//! The host side of the `bullpen:processor/host` imports: what a guest
//! reports while it runs (logs, progress, job-log lines), handed to a
//! [`JobObserver`] chosen by whoever runs the job.

use super::bindings::{Level, bullpen::processor};
use std::sync::Mutex;

/// Receives what a guest reports while it runs one job.
///
/// Calls happen synchronously inside the guest's call, so implementations
/// should be quick (record, or send on a channel). The worker forwards them to
/// BullMQ; `bullpen exec` collects them with a [`Recorder`].
pub trait JobObserver: Send + Sync {
    /// The guest wrote a log message.
    fn log(&self, level: Level, message: &str);
    /// The guest set the job's progress to this JSON text (already checked
    /// to be JSON).
    fn progress(&self, json: &str);
    /// The guest appended a line to the job's BullMQ log.
    fn add_log(&self, line: &str);
}

/// Most reports one job may make; later ones are dropped (and counted), so a
/// guest in a logging loop cannot flood the host or Redis.
pub const MAX_REPORTS_PER_JOB: u32 = 10_000;

/// Longest log message or job-log line kept, in bytes.
pub const MAX_REPORT_LEN: usize = 64 * 1024;

/// One thing a guest reported, as a [`Recorder`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A log message.
    Log {
        /// Its severity.
        level: Level,
        /// Its text.
        message: String,
    },
    /// A progress update, as JSON text.
    Progress(String),
    /// A line for the job's BullMQ log.
    JobLog(String),
}

/// A [`JobObserver`] that keeps every report in order, for `bullpen exec`
/// and tests.
#[derive(Debug, Default)]
pub struct Recorder {
    reports: Mutex<Vec<Report>>,
}

impl Recorder {
    /// What was reported so far.
    pub fn reports(&self) -> Vec<Report> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn push(&self, report: Report) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
    }
}

impl JobObserver for Recorder {
    fn log(&self, level: Level, message: &str) {
        self.push(Report::Log {
            level,
            message: message.to_owned(),
        });
    }

    fn progress(&self, json: &str) {
        self.push(Report::Progress(json.to_owned()));
    }

    fn add_log(&self, line: &str) {
        self.push(Report::JobLog(line.to_owned()));
    }
}

/// A [`JobObserver`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ignore;

impl JobObserver for Ignore {
    fn log(&self, _: Level, _: &str) {}
    fn progress(&self, _: &str) {}
    fn add_log(&self, _: &str) {}
}

/// The lowercase name of a level: `trace` ... `error`.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// One job's connection to its observer, with the report budget applied.
pub(crate) struct Reporter {
    observer: std::sync::Arc<dyn JobObserver>,
    made: u32,
    dropped: u32,
}

impl Reporter {
    pub(crate) fn new(observer: std::sync::Arc<dyn JobObserver>) -> Self {
        Reporter {
            observer,
            made: 0,
            dropped: 0,
        }
    }

    /// Reports dropped because the job went over [`MAX_REPORTS_PER_JOB`].
    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }

    fn admit(&mut self) -> bool {
        if self.made >= MAX_REPORTS_PER_JOB {
            self.dropped += 1;
            return false;
        }
        self.made += 1;
        true
    }
}

fn clip(text: &str) -> &str {
    if text.len() <= MAX_REPORT_LEN {
        return text;
    }
    let mut end = MAX_REPORT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl processor::host::Host for Reporter {
    fn log(&mut self, level: Level, message: String) {
        if self.admit() {
            self.observer.log(level, clip(&message));
        }
    }

    fn progress(&mut self, value: String) {
        if !self.admit() {
            return;
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(&value) {
            Ok(_) => self.observer.progress(&value),
            Err(e) => self.observer.log(
                Level::Warn,
                &format!("progress ignored: `{}` is not JSON ({e})", clip(&value)),
            ),
        }
    }

    fn add_log(&mut self, line: String) {
        if self.admit() {
            self.observer.add_log(clip(&line));
        }
    }
}

impl processor::types::Host for Reporter {}
