//! One Relay node: its registration and heartbeat, its subscriptions, its
//! inbox's read loop, and publishing.

use super::RelayError;
use super::scripts::script;
use bullmq::redis_connection::{AnyConnection, RedisConnection};
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The data layout of the Relay's keys this node speaks (BullMQ's
/// `RELAY_LAYOUT_VERSION`): nodes of another layout refuse to share a
/// namespace with it.
const LAYOUT_VERSION: &str = "1";

/// How a node joins the Relay. The defaults are BullMQ's.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// BullMQ's key prefix (`bull`).
    pub prefix: String,
    /// The Relay's namespace (`default`): nodes hear only their own's.
    pub namespace: String,
    /// How long the node's registration lasts without a heartbeat (30 s);
    /// it beats every third of it.
    pub lease: Duration,
    /// Entries its inbox keeps before the oldest are dropped (10,000).
    pub inbox_max_length: u64,
    /// The largest message it publishes, serialised (512 KiB).
    pub max_message_size: usize,
    /// How long one blocking read of its inbox waits (5 s).
    pub block: Duration,
    /// What the node says of itself to whoever lists the nodes (BullMQ's
    /// `name`), e.g. `bullpen on host-1`.
    pub name: String,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            prefix: "bull".into(),
            namespace: "default".into(),
            lease: Duration::from_secs(30),
            inbox_max_length: 10_000,
            max_message_size: 512 * 1024,
            block: Duration::from_secs(5),
            name: "bullpen".into(),
        }
    }
}

/// A message a subscription hears.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its topic (for a retained one: the subscription's topic).
    pub topic: String,
    /// Its id, increasing with the Relay's clock.
    pub mid: String,
    /// When it was published, in ms since the epoch (the publisher's clock).
    pub ts: u64,
    /// Its data, as the publisher gave it.
    pub data: serde_json::Value,
    /// Whether it was retained on the topic before the subscription.
    pub retained: bool,
}

/// What publishing reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Nodes whose inbox got the message.
    pub nodes: u64,
    /// Subscriptions it was for.
    pub endpoints: u64,
}

/// A subscription: its messages, the retained one first, in the order the
/// node read them. Dropping it (or [`Relay::unsubscribe`]) ends it.
pub struct Subscription {
    /// The endpoint id the Relay knows it by.
    pub endpoint: String,
    /// Its messages.
    pub messages: mpsc::UnboundedReceiver<Message>,
}

/// Where a subscription's messages go: while it is being made, into
/// `pending`, so that none is lost or given before the retained one.
struct Endpoint {
    pattern: String,
    sender: mpsc::UnboundedSender<Message>,
    pending: Option<Vec<Message>>,
}

