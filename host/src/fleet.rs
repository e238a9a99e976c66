//! What the fleet tells a host through BullMQ's Relay, from any BullMQ
//! process or from `bullpen` itself:
//!
//! - cancels, on `jobs.<queue>.cancel` (`{ jobId, reason, retry? }`, the
//!   message BullMQ's docs publish): the host running the job stops its run
//!   at once, without asking the guest;
//! - settings, retained on `workers.<queue>.settings` (`{ concurrency,
//!   paused }`, as BullMQ's "controlling workers" example publishes them): a
//!   running host applies each as it comes, and a host that starts later
//!   applies the retained one before its queue takes a job.

use crate::queue::RedisTarget;
use crate::relay::{Message, Relay, RelayError, RelayOptions};
use crate::worker::{QueueControl, Steering};
use serde::Deserialize as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The topic of cancels for `queue`.
pub fn cancel_topic(queue: &str) -> String {
    format!("jobs.{queue}.cancel")
}

/// The topic of `queue`'s settings.
pub fn settings_topic(queue: &str) -> String {
    format!("workers.{queue}.settings")
}

/// A cancel as the Relay carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CancelMessage {
    /// The job (BullMQ's `jobId`; a number is taken as its text).
    #[serde(rename = "jobId", deserialize_with = "id_text")]
    pub job_id: String,
    /// Why, for the job's `failedReason` (`cancelled: <reason>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// A queue's settings as the Relay carries them: what is missing is the
/// config's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettingsMessage {
    /// The queue's concurrency (within its configured one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Whether its workers stop fetching.
    #[serde(default)]
    pub paused: bool,
}

impl SettingsMessage {
    /// The settings in `message`, or why they are not any.
    pub fn read(message: &Message) -> Result<Self, String> {
        let settings: SettingsMessage =
            serde_json::from_value(message.data.clone()).map_err(|e| {
                format!(
                    "settings on {} are not {{ concurrency, paused }}: {e}",
                    message.topic
                )
            })?;
        if settings.concurrency == Some(0) {
            return Err(format!("settings on {}: a concurrency of 0", message.topic));
        }
        Ok(settings)
    }

    fn steering(self) -> Steering {
        Steering {
            concurrency: self.concurrency,
            paused: self.paused,
        }
    }
}

/// This host's node on the Relay, and what it serves.
pub struct Fleet {
    relay: Relay,
    /// The queues this host serves, as the Relay's messages reach them.
    controls: Arc<Mutex<BTreeMap<String, QueueControl>>>,
    /// Each queue's settings as last heard; present once subscribed.
    steering: Arc<Mutex<BTreeMap<String, Steering>>>,
}

impl Fleet {
    /// Joins the Relay on `target` and listens for cancels. A Relay that
    /// cannot be joined (Redis older than 6.2) leaves the host running
    /// without it, saying so.
    pub async fn join(target: &RedisTarget) -> Option<Fleet> {
        let options = RelayOptions {
            name: format!("bullpen {}", env!("CARGO_PKG_VERSION")),
            ..RelayOptions::default()
        };
        let joined = async {
            let relay = Relay::connect(target, options).await?;
            let cancels = relay.subscribe("jobs.*.cancel").await?;
            Ok::<_, RelayError>((relay, cancels))
        };
        let (relay, mut cancels) = match joined.await {
            Ok(joined) => joined,
            Err(e) => {
                tracing::warn!("cancels and settings from BullMQ's Relay are off: {e}");
                return None;
            }
        };
        let fleet = Fleet {
            relay,
            controls: Arc::default(),
            steering: Arc::default(),
        };
        let controls = fleet.controls.clone();
        tokio::spawn(async move {
            while let Some(message) = cancels.messages.recv().await {
                cancel(&controls, message);
            }
        });
        Some(fleet)
    }

    /// The settings the fleet holds for `queue` (the retained ones, if any),
    /// listening for those that come later: asked before the queue's workers
    /// start, so that they take no job against them.
    pub async fn steering(&self, queue: &str) -> Steering {
        if let Some(steering) = self
            .steering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
        {
            return *steering;
        }
        let mut subscription = match self.relay.subscribe(&settings_topic(queue)).await {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(queue, "the fleet's settings are off for this queue: {e}");
                return Steering::default();
            }
        };
        // The retained message, if any, is in the channel already.
        let mut steering = Steering::default();
        if let Ok(message) = subscription.messages.try_recv() {
            match SettingsMessage::read(&message) {
                Ok(settings) => {
                    steering = settings.steering();
                    tracing::info!(queue, ?steering, "the fleet's retained settings apply");
                }
                Err(e) => tracing::warn!(queue, "{e}"),
            }
        }
        self.steering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned(), steering);
        let (controls, known, queue) = (
            self.controls.clone(),
            self.steering.clone(),
            queue.to_owned(),
        );
        tokio::spawn(async move {
            while let Some(message) = subscription.messages.recv().await {
                let settings = match SettingsMessage::read(&message) {
                    Ok(settings) => settings.steering(),
                    Err(e) => {
                        tracing::warn!(queue, "{e}");
                        continue;
                    }
                };
                known
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(queue.clone(), settings);
                let control = controls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&queue)
                    .cloned();
                if let Some(control) = control {
                    control.steer(settings);
                }
            }
        });
        steering
    }

    /// `queue` runs here through `control`, started with `started_with`
    /// (what [`steering`](Self::steering) gave): settings heard since then
    /// apply now.
    pub fn serve(&self, queue: &str, control: QueueControl, started_with: Steering) {
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned(), control.clone());
        // Registered first: a message heard from now on finds `control`, and
        // one heard before is in `steering`.
        let latest = self
            .steering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .copied();
        if let Some(latest) = latest.filter(|latest| *latest != started_with) {
            control.steer(latest);
        }
    }

    /// `queue` no longer runs here.
    pub fn forget(&self, queue: &str) {
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(queue);
    }

    /// Leaves the Relay.
    pub async fn leave(&self) {
        if let Err(e) = self.relay.stop().await {
            tracing::debug!("leaving the Relay: {e}");
        }
    }
}

/// Carries out a cancel, if the job's run is this host's.
fn cancel(controls: &Mutex<BTreeMap<String, QueueControl>>, message: Message) {
    let queue = message.topic.split('.').nth(1).unwrap_or_default();
    let cancel: CancelMessage = match serde_json::from_value(message.data) {
        Ok(cancel) => cancel,
        Err(e) => {
            tracing::warn!(
                queue,
                "a cancel on {} is not {{ jobId, reason }}: {e}",
                message.topic
            );
            return;
        }
    };
    let control = controls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(queue)
        .cloned();
    let reason = cancel.reason.as_deref().unwrap_or("cancelled");
    match control {
        Some(control) if control.cancel(&cancel.job_id, reason, cancel.retry) => {}
        // Another host runs it, or nobody does: nothing to do here.
        _ => tracing::debug!(
            queue,
            job = cancel.job_id,
            "a cancel for a job this host does not run"
        ),
    }
}
