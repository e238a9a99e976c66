//! BullMQ's own clients, Node and Python, as producers and observers of a
//! bullpen host: what they add is processed with the right outcome, and what
//! they read back is what BullMQ's worker would have left.

use bullpen_tests::{RedisServer, RunningHost, attempts, node, python, queue, wait_for_state};
use serde_json::{Value, json};

const QUEUES: &str = "\
[queues.echo]\nmodule = \"echo.wasm\"\nconcurrency = 4\n\n\
[queues.flaky]\nmodule = \"flaky.wasm\"\nconcurrency = 4\n\n\
[queues.signups]\nmodule = \"validate.wasm\"\n\n\
[queues.custom]\nmodule = \"custom-backoff.wasm\"\n\n\
[queues.later]\nmodule = \"delayed.wasm\"\n\n\
[queues.limited]\nmodule = \"rate-limited.wasm\"\n\n\
[queues.misbehave]\nmodule = \"misbehave.wasm\"\n\n\
[queues.keep]\nmodule = \"echo.wasm\"\n\n\
[queues.keepfail]\nmodule = \"flaky.wasm\"\n";

/// The job log of a `validate` job that registered Ada: the guest's own
/// line, and nothing of bullpen's.
fn assert_registration_logs(logs: &Value) {
    assert_eq!(logs, &json!(["registered Ada <ada@example.com>"]));
}

fn events_of<'a>(report: &'a Value, queue: &str, id: &str) -> Vec<&'a Value> {
    report["events"][queue]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["jobId"] == id)
        .collect()
}

