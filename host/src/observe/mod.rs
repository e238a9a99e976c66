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
                .unwrap_or("");
            match observed.metrics.costs(queue) {
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
