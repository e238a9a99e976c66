//! What the host shows of itself on the address `[host] metrics` names:
//!
//! - `/healthz`: 200 while the process serves HTTP at all;
//! - `/readyz`: 200 when ready for jobs ([`health`]), else 503 and why;
//! - `/metrics`: Prometheus's text format ([`metrics`]);
//! - `/attempts?queue=NAME`: the queue's last attempts and their cost, as
//!   JSON ([`costs`]), for `bullpen jobs`.
//!
//! The listener is bound before anything else starts, so a probe gets an
//! answer (not ready) while modules compile or Redis is awaited.

pub mod costs;
pub mod depth;
pub mod health;
pub mod histogram;
pub mod log;
pub mod metrics;
pub mod process;

use health::Health;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics::Metrics;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// What the listener serves from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Readiness.
    pub health: Arc<Health>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

/// The listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("[host] metrics = \"{addr}\": cannot listen there: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Most connections the listener holds at once. A new one past it closes
/// the oldest: an idle or slow client cannot keep `/healthz` from being
/// answered, and the listener never holds more descriptors than this.
pub const MAX_CONNECTIONS: usize = 64;

/// Longest a connection is kept: one request, read and answered (keep-alive
/// is off), within this. A client that sends its headers a byte at a time
/// or not at all is closed then.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and answers from `observed` until the returned task is
/// aborted or the process ends.
pub async fn serve(
    addr: SocketAddr,
    observed: Observed,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    Ok(tokio::spawn(accept(listener, observed)))
}

/// The accept loop: each connection in a task of its own, the oldest closed
/// when [`MAX_CONNECTIONS`] are open; an accept that fails (no descriptor
/// left, say) waits before the next, longer each time, and is said once a
/// minute, rather than spinning.
async fn accept(listener: TcpListener, observed: Observed) {
    let open: Arc<Mutex<VecDeque<(u64, AbortHandle)>>> = Arc::default();
    let mut next_id: u64 = 0;
    let mut backoff = Duration::ZERO;
    let mut said: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        "the metrics listener cannot accept a connection ({e}); trying again, \
                         less often while it fails"
                    );
                    said = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let observed = observed.clone();
        let mut connections = open.lock().unwrap_or_else(|e| e.into_inner());
        if connections.len() >= MAX_CONNECTIONS
            && let Some((_, oldest)) = connections.pop_front()
        {
            oldest.abort();
            observed.metrics.listener_evicted();
        }
        let done = open.clone();
        // Spawned while the list is locked: the task removes itself only
        // after it is listed.
        let task = tokio::spawn(async move {
            serve_one(stream, observed).await;
            let mut connections = done.lock().unwrap_or_else(|e| e.into_inner());
            connections.retain(|(other, _)| *other != id);
        });
        connections.push_back((id, task.abort_handle()));
    }
}

/// Answers one request on `stream`, within [`CONNECTION_TIMEOUT`].
async fn serve_one(stream: tokio::net::TcpStream, observed: Observed) {
    let service = hyper::service::service_fn(move |request| {
        let observed = observed.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&observed, request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service);
    // The client's own I/O errors, and its slowness, are its business.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
}

const TEXT: &str = "text/plain; charset=utf-8";

/// `text` with every byte but letters, digits and `-._~` written `%XX`: a
/// queue name in a URL's query.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text [`percent_encode`] (or any client) wrote; a `%` not followed by
/// two hex digits stays as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn answer<B>(observed: &Observed, request: Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/readyz" => match observed.health.ready().await {
            Ok(()) => (StatusCode::OK, TEXT, "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            observed.metrics.encode(),
        ),
        "/attempts" => {
            let queue = request
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|pair| pair.strip_prefix("queue="))
                .map(percent_decode)
                .unwrap_or_default();
            match observed.metrics.costs(&queue) {
                Some(costs) => (
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&costs).expect("costs serialize"),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    TEXT,
                    format!("no queue named `{queue}` runs here (give ?queue=NAME)\n"),
                ),
            }
        }
        other => (
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no {other} here: /healthz, /readyz, /metrics, /attempts?queue=NAME\n"),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_survive_the_query() {
        for name in ["emails", "{bull}q 1", "ünï/cödé&x=y", "100%"] {
            assert_eq!(percent_decode(&percent_encode(name)), name);
        }
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
