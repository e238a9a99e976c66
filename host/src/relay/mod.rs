//! A node of BullMQ's Relay (BullMQ 6.4+), the publish/subscribe that every
//! BullMQ runtime shares on the queues' Redis: bullpen hears cancels and
//! fleet settings there, from BullMQ's own `Relay` in Node or Python or from
//! `bullpen` itself.
//!
//! Every call is one of the `relay*` Lua scripts that `bullmq-official`
//! ships (embedded from the crate's files; it has no Rust client for them),
//! on the keys
//! BullMQ's `RedisRelayBackend` uses: a namespace lives under
//! `<prefix>::relay:{<namespace>}`, one hash slot on a Redis Cluster. A
//! node registers with a lease (30 s) that a heartbeat renews every third of
//! it; messages for its subscriptions are appended to its inbox, a stream
//! it reads with a script, waiting on a blocking `XREAD` of its own
//! connection when the inbox is empty. Topics are dot paths
//! (`jobs.emails.cancel`); a pattern's `*` matches one segment, `>` the
//! rest. A message retained on a topic is given to whoever subscribes to
//! that exact topic later.

mod node;
mod scripts;

pub use node::{Message, Published, Relay, RelayOptions, Subscription};

/// What a Relay call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A script refused the call with one of the Relay's error codes.
    #[error("{}: {detail}", describe(*.code))]
    Refused {
        /// The script's code (negative).
        code: i64,
        /// What was refused: the topic, pattern or id.
        detail: String,
    },
    /// Redis did not answer as the scripts say it does.
    #[error("the Relay's Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The crate's connection failed.
    #[error("the Relay's Redis: {0}")]
    Connection(#[from] bullmq::Error),
    /// A value that is not JSON where JSON was due.
    #[error("a Relay message is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An answer of another shape than the script's.
    #[error("the Relay script {script} answered {answer}")]
    Unexpected {
        /// The script.
        script: &'static str,
        /// What it answered.
        answer: String,
    },
}

/// The words of BullMQ's `RelayError` for a script's code.
fn describe(code: i64) -> String {
    match code {
        -1 => "Invalid topic".into(),
        -2 => "Invalid topic pattern".into(),
        -3 => "Relay node is not registered".into(),
        -4 => "Message data is too large".into(),
        -5 => "Invalid relay node or endpoint id".into(),
        -6 => "The relay namespace is in use by nodes with an incompatible BullMQ version".into(),
        code => format!("Relay error {code}"),
    }
}
