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
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

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

/// Binds `addr` and answers from `observed` until the returned task is
/// aborted or the process ends.
pub async fn serve(
    addr: SocketAddr,
    observed: Observed,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let observed = observed.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let observed = observed.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&observed, request).await) }
                });
                // The client's own I/O errors are its business.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
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
