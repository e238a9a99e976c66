//! Deploy by copying a file (issue 14): a changed module file is swapped in
//! while jobs flow, attempts in flight finish on their version, a broken or
//! half-written file never runs, `bullpen deploy` / `rollback` wait for the
//! host and say how it went, and `bullpen status` shows what serves.

use bullpen::queue::bullmq::Queue;
use bullpen_tests::{RedisServer, RunningHost, finished, guest, queue as open};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn sha256(path: &Path) -> String {
    bullpen::registry::watch::file_sha256(path).unwrap()
}

async fn add(queue: &Queue, data: Value) -> String {
    queue.add("t", data).await.unwrap().id().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_during_load_swaps_versions_without_losing_or_repeating_a_job() {
    let redis = RedisServer::start();
    // Version 1 is `misbehave` (its `work` mode sleeps, then answers "fine");
    // version 2 is `echo` (answers with the job's data).
    let host = RunningHost::start_with_modules(
        &redis,
        "[queues.q]\nmodule = \"q.wasm\"\nconcurrency = 8\n",
        &[("q.wasm", &guest("misbehave"))],
    );
    let queue = open(&redis, "q").await;
    let v1 = sha256(&guest("misbehave"));
    let v2 = sha256(&guest("echo"));

    // Four long attempts in flight, and a stream of short jobs.
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(add(&queue, json!({"mode": "work", "ms": 2500})).await);
    }
    let mut before = Vec::new();
    for i in 0..600 {
        before.push(add(&queue, json!({"mode": "ok", "i": i})).await);
    }
    bullpen_tests::wait_for_state(&queue, &long[0], &["active"], Duration::from_secs(10)).await;

    let deployed_at = Instant::now();
    let (code, stdout, stderr) =
        host.cli(&["deploy", guest("echo").to_str().unwrap(), "--queue", "q"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", host.log());
    assert!(stdout.contains("serving"), "{stdout}");
    assert!(stdout.contains(&v2[..12]), "{stdout}");
    let deploy_took = deployed_at.elapsed();

    let mut after = Vec::new();
    for i in 0..600 {
        after.push(add(&queue, json!({"mode": "ok", "after": i})).await);
    }

    // Every job completes exactly once.
    for id in long.iter().chain(&before).chain(&after) {
        let (state, job) = finished(&queue, id, Duration::from_secs(60)).await;
        assert_eq!(state, "completed", "job {id}: {}", job.failed_reason());
        assert_eq!(
            (job.attempts_made(), job.attempts_started()),
            (1, 1),
            "job {id}"
        );
    }
    // The long attempts started on version 1 and finished on it.
    for id in &long {
        let job = queue.get_job(id).await.unwrap().unwrap();
        assert_eq!(
            job.returnvalue(),
            "\"fine\"",
            "job {id} finished on the new version"
        );
    }
    // Every job added after the deploy returned ran on version 2.
    for id in &after {
        let job = queue.get_job(id).await.unwrap().unwrap();
        let value: Value = serde_json::from_str(job.returnvalue()).unwrap();
        assert!(
            value.get("after").is_some(),
            "job {id} ran on the old version: {value}"
        );
    }
    let state = host.serving("q");
    assert_eq!(state["serving"]["sha256"], v2.as_str());
    assert_eq!(state["previous"][0]["sha256"], v1.as_str());

    // The longest pause in completions around the deploy: the swap compiles
    // off the job path, so it is the pace of the jobs, not the compile.
    let mut finished_on = Vec::new();
    for id in before.iter().chain(&after) {
        let job = queue.get_job(id).await.unwrap().unwrap();
        finished_on.push(job.finished_on().unwrap_or(0));
    }
    finished_on.sort();
    let gap = finished_on.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!(
        "deploy returned after {:.0} ms; longest gap between completions: {gap} ms",
        deploy_took.as_secs_f64() * 1e3
    );

    // `bullpen status` shows the version serving; `rollback` goes back.
    let (_, stdout, _) = host.cli(&["status"]);
    assert!(
        stdout.contains(&format!("q.wasm ({}, serving for", &v2[..12])),
        "{stdout}"
    );
    let (code, stdout, stderr) = host.cli(&["rollback", "--queue", "q"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("goes back from {} to {}", &v2[..12], &v1[..12])),
        "{stdout}"
    );
    host.wait_for_serving("q", |s| s["serving"]["sha256"] == v1.as_str());
    let id = add(&queue, json!({"mode": "ok"})).await;
    let (_, job) = finished(&queue, &id, Duration::from_secs(10)).await;
    assert_eq!(job.returnvalue(), "\"fine\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_or_half_written_file_never_runs_and_the_old_version_keeps_serving() {
    let redis = RedisServer::start();
    let host = RunningHost::start_with_modules(
        &redis,
        "[queues.q]\nmodule = \"q.wasm\"\nconcurrency = 2\n",
        &[("q.wasm", &guest("echo"))],
    );
    let queue = open(&redis, "q").await;
    let file = host.dir.path().join("modules/q.wasm");
    let echo = sha256(&guest("echo"));
    let run = |data: Value| {
        let queue = queue.clone();
        async move {
            let id = add(&queue, data).await;
            let (state, job) = finished(&queue, &id, Duration::from_secs(10)).await;
            (state, job.returnvalue().to_owned())
        }
    };

    // A file that is not a processor, written in place: rejected, logged
    // with its reason, shown by status; echo keeps serving.
    std::fs::write(&file, b"not wasm at all").unwrap();
    let rejected = bullpen::registry::watch::sha256_hex(b"not wasm at all");
    let state = host.wait_for_serving("q", |s| s["rejected"]["sha256"] == rejected.as_str());
    assert!(host.log().contains("new module rejected"), "{}", host.log());
    assert_eq!(state["serving"]["sha256"], echo.as_str());
    assert_eq!(state["rejected"]["sha256"], rejected.as_str());
    assert!(
        state["rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("q.wasm")
    );
    assert_eq!(
        run(json!({"still": "echo"})).await,
        ("completed".into(), "{\"still\":\"echo\"}".into())
    );
    let (_, stdout, _) = host.cli(&["status"]);
    assert!(
        stdout.contains(&format!("q: rejected {}", &rejected[..12])),
        "{stdout}"
    );

    // `bullpen deploy` checks the file before copying it: nothing changes.
    let junk = host.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").unwrap();
    let (code, _, stderr) = host.cli(&["deploy", junk.to_str().unwrap(), "--queue", "q"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("junk.wasm"), "{stderr}");
    let (code, _, stderr) = host.cli(&["deploy", junk.to_str().unwrap(), "--queue", "nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no queue named `nope`"), "{stderr}");

    // A large module copied in place in chunks, slowly: jobs keep running on
    // the old version meanwhile, and the new one serves once it is whole.
    let big = std::fs::read(guest("json-transform")).unwrap();
    let big_sha = bullpen::registry::watch::sha256_hex(&big);
    {
        use std::io::Write;
        let mut out = std::fs::File::create(&file).unwrap();
        for chunk in big.chunks(big.len().div_ceil(4)) {
            out.write_all(chunk).unwrap();
            out.flush().unwrap();
            let (state, value) = run(json!({"during": "copy"})).await;
            assert_eq!(
                (state.as_str(), value.as_str()),
                ("completed", "{\"during\":\"copy\"}")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    host.wait_for_serving("q", |s| s["serving"]["sha256"] == big_sha.as_str());
    // A prefix is never what serves: at most it was seen still growing (or,
    // on a slow machine, rejected), and the whole file serves now.
    assert_ne!(host.serving("q")["rejected"]["sha256"], big_sha.as_str());
    let (state, value) = run(json!({"records": [{"name": "a", "value": 1}]})).await;
    assert_eq!(state, "completed");
    assert!(value.contains("\"digest\""), "{value}");

    // A deleted file: the version serving stays, with a warning.
    std::fs::remove_file(&file).unwrap();
    assert!(
        host.wait_for_log("module file removed or unreadable", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let (state, _) = run(json!({"records": []})).await;
    assert_eq!(state, "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_adds_removes_and_changes_queues_and_a_bad_file_changes_nothing() {
    let redis = RedisServer::start();
    let queues = "[queues.a]\nmodule = \"echo.wasm\"\n\n[queues.b]\nmodule = \"echo.wasm\"\n";
    let host = RunningHost::start(&redis, queues);
    let config = host.dir.path().join("bullpen.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let (a, b, c) = (
        open(&redis, "a").await,
        open(&redis, "b").await,
        open(&redis, "c").await,
    );
    assert_eq!(a.get_workers_count().await.unwrap(), 1);

    // b removed, c added, a's concurrency and workers changed.
    let changed = original.replace(
        queues,
        "[queues.a]\nmodule = \"echo.wasm\"\nconcurrency = 4\nworkers = 2\n\n\
         [queues.c]\nmodule = \"misbehave.wasm\"\n",
    );
    std::fs::write(&config, changed).unwrap();
    let (code, stdout, stderr) = host.cli(&["reload"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", host.log());
    for change in ["a changed", "b removed", "c added"] {
        assert!(stdout.contains(change), "{stdout}");
    }
    assert_eq!(a.get_workers_count().await.unwrap(), 2);
    let id = add(&c, json!({"mode": "ok"})).await;
    let (state, job) = finished(&c, &id, Duration::from_secs(10)).await;
    assert_eq!(
        (state.as_str(), job.returnvalue()),
        ("completed", "\"fine\"")
    );
    let id = add(&a, json!({"still": "a"})).await;
    assert_eq!(
        finished(&a, &id, Duration::from_secs(10)).await.0,
        "completed"
    );
    let id = add(&b, json!({"nobody": "takes it"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bullpen::queue::state_name(&b.get_job_state(&id).await.unwrap()),
        "waiting"
    );

    // A file that does not parse: nothing changes, and the reason names
    // the line, whether `bullpen reload` reads it or the host does (on
    // SIGHUP).
    std::fs::write(&config, format!("{original}\n[queues.d]\nmodule = 42\n")).unwrap();
    let line = original.lines().count() + 3;
    let (code, _, stderr) = host.cli(&["reload"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("bullpen.toml:{line}:10: invalid type")),
        "{stderr}"
    );
    host.signal("HUP");
    assert!(
        host.wait_for_log(
            "config not reloaded, nothing changed",
            Duration::from_secs(10)
        ),
        "{}",
        host.log()
    );
    assert!(
        host.log().contains(&format!("bullpen.toml:{line}:10")),
        "{}",
        host.log()
    );
    let id = add(&c, json!({"mode": "ok"})).await;
    assert_eq!(
        finished(&c, &id, Duration::from_secs(10)).await.0,
        "completed"
    );

    // SIGHUP itself, with the original file back: b serves again.
    std::fs::write(&config, &original).unwrap();
    host.signal("HUP");
    let (state, _) = finished(&b, &id_of(&b).await, Duration::from_secs(10)).await;
    assert_eq!(state, "completed");
    assert!(host.log().contains("config reloaded"), "{}", host.log());
}

/// The id of the one job in `queue`.
async fn id_of(queue: &Queue) -> String {
    let jobs = queue
        .get_jobs(&["waiting", "active", "completed"], 0, 10, true)
        .await
        .unwrap();
    jobs[0].id().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_and_rollback_say_what_they_did_and_why_not() {
    // No host running: deploy checks and copies, and says the next start
    // loads it; rollback has nothing to ask.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    std::fs::copy(guest("misbehave"), dir.path().join("modules/q.wasm")).unwrap();
    let config = dir.path().join("bullpen.toml");
    std::fs::write(&config, "[queues.q]\nmodule = \"q.wasm\"\n").unwrap();
    let cli = |args: &[&str]| {
        let output = bullpen_tests::bullpen()
            .args(args)
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = cli(&["deploy", guest("echo").to_str().unwrap(), "--queue", "q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("no bullpen host is running"), "{stdout}");
    assert!(
        stdout.contains("it will load the new file when it starts"),
        "{stdout}"
    );
    assert_eq!(
        sha256(&dir.path().join("modules/q.wasm")),
        sha256(&guest("echo"))
    );
    let (code, _, stderr) = cli(&["rollback", "--queue", "q"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no bullpen host is running"), "{stderr}");
    // By file name: no queue is bound to a file called misbehave.wasm.
    let (code, _, stderr) = cli(&["deploy", guest("misbehave").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no queue is bound to a module named misbehave.wasm"),
        "{stderr}"
    );

    // A host that has served one version only: nothing to go back to.
    let redis = RedisServer::start();
    let host = RunningHost::start(&redis, "[queues.q]\nmodule = \"echo.wasm\"\n");
    let (code, _, stderr) = host.cli(&["rollback", "--queue", "q"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing to go back to"), "{stderr}");
    // Deployed by file name: the queue bound to echo.wasm gets it.
    let (code, stdout, stderr) = host.cli(&["deploy", guest("echo").to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("serving"), "{stdout}");
}
