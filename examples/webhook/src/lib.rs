//! `webhook`: POSTs a job's payload to the URL the job names and completes
//! with the status code: the `allowed_outbound_hosts` grant at work, with
//! BullMQ's outcomes decided by the answer.
//!
//! Queue config: `allowed_outbound_hosts = ["https://hooks.example.com"]`.
//! Data: `{"url": "https://hooks.example.com/orders", "payload": {...}}`
//! (a job without `payload` posts its whole data). Each request carries
//! `x-bullpen-job: <job id>` so a receiver can tell retries apart, and
//! `authorization: Bearer $API_TOKEN` when the queue grants that
//! secret.
//!
//! | the server answers | the job |
//! |---|---|
//! | 2xx | completes with `{"status": S}` |
//! | 429 | is rate limited for `Retry-After` seconds (1 s without it), no attempt counted |
//! | 5xx, or no answer | fails this attempt; retried with backoff |
//! | 3xx, or any other 4xx | fails for good: resending will not change the answer |
//!
//! A URL the queue does not grant fails the attempt with a reason that names
//! it (`HTTP request to … : HTTP-request-denied: …`).

use bullpen_guest::{Error, Job, Processor, Result, http};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct Hook {
    url: String,
    payload: Option<serde_json::Value>,
}

struct Webhook;

impl Processor for Webhook {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let hook: Hook = job.data()?;
        let payload = match hook.payload {
            Some(payload) => payload,
            None => job.data()?,
        };
        let mut request = http::post(&hook.url)
            .header("x-bullpen-job", job.id.as_str())
            .json(&payload)?;
        if let Ok(token) = std::env::var("API_TOKEN") {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send()?;
        let status = response.status();
        match status {
            200..=299 => Ok(serde_json::json!({ "status": status })),
            429 => Err(Error::rate_limited(
                response.retry_after().unwrap_or(Duration::from_secs(1)),
            )),
            500..=599 => Err(Error::failed_named(
                "ServerError",
                format!("{} answered {status}{}", hook.url, snippet(&response)),
            )),
            _ => Err(Error::unrecoverable(format!(
                "{} answered {status}{}{}",
                hook.url,
                response
                    .header("location")
                    .map(|to| format!(" (redirect to {to}, not followed)"))
                    .unwrap_or_default(),
                snippet(&response)
            ))),
        }
    }
}

/// `: ` and the start of a response's body, for a failure's message;
/// nothing for an empty body.
fn snippet(response: &http::Response) -> String {
    let text = response.text();
    match text.char_indices().nth(200) {
        _ if text.is_empty() => String::new(),
        Some((cut, _)) => format!(": {}…", &text[..cut]),
        None => format!(": {text}"),
    }
}

bullpen_guest::export!(Webhook);
