//! One queue cannot hurt another through what the host shares (issue 27):
//! each test runs a hostile queue beside a victim queue on one host, and
//! checks that the victim's jobs complete, that `/healthz` answers, and
//! that the hostile attempt met its budget by name (in its failure, the
//! log, and `bullpen_budget_hits_total`).

use bullpen::queue::bullmq::Queue;
use bullpen_tests::hook_server::HookServer;
use bullpen_tests::{RedisServer, RunningHost, finished, free_port, http_get, queue as open};
use serde_json::json;
use std::time::{Duration, Instant};

/// `bullpen_budget_hits_total{queue, budget}` on the host's `/metrics`.
fn budget_hits(addr: &str, queue: &str, budget: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics");
    let series = format!("bullpen_budget_hits_total{{queue=\"{queue}\",budget=\"{budget}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Adds `n` jobs with `data` to `queue`; their ids.
async fn add(queue: &Queue, n: usize, data: serde_json::Value) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(queue.add("j", data.clone()).await.unwrap().id().to_owned());
    }
    ids
}

/// A host on `queues` serving its metrics; where they are served.
fn host_with_metrics(redis: &RedisServer, queues: &str) -> (RunningHost, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let host = RunningHost::start(redis, &format!("metrics = \"{metrics}\"\n\n{queues}"));
    (host, metrics)
}

/// Adds one job; its id.
async fn add_one(queue: &Queue, name: &str, data: serde_json::Value) -> String {
    queue.add(name, data).await.unwrap().id().to_owned()
}

