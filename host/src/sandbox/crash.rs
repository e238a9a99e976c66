//! Why a guest ended without answering: the reasons a user reads in
//! `failedReason` when a processor spins, runs out of memory, overflows its
//! stack or panics.

use super::mask::Mask;
use crate::units::{ByteSize, HumanDuration};
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;

/// How a guest's run ended when it did not return an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// The wall-clock budget ran out.
    Timeout(Duration),
    /// The guest asked for more linear memory than its cap (in bytes).
    MemoryLimit(u64),
    /// The guest's call stack grew past the host's limit.
    StackOverflow,
    /// The guest panicked: `file:line: message`, read from its stderr.
    Panic(String),
    /// Any other trap, as wasmtime describes it.
    Trap(String),
    /// `process` returned text that is not JSON.
    InvalidReturnValue(String),
    /// The host could not start an instance (e.g. no free instance slot).
    Instantiate(String),
}

impl Crash {
    /// A short machine-readable name: `timeout`, `memory-limit`,
    /// `stack-overflow`, `panic`, `trap`, `invalid-return-value`,
    /// `instantiate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Crash::Timeout(_) => "timeout",
            Crash::MemoryLimit(_) => "memory-limit",
            Crash::StackOverflow => "stack-overflow",
            Crash::Panic(_) => "panic",
            Crash::Trap(_) => "trap",
            Crash::InvalidReturnValue(_) => "invalid-return-value",
            Crash::Instantiate(_) => "instantiate",
        }
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crash::Timeout(budget) => write!(f, "timeout after {}", HumanDuration(*budget)),
            Crash::MemoryLimit(cap) => write!(f, "memory limit {} exceeded", ByteSize(*cap)),
            Crash::StackOverflow => f.write_str("stack overflow"),
            Crash::Panic(what) => write!(f, "panicked at {what}"),
            Crash::Trap(what) => write!(f, "trapped: {what}"),
            Crash::InvalidReturnValue(why) => {
                write!(f, "returned a value that is not JSON: {why}")
            }
            Crash::Instantiate(why) => write!(f, "could not start the module: {why}"),
        }
    }
}

/// What the host knew when a call failed, besides the error itself.
pub(crate) struct Evidence<'a> {
    pub memory_cap_hit: bool,
    pub memory_cap: u64,
    pub stderr: &'a str,
    pub instantiating: bool,
}

/// Names the reason a call into the guest failed. `evidence.stderr` has
/// passed the gate already; wasmtime's own words pass it here (a trap's
/// text can quote the guest).
pub(crate) fn classify(error: &wasmtime::Error, evidence: Evidence<'_>, mask: &Mask) -> Crash {
    if evidence.memory_cap_hit {
        return Crash::MemoryLimit(evidence.memory_cap);
    }
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::StackOverflow) {
        return Crash::StackOverflow;
    }
    if let Some(panic) = panic_message(evidence.stderr) {
        return Crash::Panic(panic);
    }
    if evidence.instantiating {
        return Crash::Instantiate(mask.mask(&format!("{error:#}")).into_owned());
    }
    match trap {
        Some(trap) => Crash::Trap(trap.to_string()),
        None => Crash::Trap(mask.mask(&format!("{error:#}")).into_owned()),
    }
}

/// Longest panic message kept, in bytes.
const MAX_PANIC_MESSAGE: usize = 4096;

/// Finds Rust's panic report in a guest's stderr (masked by the gate, so
/// the cut below never splits a secret) and returns `file:line: message`.
///
/// Rust prints `thread '<unnamed>' panicked at src/lib.rs:12:5:` and the
/// message on the following lines, then a `note:` line.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")? + "panicked at ".len();
    let rest = &stderr[start..];
    let (location_line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let location = location_line.trim_end().trim_end_matches(':');
    let location = strip_column(location);
    let message: Vec<&str> = body
        .lines()
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    let mut message = message.join("\n").trim().to_owned();
    if message.len() > MAX_PANIC_MESSAGE {
        let mut end = MAX_PANIC_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    Some(if message.is_empty() {
        location.to_owned()
    } else {
        format!("{location}: {message}")
    })
}

/// `src/lib.rs:12:5` -> `src/lib.rs:12`.
fn strip_column(location: &str) -> &str {
    match location.rsplit_once(':') {
        Some((head, column))
            if !column.is_empty()
                && column.bytes().all(|b| b.is_ascii_digit())
                && head
                    .rsplit_once(':')
                    .is_some_and(|(_, line)| line.bytes().all(|b| b.is_ascii_digit())) =>
        {
            head
        }
        _ => location,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rusts_panic_report() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:12:5:\nboom: it broke\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("src/lib.rs:12: boom: it broke")
        );
        assert_eq!(panic_message("nothing here"), None);
    }

    #[test]
    fn reasons_read_as_users_expect() {
        assert_eq!(
            Crash::Timeout(Duration::from_secs(30)).to_string(),
            "timeout after 30s"
        );
        assert_eq!(
            Crash::MemoryLimit(64 << 20).to_string(),
            "memory limit 64 MiB exceeded"
        );
        assert_eq!(
            Crash::Panic("src/lib.rs:12: boom".into()).to_string(),
            "panicked at src/lib.rs:12: boom"
        );
    }
}
