//! `/healthz` and `/readyz`, on the address `[host] metrics` names: what a
//! load balancer or a Kubernetes probe asks of a host.
//!
//! - `/healthz`: 200 while the process serves HTTP at all.
//! - `/readyz`: 200 once every queue's module is loaded and its workers
//!   started, while Redis answers a `PING` and the host is not shutting
//!   down; otherwise 503, with the reason as the body.
//!
//! The listener is bound before anything else starts, so a probe gets an
//! answer (not ready) while modules compile or Redis is awaited.

use crate::queue::RedisTarget;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// How long `/readyz` waits for Redis's `PING`.
const REDIS_PING: Duration = Duration::from_millis(500);

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

/// What the host tells its probes.
#[derive(Default)]
pub struct Health {
    phase: AtomicU8,
    redis: OnceLock<RedisTarget>,
}

impl Health {
    /// Every queue serves; Redis at `target` is asked on each `/readyz`.
    pub fn serving(&self, target: RedisTarget) {
        let _ = self.redis.set(target);
        self.phase.store(SERVING, Ordering::Release);
    }

    /// The host stops taking jobs: not ready from now on.
    pub fn stopping(&self) {
        self.phase.store(STOPPING, Ordering::Release);
    }

    /// `/readyz`'s answer: `Ok` when ready, else why not.
    pub async fn ready(&self) -> Result<(), String> {
        match self.phase.load(Ordering::Acquire) {
            STARTING => Err("starting: loading modules or waiting for Redis".into()),
            STOPPING => Err("shutting down".into()),
            _ => {
                let target = self.redis.get().expect("set when serving");
                match tokio::time::timeout(REDIS_PING, target.ping()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("Redis does not answer: {e}")),
                    Err(_) => Err(format!("Redis does not answer within {REDIS_PING:?}")),
                }
            }
        }
    }
}

/// The probe listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("[host] metrics = \"{addr}\": cannot listen there: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `addr` and answers probes from `health` until the returned task is
/// aborted or the process ends.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let health = health.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&health, request).await) }
                });
                // The probe's own I/O errors are its business.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(wasmtime_wasi_http::io::TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn answer<B>(health: &Health, request: Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match health.ready().await {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        other => (
            StatusCode::NOT_FOUND,
            format!("no {other} here: /healthz, /readyz\n"),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
