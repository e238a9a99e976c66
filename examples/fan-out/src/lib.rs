//! `fan-out`: BullMQ's "process step jobs" pattern with child jobs.
//!
//! A `sum` job with data `{"numbers": [1, 2, 3]}` runs in two steps:
//! 1. it adds a `square` child per number (to its own queue, or to
//!    `children_queue`), records `step: 1` in its data, and waits for them;
//! 2. when they are done it runs again (waiting again while any is pending)
//!    and completes with the sum of what they returned, the failed children
//!    and the ignored failures.
//!
//! A `square` job with data `{"n": 3}` returns 9; with `"fail": true` it
//! fails, unrecoverably. The parent's `fail` lists numbers whose child fails,
//! and `on_failure` says what that does to the parent (BullMQ's options):
//! `fail-parent`, `continue-parent`, `ignore` or `remove`.
//!
//! A `count` job records in its data how many times it ran (`{"runs": n}`,
//! updated before it fails) and fails until it has run `until` times: each
//! attempt sees the data the one before it left.
//!
//! Any other job name adds one follow-up `echo` job to the queue named in
//! `follow_up` and returns its id (a plain job, not a child).
//!
//! The queue needs `add_to_queues` listing the queues children and
//! follow-ups go to.

use bullpen_guest::{Error, Job, JobOptions, Processor, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Sum {
    numbers: Vec<u64>,
    step: u8,
    children_queue: Option<String>,
    fail: Vec<u64>,
    on_failure: Option<String>,
}

#[derive(Deserialize)]
struct Square {
    n: u64,
    #[serde(default)]
    fail: bool,
}

#[derive(Deserialize)]
struct FollowUp {
    follow_up: String,
}

struct FanOut;

impl Processor for FanOut {
    fn process(job: Job) -> Result<impl Serialize> {
        match job.name.as_str() {
            "square" => {
                let square: Square = job.data()?;
                if square.fail {
                    return Err(Error::unrecoverable(format!(
                        "square of {} refused",
                        square.n
                    )));
                }
                Ok(json!(square.n * square.n))
            }
            "sum" => sum(job),
            "count" => count(job),
            _ => {
                let follow_up: FollowUp = job.data()?;
                let id = bullpen_guest::queue(follow_up.follow_up)
                    .add("echo", &json!({ "from": job.id }))?;
                Ok(json!({ "added": id }))
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Count {
    #[serde(default)]
    runs: u32,
    until: u32,
}

fn count(mut job: Job) -> Result<serde_json::Value> {
    let mut count: Count = job.data()?;
    count.runs += 1;
    job.update_data(&count)?;
    if count.runs < count.until {
        return Err(Error::failed(format!(
            "run {} of {}",
            count.runs, count.until
        )));
    }
    Ok(json!({ "runs": count.runs }))
}

fn sum(mut job: Job) -> Result<serde_json::Value> {
    let mut plan: Sum = job.data()?;
    if plan.step == 0 {
        let queue = plan
            .children_queue
            .clone()
            .unwrap_or_else(|| job.queue.clone());
        let options = match plan.on_failure.as_deref() {
            None => JobOptions::new(),
            Some("fail-parent") => JobOptions::new().fail_parent_on_failure(),
            Some("continue-parent") => JobOptions::new().continue_parent_on_failure(),
            Some("ignore") => JobOptions::new().ignore_dependency_on_failure(),
            Some("remove") => JobOptions::new().remove_dependency_on_failure(),
            Some(other) => {
                return Err(Error::unrecoverable(format!(
                    "unknown on_failure `{other}`"
                )));
            }
        };
        for n in &plan.numbers {
            let data = json!({ "n": n, "fail": plan.fail.contains(n) });
            job.add_child_with(&queue, "square", &data, &options)?;
        }
        plan.step = 1;
        job.update_data(&plan)?;
    }
    // Again on every run after the first, as BullMQ's step pattern does: a
    // failed child with `continueParentOnFailure` runs the parent while
    // others are still pending.
    if job.move_to_waiting_children()? {
        return Err(Error::waiting_children());
    }
    let values = job.children_values::<u64>()?;
    Ok(json!({
        "sum": values.values().sum::<u64>(),
        "children": values.len(),
        "failed": job.failed_children()?,
        "ignored": job.ignored_children_failures()?,
    }))
}

bullpen_guest::export!(FanOut);
