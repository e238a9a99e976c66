//! Reads and writes of a job's hash fields that the crate does not do.
//!
//! `bullmq-official` writes neither `failedReason` nor `stacktrace` when a
//! failed job is retried (BullMQ's Node worker writes both after every failed
//! attempt), and it parses `opts` lossily. These are called while the worker
//! holds the job's lock, so no other worker writes the same fields meanwhile.

use bullmq::Queue;
use redis::AsyncCommands;

/// The job's raw `opts` JSON (`{}` when the job has none).
pub async fn raw_options(queue: &Queue, job_id: &str) -> redis::RedisResult<String> {
    let key = queue.keys().job_key(job_id);
    let mut connection = queue.connection().connection();
    let opts: Option<String> = connection.hget(&key, "opts").await?;
    Ok(opts.unwrap_or_else(|| "{}".into()))
}

/// The job's `data` field as stored: bytes, which need not be UTF-8 or
/// JSON (`None` when the job has no such field).
pub async fn raw_data(queue: &Queue, job_id: &str) -> redis::RedisResult<Option<Vec<u8>>> {
    let key = queue.keys().job_key(job_id);
    let mut connection = queue.connection().connection();
    connection.hget(&key, "data").await
}

/// How many times the job has stalled (`stc`; 0 when never).
pub async fn stalled_count(queue: &Queue, job_id: &str) -> redis::RedisResult<u32> {
    let key = queue.keys().job_key(job_id);
    let mut connection = queue.connection().connection();
    let count: Option<u32> = connection.hget(&key, "stc").await?;
    Ok(count.unwrap_or(0))
}

/// What a failed attempt leaves on the job, as BullMQ's Node worker leaves
/// it: `failedReason`, one more entry in `stacktrace` (trimmed to
/// `stack_trace_limit`), and, when the move that follows does not count the
/// attempt itself, `attemptsMade + 1`.
pub async fn record_failure(
    queue: &Queue,
    job_id: &str,
    reason: &str,
    stack: &str,
    stack_trace_limit: Option<usize>,
    count_attempt: bool,
) -> redis::RedisResult<()> {
    let key = queue.keys().job_key(job_id);
    let mut connection = queue.connection().connection();
    let current: Option<String> = connection.hget(&key, "stacktrace").await?;
    let stacktrace = push_stack(current.as_deref(), stack, stack_trace_limit);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hset(&key, "failedReason", reason)
        .ignore()
        .hset(&key, "stacktrace", stacktrace)
        .ignore();
    if count_attempt {
        pipe.hincr(&key, "atm", 1).ignore();
    }
    pipe.query_async::<()>(&mut connection).await
}

/// Why the crate fails a job before its processor runs (BullMQ's
/// `getUnrecoverableErrorMessage`), besides a child's failure deferred to
/// its parent (`failParentOnFailure`, reason `child <key> failed`).
pub const STARTED_TOO_OFTEN: &str = "job started more than allowable limit";

/// The error name BullMQ's Node worker gives a failure the crate made on its
/// own, without the processor: `UnrecoverableError` for the reasons of
/// `getUnrecoverableErrorMessage`, else `Error` (a failed move, such as
/// `Job 1 has pending dependencies. moveToFinished`).
pub fn crate_failure_name(reason: &str) -> &'static str {
    let deferred = reason.starts_with("child ") && reason.ends_with(" failed");
    if deferred || reason == STARTED_TOO_OFTEN {
        "UnrecoverableError"
    } else {
        "Error"
    }
}

/// For a failed job whose stack trace has no entry for its `failedReason`
/// (the crate failed it without the processor, and writes none): adds the
/// entry BullMQ's Node worker writes, made by `stack` from the reason.
/// Returns whether it wrote one.
pub async fn backfill_stack(
    queue: &Queue,
    job_id: &str,
    stack: impl FnOnce(&str) -> String,
) -> redis::RedisResult<bool> {
    let key = queue.keys().job_key(job_id);
    let mut connection = queue.connection().connection();
    let (reason, current): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(&key)
        .arg("failedReason")
        .arg("stacktrace")
        .query_async(&mut connection)
        .await?;
    let Some(reason) = reason else {
        return Ok(false);
    };
    let stacks: Vec<String> = current
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    // An entry is `Name: reason` and what follows it; a reason may span lines.
    let recorded = stacks
        .last()
        .is_some_and(|last| last.contains(&format!(": {reason}")));
    if recorded {
        return Ok(false);
    }
    let stacktrace = push_stack(current.as_deref(), &stack(&reason), None);
    connection
        .hset::<_, _, _, ()>(&key, "stacktrace", stacktrace)
        .await?;
    Ok(true)
}

/// The `stacktrace` field after one more failure: a JSON array of strings,
/// oldest first, at most `limit` long.
pub fn push_stack(current: Option<&str>, stack: &str, limit: Option<usize>) -> String {
    let mut stacks: Vec<String> = current
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    stacks.push(stack.to_owned());
    if let Some(limit) = limit {
        let excess = stacks.len().saturating_sub(limit);
        stacks.drain(..excess);
    }
    serde_json::to_string(&stacks).expect("strings serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_crates_own_are_named_as_node_names_them() {
        assert_eq!(
            crate_failure_name("child bull:q:3 failed"),
            "UnrecoverableError"
        );
        assert_eq!(crate_failure_name(STARTED_TOO_OFTEN), "UnrecoverableError");
        assert_eq!(
            crate_failure_name("Job 1 has pending dependencies. moveToFinished"),
            "Error"
        );
    }

    #[test]
    fn stacks_accumulate_and_trim() {
        let one = push_stack(None, "a", None);
        assert_eq!(one, r#"["a"]"#);
        let two = push_stack(Some(&one), "b", None);
        assert_eq!(two, r#"["a","b"]"#);
        assert_eq!(push_stack(Some(&two), "c", Some(2)), r#"["b","c"]"#);
        assert_eq!(push_stack(Some(&two), "c", Some(0)), "[]");
    }
}