/// A registered node, its heartbeat and its inbox's reader running until
/// [`Relay::stop`].
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    connection: RedisConnection,
    commands: AnyConnection,
    options: RelayOptions,
    node_id: String,
    base: String,
    nodes_key: String,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A fresh id, as BullMQ makes them: 32 hex digits.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Relay {
    /// Connects to `target` and starts a node there, in `target`'s prefix.
    pub async fn connect(
        target: &crate::queue::RedisTarget,
        options: RelayOptions,
    ) -> Result<Relay, RelayError> {
        let connection = RedisConnection::new(&target.connection()).await?;
        let options = RelayOptions {
            prefix: target.prefix.clone(),
            ..options
        };
        Self::start(connection, options).await
    }

    /// Registers a node on `connection`'s Redis and starts its heartbeat and
    /// its inbox's reader.
    pub async fn start(
        connection: RedisConnection,
        options: RelayOptions,
    ) -> Result<Relay, RelayError> {
        let base = format!("{}::relay:{{{}}}", options.prefix, options.namespace);
        let inner = Arc::new(Inner {
            commands: connection.connection(),
            connection,
            node_id: new_id(),
            nodes_key: format!("{base}:nodes"),
            base,
            options,
            endpoints: Mutex::new(HashMap::new()),
            stopping: tokio::sync::watch::channel(false).0,
        });
        inner.register().await?;
        let reader = inner.connection.dedicated_any_connection().await?;
        tokio::spawn(Inner::beat(inner.clone()));
        tokio::spawn(Inner::read(inner.clone(), reader));
        Ok(Relay { inner })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Subscribes to `pattern`: its retained message first, if it is an
    /// exact topic that has one, then what is published on it from now on.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, RelayError> {
        let endpoint = new_id();
        let (sender, messages) = mpsc::unbounded_channel();
        self.inner.endpoints.lock().unwrap().insert(
            endpoint.clone(),
            Endpoint {
                pattern: pattern.to_owned(),
                sender,
                pending: Some(Vec::new()),
            },
        );
        match self.inner.subscribe(&endpoint, pattern).await {
            Ok(retained) => {
                let mut endpoints = self.inner.endpoints.lock().unwrap();
                if let Some(subscribed) = endpoints.get_mut(&endpoint) {
                    let cutoff = retained.as_ref().map_or(0, |m| mid_order(&m.mid));
                    if let Some(message) = retained {
                        let _ = subscribed.sender.send(message);
                    }
                    // Live copies of the retained message (or older ones)
                    // are skipped.
                    for message in subscribed.pending.take().unwrap_or_default() {
                        if mid_order(&message.mid) > cutoff {
                            let _ = subscribed.sender.send(message);
                        }
                    }
                }
                Ok(Subscription { endpoint, messages })
            }
            Err(e) => {
                self.inner.endpoints.lock().unwrap().remove(&endpoint);
                let _ = self.inner.remove_endpoint(&endpoint).await;
                Err(e)
            }
        }
    }

    /// Ends the subscription `endpoint`.
    pub async fn unsubscribe(&self, endpoint: &str) -> Result<(), RelayError> {
        self.inner.endpoints.lock().unwrap().remove(endpoint);
        self.inner.remove_endpoint(endpoint).await
    }

    /// Publishes `data` on `topic`, retained there for `retain` (zero: not
    /// retained) for whoever subscribes to the topic later.
    pub async fn publish(
        &self,
        topic: &str,
        data: &serde_json::Value,
        retain: Duration,
    ) -> Result<Published, RelayError> {
        let serialized = serde_json::to_string(data)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let retain_ms = retain.as_millis() as u64;
        let answer: Value = self
            .inner
            .call("relayPublish")
            .arg(topic)
            .arg(serialized)
            .arg(now)
            .arg(retain_ms)
            .arg(self.inner.options.max_message_size)
            .arg(self.inner.options.inbox_max_length)
            .invoke_async(&mut self.inner.commands.clone())
            .await?;
        refused(&answer, topic)?;
        if retain_ms > 0 {
            self.inner.touch_namespace(retain_ms).await?;
        }
        match &answer {
            Value::Array(fields) if fields.len() == 3 => Ok(Published {
                nodes: int(&fields[1]).unwrap_or(0),
                endpoints: int(&fields[2]).unwrap_or(0),
            }),
            other => Err(unexpected("relayPublish", other)),
        }
    }

    /// Deletes the message retained on `topic`: false if it had none.
    pub async fn delete_retained(&self, topic: &str) -> Result<bool, RelayError> {
        let answer: Value = self
            .inner
            .call("relayDeleteRetained")
            .arg(topic)
            .invoke_async(&mut self.inner.commands.clone())
            .await?;
        refused(&answer, topic)?;
        Ok(int(&answer) == Some(1))
    }

    /// Stops the heartbeat and the reader, and unregisters the node.
    pub async fn stop(&self) -> Result<(), RelayError> {
        self.inner.stopping.send_replace(true);
        self.inner.endpoints.lock().unwrap().clear();
        let _: Value = self
            .inner
            .call("relayUnregisterNode")
            .arg(&self.inner.node_id)
            .invoke_async(&mut self.inner.commands.clone())
            .await?;
        Ok(())
    }
}

