//! The budgets of what queues share: each one names the resource, what a
//! guest met, and the queue key that raises it.
//!
//! A component that holds a guest back or refuses it tells the call's
//! [`JobObserver::over_budget`](super::JobObserver::over_budget); the worker
//! counts it (`bullpen_budget_hits_total`) and logs the first of each kind
//! in an attempt, so a guest looping on a refusal writes one line.

/// A shared resource's budget that held a guest back or refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// The guest computed past a tick and waited for its queue's turn:
    /// other queues were busy.
    CpuTurn,
    /// An outbound connection refused: the attempt holds its most.
    AttemptConnections,
    /// An outbound connection refused: the queue's attempts hold their
    /// most.
    QueueConnections,
    /// An outbound connection or a file refused: the guests of all queues
    /// hold every descriptor the host leaves them.
    HostDescriptors,
    /// A file not opened: the attempt holds [`MAX_OPEN_FILES`] open.
    ///
    /// [`MAX_OPEN_FILES`]: crate::sandbox::grants::MAX_OPEN_FILES
    OpenFiles,
    /// A write refused: the writable grant holds its most bytes.
    FileBytes,
    /// A file or directory refused: the writable grant holds its most
    /// entries.
    FileCount,
    /// A link (symbolic or hard) refused: a grant holds none.
    FileLink,
    /// A job not added: the queue added its most jobs for now.
    AddRate,
    /// A job not added: the queue it goes to holds its most waiting jobs.
    AddDepth,
    /// Log lines dropped: the attempt wrote its most.
    LogLines,
}

impl Budget {
    /// Every budget, in the order of [`Budget::index`].
    pub const ALL: [Budget; 11] = [
        Budget::CpuTurn,
        Budget::AttemptConnections,
        Budget::QueueConnections,
        Budget::HostDescriptors,
        Budget::OpenFiles,
        Budget::FileBytes,
        Budget::FileCount,
        Budget::FileLink,
        Budget::AddRate,
        Budget::AddDepth,
        Budget::LogLines,
    ];

    /// Its position in [`Budget::ALL`].
    pub fn index(self) -> usize {
        Budget::ALL
            .iter()
            .position(|b| *b == self)
            .expect("every budget is listed")
    }

    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::CpuTurn => "cpu-turn",
            Budget::AttemptConnections => "attempt-connections",
            Budget::QueueConnections => "queue-connections",
            Budget::HostDescriptors => "host-descriptors",
            Budget::OpenFiles => "open-files",
            Budget::FileBytes => "file-bytes",
            Budget::FileCount => "file-count",
            Budget::FileLink => "file-link",
            Budget::AddRate => "add-rate",
            Budget::AddDepth => "add-depth",
            Budget::LogLines => "log-lines",
        }
    }

    /// What the guest met, and what changes it, for the log.
    pub fn explain(self) -> &'static str {
        match self {
            Budget::CpuTurn => {
                "it computed while other queues were busy and waited for its turn \
                 (its share of the CPU is the queue's `cpu_weight`)"
            }
            Budget::AttemptConnections => {
                "an outbound connection was refused: the attempt holds \
                 `max_outbound_connections` already (a key of the queue)"
            }
            Budget::QueueConnections => {
                "an outbound connection was refused: the queue's attempts hold \
                 `max_queue_outbound_connections` already (a key of the queue)"
            }
            Budget::HostDescriptors => {
                "an outbound connection or a file was refused: the guests of all queues hold \
                 every descriptor the host leaves them (raise the open-file limit, `ulimit -n`)"
            }
            Budget::OpenFiles => {
                "a file was not opened (EDQUOT): the attempt holds 256 files open already"
            }
            Budget::FileBytes => {
                "a write was refused (no space): the writable grant holds its `max_bytes`"
            }
            Budget::FileCount => {
                "a file or directory was refused (no space): the writable grant holds its \
                 `max_files`"
            }
            Budget::FileLink => "a link was refused: no link may be made inside a grant",
            Budget::AddRate => {
                "a job was not added: the queue added `max_adds_per_second` jobs \
                 (a key of the queue) and has to wait"
            }
            Budget::AddDepth => {
                "a job was not added: the queue it goes to holds `max_target_depth` waiting \
                 jobs (a key of the queue) already"
            }
            Budget::LogLines => {
                "log lines were dropped: the attempt wrote its most (`report_budget` and \
                 10,000 lines)"
            }
        }
    }
}
