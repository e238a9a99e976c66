//! Cancels from the fleet: each host listens on BullMQ's Relay for
//! `jobs.<queue>.cancel` messages (`{ jobId, reason, retry? }`, what BullMQ's
//! docs publish and `bullpen cancel` sends) and stops its own run of the
//! job, if it has one, without asking the guest.

use crate::queue::RedisTarget;
use crate::relay::{Relay, RelayOptions};
use crate::worker::Canceller;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The topic of cancels for `queue`.
pub fn topic(queue: &str) -> String {
    format!("jobs.{queue}.cancel")
}

/// The queues a host serves, by name, as cancels reach them.
pub type Cancellers = Arc<Mutex<BTreeMap<String, Canceller>>>;

/// A cancel as the Relay carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CancelMessage {
    /// The job (BullMQ's `jobId`; a number is taken as its text).
    #[serde(rename = "jobId", deserialize_with = "id_text")]
    pub job_id: String,
    /// Why, for the job's `failedReason` (`cancelled: <reason>`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Retry the job (an attempt counted) instead of failing it for good.
    #[serde(default)]
    pub retry: bool,
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(id) => Ok(id),
        serde_json::Value::Number(id) => Ok(id.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "jobId is {other}, not a job id"
        ))),
    }
}

use serde::Deserialize as _;

/// Listens for cancels of the queues in `cancellers` until the returned
/// node is stopped. A Relay that cannot be joined (Redis older than 6.2)
/// leaves the host running without it, saying so.
pub async fn listen(target: &RedisTarget, cancellers: Cancellers) -> Option<Relay> {
    let options = RelayOptions {
        name: format!("bullpen {}", env!("CARGO_PKG_VERSION")),
        ..RelayOptions::default()
    };
    let joined = async {
        let relay = Relay::connect(target, options).await?;
        let subscription = relay.subscribe("jobs.*.cancel").await?;
        Ok::<_, crate::relay::RelayError>((relay, subscription))
    };
    let (relay, mut subscription) = match joined.await {
        Ok(joined) => joined,
        Err(e) => {
            tracing::warn!("cancels from BullMQ's Relay are off: {e}");
            return None;
        }
    };
    tokio::spawn(async move {
        while let Some(message) = subscription.messages.recv().await {
            let queue = message.topic.split('.').nth(1).unwrap_or_default();
            let cancel: CancelMessage = match serde_json::from_value(message.data) {
                Ok(cancel) => cancel,
                Err(e) => {
                    tracing::warn!(
                        queue,
                        "a cancel on {} is not {{ jobId, reason }}: {e}",
                        message.topic
                    );
                    continue;
                }
            };
            let canceller = cancellers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(queue)
                .cloned();
            let reason = cancel.reason.as_deref().unwrap_or("cancelled");
            match canceller {
                Some(canceller) if canceller.cancel(&cancel.job_id, reason, cancel.retry) => {}
                // Another host runs it, or nobody does: nothing to do here.
                _ => tracing::debug!(
                    queue,
                    job = cancel.job_id,
                    "a cancel for a job this host does not run"
                ),
            }
        }
    });
    Some(relay)
}