/// Every job of `ids` completes within `timeout`.
async fn all_complete(queue: &Queue, ids: &[String], timeout: Duration, host: &RunningHost) {
    for id in ids {
        let (state, job) = finished(queue, id, timeout).await;
        assert_eq!(
            state,
            "completed",
            "job {id}: {:?}\n{}",
            job.failed_reason(),
            host.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_opens_connections_cannot_take_another_queues() {
    let redis = RedisServer::start();
    // The hog's connections go to a server of their own: the victim's
    // server is not the one under load.
    let (hooks, victims) = (HookServer::start().await, HookServer::start().await);
    let metrics = format!("127.0.0.1:{}", free_port());
    let allowed = format!("http://{}", hooks.addr);
    let allowed_victim = format!("http://{}", victims.addr);
    // 400 files: after the host's own (its Redis connections, the
    // listener's 64, 64 more), about 250 are left for guests. The hog's
    // queue asks for 2,000 of them and the victim's for its default 256:
    // each gets its part of what is left.
    let host = RunningHost::start_with_open_files(
        &redis,
        &format!(
            "metrics = \"{metrics}\"\n\n\
             [queues.hog]\nmodule = \"misbehave.wasm\"\ntimeout = \"4s\"\n\
             allowed_outbound_hosts = [\"{allowed}\"]\n\
             max_outbound_connections = 2000\nmax_queue_outbound_connections = 2000\n\n\
             [queues.victim]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\n\
             allowed_outbound_hosts = [\"{allowed_victim}\"]\n"
        ),
        400,
    );
    assert!(
        host.log()
            .contains("max_queue_outbound_connections add up to 2256"),
        "the shrink is said:\n{}",
        host.log()
    );
    let hog = open(&redis, "hog").await;
    let victim = open(&redis, "victim").await;
    let hog_id = add_one(
        &hog,
        "hog",
        json!({"mode": "connections", "times": 1500, "url": hooks.url("http", "/hang")}),
    )
    .await;
    // While the hog holds its connections: the victim's requests go
    // through and /healthz answers.
    let ids = add(
        &victim,
        20,
        json!({"mode": "http", "url": victims.url("http", "/ok")}),
    )
    .await;
    assert_eq!(http_get(&metrics, "/healthz").0, 200);
    all_complete(&victim, &ids, Duration::from_secs(30), &host).await;

    let (state, job) = finished(&hog, &hog_id, Duration::from_secs(30)).await;
    assert_eq!(state, "failed");
    let reason = job.failed_reason().to_owned();
    assert!(reason.contains("ConnectionLimitReached"), "{reason}");
    assert!(
        host.log()
            .contains("the queue's attempts hold `max_queue_outbound_connections` already"),
        "{}",
        host.log()
    );
    // Said once for the attempt, however many were refused.
    assert_eq!(
        host.log()
            .matches("max_queue_outbound_connections` already")
            .count(),
        1
    );
    assert!(budget_hits(&metrics, "hog", "queue-connections") > 1000);
    assert_eq!(budget_hits(&metrics, "victim", "queue-connections"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_holds_at_most_its_connections() {
    let redis = RedisServer::start();
    let hooks = HookServer::start().await;
    let (host, metrics) = host_with_metrics(
        &redis,
        &format!(
            "[queues.many]\nmodule = \"misbehave.wasm\"\ntimeout = \"3s\"\n\
             allowed_outbound_hosts = [\"http://{}\"]\n",
            hooks.addr
        ),
    );
    let many = open(&redis, "many").await;
    let id = add_one(
        &many,
        "many",
        json!({"mode": "connections", "times": 100, "url": hooks.url("http", "/hang")}),
    )
    .await;
    let (state, job) = finished(&many, &id, Duration::from_secs(30)).await;
    assert_eq!(state, "failed", "{}", host.log());
    // The default: 64 at once.
    let reason = job.failed_reason();
    assert!(
        reason.contains("36 × ErrorCode::ConnectionLimitReached"),
        "{reason}"
    );
    assert_eq!(budget_hits(&metrics, "many", "attempt-connections"), 36);
    assert!(
        host.log()
            .contains("the attempt holds `max_outbound_connections` already"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_take_turns_beside_another_queues_short_jobs() {
    let redis = RedisServer::start();
    let (host, metrics) = host_with_metrics(
        &redis,
        "[queues.spin]\nmodule = \"misbehave.wasm\"\nconcurrency = 16\ntimeout = \"3s\"\n\n\
             [queues.short]\nmodule = \"echo.wasm\"\nconcurrency = 4\n",
    );
    let spin = open(&redis, "spin").await;
    let short = open(&redis, "short").await;
    let spinners = add(&spin, 16, json!({"mode": "spin"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while budget_hits(&metrics, "spin", "cpu-turn") == 0 {
        assert!(Instant::now() < deadline, "no turns taken:\n{}", host.log());
        // Keeps the short queue busy meanwhile.
        add(&short, 5, json!({"n": 1})).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids = add(&short, 50, json!({"n": 2})).await;
    all_complete(&short, &ids, Duration::from_secs(30), &host).await;
    assert_eq!(http_get(&metrics, "/healthz").0, 200);
    assert!(
        host.log().contains("wait for their turn to compute"),
        "{}",
        host.log()
    );
    for id in &spinners {
        let (state, _) = finished(&spin, id, Duration::from_secs(60)).await;
        assert_eq!(state, "failed");
    }
    // Short jobs wait only when one spans a tick (a loaded machine's
    // instantiation can): seldom, beside the spinners' thousands of turns.
    let (short, spin) = (
        budget_hits(&metrics, "short", "cpu-turn"),
        budget_hits(&metrics, "spin", "cpu-turn"),
    );
    assert!(short * 10 < spin, "short {short}, spin {spin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_flood_the_hosts_log() {
    let redis = RedisServer::start();
    // A port nothing listens on: every connect fails.
    let closed = format!("127.0.0.1:{}", free_port());
    let (host, metrics) = host_with_metrics(
        &redis,
        &format!(
            "[queues.loud]\nmodule = \"misbehave.wasm\"\n\
             allowed_outbound_hosts = [\"http://{closed}\"]\n\n\
             [queues.quiet]\nmodule = \"echo.wasm\"\n"
        ),
    );
    let loud = open(&redis, "loud").await;
    let quiet = open(&redis, "quiet").await;
    let flood = add_one(&loud, "flood", json!({"mode": "flood"})).await;
    let refused = add_one(
        &loud,
        "refused",
        json!({"mode": "connections", "times": 60, "url": format!("http://{closed}/")}),
    )
    .await;
    let ids = add(&quiet, 10, json!({"n": 1})).await;
    all_complete(&quiet, &ids, Duration::from_secs(30), &host).await;
    let (state, _) = finished(&loud, &flood, Duration::from_secs(30)).await;
    assert_eq!(state, "completed");
    let (state, job) = finished(&loud, &refused, Duration::from_secs(30)).await;
    assert_eq!(state, "failed");
    assert!(
        job.failed_reason()
            .contains("60 × ErrorCode::ConnectionRefused"),
        "{}",
        job.failed_reason()
    );

    let log = host.log();
    // 20,000 lines asked for; the attempt's most written, then one line
    // with the number dropped.
    let written = log
        .lines()
        .filter(|l| l.contains(&format!("job_id=\"{flood}\"")) && l.contains(": line "))
        .count();
    assert_eq!(
        written,
        bullpen::sandbox::MAX_REPORTS_PER_JOB as usize,
        "{}",
        &log[..log.len().min(5000)]
    );
    assert_eq!(
        log.matches("19000 report(s)").count(),
        1,
        "{}",
        &log[log.len().saturating_sub(5000)..]
    );
    assert_eq!(budget_hits(&metrics, "loud", "log-lines"), 1);
    // Sixty failed connects: a few lines, none of wasmtime's own warnings.
    let connects = log.matches("HTTP connection failed").count();
    assert!((1..=5).contains(&connects), "{connects}:\n{log}");
    assert!(!log.contains("connect error"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_its_queues_depth() {
    let redis = RedisServer::start();
    let (host, metrics) = host_with_metrics(
        &redis,
        "[queues.bomb]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\n\
             add_to_queues = [\"bomb\"]\nmax_target_depth = 200\n\n\
             [queues.calm]\nmodule = \"echo.wasm\"\n",
    );
    let bomb = open(&redis, "bomb").await;
    let calm = open(&redis, "calm").await;
    bomb.add("bomb", json!({"mode": "copies", "times": 10}))
        .await
        .unwrap();
    // Ten copies of each: it would grow by thousands a second.
    let deadline = Instant::now() + Duration::from_secs(30);
    while budget_hits(&metrics, "bomb", "add-depth") == 0 {
        assert!(Instant::now() < deadline, "never refused:\n{}", host.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From now on it stays near its bound: a few adds of attempts under
    // way may pass between the count and the add.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let depth = bomb.count().await.unwrap();
        assert!(depth <= 240, "the bomb's queue holds {depth}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = add(&calm, 10, json!({"n": 1})).await;
    all_complete(&calm, &ids, Duration::from_secs(30), &host).await;
    assert!(
        host.log().contains("holds `max_target_depth` waiting jobs"),
        "{}",
        host.log()
    );
    let failed = bomb.get_failed(0, 0).await.unwrap();
    let reason = failed
        .first()
        .map(|job| job.failed_reason().to_owned())
        .unwrap_or_default();
    assert!(reason.contains("max_target_depth (200)"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writable_grant_holds_at_most_its_quota_and_no_link() {
    let redis = RedisServer::start();
    let outside = tempfile::tempdir().unwrap();
    let rw = outside.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(outside.path().join("outside.txt"), "not the guest's").unwrap();
    std::fs::write(rw.join("kept.txt"), "x".repeat(1000)).unwrap();
    std::fs::create_dir(rw.join("big")).unwrap();
    let (host, metrics) = host_with_metrics(
        &redis,
        &format!(
            "[queues.disk]\nmodule = \"misbehave.wasm\"\n\
             files = [{{ source = \"{}\", destination = \"/out\", writable = true, \
             max_bytes = \"64KiB\", max_files = 20 }}]\n\n\
             [queues.calm]\nmodule = \"echo.wasm\"\n",
            rw.display()
        ),
    );
    let disk = open(&redis, "disk").await;
    let calm = open(&redis, "calm").await;
    let run = |data: serde_json::Value| {
        let disk = disk.clone();
        async move {
            let id = disk.add("d", data).await.unwrap().id().to_owned();
            finished(&disk, &id, Duration::from_secs(30)).await
        }
    };

    // Bytes: 64 KiB less the 1,000 already there; 10 KiB files stop at the
    // seventh.
    let (state, job) =
        run(json!({"mode": "fill", "path": "/out/big", "times": 100, "bytes": 10_240})).await;
    assert_eq!(state, "failed", "{:?}", job.returnvalue());
    let reason = job.failed_reason();
    // Past the quota inside a write: wasi-libc reports every stream error
    // as EIO, whatever the host says.
    assert!(reason.contains("writing /out/big/f6"), "{reason}");
    let on_disk: u64 = std::fs::read_dir(rw.join("big"))
        .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(u64::MAX);
    assert!(on_disk <= 64 * 1024, "{on_disk} bytes written");
    assert!(budget_hits(&metrics, "disk", "file-bytes") >= 1);
    assert!(
        host.log()
            .contains("the writable grant holds its `max_bytes`"),
        "{}",
        host.log()
    );
    std::fs::remove_dir_all(rw.join("big")).unwrap();
    // …which makes room again (counted anew before the next refusal).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Files: 20 entries at most, `kept.txt` among them (and `big`, gone).
    let (state, job) = run(json!({"mode": "fill", "path": "/out", "times": 100, "bytes": 1})).await;
    assert_eq!(state, "failed");
    // A file refused at its creation: ENOSPC.
    let reason = job.failed_reason();
    assert!(
        reason.contains("writing /out/f19") && reason.contains("StorageFull"),
        "{reason}"
    );
    assert_eq!(std::fs::read_dir(&rw).unwrap().count(), 20);
    assert!(budget_hits(&metrics, "disk", "file-count") >= 1);

    // No link, symbolic or hard, out of the grant or in it.
    let (state, job) =
        run(json!({"mode": "link", "path": "/out/escape-link", "text": "../outside.txt"})).await;
    assert_eq!(state, "completed", "{}", job.failed_reason());
    let made: serde_json::Value = serde_json::from_str(job.returnvalue()).unwrap_or_default();
    for link in ["symlink", "hard_link"] {
        assert!(
            made[link]
                .as_str()
                .unwrap_or_default()
                .contains("not-permitted"),
            "{made}"
        );
    }
    assert!(std::fs::symlink_metadata(rw.join("escape-link")).is_err());
    assert!(std::fs::symlink_metadata(rw.join("escape-link.hard")).is_err());
    assert!(budget_hits(&metrics, "disk", "file-link") >= 1);

    let ids = add(&calm, 5, json!({"n": 1})).await;
    all_complete(&calm, &ids, Duration::from_secs(30), &host).await;
    assert_eq!(http_get(&metrics, "/healthz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_keep_the_data_dir_within_its_cache_size() {
    let redis = RedisServer::start();
    // 1 MiB holds no compiled module: only the serving ones are kept.
    let host = RunningHost::start_with_modules(
        &redis,
        "cache_size = \"1MiB\"\n\n[queues.q]\nmodule = \"q.wasm\"\n\n\
         [queues.calm]\nmodule = \"echo.wasm\"\n",
        &[("q.wasm", &bullpen_tests::guest("misbehave"))],
    );
    let sha = |module: &str| {
        bullpen::sandbox::sha256_hex(&std::fs::read(bullpen_tests::guest(module)).unwrap())
    };
    for module in ["json-transform", "flaky", "validate"] {
        let path = bullpen_tests::guest(module);
        let (code, stdout, stderr) = host.cli(&["deploy", path.to_str().unwrap(), "--queue", "q"]);
        assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", host.log());
    }
    let serving = [sha("validate"), sha("echo")];
    let data_dir = host.dir.path().join(".bullpen");
    // Within the budget, or holding only what serves (which is never
    // removed, and is more than 1 MiB here).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut stale, mut bytes) = (Vec::new(), 0);
        for dir in ["cache", "versions"] {
            for entry in std::fs::read_dir(data_dir.join(dir)).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_entry =
                    name.len() >= 64 && name[..64].bytes().all(|b| b.is_ascii_hexdigit());
                if !is_entry {
                    continue;
                }
                bytes += entry.metadata().unwrap().len();
                if !serving.iter().any(|s| name.starts_with(s.as_str())) {
                    stale.push(format!("{dir}/{name}"));
                }
            }
        }
        if stale.is_empty() || bytes <= 1 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{bytes} bytes, still kept: {stale:?}\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What serves was never removed: both still load from the cache.
    for sha in &serving {
        let cached = std::fs::read_dir(data_dir.join("cache"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(sha.as_str()));
        assert!(cached, "{sha} was removed");
    }
    assert!(host.log().contains("least recently used"), "{}", host.log());
    let calm = open(&redis, "calm").await;
    let ids = add(&calm, 5, json!({"n": 1})).await;
    all_complete(&calm, &ids, Duration::from_secs(30), &host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_holds_at_most_its_open_files() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("x.txt"), "x").unwrap();
    let (host, metrics) = host_with_metrics(
        &redis,
        &format!(
            "[queues.files]\nmodule = \"misbehave.wasm\"\n\
             files = [{{ source = \"{}\", destination = \"/data\" }}]\n\n\
             [queues.calm]\nmodule = \"echo.wasm\"\n",
            data.path().display()
        ),
    );
    let files = open(&redis, "files").await;
    let id = add_one(
        &files,
        "open",
        json!({"mode": "open", "path": "/data/x.txt", "times": 300}),
    )
    .await;
    let (state, job) = finished(&files, &id, Duration::from_secs(30)).await;
    assert_eq!(state, "failed", "{}", host.log());
    let reason = job.failed_reason();
    assert!(reason.contains("open /data/x.txt #256"), "{reason}");
    assert_eq!(budget_hits(&metrics, "files", "open-files"), 1);
    assert!(
        host.log().contains("the attempt holds 256 files open"),
        "{}",
        host.log()
    );
    // A file closed gives its place back: a thousand, one at a time.
    let id = add_one(
        &files,
        "open",
        json!({"mode": "open", "path": "/data/x.txt", "times": 1000, "how": "close"}),
    )
    .await;
    let (state, job) = finished(&files, &id, Duration::from_secs(30)).await;
    assert_eq!(state, "completed", "{}", job.failed_reason());
    let calm = open(&redis, "calm").await;
    let ids = add(&calm, 5, json!({"n": 1})).await;
    all_complete(&calm, &ids, Duration::from_secs(30), &host).await;
}
