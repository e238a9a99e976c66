//! bullpen on a Redis Cluster of three masters: BullMQ's Node client as
//! producer with the same hash-tagged prefix, every outcome, and the master
//! holding the queues' slot restarted while jobs flow.

use bullpen::queue::RedisTarget;
use bullpen_tests::{
    EVERY_OUTCOME_QUEUES, RedisCluster, RunningHost, assert_every_outcome, node_run,
};
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
    let host = RunningHost::start_with(&redis_table(&cluster), EVERY_OUTCOME_QUEUES);
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
    assert_every_outcome(&jobs, &host.log());
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
