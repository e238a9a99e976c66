//! `/metrics` as Prometheus and Grafana read it: the example queues run,
//! the text is scraped over HTTP, parsed by the Prometheus project's own
//! parser, checked by `promtool`, and each counter compared with what
//! happened. Also JSON log lines, and the per-job cost `bullpen jobs` shows.

use bullpen::queue::bullmq::{JobOptions, Queue};
use bullpen_tests::{
    RedisServer, RunningHost, finished, free_port, queue as open, wait_for_state, workspace_root,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn add(queue: &Queue, id: &str, data: Value, attempts: u32) {
    queue
        .add("test", data)
        .options(JobOptions {
            attempts: Some(attempts),
            job_id: Some(id.to_owned()),
            ..JobOptions::default()
        })
        .await
        .unwrap();
}

/// One parsed sample.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// What a scrape of `/metrics` gave.
#[derive(Debug, serde::Deserialize)]
struct Scraped {
    status: u16,
    content_type: String,
    text: String,
    samples: Vec<Sample>,
}

/// `/metrics` on `addr`, fetched with Python's urllib and parsed by
/// `prometheus_client.parser` (the interop venv).
fn scrape(addr: &str) -> (String, Vec<Sample>) {
    let interpreter = std::env::var("BULLPEN_INTEROP_PYTHON").unwrap_or_else(|_| {
        panic!("BULLPEN_INTEROP_PYTHON is not set: run scripts/test (it installs the Python parser in a venv)")
    });
    let output = std::process::Command::new(&interpreter)
        .arg(workspace_root().join("tests/interop/python/parse_metrics.py"))
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the scrape or the Prometheus parser failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let scraped: Scraped = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(scraped.status, 200, "{}", scraped.text);
    assert_eq!(
        scraped.content_type, "text/plain; version=0.0.4; charset=utf-8",
        "Prometheus's text format"
    );
    (scraped.text, scraped.samples)
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Scrapes until `ready` holds of the samples; panics with the host's log
/// after `timeout`.
fn scrape_until(
    addr: &str,
    host: &RunningHost,
    timeout: Duration,
    ready: impl Fn(&[Sample]) -> bool,
) -> (String, Vec<Sample>) {
    let deadline = Instant::now() + timeout;
    loop {
        let (text, samples) = scrape(addr);
        if ready(&samples) {
            return (text, samples);
        }
        assert!(Instant::now() < deadline, "{text}\n{}", host.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `command` with `text` on its stdin; what it printed.
fn fed(mut command: std::process::Command, text: &str) -> std::process::Output {
    use std::io::Write;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): run scripts/test, which installs the test tools")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn promtool_check(text: &str) {
    let promtool = std::env::var("BULLPEN_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut check = std::process::Command::new(&promtool);
    check.args(["check", "metrics"]);
    let output = fed(check, text);
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_the_example_queues_did() {
    let mut redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let host = RunningHost::start(
        &redis,
        &format!(
            "metrics = \"{addr}\"\nlog_format = \"json\"\n\n\
             [queues.echo]\nmodule = \"echo.wasm\"\nconcurrency = 4\n\n\
             [queues.flaky]\nmodule = \"flaky.wasm\"\n\n\
             [queues.misbehave]\nmodule = \"misbehave.wasm\"\ntimeout = \"1s\"\nmemory = \"16MiB\"\n"
        ),
    );
    let (echo, flaky, misbehave) = (
        open(&redis, "echo").await,
        open(&redis, "flaky").await,
        open(&redis, "misbehave").await,
    );
    for i in 0..10 {
        add(&echo, &format!("e{i}"), json!({ "i": i }), 1).await;
    }
    // 2 + 1 retries, then both complete.
    add(&flaky, "f3", json!({ "succeed_on": 3 }), 3).await;
    add(&flaky, "f2", json!({ "succeed_on": 2 }), 3).await;
    // A timeout and a memory crash (each the job's last attempt), and an
    // unrecoverable answer.
    add(&misbehave, "spin", json!({ "mode": "spin" }), 1).await;
    add(&misbehave, "oom", json!({ "mode": "oom" }), 1).await;
    add(&misbehave, "nope", json!({ "mode": "nope" }), 5).await;
    for (queue, ids) in [
        (&echo, (0..10).map(|i| format!("e{i}")).collect::<Vec<_>>()),
        (&flaky, vec!["f3".into(), "f2".into()]),
        (&misbehave, vec!["spin".into(), "oom".into(), "nope".into()]),
    ] {
        for id in ids {
            finished(queue, &id, Duration::from_secs(30)).await;
        }
    }

    // The queue depth is read every few seconds: wait for its first read
    // after the jobs finished.
    let (text, samples) = scrape_until(&addr, &host, Duration::from_secs(20), |s| {
        value(
            s,
            "bullpen_queue_jobs",
            &[("queue", "echo"), ("state", "completed")],
        ) == Some(10.0)
            && value(
                s,
                "bullpen_queue_jobs",
                &[("queue", "misbehave"), ("state", "failed")],
            ) == Some(3.0)
    });
    let attempts = |queue: &str, outcome: &str| {
        value(
            &samples,
            "bullpen_attempts_total",
            &[("queue", queue), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("echo", "completed"), Some(10.0), "{text}");
    assert_eq!(attempts("echo", "failed"), Some(0.0), "{text}");
    assert_eq!(attempts("flaky", "completed"), Some(2.0), "{text}");
    assert_eq!(attempts("flaky", "retried"), Some(3.0), "{text}");
    assert_eq!(attempts("misbehave", "failed"), Some(2.0), "{text}");
    assert_eq!(attempts("misbehave", "unrecoverable"), Some(1.0), "{text}");
    let crashes = |kind: &str| {
        value(
            &samples,
            "bullpen_crashes_total",
            &[("queue", "misbehave"), ("kind", kind)],
        )
    };
    assert_eq!(crashes("timeout"), Some(1.0), "{text}");
    assert_eq!(crashes("memory-limit"), Some(1.0), "{text}");
    assert_eq!(crashes("panic"), Some(0.0), "{text}");
    for (name, count) in [
        ("bullpen_attempt_duration_seconds_count", 10.0),
        ("bullpen_instantiate_duration_seconds_count", 10.0),
        ("bullpen_attempt_peak_memory_bytes_count", 10.0),
        ("bullpen_attempt_cpu_seconds_count", 10.0),
    ] {
        assert_eq!(
            value(&samples, name, &[("queue", "echo")]),
            Some(count),
            "{name}\n{text}"
        );
    }
    // A memory cap of 16 MiB: the oom attempt peaked near it.
    let peak_sum = value(
        &samples,
        "bullpen_attempt_peak_memory_bytes_sum",
        &[("queue", "misbehave")],
    )
    .unwrap();
    assert!(peak_sum >= 15.0 * 1024.0 * 1024.0, "{text}");
    let timed = value(
        &samples,
        "bullpen_attempt_duration_seconds_bucket",
        &[("queue", "misbehave"), ("le", "0.5")],
    )
    .unwrap();
    assert!(timed <= 2.0, "the 1 s timeout is over 0.5 s: {text}");
    // The spinning guest's second of CPU, the sleeping ones' almost none.
    let cpu = value(
        &samples,
        "bullpen_attempt_cpu_seconds_sum",
        &[("queue", "misbehave")],
    )
    .unwrap();
    assert!((0.5..2.0).contains(&cpu), "{text}");
    assert_eq!(
        value(&samples, "bullpen_attempts_in_flight", &[("queue", "echo")]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "bullpen_concurrency", &[("queue", "echo")]),
        Some(4.0)
    );
    let echo_sha = sha256_hex(&std::fs::read(host.dir.path().join("modules/echo.wasm")).unwrap());
    assert_eq!(
        value(
            &samples,
            "bullpen_module_info",
            &[
                ("queue", "echo"),
                ("file", "echo.wasm"),
                ("sha256", &echo_sha)
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&samples, "bullpen_redis_connected", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "bullpen_redis_reconnects_total", &[]),
        Some(0.0)
    );
    assert!(value(&samples, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(value(&samples, "process_open_fds", &[]).unwrap() > 3.0);
    assert!(value(&samples, "bullpen_uptime_seconds", &[]).unwrap() > 0.0);
    promtool_check(&text);
    dashboard_uses_only_exported_metrics(&samples);

    // Per-job cost in `bullpen jobs`, from the host's memory.
    let (code, stdout, stderr) = host.cli(&["jobs", "echo", "--state", "completed"]);
    assert_eq!(code, 0, "{stderr}");
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (ms_column, cpu_column, memory_column) =
        (column("LAST_MS"), column("CPU_MS"), column("PEAK_MEMORY"));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 10, "{stdout}");
    for row in &rows {
        let ms: f64 = row[ms_column]
            .parse()
            .unwrap_or_else(|_| panic!("{stdout}"));
        assert!(ms > 0.0 && ms < 10_000.0, "{stdout}");
        let cpu: f64 = row[cpu_column]
            .parse()
            .unwrap_or_else(|_| panic!("{stdout}"));
        assert!(cpu > 0.0 && cpu <= ms * 1.5, "{stdout}");
        // "1.1 MiB": the number, then its unit.
        assert!(row[memory_column].parse::<f64>().is_ok(), "{stdout}");
    }

    // JSON logs: every line of the log is an object, and a job's lines
    // carry its queue, id, attempt and module.
    let log = host.log();
    let mut about_e3 = 0;
    for line in log.lines().filter(|l| !l.starts_with("bullpen: ")) {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let span = &object["span"];
        if span["job_id"] == "e3" {
            about_e3 += 1;
            assert_eq!(span["queue"], "echo", "{line}");
            assert_eq!(span["attempt"], 1, "{line}");
            assert!(
                span["module"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("echo.wasm@{}", &echo_sha[..12])),
                "{line}"
            );
        }
    }
    assert!(about_e3 >= 1, "no line about job e3:\n{log}");

    // Deploys: a new version swapped in, then a broken file kept out.
    let modules = host.dir.path().join("modules");
    std::fs::copy(
        bullpen_tests::guest("validate"),
        modules.join("echo.next.wasm"),
    )
    .unwrap();
    std::fs::rename(modules.join("echo.next.wasm"), modules.join("echo.wasm")).unwrap();
    let (text, samples) = scrape_until(&addr, &host, Duration::from_secs(30), |s| {
        value(s, "bullpen_deploys_total", &[("queue", "echo")]) == Some(1.0)
    });
    assert_eq!(
        value(
            &samples,
            "bullpen_module_info",
            &[("queue", "echo"), ("sha256", &echo_sha)]
        ),
        None,
        "the old version is no longer listed: {text}"
    );
    std::fs::write(modules.join("echo.next.wasm"), "not wasm").unwrap();
    std::fs::rename(modules.join("echo.next.wasm"), modules.join("echo.wasm")).unwrap();
    scrape_until(&addr, &host, Duration::from_secs(30), |s| {
        value(s, "bullpen_rejected_deploys_total", &[("queue", "echo")]) == Some(1.0)
    });

    // Redis away: not connected and errors counted; back: a reconnect.
    redis.stop();
    scrape_until(&addr, &host, Duration::from_secs(30), |s| {
        value(s, "bullpen_redis_connected", &[]) == Some(0.0)
    });
    redis.restart();
    let (text, samples) = scrape_until(&addr, &host, Duration::from_secs(30), |s| {
        value(s, "bullpen_redis_connected", &[]) == Some(1.0)
    });
    assert!(
        value(&samples, "bullpen_redis_reconnects_total", &[]).unwrap() >= 1.0,
        "{text}"
    );
    let errors: f64 = samples
        .iter()
        .filter(|s| s.name == "bullpen_redis_errors_total")
        .map(|s| s.value)
        .sum();
    assert!(errors >= 1.0, "{text}");
}

/// A delayed job whose time has come while every worker is busy is still
/// in BullMQ's `delayed` set: `bullpen_queue_jobs{state="delayed-due"}`
/// counts it, so an autoscaler sees it waiting.
#[tokio::test(flavor = "multi_thread")]
async fn delayed_jobs_due_while_workers_are_busy_are_counted() {
    let redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let host = RunningHost::start(
        &redis,
        &format!(
            "metrics = \"{addr}\"\n\n\
             [queues.misbehave]\nmodule = \"misbehave.wasm\"\ntimeout = \"20s\"\n"
        ),
    );
    let queue = open(&redis, "misbehave").await;
    add(&queue, "busy", json!({ "mode": "spin" }), 1).await;
    wait_for_state(&queue, "busy", &["active"], Duration::from_secs(10)).await;
    queue
        .add("test", json!({ "mode": "nope" }))
        .options(JobOptions {
            delay: Some(100),
            job_id: Some("due".into()),
            ..JobOptions::default()
        })
        .await
        .unwrap();
    let due = |s: &[Sample]| {
        value(
            s,
            "bullpen_queue_jobs",
            &[("queue", "misbehave"), ("state", "delayed-due")],
        )
    };
    let (text, _) = scrape_until(&addr, &host, Duration::from_secs(15), |s| {
        due(s) == Some(1.0)
    });
    let state = queue.get_job_state("due").await.unwrap();
    assert_eq!(bullpen::queue::state_name(&state), "delayed", "{text}");
    // Once the slot is free the job runs, and nothing is due any more.
    finished(&queue, "due", Duration::from_secs(30)).await;
    scrape_until(&addr, &host, Duration::from_secs(10), |s| {
        due(s) == Some(0.0)
    });
}

/// Every metric docs/grafana/bullpen.json queries is one the host exports.
fn dashboard_uses_only_exported_metrics(samples: &[Sample]) {
    let path = workspace_root().join("docs/grafana/bullpen.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("bullpen_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                samples.iter().any(|s| s.name == name),
                "{} queries `{name}`, which the host does not export: {expr}",
                path.display()
            );
            rest = &rest[at + name.len()..];
        }
    }
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, into)),
        _ => {}
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    bullpen::sandbox::sha256_hex(bytes)
}
