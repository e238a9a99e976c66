//! Watching a queue's BullMQ event stream (`<prefix>:<queue>:events`), to
//! learn the moment a job became active or completed without polling.

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use std::time::{Duration, Instant};

/// A reader of one queue's event stream, from a point on.
pub struct EventStream {
    connection: redis::aio::MultiplexedConnection,
    key: String,
    last_id: String,
}

impl EventStream {
    /// Watches `queue`'s events from now on.
    pub async fn open(redis_url: &str, queue: &str) -> EventStream {
        let client = redis::Client::open(redis_url).unwrap();
        let connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut stream = EventStream {
            connection,
            key: format!("bull:{queue}:events"),
            last_id: "0-0".into(),
        };
        stream.skip_to_now().await;
        stream
    }

    /// Forgets every event so far.
    pub async fn skip_to_now(&mut self) {
        let newest: StreamRangeReply = self
            .connection
            .xrevrange_count(&self.key, "+", "-", 1)
            .await
            .unwrap();
        if let Some(entry) = newest.ids.first() {
            self.last_id = entry.id.clone();
        }
    }

    /// Reads events until job `id` has had event `until`; returns when each
    /// of `wanted` was seen for it (the moment this reader saw it).
    pub async fn wait_for(
        &mut self,
        id: &str,
        wanted: &[&str],
        until: &str,
        timeout: Duration,
    ) -> Vec<Option<Instant>> {
        let mut seen = vec![None; wanted.len()];
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < deadline,
                "job {id}: no {until} event in {timeout:?}"
            );
            let options = StreamReadOptions::default().block(100).count(100);
            let reply: Option<StreamReadReply> = self
                .connection
                .xread_options(&[&self.key], &[&self.last_id], &options)
                .await
                .unwrap();
            let now = Instant::now();
            let mut done = false;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                self.last_id = entry.id.clone();
                let text = |field: &str| match entry.map.get(field) {
                    Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                    _ => String::new(),
                };
                if text("jobId") != id {
                    continue;
                }
                let event = text("event");
                if let Some(i) = wanted.iter().position(|w| *w == event) {
                    seen[i].get_or_insert(now);
                }
                done |= event == until;
            }
            if done {
                return seen;
            }
        }
    }
}
