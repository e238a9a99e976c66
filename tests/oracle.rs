//! Differential tests: each scenario runs once with BullMQ's own Node worker
//! (a JS processor doing what the guest does) and once with `bullpen run` and
//! the example guest, each on a fresh Redis; the job hashes and the event
//! sequences must match field by field. Only what must differ is normalised:
//! timestamps, the worker's name, stack trace texts (their count is
//! compared), and delays (compared by order of magnitude).

use bullpen_tests::oracle::differences;
use bullpen_tests::{RedisServer, RunningHost, node_with};
use serde_json::Value;

fn run(scenario: &str, guest: &str, grants: &str) -> (Value, Value) {
    let oracle_redis = RedisServer::start();
    let oracle = node_with("oracle.mjs", &[scenario, "node"], &oracle_redis);
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        &format!("[queues.{scenario}]\nmodule = \"{guest}.wasm\"\n{grants}"),
    );
    let ours = node_with("oracle.mjs", &[scenario, "bullpen"], &redis);
    (oracle, ours)
}

fn check(scenario: &str, guest: &str, grants: &str) {
    let (oracle, ours) = run(scenario, guest, grants);
    let diffs = differences(&oracle, &ours);
    assert!(
        diffs.is_empty(),
        "{scenario}: bullpen differs from BullMQ's Node worker:\n  {}\nnode: {oracle}\nbullpen: {ours}",
        diffs.join("\n  ")
    );
}

macro_rules! scenarios {
    ($($test:ident: $scenario:literal with $guest:literal $(granting $grants:literal)?;)*) => {
        $(
            #[test]
            fn $test() {
                check($scenario, $guest, concat!("" $(, $grants)?));
            }
        )*
    };
}

scenarios! {
    succeed: "succeed" with "echo";
    fail_twice_then_succeed_with_exponential_backoff: "fail-twice-then-succeed" with "flaky";
    unrecoverable_on_attempt_1_of_5: "unrecoverable-on-1-of-5" with "validate";
    rate_limited_then_succeed: "rate-limited-then-succeed" with "rate-limited";
    delayed_then_succeed: "delayed-then-succeed" with "delayed";
    custom_backoff_delay_then_now_then_give_up: "custom-backoff-delay-now-give-up" with "custom-backoff";
    all_attempts_exhausted: "attempts-exhausted" with "flaky";
    manual_retry_of_a_completed_job: "retry-completed-no-reset" with "echo";
    manual_retry_resetting_attempts_made: "retry-completed-reset-made" with "echo";
    manual_retry_resetting_attempts_started: "retry-completed-reset-started" with "echo";
    manual_retry_of_a_failed_job_resetting_both: "retry-failed-reset-both" with "flaky";
    step_job_adds_children_waits_and_sums_their_values: "step-job-children" with "fan-out"
        granting "add_to_queues = [\"step-job-children\"]";
    a_failing_child_fails_its_parent: "child-fails-parent" with "fan-out"
        granting "add_to_queues = [\"child-fails-parent\"]";
    a_failing_child_lets_its_parent_continue: "child-continues-parent" with "fan-out"
        granting "add_to_queues = [\"child-continues-parent\"]";
    a_failing_child_is_ignored: "child-failure-ignored" with "fan-out"
        granting "add_to_queues = [\"child-failure-ignored\"]";
    a_failing_child_is_removed_from_its_parent: "child-failure-removed" with "fan-out"
        granting "add_to_queues = [\"child-failure-removed\"]";
    a_follow_up_job_on_another_queue: "follow-up-job" with "fan-out"
        granting "add_to_queues = [\"follow-ups\"]";
    update_data_across_attempts: "update-data-across-attempts" with "fan-out";
    keep_logs_trims_the_jobs_log: "keep-logs" with "misbehave";
}

/// Job schedulers and deduplication from a Node producer
/// (`schedulers.mjs`): what the producer observes when BullMQ's Node worker
/// processes the jobs, and when bullpen does.
fn producer_sees(scenario: &str, guest: &str) -> (Value, Value) {
    let oracle_redis = RedisServer::start();
    let oracle = node_with("schedulers.mjs", &[scenario, "node"], &oracle_redis);
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        &format!("[queues.{scenario}]\nmodule = \"{guest}.wasm\"\nconcurrency = 2\n"),
    );
    let ours = node_with("schedulers.mjs", &[scenario, "bullpen"], &redis);
    (oracle, ours)
}

#[test]
fn a_job_scheduler_every_with_a_limit() {
    let (node, bullpen) = producer_sees("scheduler-every-limit", "echo");
    assert_eq!(node["completed"], 3, "{node}");
    assert_eq!(bullpen, node);
}

#[test]
fn a_cron_job_scheduler_until_removed() {
    let (node, bullpen) = producer_sees("scheduler-cron-removal", "echo");
    assert_eq!(
        node,
        serde_json::json!({"secondApart": true, "removed": true, "stoppedAfterRemoval": true, "schedulers": 0})
    );
    assert_eq!(bullpen, node);
}

#[test]
fn deduplication_ids_held_and_released() {
    let (node, bullpen) = producer_sees("deduplication", "misbehave");
    for fact in [
        "heldWhileItLives",
        "releasedOnCompletion",
        "heldForItsTtl",
        "releasedAfterItsTtl",
    ] {
        assert_eq!(node[fact], true, "{fact}: {node}");
    }
    assert_eq!(bullpen, node);
}

/// A scheduler's next iteration is added when the current one starts, as
/// Node's worker adds it: an iteration longer than `every` does not hold the
/// next back (the crate's patch 0002; the published crate adds it when the
/// iteration finishes, and the counts differ).
#[test]
fn a_schedulers_next_iteration_is_added_when_this_one_starts() {
    let (node, bullpen) = producer_sees("scheduler-long-iteration", "misbehave");
    assert_eq!(node["iterationsWhileTheFirstRuns"], 2, "{node}");
    assert_eq!(bullpen, node);
}
