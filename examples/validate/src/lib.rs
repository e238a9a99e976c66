//! `validate`: the user-registration example of BullMQ's docs.
//!
//! Data must be `{"email": <a valid address>, "name": <2 characters or
//! more>}`; anything else (`{}` included) fails the job for good, with
//! `Invalid job data: <what is wrong>`. A valid job completes with
//! `{"registered": <email>}` and a line in the job's log.

use bullpen_guest::{Error, Job, Processor, Result};
use serde_json::Value;

struct Validate;

impl Processor for Validate {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        let data: Value = job.data()?;
        let (email, name) =
            check(&data).map_err(|why| Error::unrecoverable(format!("Invalid job data: {why}")))?;
        bullpen_guest::add_log(format!("registered {name} <{email}>"));
        Ok(serde_json::json!({ "registered": email }))
    }
}

fn check(data: &Value) -> std::result::Result<(&str, &str), String> {
    let email = match data.get("email") {
        None => return Err("\"email\" is required".into()),
        Some(Value::String(email)) => email.as_str(),
        Some(_) => return Err("\"email\" must be a string".into()),
    };
    if !is_email(email) {
        return Err("\"email\" must be a valid email".into());
    }
    let name = match data.get("name") {
        None => return Err("\"name\" is required".into()),
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err("\"name\" must be a string".into()),
    };
    if name.chars().count() < 2 {
        return Err("\"name\" length must be at least 2 characters long".into());
    }
    Ok((email, name))
}

/// One `@`, a non-empty local part, a domain of dot-separated labels with at
/// least one dot, no whitespace.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    !local.is_empty()
        && !local.contains(char::is_whitespace)
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(label_ok)
}

bullpen_guest::export!(Validate);
