//! The last attempts of a queue and what each cost, kept in memory for
//! `bullpen jobs`: a ring of fixed size, so keeping them costs no Redis
//! write and no growing memory.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptCost {
    /// The job.
    pub job_id: String,
    /// Which attempt it was (`attemptsMade + 1` when it started).
    pub attempt: u32,
    /// How it ended (an `outcome` label of `bullpen_attempts_total`).
    pub outcome: String,
    /// Its wall time in the sandbox; none when the guest never ran (its
    /// data could not be given to it).
    pub duration_ms: Option<f64>,
    /// The most linear memory it held, in bytes.
    pub peak_memory: Option<u64>,
    /// The CPU time it spent in the sandbox.
    pub cpu_ms: Option<f64>,
    /// Attempts its instance had run before it: 0 for a fresh instance
    /// (absent from a host older than instance reuse).
    #[serde(default)]
    pub reused: Option<u32>,
    /// When it ended, ms since the epoch.
    pub finished_at: u64,
}

/// A ring of the last attempts. Each record locks one slot, which only a
/// record a whole ring later would also lock: no contention in practice.
#[derive(Debug)]
pub struct Costs {
    slots: Box<[Mutex<Option<AttemptCost>>]>,
    next: AtomicUsize,
}

impl Costs {
    /// A ring of `size` slots.
    pub fn new(size: usize) -> Self {
        Costs {
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Keeps `cost`, in place of the oldest once the ring is full.
    pub fn record(&self, cost: AttemptCost) {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        *self.slots[slot].lock().unwrap_or_else(|e| e.into_inner()) = Some(cost);
    }

    /// What the ring holds, newest first.
    pub fn newest_first(&self) -> Vec<AttemptCost> {
        let mut all: Vec<AttemptCost> = self
            .slots
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        all.sort_by_key(|cost| std::cmp::Reverse(cost.finished_at));
        all
    }
}

/// Asks the host listening on `addr` (its `[host] metrics`) for queue
/// `queue`'s last attempts; `Err` says why there is no answer.
pub async fn fetch(addr: SocketAddr, queue: &str) -> Result<Vec<AttemptCost>, String> {
    use http_body_util::BodyExt;
    // A host listening on every address is reached on loopback.
    let addr = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    let ask = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("no host answers at {addr} ({e})"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request =
            http::Request::get(format!("/attempts?queue={}", super::percent_encode(queue)))
                .header("host", addr.to_string())
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(String::from_utf8_lossy(&body).trim().to_owned());
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(FETCH_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the host at {addr} did not answer within {FETCH_TIMEOUT:?}"
            ))
        })
}

/// How long `bullpen jobs` waits for the host's answer.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(job: u64) -> AttemptCost {
        AttemptCost {
            job_id: job.to_string(),
            attempt: 1,
            outcome: "completed".into(),
            duration_ms: Some(1.0),
            peak_memory: Some(65536),
            cpu_ms: Some(0.5),
            reused: Some(0),
            finished_at: job,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let costs = Costs::new(3);
        for job in 1..=5 {
            costs.record(cost(job));
        }
        let kept: Vec<String> = costs.newest_first().into_iter().map(|c| c.job_id).collect();
        assert_eq!(kept, ["5", "4", "3"]);
    }
}
