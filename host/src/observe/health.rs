//! What `/readyz` answers: whether the host is ready for jobs, and why not.
//!
//! Ready once every queue's module is loaded and its workers started, while
//! Redis answers a `PING` and the host is not shutting down.

use crate::queue::RedisTarget;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How long `/readyz` waits for Redis's `PING`.
const REDIS_PING: Duration = Duration::from_millis(500);

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

/// What the host tells its probes.
#[derive(Debug, Default)]
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
