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
    type Writer = Masked<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(std::io::stderr())
    }
}

/// A writer that masks every queue's secrets in what it is given.
#[derive(Debug)]
pub struct Masked<W>(pub W);

impl<W: Write> Write for Masked<W> {
    /// `tracing`'s formatter writes each event whole, in one call.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mask = SECRETS.read().unwrap_or_else(|e| e.into_inner()).clone();
        match mask {
            None => self.0.write_all(line)?,
            Some(mask) => {
                let text = String::from_utf8_lossy(line);
                self.0.write_all(mask.mask(&text).as_bytes())?;
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_masked_with_the_secrets_set_last() {
        let line = |text: &str| {
            let mut out = Masked(Vec::new());
            out.write_all(text.as_bytes()).unwrap();
            String::from_utf8(out.0).unwrap()
        };
        mask_secrets(Mask::new(["hunter2"]));
        assert_eq!(
            line("WARN connect error: hunter2.example.com refused\n"),
            "WARN connect error: ***.example.com refused\n"
        );
        mask_secrets(Mask::new(["other"]));
        assert_eq!(line("hunter2 other"), "hunter2 ***");
        mask_secrets(Mask::default());
        assert_eq!(line("other"), "other");
    }
}