fn kinds(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn node_producers_and_observers_see_what_bullmq_would_leave() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, QUEUES);
    let report = node("producer.mjs", &redis);
    let job = |key: &str| &report["jobs"][key];
    let log = host.log();

    // Completed with a custom id: Node reads the return value as the object.
    let echo = job("echo");
    assert_eq!(echo["id"], "custom-id-1");
    assert_eq!(echo["state"], "completed", "{log}");
    assert_eq!(echo["returnvalueType"], "object");
    assert_eq!(
        echo["returnvalue"],
        json!({"hello": "node", "nested": {"a": [1, 2]}})
    );
    assert_eq!(attempts(echo), (Some(1), Some(1)));
    let seen = kinds(&events_of(&report, "echo", "custom-id-1"));
    assert!(seen.contains(&"active".to_owned()), "{seen:?}");
    let completed = events_of(&report, "echo", "custom-id-1")
        .into_iter()
        .find(|e| e["event"] == "completed")
        .expect("a completed event");
    assert_eq!(
        completed["returnvalue"],
        json!({"hello": "node", "nested": {"a": [1, 2]}})
    );

    for key in [
        "priority",
        "lifo",
        "delayed-add",
        "bulk-0",
        "bulk-1",
        "bulk-2",
    ] {
        assert_eq!(job(key)["state"], "completed", "{key}");
    }
    assert_eq!(job("bulk-2")["returnvalue"], json!({"n": 3}));
    assert!(
        kinds(&events_of(
            &report,
            "echo",
            job("delayed-add")["id"].as_str().unwrap()
        ))
        .contains(&"delayed".to_owned())
    );
    assert_eq!(job("remove-on-complete")["exists"], false);
    // removeOnComplete / removeOnFail as counts: keep only the newest.
    assert_eq!(job("keep-1-a")["exists"], false);
    assert_eq!(job("keep-1-b")["exists"], true);
    assert_eq!(job("keep-failed-1-a")["exists"], false);
    assert_eq!(job("keep-failed-1-b")["exists"], true);
    // Every job is announced waiting before it is active.
    let seen = kinds(&events_of(
        &report,
        "echo",
        job("priority")["id"].as_str().unwrap(),
    ));
    assert!(
        seen.contains(&"waiting".to_owned()) || seen.contains(&"added".to_owned()),
        "{seen:?}"
    );

    // Retried with exponential backoff and jitter, then completed.
    let exp = job("exponential-jitter");
    assert_eq!(exp["state"], "completed");
    assert_eq!(exp["attemptsMade"], 3);
    assert_eq!(exp["returnvalue"], json!({"attempt": 3}));
    assert_eq!(exp["stacktrace"].as_array().unwrap().len(), 2);

    // Attempts exhausted: failedReason and one stack per attempt.
    let exhausted = job("exhausted");
    assert_eq!(exhausted["state"], "failed");
    assert_eq!(exhausted["failedReason"], "attempt 2 of 3 failed");
    assert_eq!(exhausted["attemptsMade"], 2);
    assert_eq!(exhausted["stacktrace"].as_array().unwrap().len(), 2);
    let failed = events_of(&report, "flaky", exhausted["id"].as_str().unwrap())
        .into_iter()
        .rfind(|e| e["event"] == "failed")
        .expect("a failed event");
    assert_eq!(failed["failedReason"], "attempt 2 of 3 failed");

    // `backoff: 50` (a bare number) is a fixed backoff.
    assert_eq!(job("backoff-number")["state"], "completed");
    assert_eq!(job("remove-on-fail")["exists"], false);

    // Unrecoverable on attempt 1 of 5.
    let bad = job("unrecoverable");
    assert_eq!(bad["state"], "failed");
    assert_eq!(
        bad["failedReason"],
        "Invalid job data: \"email\" is required"
    );
    assert_eq!(bad["attemptsMade"], 1);

    // Job logs: the guest's line. The module version that ran the job is
    // Node's `job.processedBy`: the name of the worker that took it.
    assert_registration_logs(&job("valid")["logs"]);
    let by = job("valid")["processedBy"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        by.starts_with("validate.wasm@") && by.len() == "validate.wasm@".len() + 12,
        "{by}"
    );

    // `keepLogs: 2` (stored by Node as `kl`): of the guest's five lines,
    // the job keeps two, as BullMQ's `addLog` trims.
    assert_eq!(job("keep-logs")["state"], "completed", "{log}");
    assert_eq!(job("keep-logs")["logs"], json!(["xxx", "xxx"]));

    // The module's own backoff.
    assert_eq!(job("custom")["state"], "completed");
    assert_eq!(job("custom")["attemptsMade"], 3);

    // Delayed and rate-limited by the guest: no attempt counted.
    for key in ["delayed", "rate-limited"] {
        let j = job(key);
        assert_eq!(j["state"], "completed", "{key}");
        assert_eq!(
            (j["attemptsMade"].as_u64(), j["attemptsStarted"].as_u64()),
            (Some(1), Some(2)),
            "{key}"
        );
    }
    let delayed_id = job("delayed")["id"].as_str().unwrap();
    assert!(kinds(&events_of(&report, "later", delayed_id)).contains(&"delayed".to_owned()));

    // Progress: the job's field and the event.
    let progress = job("progress");
    assert_eq!(progress["progress"], 10);
    let progress_id = progress["id"].as_str().unwrap();
    let event = events_of(&report, "misbehave", progress_id)
        .into_iter()
        .find(|e| e["event"] == "progress")
        .expect("a progress event");
    assert_eq!(event["data"], 10);

    // Job.retry() error cases from Node, as BullMQ words them.
    let errors = &report["retryErrors"];
    assert_eq!(
        errors["missing"],
        "Missing key for job no-such-job. reprocessJob"
    );
    assert_eq!(
        errors["wrongState"],
        "Job custom-id-1 is not in the failed state. reprocessJob"
    );
    assert_eq!(
        errors["active"],
        format!(
            "Job {} is not in the failed state. reprocessJob",
            errors["activeId"].as_str().unwrap()
        )
    );
}

