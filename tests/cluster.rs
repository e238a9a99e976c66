//! bullpen on a Redis Cluster of three masters: BullMQ's Node client as
//! producer with the same hash-tagged prefix, every outcome, and the master
//! holding the queues' slot restarted while jobs flow.

use bullpen::queue::RedisTarget;
use bullpen_tests::{RedisCluster, RunningHost, node_run};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PREFIX: &str = "{bull}";

fn redis_table(cluster: &RedisCluster) -> String {
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[redis]\nnodes = [{}]\nprefix = \"{PREFIX}\"\n\n",
        nodes.join(", ")
    )
}

#[test]
fn node_producers_on_a_cluster_get_every_outcome() {
    let cluster = RedisCluster::start();
    let host = RunningHost::start_with(
        &redis_table(&cluster),
        "[queues.echo]\nmodule = \"echo.wasm\"\n\n\
         [queues.flaky]\nmodule = \"flaky.wasm\"\n\n\
         [queues.signups]\nmodule = \"validate.wasm\"\n\n\
         [queues.limited]\nmodule = \"rate-limited.wasm\"\n\n\
         [queues.later]\nmodule = \"delayed.wasm\"\n\n\
         [queues.custom]\nmodule = \"custom-backoff.wasm\"\n\n\
         [queues.fan]\nmodule = \"fan-out.wasm\"\nadd_to_queues = [\"fan\"]\nconcurrency = 4\n",
    );
    let addresses = cluster.addresses();
    let jobs = node_run(
        "cluster.mjs",
        &[],
        &[
            ("CLUSTER_NODES", &addresses),
            ("PREFIX", PREFIX),
            ("MODE", "outcomes"),
        ],
    );
    let job = |key: &str| -> &Value { &jobs[key] };
    let state = |key: &str| job(key)["state"].as_str().unwrap_or("?").to_owned();
    let log = host.log();
    assert_eq!(state("completed"), "completed", "{jobs}\n{log}");
    assert_eq!(job("completed")["returnvalue"], json!({"hello": "cluster"}));
    assert_eq!(state("retried"), "completed", "{jobs}");
    assert_eq!(job("retried")["attemptsMade"], 3);
    assert_eq!(state("exhausted"), "failed", "{jobs}");
    assert_eq!(job("exhausted")["attemptsMade"], 2);
    assert_eq!(state("unrecoverable"), "failed", "{jobs}");
    assert_eq!(job("unrecoverable")["attemptsMade"], 1);
    assert!(
        job("unrecoverable")["failedReason"]
            .as_str()
            .unwrap()
            .starts_with("Invalid job data"),
        "{jobs}"
    );
    // Given back on a rate limit, then delayed: no attempt counted for either.
    for key in ["rate-limited", "delayed"] {
        assert_eq!(state(key), "completed", "{key}: {jobs}");
        assert_eq!(job(key)["attemptsMade"], 1, "{key}: {jobs}");
        assert_eq!(job(key)["attemptsStarted"], 2, "{key}: {jobs}");
    }
    // The module's own backoff: linear after `Transient`, at once after
    // `RetryNow`, then success on attempt 3.
    assert_eq!(state("custom"), "completed", "{jobs}");
    assert_eq!(job("custom")["returnvalue"], json!({"attempt": 3}));
    // Children in the same slot as their parent (the prefix's hash tag),
    // then the parent's second step.
    assert_eq!(state("parent"), "completed", "{jobs}");
    assert_eq!(job("parent")["returnvalue"]["sum"], 14, "{jobs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_the_master_of_the_queues_slot_loses_no_job() {
    let mut cluster = RedisCluster::start();
    let _host = RunningHost::start_with(
        &redis_table(&cluster),
        "[queues.echo]\nmodule = \"echo.wasm\"\nconcurrency = 8\n",
    );
    let addresses = cluster.addresses();
    let added = node_run(
        "cluster.mjs",
        &[],
        &[
            ("CLUSTER_NODES", &addresses),
            ("PREFIX", PREFIX),
            ("MODE", "bulk"),
            ("COUNT", "2000"),
        ],
    );
    assert_eq!(added["added"], 2000);
    let queue = RedisTarget::cluster(cluster.urls(), PREFIX)
        .queue("echo")
        .await
        .unwrap();
    // Some done, most still to do: then the master goes away for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.get_completed_count().await.unwrap_or(0) < 200 {
        assert!(
            Instant::now() < deadline,
            "nothing completed on the cluster"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let owner = cluster.owner_of("bull");
    cluster.nodes[owner].stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.nodes[owner].restart();
    cluster.wait_ok();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = queue.get_job_counts().await;
        if let Ok(counts) = &counts
            && counts.completed + counts.failed == 2000
        {
            assert_eq!(counts.failed, 0, "{counts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every job finished after the restart: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
