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

/// The master holding the queues' slot is restarted ten times while jobs
/// flow, 2,000 added by BullMQ's Node client before each restart, and a
/// processor counts its runs outside Redis (a request to the test's server
/// per run, one path per job): every job completes, and runs exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn ten_restarts_of_the_master_of_the_queues_slot_run_every_job_once() {
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 2_000;
    let runs = bullpen_tests::hook_server::HookServer::start().await;
    let mut cluster = RedisCluster::start();
    let host = RunningHost::start_with(
        &redis_table(&cluster),
        &format!(
            "[queues.flow]\nmodule = \"misbehave.wasm\"\nconcurrency = 8\n\
             lock_duration = \"10s\"\nallowed_outbound_hosts = [\"http://{}\"]\n",
            runs.addr
        ),
    );
    let addresses = cluster.addresses();
    let queue = RedisTarget::cluster(cluster.urls(), PREFIX)
        .queue("flow")
        .await
        .unwrap();
    let owner = cluster.owner_of("bull");
    for round in 0..ROUNDS {
        let added = node_run(
            "cluster.mjs",
            &[],
            &[
                ("CLUSTER_NODES", &addresses),
                ("PREFIX", PREFIX),
                ("MODE", "bulk"),
                ("COUNT", &PER_ROUND.to_string()),
                ("ROUND", &round.to_string()),
                ("RUNS_URL", &runs.url("http", "/count")),
            ],
        );
        assert_eq!(added["added"], PER_ROUND);
        // Some of this round done, most still to do: then the master goes
        // away for a moment.
        let done_before = (round * PER_ROUND + PER_ROUND / 10) as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while queue.get_completed_count().await.unwrap_or(0) < done_before {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing more completed on the cluster\n{}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.nodes[owner].stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.nodes[owner].restart();
        cluster.wait_ok();
    }
    let total = (ROUNDS * PER_ROUND) as u64;
    bullpen_tests::wait_until_all_completed(&queue, total, Duration::from_secs(180), &host).await;
    let not_once = runs.not_once(
        (0..ROUNDS).flat_map(|round| (0..PER_ROUND).map(move |i| format!("/count/{round}-{i}"))),
    );
    assert!(
        not_once.is_empty(),
        "{} jobs did not run exactly once (path, runs): {not_once:?}\n{}",
        not_once.len(),
        host.log()
    );
}
