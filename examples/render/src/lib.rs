//! `render`: fills a template from a granted read-only directory with the
//! job's values: the `files` grant at work.
//!
//! Queue config: `files = [{ source = "templates", destination = "/templates" }]`.
//! Data: `{"template": "welcome.txt", "values": {"name": "Ada"}}`; every
//! `{key}` in `/templates/welcome.txt` is replaced by its value, and the job
//! completes with `{"text": "…"}`. A template that does not exist fails the
//! job for good; one the queue does not grant cannot be read at all.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Render {
    template: String,
    #[serde(default)]
    values: BTreeMap<String, String>,
}

struct Renderer;

impl Processor for Renderer {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let render: Render = job.data()?;
        let path = format!("/templates/{}", render.template);
        let mut text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::unrecoverable(format!("no template {path}")));
            }
            Err(e) => return Err(e.into()),
        };
        for (key, value) in &render.values {
            text = text.replace(&format!("{{{key}}}"), value);
        }
        Ok(serde_json::json!({ "text": text }))
    }
}

bullpen_guest::export!(Renderer);
