//! bullpen's Relay node beside BullMQ's own `Relay` (Node, BullMQ 6.7) on
//! one Redis (issue 30): what one publishes the other hears, retained
//! messages included, on BullMQ's topics and keys.

use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::JobOptions;
use bullpen::relay::{Message, Relay, RelayError, RelayOptions};
use bullpen_tests::{RedisServer, RunningHost, finished, node_run, queue, wait_for_state};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn start(redis: &RedisServer) -> Relay {
    Relay::connect(
        &RedisTarget::server(redis.url(), "bull"),
        RelayOptions::default(),
    )
    .await
    .unwrap()
}

/// The next message of `subscription`, within 10 s.
async fn next(messages: &mut tokio::sync::mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), messages.recv())
        .await
        .expect("no message within 10 s")
        .expect("the subscription ended")
}

/// BullMQ's Node `Relay` publishing `data` on `topic`: what it reached.
async fn node_publishes(redis: &RedisServer, topic: &str, data: Value, retain_ms: u64) -> Value {
    let url = redis.url();
    let (topic, data) = (topic.to_owned(), data.to_string());
    tokio::task::spawn_blocking(move || {
        node_run(
            "relay.mjs",
            &["publish", &topic, &data, &retain_ms.to_string()],
            &[("REDIS_URL", &url)],
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn bullpen_hears_what_bullmqs_relay_publishes_retained_first() {
    let redis = RedisServer::start();
    let relay = start(&redis).await;
    // Retained before bullpen subscribes: given first, marked so.
    node_publishes(
        &redis,
        "workers.emails.settings",
        json!({"concurrency": 2, "paused": true}),
        60_000,
    )
    .await;
    let mut settings = relay.subscribe("workers.emails.settings").await.unwrap();
    let retained = next(&mut settings.messages).await;
    assert_eq!(
        (retained.topic.as_str(), &retained.data, retained.retained),
        (
            "workers.emails.settings",
            &json!({"concurrency": 2, "paused": true}),
            true
        )
    );

    // Live, on a pattern: `*` one segment.
    let mut cancels = relay.subscribe("jobs.*.cancel").await.unwrap();
    let published = node_publishes(
        &redis,
        "jobs.emails.cancel",
        json!({"jobId": "7", "reason": "asked"}),
        0,
    )
    .await;
    assert_eq!(published["nodes"], 1, "{published}");
    assert_eq!(published["endpoints"], 1, "{published}");
    let cancel = next(&mut cancels.messages).await;
    assert_eq!(cancel.topic, "jobs.emails.cancel");
    assert_eq!(cancel.data, json!({"jobId": "7", "reason": "asked"}));
    assert!(!cancel.retained);
    // A later setting reaches the settings subscription live.
    node_publishes(
        &redis,
        "workers.emails.settings",
        json!({"concurrency": 4, "paused": false}),
        60_000,
    )
    .await;
    let live = next(&mut settings.messages).await;
    assert_eq!(
        (live.data["concurrency"].clone(), live.retained),
        (json!(4), false)
    );

    // Once stopped, the node is gone: a publish reaches no one.
    relay.stop().await.unwrap();
    let published = node_publishes(&redis, "jobs.emails.cancel", json!({"jobId": "8"}), 0).await;
    assert_eq!(published["nodes"], 0, "{published}");
}

#[tokio::test]
async fn bullmqs_relay_hears_what_bullpen_publishes() {
    let redis = RedisServer::start();
    let relay = start(&redis).await;
    // Retained by bullpen before Node subscribes.
    relay
        .publish(
            "workers.orders.settings",
            &json!({"paused": true}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let url = redis.url();
    let listener = std::thread::spawn(move || {
        node_run(
            "relay.mjs",
            &["listen", "workers.orders.>", "2", "relay-test:ready"],
            &[("REDIS_URL", &url)],
        )
    });
    // Node says when it has subscribed (a plain key), then bullpen publishes.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready: Option<String> = redis::cmd("GET")
            .arg("relay-test:ready")
            .query_async(&mut connection)
            .await
            .unwrap();
        if ready.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "Node's Relay did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = relay
        .publish(
            "workers.orders.settings",
            &json!({"concurrency": 3}),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!((published.nodes, published.endpoints), (1, 1));
    relay
        .publish("workers.orders.drain", &json!(null), Duration::ZERO)
        .await
        .unwrap();
    let heard = tokio::task::spawn_blocking(move || listener.join().unwrap())
        .await
        .unwrap();
    // A pattern gets no retained message, as BullMQ's Relay says: only live
    // ones, in order.
    assert_eq!(
        heard,
        json!([
            {"topic": "workers.orders.settings", "data": {"concurrency": 3}, "retained": false},
            {"topic": "workers.orders.drain", "data": null, "retained": false},
        ])
    );
    // Retained for an exact topic: what a node subscribing later gets.
    let late = start(&redis).await;
    let mut settings = late.subscribe("workers.orders.settings").await.unwrap();
    let retained = next(&mut settings.messages).await;
    assert_eq!(
        (retained.data, retained.retained),
        (json!({"paused": true}), true)
    );
    assert!(
        late.delete_retained("workers.orders.settings")
            .await
            .unwrap()
    );
    assert!(
        !late
            .delete_retained("workers.orders.settings")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn what_the_relay_refuses_it_names() {
    let redis = RedisServer::start();
    let relay = start(&redis).await;
    let refused = relay.subscribe("jobs..cancel").await.err().unwrap();
    assert!(
        matches!(refused, RelayError::Refused { code: -2, .. }),
        "{refused}"
    );
    assert_eq!(refused.to_string(), "Invalid topic pattern: jobs..cancel");
    let refused = relay
        .publish("jobs.*.cancel", &json!(1), Duration::ZERO)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.to_string(), "Invalid topic: jobs.*.cancel");
    let big = json!("x".repeat(600 * 1024));
    let refused = relay
        .publish("jobs.a.b", &big, Duration::ZERO)
        .await
        .err()
        .unwrap();
    assert!(
        refused.to_string().starts_with("Message data is too large"),
        "{refused}"
    );
}

/// Adds a job that spins forever (examples/misbehave) with `attempts`.
async fn spinning(queue: &bullpen::queue::bullmq::Queue, attempts: u32) -> String {
    let options = JobOptions {
        attempts: Some(attempts),
        ..JobOptions::default()
    };
    let job = queue
        .add("spin", json!({"mode": "spin"}))
        .options(options)
        .await
        .unwrap();
    job.id().to_owned()
}

/// A cancel published by BullMQ's own Relay in Node stops a guest that
/// spins (it never yields to a signal) at once: the job fails for good with
/// `cancelled: <reason>`, not with its 60 s timeout, and the job beside it
/// runs on. `bullpen cancel` does the same from the shell; `--retry`
/// retries; a job that is not running is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_stops_a_running_guest_wherever_it_is_published_from() {
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        "[queues.spin]\nmodule = \"misbehave.wasm\"\nconcurrency = 2\ntimeout = \"60s\"\n",
    );
    let spin = queue(&redis, "spin").await;
    let (a, b) = (spinning(&spin, 1).await, spinning(&spin, 3).await);
    for id in [&a, &b] {
        wait_for_state(&spin, id, &["active"], Duration::from_secs(20)).await;
    }

    let cancel = json!({"jobId": a, "reason": "the customer withdrew"});
    let published = node_publishes(&redis, "jobs.spin.cancel", cancel, 0).await;
    assert_eq!(published["endpoints"], 1, "{published}\n{}", host.log());
    let (state, job) = finished(&spin, &a, Duration::from_secs(10)).await;
    assert_eq!(
        (state.as_str(), job.failed_reason()),
        ("failed", "cancelled: the customer withdrew"),
        "{}",
        host.log()
    );
    assert_eq!(
        wait_for_state(&spin, &b, &["active"], Duration::from_secs(1)).await,
        "active",
        "the other job was touched"
    );

    // From the shell, retried: the attempt counts and the job runs again.
    let (code, said, errors) = host.cli(&["cancel", "spin", &b, "--reason", "redeploy", "--retry"]);
    assert_eq!(code, 0, "{said}{errors}\n{}", host.log());
    assert!(
        said.contains(&format!("spin: job {b} no longer runs")),
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = spin.get_job(&b).await.unwrap().unwrap();
        if job.attempts_made() == 1 {
            assert_eq!(job.failed_reason(), "cancelled: redeploy");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {b} was not retried\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_state(&spin, &b, &["active"], Duration::from_secs(10)).await;
    let (code, said, errors) = host.cli(&["cancel", "spin", &b, "--reason", "enough"]);
    assert_eq!(code, 0, "{said}{errors}");
    let (state, job) = finished(&spin, &b, Duration::from_secs(10)).await;
    assert_eq!(
        (state.as_str(), job.failed_reason()),
        ("failed", "cancelled: enough")
    );

    // Not running: said, and nothing touched.
    let (code, said, _) = host.cli(&["cancel", "spin", &a]);
    assert_eq!(code, 0);
    assert!(
        said.contains(&format!(
            "job {a} is failed, not running: nothing cancelled"
        )),
        "{said}"
    );
    let (code, _, errors) = host.cli(&["cancel", "spin", "nope"]);
    assert_ne!(code, 0);
    assert!(errors.contains("spin: no job nope"), "{errors}");
}

/// Waits until `host`'s log has `needle` (the settings it applied).
fn wait_for_line(host: &RunningHost, needle: &str) {
    assert!(
        host.wait_for_log(needle, Duration::from_secs(10)),
        "no `{needle}` in the host's log:\n{}",
        host.log()
    );
}

/// Checks for a second that job `id` stays waiting: no attempt starts.
async fn stays_waiting(queue: &bullpen::queue::bullmq::Queue, id: &str, host: &RunningHost) {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let state = bullpen::queue::state_name(&queue.get_job_state(id).await.unwrap());
        assert!(
            matches!(state, "waiting" | "paused"),
            "job {id} is {state}\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings retained by BullMQ's Relay in Node pause a running host at
/// once, and a host that starts afterwards before it takes a job;
/// `bullpen resume` and `bullpen concurrency` steer both. BullMQ's own
/// global `Queue.pause()` is honoured too: no attempt starts, the one in
/// flight finishes.
#[tokio::test(flavor = "multi_thread")]
async fn the_fleets_settings_pause_and_steer_running_and_later_hosts() {
    let redis = RedisServer::start();
    let config = "[queues.work]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\n";
    let first = RunningHost::start(&redis, config);
    let work = queue(&redis, "work").await;
    let add = |ms: u64| {
        let work = work.clone();
        async move {
            let job = work
                .add("work", json!({"mode": "work", "ms": ms}))
                .await
                .unwrap();
            job.id().to_owned()
        }
    };

    node_publishes(
        &redis,
        "workers.work.settings",
        json!({"paused": true}),
        60_000,
    )
    .await;
    wait_for_line(&first, "the fleet's settings apply");
    let waiting = add(10).await;
    stays_waiting(&work, &waiting, &first).await;
    // A host started now applies the retained settings before it takes a
    // job.
    let second = RunningHost::start(&redis, config);
    let log = second.log();
    let applied = log
        .find("the fleet's retained settings apply")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(applied < log.find("taking jobs").unwrap(), "{log}");
    stays_waiting(&work, &waiting, &second).await;

    let (code, said, errors) = first.cli(&["resume", "work"]);
    assert_eq!(code, 0, "{errors}");
    assert!(
        said.contains("work: running, concurrency as configured; heard by 2 host(s)"),
        "{said}"
    );
    finished(&work, &waiting, Duration::from_secs(10)).await;
    let (code, said, errors) = first.cli(&["concurrency", "work", "2"]);
    assert_eq!(code, 0, "{errors}");
    assert!(said.contains("work: running, concurrency 2"), "{said}");
    wait_for_line(&first, "concurrency=2");
    wait_for_line(&second, "concurrency=2");

    // BullMQ's global pause: the job in flight finishes, no other starts.
    let in_flight = add(500).await;
    wait_for_state(&work, &in_flight, &["active"], Duration::from_secs(10)).await;
    let url = redis.url();
    tokio::task::spawn_blocking(move || {
        node_run(
            "relay.mjs",
            &["queue-pause", "work"],
            &[("REDIS_URL", &url)],
        )
    })
    .await
    .unwrap();
    let held = add(10).await;
    let (state, _) = finished(&work, &in_flight, Duration::from_secs(10)).await;
    assert_eq!(state, "completed");
    stays_waiting(&work, &held, &first).await;
    let url = redis.url();
    tokio::task::spawn_blocking(move || {
        node_run(
            "relay.mjs",
            &["queue-resume", "work"],
            &[("REDIS_URL", &url)],
        )
    })
    .await
    .unwrap();
    let (state, _) = finished(&work, &held, Duration::from_secs(10)).await;
    assert_eq!(state, "completed");
}

/// A queue whose workers carry a rate limiter (configured, here) is paused
/// and resumed by the fleet's settings like any other: the limiter holds
/// back only the workers it replaces.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_queue_pauses_and_resumes_too() {
    let redis = RedisServer::start();
    let config = "[queues.work]\nmodule = \"misbehave.wasm\"\nconcurrency = 2\n\
                  limiter = { max = 100, duration = \"1s\" }\n";
    let host = RunningHost::start(&redis, config);
    let work = queue(&redis, "work").await;
    let (code, said, errors) = host.cli(&["pause", "work"]);
    assert_eq!(code, 0, "{errors}");
    assert!(said.contains("work: paused"), "{said}");
    wait_for_line(&host, "paused=true");
    let job = work
        .add("work", json!({"mode": "work", "ms": 1}))
        .await
        .unwrap();
    stays_waiting(&work, job.id(), &host).await;
    let (code, _, errors) = host.cli(&["resume", "work"]);
    assert_eq!(code, 0, "{errors}");
    let (state, _) = finished(&work, job.id(), Duration::from_secs(10)).await;
    assert_eq!(state, "completed", "{}", host.log());
}

/// Two hosts share three queues: a Rust guest that spins, a JavaScript one
/// asleep on a timer, a Python one computing forever. BullMQ's Relay in Node
/// cancels one job of each, whichever host runs it: each fails with
/// `cancelled: …`, and the job beside them runs on.
#[tokio::test(flavor = "multi_thread")]
async fn cancels_reach_rust_javascript_and_python_guests_on_either_host() {
    let redis = RedisServer::start();
    let sleep_js = bullpen_tests::script_guest("tests/fixtures/js/sleep.js");
    let spin_py = bullpen_tests::script_guest("tests/fixtures/python/spin.py");
    let config = "[queues.rust]\nmodule = \"misbehave.wasm\"\nconcurrency = 2\ntimeout = \"60s\"\n\n\
                  [queues.js]\nmodule = \"sleep.wasm\"\ntimeout = \"60s\"\n\n\
                  [queues.python]\nmodule = \"spin.wasm\"\ntimeout = \"60s\"\n";
    let modules = [
        ("sleep.wasm", sleep_js.as_path()),
        ("spin.wasm", spin_py.as_path()),
    ];
    let hosts = [
        RunningHost::start_with_modules(&redis, config, &modules),
        RunningHost::start_with_modules(&redis, config, &modules),
    ];
    let log = || {
        hosts
            .iter()
            .map(RunningHost::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let mut cancelled = Vec::new();
    for name in ["rust", "js", "python"] {
        let queue = queue(&redis, name).await;
        let id = spinning(&queue, 1).await;
        cancelled.push((queue, id));
    }
    let rust = queue(&redis, "rust").await;
    let bystander = spinning(&rust, 1).await;
    for (queue, id) in &cancelled {
        wait_for_state(queue, id, &["active"], Duration::from_secs(60)).await;
    }
    wait_for_state(&rust, &bystander, &["active"], Duration::from_secs(60)).await;
    for (queue, id) in &cancelled {
        let cancel = json!({"jobId": id, "reason": format!("stop {}", queue.name())});
        let topic = format!("jobs.{}.cancel", queue.name());
        let published = node_publishes(&redis, &topic, cancel, 0).await;
        // Both hosts listen; one runs the job.
        assert_eq!(published["nodes"], 2, "{published}");
        let (state, job) = finished(queue, id, Duration::from_secs(10)).await;
        assert_eq!(
            (state.as_str(), job.failed_reason()),
            (
                "failed",
                format!("cancelled: stop {}", queue.name()).as_str()
            ),
            "{}",
            log()
        );
    }
    assert_eq!(
        wait_for_state(&rust, &bystander, &["active"], Duration::from_secs(1)).await,
        "active"
    );
}

/// The same interop on a Redis Cluster of three masters, in a hash-tagged
/// prefix: the namespace is one slot, the inbox's blocking read goes to the
/// node that holds it.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_works_alike_on_a_redis_cluster() {
    let cluster = bullpen_tests::RedisCluster::start();
    let target = RedisTarget::cluster(cluster.urls(), "{bull}");
    let relay = Relay::connect(&target, RelayOptions::default())
        .await
        .unwrap();
    let addresses = cluster.addresses();
    let node = |args: Vec<String>| {
        let addresses = addresses.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node_run(
                "relay.mjs",
                &args,
                &[("CLUSTER_NODES", &addresses), ("PREFIX", "{bull}")],
            )
        })
    };
    let mut cancels = relay.subscribe("jobs.*.cancel").await.unwrap();
    let published = node(vec![
        "publish".into(),
        "jobs.emails.cancel".into(),
        json!({"jobId": "9"}).to_string(),
        "0".into(),
    ])
    .await
    .unwrap();
    assert_eq!(published["endpoints"], 1, "{published}");
    let heard = next(&mut cancels.messages).await;
    assert_eq!(
        (heard.topic.as_str(), heard.data),
        ("jobs.emails.cancel", json!({"jobId": "9"}))
    );

    relay
        .publish(
            "workers.emails.settings",
            &json!({"paused": true}),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let heard = node(vec![
        "listen".into(),
        "workers.emails.settings".into(),
        "1".into(),
        "{bull}relay-test:ready".into(),
    ])
    .await
    .unwrap();
    assert_eq!(
        heard,
        json!([{"topic": "workers.emails.settings", "data": {"paused": true}, "retained": true}])
    );
    relay.stop().await.unwrap();
}
