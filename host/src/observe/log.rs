//! The host's log writer: every line it writes passes the mask of every
//! queue's secrets, whoever wrote it.
//!
//! A guest's words are masked at the sandbox's gate before bullpen logs
//! them. Libraries log too, outside the gate (wasmtime's HTTP client names
//! the host a refused request went to, and a guest chooses that host), so
//! the writer masks each line once more with the union of the running
//! queues' secrets, set at start and on every reload.

use crate::sandbox::Mask;
use std::io::Write;
use std::sync::{Arc, RwLock};
use tracing_subscriber::fmt::MakeWriter;

static SECRETS: RwLock<Option<Arc<Mask>>> = RwLock::new(None);

/// Masks `mask`'s secrets in every line logged from now on (replacing the
/// mask set before).
pub fn mask_secrets(mask: Mask) {
    let mask = (!mask.is_empty()).then(|| Arc::new(mask));
    *SECRETS.write().unwrap_or_else(|e| e.into_inner()) = mask;
}

/// Writes log lines to stderr, masked.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedStderr
    }
}

impl Write for MaskedStderr {
    /// `tracing`'s formatter writes each event whole, in one call.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mask = SECRETS.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut stderr = std::io::stderr().lock();
        match mask {
            None => stderr.write_all(line)?,
            Some(mask) => {
                let text = String::from_utf8_lossy(line);
                stderr.write_all(mask.mask(&text).as_bytes())?;
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
