//! A guest's stdout and stderr, captured up to a bound.
//!
//! wasmtime's `MemoryOutputPipe` traps the guest once it is full; a chatty
//! processor must not fail its job for that, so this pipe keeps the first
//! `capacity` bytes and counts the rest.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What a guest wrote to one of its output streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes written, up to the capture limit, as (lossy) UTF-8.
    pub text: String,
    /// Bytes written beyond the limit and dropped.
    pub dropped: u64,
}

/// A bounded in-memory pipe for one job's stdout or stderr.
#[derive(Clone)]
pub struct CapturePipe {
    inner: Arc<Mutex<Buffer>>,
}

struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    dropped: u64,
}

impl CapturePipe {
    /// A pipe that keeps up to `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        CapturePipe {
            inner: Arc::new(Mutex::new(Buffer {
                bytes: Vec::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    /// What was written since the last take, leaving the pipe empty for
    /// the next attempt of an instance.
    pub fn take(&self) -> Captured {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let captured = Captured {
            text: String::from_utf8_lossy(&buffer.bytes).into_owned(),
            dropped: buffer.dropped,
        };
        buffer.bytes.clear();
        buffer.dropped = 0;
        captured
    }

    fn append(&self, data: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = buffer.capacity.saturating_sub(buffer.bytes.len());
        let kept = room.min(data.len());
        buffer.bytes.extend_from_slice(&data[..kept]);
        buffer.dropped += (data.len() - kept) as u64;
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest write the guest is told it may make at once.
const WRITE_PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let pipe = CapturePipe::new(4);
        pipe.append(b"hel");
        pipe.append(b"lo world");
        assert_eq!(
            pipe.take(),
            Captured {
                text: "hell".into(),
                dropped: 7
            }
        );
        // The next attempt of an instance starts from nothing.
        pipe.append(b"again");
        assert_eq!(
            pipe.take(),
            Captured {
                text: "agai".into(),
                dropped: 1
            }
        );
    }
}