impl Inner {
    /// A call of the script `name` on this node's namespace: its nodes key,
    /// then its base key, as every Relay script takes them.
    fn call(&self, name: &'static str) -> redis::ScriptInvocation<'static> {
        let mut invocation = script(name).key(&self.nodes_key);
        invocation.arg(&self.base);
        invocation
    }

    async fn register(&self) -> Result<(), RelayError> {
        let info = serde_json::json!({
            "name": self.options.name,
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string();
        // 0: the id's old subscriptions are still being pruned, a batch at a
        // time; registering again finishes them.
        loop {
            let answer: Value = self
                .call("relayRegisterNode")
                .arg(&self.node_id)
                .arg(self.options.lease.as_millis() as u64)
                .arg(&info)
                .arg(LAYOUT_VERSION)
                .arg(self.options.inbox_max_length)
                .invoke_async(&mut self.commands.clone())
                .await?;
            refused(&answer, &self.node_id)?;
            if int(&answer) == Some(1) {
                break;
            }
        }
        self.touch_namespace(self.options.lease.as_millis() as u64)
            .await
    }

    /// Lists the namespace in the prefix's registry of namespaces in use (what
    /// dashboards read) for `ms` more.
    async fn touch_namespace(&self, ms: u64) -> Result<(), RelayError> {
        let _: Value = script("relayTouchNamespace")
            .key(format!("{}::relay:namespaces", self.options.prefix))
            .arg(&self.options.namespace)
            .arg(ms.max(1))
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Subscribes `endpoint`: the retained message, if any.
    async fn subscribe(
        &self,
        endpoint: &str,
        pattern: &str,
    ) -> Result<Option<Message>, RelayError> {
        let answer: Value = self
            .call("relaySubscribe")
            .arg(&self.node_id)
            .arg(endpoint)
            .arg(pattern)
            .invoke_async(&mut self.commands.clone())
            .await?;
        refused(&answer, pattern)?;
        let Value::Array(fields) = &answer else {
            return Err(unexpected("relaySubscribe", &answer));
        };
        let text = |i: usize| fields.get(i).and_then(string).unwrap_or_default();
        let mid = text(1);
        if mid.is_empty() {
            return Ok(None);
        }
        Ok(Some(Message {
            topic: pattern.to_owned(),
            ts: text(2).parse().unwrap_or(0),
            data: serde_json::from_str(&text(3))?,
            mid,
            retained: true,
        }))
    }

    async fn remove_endpoint(&self, endpoint: &str) -> Result<(), RelayError> {
        let _: Value = self
            .call("relayRemoveEndpoint")
            .arg(&self.node_id)
            .arg(endpoint)
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Renews the lease every third of it, sweeping what expired; a lease
    /// that was lost (Redis away longer than it) is taken again, with every
    /// subscription.
    async fn beat(inner: Arc<Inner>) {
        let mut stopping = inner.stopping.subscribe();
        let period = inner.options.lease / 3;
        loop {
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(period) => {}
            }
            if let Err(e) = inner.heartbeat().await {
                tracing::warn!("the Relay's heartbeat failed, retrying: {e}");
            }
        }
    }

    async fn heartbeat(&self) -> Result<(), RelayError> {
        let lease = self.options.lease.as_millis() as u64;
        let alive: Value = self
            .call("relayHeartbeat")
            .arg(&self.node_id)
            .arg(lease)
            .invoke_async(&mut self.commands.clone())
            .await?;
        if int(&alive) == Some(1) {
            self.touch_namespace(lease).await?;
        } else {
            tracing::warn!("the Relay lost this node's lease: registering again");
            self.register().await?;
            let patterns: Vec<(String, String)> = self
                .endpoints
                .lock()
                .unwrap()
                .iter()
                .map(|(id, e)| (id.clone(), e.pattern.clone()))
                .collect();
            for (endpoint, pattern) in patterns {
                self.subscribe(&endpoint, &pattern).await?;
            }
        }
        let _: Value = self
            .call("relaySweep")
            .arg(100)
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Reads the inbox until the node stops: a batch by the script, and when
    /// there is none, a blocking `XREAD` on the node's own connection to wait
    /// for the next (only as a wake-up: the script reads it).
    async fn read(inner: Arc<Inner>, mut blocking: AnyConnection) {
        let mut stopping = inner.stopping.subscribe();
        let inbox = format!("{}:{}:inbox", inner.base, inner.node_id);
        let mut cursor = "0-0".to_owned();
        while !*stopping.borrow() {
            let step = async {
                let mut batch = inner.read_batch(&cursor).await?;
                if batch.is_empty() {
                    let _: Value = redis::cmd("XREAD")
                        .arg("BLOCK")
                        .arg(inner.options.block.as_millis() as u64)
                        .arg("COUNT")
                        .arg(1)
                        .arg("STREAMS")
                        .arg(&inbox)
                        .arg(&cursor)
                        .query_async(&mut blocking)
                        .await?;
                    batch = inner.read_batch(&cursor).await?;
                }
                Ok::<_, RelayError>(batch)
            };
            let batch = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => return,
                batch = step => batch,
            };
            match batch {
                Ok(batch) if !batch.is_empty() => {
                    for (id, entry) in batch {
                        cursor = id;
                        inner.dispatch(entry);
                    }
                    // What was read is dropped from the inbox.
                    let trimmed: Result<Value, _> = inner
                        .call("relayTrimInbox")
                        .arg(&inner.node_id)
                        .arg(&cursor)
                        .arg(inner.options.inbox_max_length)
                        .invoke_async(&mut inner.commands.clone())
                        .await;
                    if let Err(e) = trimmed {
                        tracing::warn!("trimming the Relay inbox failed: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("reading the Relay inbox failed, retrying in 1 s: {e}");
                    tokio::select! {
                        _ = stopping.wait_for(|stop| *stop) => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The entries after `cursor`, by stream id: at most 100.
    async fn read_batch(
        &self,
        cursor: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, RelayError> {
        let answer: Value = self
            .call("relayReadInbox")
            .arg(&self.node_id)
            .arg(cursor)
            .arg(100)
            .invoke_async(&mut self.commands.clone())
            .await?;
        // XREAD's answer: [[inbox, [[id, [field, value, ...]], ...]]].
        let Value::Array(streams) = answer else {
            return Ok(Vec::new());
        };
        let Some(Value::Array(stream)) = streams.into_iter().next() else {
            return Ok(Vec::new());
        };
        let Some(Value::Array(entries)) = stream.into_iter().nth(1) else {
            return Ok(Vec::new());
        };
        let mut batch = Vec::new();
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let (Some(id), Some(Value::Array(fields))) =
                (parts.first().and_then(string), parts.get(1))
            else {
                continue;
            };
            let fields = fields
                .chunks(2)
                .filter_map(|pair| Some((string(pair.first()?)?, string(pair.get(1)?)?)))
                .collect();
            batch.push((id, fields));
        }
        Ok(batch)
    }

    /// Gives an inbox entry to the subscriptions it lists.
    fn dispatch(&self, entry: HashMap<String, String>) {
        // Kinds added by later layouts are not for this node.
        if entry.get("k").map(String::as_str) != Some("msg") {
            return;
        }
        let data = match serde_json::from_str(entry.get("d").map_or("null", String::as_str)) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!("a Relay message is not JSON, dropped: {e}");
                return;
            }
        };
        let message = Message {
            topic: entry.get("t").cloned().unwrap_or_default(),
            mid: entry.get("m").cloned().unwrap_or_default(),
            ts: entry.get("ts").and_then(|t| t.parse().ok()).unwrap_or(0),
            data,
            retained: false,
        };
        let mut endpoints = self.endpoints.lock().unwrap();
        for id in entry.get("e").map(String::as_str).unwrap_or("").split(',') {
            if let Some(endpoint) = endpoints.get_mut(id) {
                match &mut endpoint.pending {
                    Some(pending) => pending.push(message.clone()),
                    None => {
                        let _ = endpoint.sender.send(message.clone());
                    }
                }
            }
        }
    }
}

/// A message id as a number, to order them (ids grow with the Relay's
/// clock, in µs).
fn mid_order(mid: &str) -> u128 {
    mid.parse().unwrap_or(0)
}

fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => string(other)?.parse().ok(),
    }
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The script's refusal, if it answered with one of the Relay's codes.
fn refused(answer: &Value, detail: &str) -> Result<(), RelayError> {
    match answer {
        Value::Int(code) if *code < 0 => Err(RelayError::Refused {
            code: *code,
            detail: detail.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn unexpected(script: &'static str, answer: &Value) -> RelayError {
    RelayError::Unexpected {
        script,
        answer: format!("{answer:?}"),
    }
}
