//! Instance reuse (`max_instance_reuse_count`): what one instance keeps
//! across the attempts of its queue, what it never keeps, and when it is
//! dropped. Driven through the library, as the worker drives it, and
//! through a running host, as a user does.

use bullpen::sandbox::{
    CallOptions, Crash, Ignore, Instances, JobError, Module, Recorder, Report, Reuse, Run, Sandbox,
    SandboxOptions, test_job,
};
use bullpen_tests::{RedisServer, RunningHost, guest, http_get, queue};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxOptions::default()).expect("sandbox"))
}

fn misbehave() -> Module {
    sandbox()
        .load(&guest("misbehave"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn pool(max_count: u32) -> Arc<Instances> {
    pool_of(Reuse {
        max_count,
        idle_timeout: Duration::from_secs(60),
        max_memory: 64 << 20,
    })
}

fn pool_of(reuse: Reuse) -> Arc<Instances> {
    Instances::new(reuse, 4)
}

fn reusing(pool: &Arc<Instances>) -> CallOptions {
    CallOptions {
        timeout: Duration::from_secs(10),
        instances: Some(pool.clone()),
        ..CallOptions::default()
    }
}

async fn run(module: &Module, options: &CallOptions, data: &str) -> Run<Result<String, JobError>> {
    module
        .process(&test_job(data), options, Arc::new(Ignore))
        .await
}

/// The guest's global counter after one more attempt, and the attempts
/// its instance had run before it.
async fn count(module: &Module, options: &CallOptions) -> (u64, u32) {
    let run = run(module, options, r#"{"mode":"count"}"#).await;
    let answer = run.outcome.expect("no crash").expect("completes");
    let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
    (value["count"].as_u64().unwrap(), run.cost.reused)
}

#[tokio::test]
async fn a_global_grows_across_one_queues_attempts_and_never_crosses_to_another() {
    let module = misbehave();
    let (ours, theirs) = (pool(100), pool(100));
    for n in 1..=4 {
        assert_eq!(count(&module, &reusing(&ours)).await, (n, n as u32 - 1));
    }
    // Another queue reusing the same module has instances of its own.
    assert_eq!(count(&module, &reusing(&theirs)).await, (1, 0));
    assert_eq!(count(&module, &reusing(&theirs)).await, (2, 1));
    // A queue without reuse starts fresh every time.
    let fresh = CallOptions::default();
    assert_eq!(count(&module, &fresh).await, (1, 0));
    assert_eq!(count(&module, &fresh).await, (1, 0));
    assert_eq!(count(&module, &reusing(&ours)).await, (5, 4));
    assert_eq!(ours.idle(), 1);
}

#[tokio::test]
async fn an_instance_runs_its_count_of_attempts_then_a_fresh_one_does() {
    let module = misbehave();
    let three = pool(3);
    let counts: Vec<u64> = {
        let mut counts = Vec::new();
        for _ in 0..7 {
            counts.push(count(&module, &reusing(&three)).await.0);
        }
        counts
    };
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
}

#[tokio::test]
async fn a_crash_gives_the_next_attempt_a_fresh_instance() {
    let module = misbehave();
    let crashing = [
        ("panic", "panic"),
        ("spin", "timeout"),
        ("oom", "memory-limit"),
        ("stack-overflow", "stack-overflow"),
    ];
    for (mode, kind) in crashing {
        let reused = pool(100);
        let options = CallOptions {
            timeout: Duration::from_millis(500),
            memory: 32 << 20,
            ..reusing(&reused)
        };
        assert_eq!(count(&module, &options).await.0, 1);
        assert_eq!(count(&module, &options).await.0, 2);
        let crashed = run(&module, &options, &format!(r#"{{"mode":"{mode}"}}"#)).await;
        let crash = crashed.outcome.expect_err(mode);
        assert_eq!(crash.kind(), kind, "{mode}: {crash}");
        assert_eq!(crashed.cost.reused, 2, "{mode} ran in the reused instance");
        assert_eq!(reused.idle(), 0, "{mode}: the crashed instance is dropped");
        assert_eq!(count(&module, &options).await, (1, 0), "after {mode}");
    }
}

#[tokio::test]
async fn a_failure_the_guest_answers_keeps_its_instance() {
    let module = misbehave();
    let reused = pool(100);
    let options = reusing(&reused);
    assert_eq!(count(&module, &options).await.0, 1);
    let failed = run(&module, &options, r#"{"mode":"nope"}"#).await;
    assert!(matches!(
        failed.outcome,
        Ok(Err(JobError::Unrecoverable(_)))
    ));
    assert_eq!(count(&module, &options).await, (2, 2));
}

#[tokio::test]
async fn an_idle_instance_is_dropped_after_its_timeout() {
    let module = misbehave();
    let brief = pool_of(Reuse {
        idle_timeout: Duration::from_millis(50),
        ..pool(100).reuse()
    });
    let options = reusing(&brief);
    assert_eq!(count(&module, &options).await.0, 1);
    assert_eq!(brief.idle(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while brief.idle() > 0 {
        assert!(
            Instant::now() < deadline,
            "the idle instance was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(&module, &options).await, (1, 0));
}

#[tokio::test]
async fn an_instance_past_its_memory_threshold_is_dropped() {
    let module = misbehave();
    // A Rust guest holds a little over 1 MiB: past a 1 MiB threshold at
    // once, well under a 64 MiB one.
    let small = pool_of(Reuse {
        max_memory: 1 << 20,
        ..pool(100).reuse()
    });
    let options = reusing(&small);
    let first = run(&module, &options, r#"{"mode":"count"}"#).await;
    assert!(first.cost.peak_memory > 1 << 20, "{:?}", first.cost);
    assert_eq!(small.idle(), 0);
    assert_eq!(count(&module, &options).await, (1, 0));
}

#[tokio::test]
async fn a_new_version_starts_in_a_fresh_instance() {
    let old = misbehave();
    let new_file = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(new_file.path(), another_version(&guest("misbehave"))).unwrap();
    let new = sandbox().load(new_file.path()).unwrap();
    assert_ne!(old.sha256(), new.sha256());
    let reused = pool(100);
    let options = reusing(&reused);
    assert_eq!(count(&old, &options).await.0, 1);
    assert_eq!(count(&old, &options).await.0, 2);
    assert_eq!(count(&new, &options).await, (1, 0));
    assert_eq!(count(&new, &options).await, (2, 1));
    // An attempt still running on the old version finishes on a fresh
    // instance of it, which is not kept.
    assert_eq!(count(&old, &options).await, (1, 0));
    assert_eq!(count(&new, &options).await.0, 1, "the queue moved on twice");
}

/// The component in `path` with a custom section added at its end: the
/// same processor, another file (another sha256).
fn another_version(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"bullpen-test-version";
    let payload = b"2";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test]
async fn each_attempt_of_an_instance_has_its_own_time_budget() {
    let module = misbehave();
    let reused = pool(100);
    let options = CallOptions {
        timeout: Duration::from_millis(400),
        ..reusing(&reused)
    };
    // Six attempts of 150 ms in one instance: more than one budget
    // together, each well within its own.
    for n in 0..6 {
        let worked = run(&module, &options, r#"{"mode":"work","ms":150}"#).await;
        assert_eq!(worked.outcome, Ok(Ok("\"fine\"".into())), "attempt {n}");
        assert_eq!(worked.cost.reused, n);
    }
    let started = Instant::now();
    let spun = run(&module, &options, r#"{"mode":"spin"}"#).await;
    assert_eq!(spun.cost.reused, 6);
    assert_eq!(
        spun.outcome,
        Err(Crash::Timeout(Duration::from_millis(400)))
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn each_attempt_of_an_instance_has_its_own_report_budget_and_output() {
    let module = misbehave();
    let reused = pool(100);
    let options = reusing(&reused);
    let mut dropped = Vec::new();
    for n in 0..3 {
        let recorder = Arc::new(Recorder::default());
        let run = module
            .process(&test_job(r#"{"mode":"flood"}"#), &options, recorder.clone())
            .await;
        assert_eq!(run.cost.reused, n);
        assert!(run.outcome.is_ok());
        let logs = recorder
            .reports()
            .iter()
            .filter(|r| matches!(r, Report::Log { .. }))
            .count();
        dropped.push((logs, run.reports_dropped.reports));
    }
    // 20,000 lines each time: the same share let through, the same dropped.
    assert!(dropped[0].0 > 0 && dropped[0].1 > 0, "{dropped:?}");
    assert!(dropped.iter().all(|d| *d == dropped[0]), "{dropped:?}");

    let printed = run(&module, &options, r#"{"mode":"print"}"#).await;
    let again = run(&module, &options, r#"{"mode":"print"}"#).await;
    assert_eq!(again.cost.reused, printed.cost.reused + 1);
    assert_eq!(
        printed.stdout, again.stdout,
        "each attempt's stdout is its own"
    );
    let quiet = run(&module, &options, r#"{"mode":"ok"}"#).await;
    assert_eq!(quiet.stdout.text, "");
    assert_eq!(quiet.stdout.dropped, 0);
}

#[tokio::test]
async fn each_attempt_of_an_instance_has_its_own_adds_allowance() {
    let module = misbehave();
    let reused = pool(100);
    let config = bullpen::config::GrantsConfig {
        add_jobs: bullpen::sandbox::job_api::AddAllowance {
            queues: ["test".to_string()].into(),
            max_jobs: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let options = CallOptions {
        grants: bullpen::sandbox::grants::Grants::from_config(&config),
        ..reusing(&reused)
    };
    let copies = |times: u32| format!(r#"{{"mode":"copies","times":{times}}}"#);
    for n in 0..3 {
        let recorder = Arc::new(Recorder::default());
        let run = module
            .process(&test_job(&copies(2)), &options, recorder.clone())
            .await;
        assert_eq!(run.cost.reused, n);
        assert_eq!(run.outcome, Ok(Ok(r#"{"added":2}"#.into())), "attempt {n}");
        assert_eq!(
            recorder
                .reports()
                .iter()
                .filter(|r| matches!(r, Report::JobAdded { .. }))
                .count(),
            2
        );
    }
    let over = module
        .process(
            &test_job(&copies(3)),
            &options,
            Arc::new(Recorder::default()),
        )
        .await;
    assert_eq!(over.cost.reused, 3);
    match over.outcome {
        Ok(Err(JobError::Failed(failure))) => {
            assert!(failure.message.contains("max_added_jobs"), "{failure:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// A host whose queue `reused` reuses its instances and whose queue
/// `fresh` runs the same module fresh: a global never crosses between
/// them, `bullpen jobs` and the metrics say which attempt ran where, and
/// a secret stays masked on a later attempt of an instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_reuses_a_queues_instances_and_says_so() {
    const SECRET: &str = "reuse-s3cr3t-4242";
    // SAFETY: set before the host starts; no other test of this process
    // reads it.
    unsafe { std::env::set_var("BULLPEN_REUSE_TEST_TOKEN", SECRET) };
    let redis = RedisServer::start();
    let port = bullpen_tests::free_port();
    let host = RunningHost::start(
        &redis,
        &format!(
            r#"metrics = "127.0.0.1:{port}"

[queues.reused]
module = "misbehave.wasm"
max_instance_reuse_count = 1000
secrets = {{ TOKEN = {{ env = "BULLPEN_REUSE_TEST_TOKEN" }} }}

[queues.fresh]
module = "misbehave.wasm"
"#
        ),
    );
    let reused = queue(&redis, "reused").await;
    let fresh = queue(&redis, "fresh").await;
    let mut counts = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (id, value) = run_job(&reused, serde_json::json!({"mode": "count"})).await;
        counts.push(value["count"].as_u64().unwrap());
        ids.push(id);
        let (_, value) = run_job(&fresh, serde_json::json!({"mode": "count"})).await;
        assert_eq!(
            value["count"], 1,
            "the fresh queue never sees the other's global"
        );
    }
    assert_eq!(counts, [1, 2, 3, 4]);
    // A secret said on a later attempt of the instance is masked as on the
    // first, on every path.
    let (leak, leaked) = run_job(
        &reused,
        serde_json::json!({"mode": "leak", "names": ["TOKEN"], "how": "complete"}),
    )
    .await;
    assert_eq!(leaked["echo"], "***", "{leaked}");
    let stored = bullpen_tests::stored(&reused, &leak).await;
    assert!(
        stored.contains("***") && !stored.contains(SECRET),
        "{stored}"
    );
    assert!(!host.log().contains(SECRET));

    let (code, stdout, _) = host.cli(&["jobs", "reused"]);
    assert_eq!(code, 0, "{stdout}");
    // The INSTANCE column of job `id`'s row (PEAK_MEMORY is two words).
    let instance = |id: &str| {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in {stdout}"));
        row.split_whitespace()
            .nth(10)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(instance(&ids[0]), "fresh", "{stdout}");
    assert_eq!(instance(&ids[3]), "reused:3", "{stdout}");
    assert_eq!(instance(&leak), "reused:4", "{stdout}");
    let (_, metrics) = http_get(&format!("127.0.0.1:{port}"), "/metrics");
    for series in [
        r#"bullpen_attempt_instances_total{queue="reused",instance="fresh"} 1"#,
        r#"bullpen_attempt_instances_total{queue="reused",instance="reused"} 4"#,
        r#"bullpen_attempt_instances_total{queue="fresh",instance="fresh"} 4"#,
        r#"bullpen_attempt_instances_total{queue="fresh",instance="reused"} 0"#,
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
}

/// Adds a job with `data` to `queue`, waits until it completes, and
/// returns its id and return value.
async fn run_job(
    queue: &bullpen::queue::bullmq::Queue,
    data: serde_json::Value,
) -> (String, serde_json::Value) {
    let id = queue.add("j", data).await.unwrap().id().to_owned();
    let (state, job) = bullpen_tests::finished(queue, &id, Duration::from_secs(20)).await;
    assert_eq!(state, "completed", "{}", job.failed_reason());
    (id, serde_json::from_str(job.returnvalue()).unwrap())
}

/// JavaScript and Python processors keep their globals in a reused
/// instance; a failure they answer keeps it, a timeout or running out of
/// memory gives the next attempt a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_processors_keep_their_globals_until_a_crash() {
    let js = bullpen_tests::script_guest("examples/js/misbehave.js");
    let py = bullpen_tests::script_guest("tests/fixtures/python/count.py");
    let redis = RedisServer::start();
    let _host = RunningHost::start_with_modules(
        &redis,
        r#"
[queues.js]
module = "misbehave-js.wasm"
max_instance_reuse_count = 100
timeout = "1s"

[queues.py]
module = "count-py.wasm"
max_instance_reuse_count = 100
"#,
        &[("misbehave-js.wasm", &js), ("count-py.wasm", &py)],
    );
    let js = queue(&redis, "js").await;
    let count = serde_json::json!({"mode": "count"});
    for n in 1..=3 {
        assert_eq!(run_job(&js, count.clone()).await.1["count"], n);
    }
    assert_eq!(
        fail_job(&js, serde_json::json!({"mode": "reject"})).await,
        "rejected after a timer"
    );
    assert_eq!(run_job(&js, count.clone()).await.1["count"], 4);
    assert_eq!(
        fail_job(&js, serde_json::json!({"mode": "spin"})).await,
        "timeout after 1s"
    );
    assert_eq!(run_job(&js, count.clone()).await.1["count"], 1);
    assert_eq!(run_job(&js, count.clone()).await.1["count"], 2);
    assert_eq!(
        fail_job(&js, serde_json::json!({"mode": "allocate"})).await,
        "out of memory"
    );
    assert_eq!(run_job(&js, count.clone()).await.1["count"], 1);

    let py = queue(&redis, "py").await;
    for n in 1..=2 {
        assert_eq!(run_job(&py, serde_json::json!({})).await.1["count"], n);
    }
    assert_eq!(
        fail_job(&py, serde_json::json!({"fail": true})).await,
        "asked to fail on run 3"
    );
    assert_eq!(run_job(&py, serde_json::json!({})).await.1["count"], 4);
}

/// Adds a job with `data` to `queue`, waits until it fails, and returns
/// its failed reason.
async fn fail_job(queue: &bullpen::queue::bullmq::Queue, data: serde_json::Value) -> String {
    let id = queue.add("j", data).await.unwrap().id().to_owned();
    let (state, job) = bullpen_tests::finished(queue, &id, Duration::from_secs(20)).await;
    assert_eq!(state, "failed", "{}", job.returnvalue());
    job.failed_reason().to_owned()
}

/// What a JavaScript or Python processor asked for before its rate limit
/// is its attempt's own: a later attempt of the instance that throws
/// `RateLimitError` without asking waits 0 ms, not the earlier wait.
#[tokio::test]
async fn a_script_processors_rate_limit_is_its_attempts_own() {
    let scripts = Sandbox::new(SandboxOptions {
        // Compiled once by `script_guest`, into the cache it shares.
        cache_dir: Some(bullpen_tests::shared_data_dir().join("cache")),
        ..SandboxOptions::default()
    })
    .unwrap();
    let cases = [
        (
            "examples/js/misbehave.js",
            r#"{"mode":"rate-limit","ms":700}"#,
            r#"{"mode":"rate-limit"}"#,
        ),
        (
            "tests/fixtures/python/count.py",
            r#"{"rate_limit":700}"#,
            r#"{"rate_limit":null}"#,
        ),
    ];
    for (source, asking, bare) in cases {
        let module = scripts
            .load(&bullpen_tests::script_guest(source))
            .unwrap_or_else(|e| panic!("{e}"));
        let reused = pool(100);
        let options = reusing(&reused);
        let asked = run(&module, &options, asking).await;
        assert_eq!(
            asked.outcome,
            Ok(Err(JobError::RateLimited(700))),
            "{source}"
        );
        let again = run(&module, &options, bare).await;
        assert_eq!(again.cost.reused, 1, "{source}");
        assert_eq!(again.outcome, Ok(Err(JobError::RateLimited(0))), "{source}");
    }
}