#[test]
fn python_producers_read_results_and_retry_by_hand() {
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, QUEUES);
    let report = python("producer.py", &redis);
    let log = host.log();

    let echo = &report["echo"];
    assert_eq!(echo["state"], "completed", "{log}");
    // Python reads the return value as an object (a dict), not a string.
    assert_eq!(echo["returnvalueType"], "dict");
    assert_eq!(echo["returnvalue"], json!({"hello": "python"}));

    let retried = &report["retried"];
    assert_eq!(retried["state"], "completed");
    assert_eq!(retried["attemptsMade"], 2);
    assert_eq!(retried["returnvalue"], json!({"attempt": 2}));

    let exhausted = &report["exhausted"];
    assert_eq!(exhausted["state"], "failed");
    assert_eq!(exhausted["failedReason"], "attempt 2 of 9 failed");
    assert_eq!(exhausted["stacktrace"].as_array().unwrap().len(), 2);

    // Progress and job logs, read from Python.
    assert_eq!(report["progress"]["progress"], 10);
    assert_registration_logs(&report["logged"]["logs"]);

    // Job.retry() from Python, processed again by bullpen.
    assert_eq!(report["retry-plain"]["state"], "completed");
    assert_eq!(attempts(&report["retry-plain"]), (Some(2), Some(2)));
    assert_eq!(attempts(&report["retry-reset-both"]), (Some(1), Some(1)));
    assert_eq!(report["retry-failed-reset-made"]["state"], "failed");
    assert_eq!(
        attempts(&report["retry-failed-reset-made"]),
        (Some(2), Some(4))
    );

    // The seeds' error cases, as the Python client reports them.
    let errors = &report["retry-errors"];
    assert_eq!(
        errors["missing"],
        "Missing key for job no-such-job. reprocessJob"
    );
    let completed_id = report["retry-reset-both"]["id"].as_str().unwrap_or("1");
    assert_eq!(
        errors["wrong-state"],
        format!("Job {completed_id} is not in the failed state. reprocessJob")
    );
}

#[test]
fn a_node_worker_and_bullpen_share_a_queue_and_lose_nothing() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(
        &redis,
        "[queues.shared]\nmodule = \"echo.wasm\"\nconcurrency = 8\n",
    );
    let report = node("shared_queue.mjs", &redis);
    assert_eq!(report["total"], 10_000);
    assert_eq!(report["distinct"], 10_000, "{report}");
    assert_eq!(report["notCompleted"], 0, "{report}");
    assert_eq!(report["startedTwice"], 0, "{report}");
    let by_node = report["byNode"].as_u64().unwrap();
    let by_bullpen = report["byBullpen"].as_u64().unwrap();
    assert_eq!(by_node + by_bullpen, 10_000, "{report}");
    assert_eq!(
        by_node,
        report["nodeProcessed"].as_u64().unwrap(),
        "{report}"
    );
    assert!(by_node > 0 && by_bullpen > 0, "both took jobs: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_shows_bullpens_counts_and_failed_reasons() {
    let redis = RedisServer::start();
    let _host = RunningHost::start(&redis, QUEUES);
    let signups = queue(&redis, "signups").await;
    let bad = signups.add("bad", json!({})).await.unwrap().id().to_owned();
    let good = signups
        .add("good", json!({"email": "ada@example.com", "name": "Ada"}))
        .await
        .unwrap()
        .id()
        .to_owned();
    for id in [&bad, &good] {
        let finished = ["completed", "failed"];
        wait_for_state(&signups, id, &finished, std::time::Duration::from_secs(10)).await;
    }
    let report = tokio::task::spawn_blocking(move || {
        bullpen_tests::node_env("dashboard.mjs", &[("QUEUES", "signups,echo")], &redis)
    })
    .await
    .unwrap();
    let board = &report["signups"];
    assert_eq!(board["http"], 200);
    assert_eq!(board["counts"]["completed"], 1, "{report}");
    assert_eq!(board["counts"]["failed"], 1, "{report}");
    assert_eq!(
        board["failed"],
        json!([{"id": bad, "failedReason": "Invalid job data: \"email\" is required"}])
    );
    assert_eq!(report["page"], json!({"http": 200, "html": true}));
}
