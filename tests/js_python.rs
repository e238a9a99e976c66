//! Processors written in JavaScript and Python (`examples/js`,
//! `examples/python`), built by `bullpen build` and run by
//! `bullpen run`.
//!
//! The oracle: the same JavaScript file runs in BullMQ's own Node `Worker`
//! and, componentized, in bullpen; the job hashes and event streams must
//! match as in `oracle.rs`. The Python processors do what the JavaScript
//! ones do, so they are held to the same Node run, and read back by
//! BullMQ's Python client too.

use bullpen::queue::bullmq::{JobOptions, Queue};
use bullpen_tests::hook_server::HookServer;
use bullpen_tests::oracle::differences;
use bullpen_tests::{
    RedisServer, RunningHost, bullpen, exec_report, field, finished, node_with, python_with, queue,
    script_guest, shared_data_dir, workspace_root,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Runs `scenario` (of `tests/interop/node/oracle.mjs`) with the Node
/// Worker on `oracle_file` and with bullpen on `source` built, and asserts
/// that they agree.
fn agree(scenario: &str, oracle_file: &str, source: &str) {
    let oracle_redis = RedisServer::start();
    let file = workspace_root().join(oracle_file);
    let oracle = node_with(
        "oracle.mjs",
        &[scenario, "file", file.to_str().unwrap()],
        &oracle_redis,
    );
    let module = script_guest(source);
    let redis = RedisServer::start();
    let host = RunningHost::start_with_modules(
        &redis,
        &format!("[queues.{scenario}]\nmodule = \"processor.wasm\"\n"),
        &[("processor.wasm", &module)],
    );
    let ours = node_with("oracle.mjs", &[scenario, "bullpen"], &redis);
    let diffs = differences(&oracle, &ours);
    assert!(
        diffs.is_empty(),
        "{scenario}: {source} in bullpen differs from {oracle_file} in BullMQ's Node worker:\n  {}\nnode: {oracle}\nbullpen: {ours}\nhost log:\n{}",
        diffs.join("\n  "),
        host.log()
    );
}

macro_rules! scenarios {
    ($($test:ident: $scenario:literal with $js:literal and $py:literal;)*) => {
        mod javascript {
            $(
                #[test]
                fn $test() {
                    let js = concat!("examples/js/", $js);
                    super::agree($scenario, js, js);
                }
            )*
        }
        mod python {
            $(
                #[test]
                fn $test() {
                    super::agree($scenario, concat!("examples/js/", $js), concat!("examples/python/", $py));
                }
            )*
        }
    };
}

scenarios! {
    succeed: "succeed" with "echo.js" and "echo.py";
    fail_twice_then_succeed_with_exponential_backoff: "fail-twice-then-succeed" with "flaky.js" and "flaky.py";
    all_attempts_exhausted: "attempts-exhausted" with "flaky.js" and "flaky.py";
    unrecoverable_on_attempt_1_of_5: "unrecoverable-on-1-of-5" with "validate.js" and "validate.py";
    rate_limited_then_succeed: "rate-limited-then-succeed" with "rate-limited.js" and "rate_limited.py";
    custom_backoff_delay_then_now_then_give_up: "custom-backoff-delay-now-give-up" with "custom-backoff.js" and "custom_backoff.py";
}

/// The Python processors with BullMQ's Python client as the producer.
#[test]
fn python_producers_get_every_outcome_from_python_processors() {
    let redis = RedisServer::start();
    let modules: Vec<(String, std::path::PathBuf)> = [
        "echo",
        "flaky",
        "validate",
        "rate_limited",
        "custom_backoff",
    ]
    .iter()
    .map(|name| {
        (
            format!("{name}.wasm"),
            script_guest(&format!("examples/python/{name}.py")),
        )
    })
    .collect();
    let modules: Vec<(&str, &std::path::Path)> = modules
        .iter()
        .map(|(name, path)| (name.as_str(), path.as_path()))
        .collect();
    let queues: String = modules
        .iter()
        .map(|(file, _)| {
            format!(
                "[queues.{}]\nmodule = \"{file}\"\n",
                file.trim_end_matches(".wasm")
            )
        })
        .collect();
    let host = RunningHost::start_with_modules(&redis, &queues, &modules);
    let jobs = json!([
        ["echo", "py", {"hello": "python", "n": [1, 2]}, {}],
        ["flaky", "py", {"succeed_on": 2, "error_name": "PyError"},
            {"attempts": 3, "backoff": {"type": "exponential", "delay": 50}}],
        ["validate", "py", {"name": "no email"}, {"attempts": 5}],
        ["rate_limited", "py", {"wait_ms": 200}, {}],
        ["custom_backoff", "py", {"errors": ["Transient", "RetryNow", "Fatal"]},
            {"attempts": 5, "backoff": {"type": "linear", "delay": 100}}],
    ]);
    let report = python_with("scenarios.py", &[&jobs.to_string()], &redis);
    let log = host.log();
    let job = |name: &str| -> &Value { &report[name] };

    assert_eq!(job("echo")["state"], "completed", "{report}\n{log}");
    assert_eq!(
        job("echo")["returnvalue"],
        json!({"hello": "python", "n": [1, 2]})
    );

    assert_eq!(job("flaky")["state"], "completed", "{report}\n{log}");
    assert_eq!(job("flaky")["returnvalue"], json!({"attempt": 2}));
    assert_eq!(job("flaky")["attemptsMade"], 2);
    assert_eq!(job("flaky")["progress"], 100);
    assert_eq!(job("flaky")["logs"], json!(["succeeded on attempt 2"]));
    assert_eq!(job("flaky")["stacktrace"].as_array().unwrap().len(), 1);
    // The traceback, as BullMQ Python's own worker records it.
    let stack = job("flaky")["stacktrace"][0].as_str().unwrap();
    assert!(
        stack.starts_with("Traceback (most recent call last):\n")
            && stack.contains("flaky.py\", line ")
            && stack.ends_with("PyError: attempt 1 of 2 failed\n"),
        "{report}"
    );

    assert_eq!(job("validate")["state"], "failed", "{report}\n{log}");
    assert_eq!(
        job("validate")["failedReason"],
        "Invalid job data: \"email\" is required"
    );
    assert_eq!(job("validate")["attemptsMade"], 1);

    assert_eq!(job("rate_limited")["state"], "completed", "{report}\n{log}");
    assert_eq!(
        job("rate_limited")["returnvalue"],
        json!({"attempts_started": 2})
    );
    // The rate limit counted no attempt: only the completion did.
    assert_eq!(job("rate_limited")["attemptsMade"], 1);

    // Transient: linear 100 ms; RetryNow: at once; Fatal: give up.
    assert_eq!(job("custom_backoff")["state"], "failed", "{report}\n{log}");
    assert_eq!(
        job("custom_backoff")["failedReason"],
        "attempt 3 failed with Fatal"
    );
    assert_eq!(job("custom_backoff")["attemptsMade"], 3);
}

async fn add(queue: &Queue, data: Value) -> String {
    let options = JobOptions {
        attempts: Some(1),
        ..JobOptions::default()
    };
    let job = queue.add("test", data).options(options).await.unwrap();
    job.id().to_owned()
}

/// A JavaScript processor that loops forever, allocates without end, throws
/// what is not an Error or fetches what it was not granted: each attempt
/// ends with its reason, and the host goes on with the next job.
#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_javascript_ends_each_attempt_with_its_reason_and_the_host_goes_on() {
    let server = HookServer::start().await;
    let redis = RedisServer::start();
    let module = script_guest("examples/js/misbehave.js");
    let host = RunningHost::start_with_modules(
        &redis,
        &format!(
            "[queues.wild]\nmodule = \"misbehave-js.wasm\"\ntimeout = \"1s\"\nconcurrency = 4\n\
             allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n\
             [queues.denied]\nmodule = \"misbehave-js.wasm\"\n",
            server.addr.port()
        ),
        &[("misbehave-js.wasm", &module)],
    );
    let wild = queue(&redis, "wild").await;
    let denied = queue(&redis, "denied").await;
    let ok_url = server.url("http", "/ok");
    let cases = [
        (json!({"mode": "spin"}), "failed", "timeout after 1s"),
        (json!({"mode": "allocate"}), "failed", "out of memory"),
        (
            json!({"mode": "throw-string"}),
            "failed",
            "a string, not an Error",
        ),
        (
            json!({"mode": "throw-object"}),
            "failed",
            "non-Error thrown: {\"code\":42}",
        ),
        (
            json!({"mode": "reject"}),
            "failed",
            "rejected after a timer",
        ),
        (json!({"mode": "fetch", "url": ok_url}), "completed", ""),
    ];
    let mut ids = Vec::new();
    for (data, _, _) in &cases {
        ids.push(add(&wild, data.clone()).await);
    }
    let refused = add(&denied, json!({"mode": "fetch", "url": ok_url})).await;
    for ((data, state, reason), id) in cases.iter().zip(&ids) {
        let (got, job) = finished(&wild, id, Duration::from_secs(30)).await;
        assert_eq!(
            (got.as_str(), job.failed_reason()),
            (*state, *reason),
            "{data}\n{}",
            host.log()
        );
    }
    let (_, fetched) = finished(&wild, ids.last().unwrap(), Duration::from_secs(1)).await;
    assert_eq!(
        serde_json::from_str::<Value>(fetched.returnvalue()).unwrap(),
        json!({"status": 200, "body": "ok"})
    );
    // The rejection's stack entry names the error as a JS stack does.
    let stack = field(&wild, &ids[4], "stacktrace").await.unwrap();
    let stack: Vec<String> = serde_json::from_str(&stack).unwrap();
    assert!(
        stack[0].starts_with("TypeError: rejected after a timer\n    at process (misbehave.js:"),
        "{stack:?}"
    );

    // Not granted: fetch fails in the processor, and the host says why.
    let (state, job) = finished(&denied, &refused, Duration::from_secs(10)).await;
    assert_eq!(
        (state.as_str(), job.failed_reason()),
        ("failed", "NetworkError when attempting to fetch resource")
    );
    assert!(
        host.log()
            .contains("not in the queue's allowed_outbound_hosts")
    );
    assert_eq!(
        server.received_on("/ok").len(),
        1,
        "only the granted fetch went out"
    );

    // After all that, the host still runs jobs.
    let after = add(&wild, json!({"mode": "ok"})).await;
    let (state, job) = finished(&wild, &after, Duration::from_secs(10)).await;
    assert_eq!(
        (state.as_str(), job.returnvalue()),
        ("completed", "\"fine\"")
    );
}

/// A Python processor sees the environment and the directories its queue
/// grants, and nothing without them (`bullpen exec` grants as a queue does).
#[test]
fn python_sees_granted_environment_and_files_only() {
    let module = script_guest("tests/fixtures/python/grants_probe.py");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hi\n").unwrap();
    let exec = |grants: &[String]| exec_module(&module, grants)["return_value"].clone();
    assert_eq!(
        exec(&[]),
        json!({"env": null, "file_error": "No such file or directory"})
    );
    let dir = format!("{}:/data", data.path().display());
    assert_eq!(
        exec(&["--env".into(), "GREETING=hello".into(), "--dir".into(), dir]),
        json!({"env": "hello", "file": "hi\n"})
    );
}

/// A Python processor that allocates past its memory cap fails saying so
/// (a `MemoryError` carries no text of its own).
#[test]
fn python_out_of_memory_says_so() {
    let module = script_guest("tests/fixtures/python/allocate.py");
    let report = exec_module(&module, &["--memory".into(), "64MiB".into()]);
    assert_eq!(report["outcome"], "failed", "{report}");
    assert_eq!(
        report["error"],
        json!({"message": "out of memory", "name": "MemoryError", "stack": report["error"]["stack"]}),
        "{report}"
    );
}

/// Runs `bullpen exec` on `module` with `args` (grants, data) and returns
/// its JSON report. The module is compiled already, in the shared cache.
fn exec_module(module: &std::path::Path, args: &[String]) -> Value {
    exec_report(
        bullpen()
            .arg("exec")
            .arg(module)
            .arg("--data-dir")
            .arg(shared_data_dir())
            .args(args),
    )
}

/// A JavaScript processor reads its queue's environment through
/// `process.env` and its directories through Node's `fs`: granted ones
/// only, writes only where the grant is writable, and Node's error codes
/// otherwise.
#[test]
fn javascript_sees_granted_environment_and_files_only() {
    let module = script_guest("tests/fixtures/js/grants_probe.js");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hi\n").unwrap();
    std::fs::write(data.path().join("second.txt"), "").unwrap();
    std::fs::write(data.path().join("big.bin"), vec![7u8; 200_000]).unwrap();
    let out = tempfile::tempdir().unwrap();

    let nothing = exec_module(&module, &[]);
    let seen = &nothing["return_value"];
    assert_eq!(seen["env"], Value::Null, "{nothing}");
    assert_eq!(seen["file"]["code"], "ENOENT", "{nothing}");
    assert_eq!(
        seen["file"]["message"],
        "ENOENT: no such file or directory, open '/data/hello.txt'"
    );
    assert_eq!(seen["promised"], "ENOENT");
    assert_eq!(seen["write"]["code"], "ENOENT");

    let granted = exec_module(
        &module,
        &[
            "--id".into(),
            "7".into(),
            "--env".into(),
            "GREETING=hello".into(),
            "--dir".into(),
            format!("{}:/data", data.path().display()),
            "--dir".into(),
            format!("{}:/out:rw", out.path().display()),
        ],
    );
    let seen = &granted["return_value"];
    assert_eq!(seen["env"], "hello", "{granted}");
    assert_eq!(seen["file"], json!({"ok": "hi\n"}));
    assert_eq!(seen["promised"], "hi\n");
    assert_eq!(
        seen["listing"],
        json!({"ok": ["big.bin", "hello.txt", "second.txt"]})
    );
    assert_eq!(seen["big"], json!({"ok": 200_000}));
    assert_eq!(seen["stat"], json!({"ok": [3, true, false]}));
    assert_eq!(seen["write"], json!({}), "{granted}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("written.txt")).unwrap(),
        "from job 7"
    );
    // /data is granted read-only: the file is untouched.
    assert_eq!(seen["readOnly"]["code"], "EPERM", "{granted}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("hello.txt")).unwrap(),
        "hi\n"
    );
}

/// A Python processor fetches with `bullpen.http` from the hosts its queue
/// grants (a GET, a JSON POST with a header, a body larger than one read),
/// and is refused any other, with the URL and the reason.
#[tokio::test(flavor = "multi_thread")]
async fn python_fetches_granted_hosts_only() {
    let server = HookServer::start().await;
    let module = script_guest("tests/fixtures/python/fetch.py");
    let allow = format!("http://127.0.0.1:{}", server.addr.port());
    let run = |data: Value, granted: bool| {
        let module = module.clone();
        let allow = allow.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--data".to_owned(), data.to_string()];
            if granted {
                args.extend(["--allow-host".to_owned(), allow]);
            }
            exec_module(&module, &args)
        })
    };

    let got = run(json!({"url": server.url("http", "/ok")}), true)
        .await
        .unwrap();
    assert_eq!(
        got["return_value"],
        json!({"status": 200, "type": null, "body": "ok"}),
        "{got}"
    );
    let big = run(json!({"url": server.url("http", "/big/200000")}), true)
        .await
        .unwrap();
    assert_eq!(
        big["return_value"]["body"].as_str().map(str::len),
        Some(200_000),
        "{big}"
    );
    let posted = run(
        json!({"url": server.url("http", "/status/201"), "json": {"a": [1, 2]}}),
        true,
    )
    .await
    .unwrap();
    assert_eq!(posted["return_value"]["status"], 201, "{posted}");
    let request = &server.received_on("/status/201")[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.headers["x-source"], "bullpen");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.body, br#"{"a": [1, 2]}"#);

    // A server that never answers: the request's own timeout ends it.
    let hang = server.url("http", "/hang");
    let hung = run(json!({"url": hang, "timeout": 0.5}), true)
        .await
        .unwrap();
    assert_eq!(hung["outcome"], "failed", "{hung}");
    let message = hung["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{hang}: ")) && message.contains("timeout"),
        "{hung}"
    );

    let url = server.url("http", "/ok");
    let refused = run(json!({"url": url}), false).await.unwrap();
    assert_eq!(refused["outcome"], "failed", "{refused}");
    assert_eq!(
        refused["error"]["message"],
        format!("{url}: refused: the queue does not grant this host (allowed_outbound_hosts)")
    );
    assert_eq!(refused["error"]["name"], "HttpError");
    assert_eq!(
        server.received_on("/ok").len(),
        1,
        "the refused GET never left"
    );
}

/// An uncaught exception's stack becomes the job's `stacktrace` entry, as
/// Node and BullMQ Python write it: for JavaScript `Name: message` and `at`
/// frames in the processor's own file and lines (not the bundle's), for
/// Python the traceback of the processor's frames.
#[test]
fn failures_carry_the_languages_own_stack() {
    let js = script_guest("tests/fixtures/js/throws.js");
    let report = exec_module(&js, &["--data".into(), r#"{"n":3}"#.into()]);
    assert_eq!(report["error"]["message"], "boom 3", "{report}");
    assert_eq!(
        report["error"]["stack"],
        "TypeError: boom 3\n    at inner (throws.js:5:9)\n    at process (throws.js:10:3)",
        "{report}"
    );
    let report = exec_module(&js, &["--data".into(), r#"{"unrecoverable":true}"#.into()]);
    assert_eq!(report["outcome"], "unrecoverable", "{report}");
    assert!(
        report["stack"]
            .as_str()
            .unwrap()
            .starts_with("UnrecoverableError: bad input\n    at inner (throws.js:4:"),
        "{report}"
    );

    let py = script_guest("tests/fixtures/python/throws.py");
    let report = exec_module(&py, &["--data".into(), r#"{"n":3}"#.into()]);
    let stack = report["error"]["stack"].as_str().unwrap();
    assert!(
        stack.starts_with("Traceback (most recent call last):\n  File ")
            && stack.contains("throws.py\", line 10, in process\n")
            && stack.contains("throws.py\", line 5, in inner\n")
            && stack.ends_with("ValueError: boom 3\n")
            && !stack.contains("world.py"),
        "{stack}"
    );
}

/// Both SDKs name the job's queue with the host's `[redis] prefix`
/// (contract 0.2.2's `jobs.queue-prefix`), not a `bull:` of their own: a
/// child whose parent is named so is accepted, one named with another
/// prefix refused.
#[test]
fn both_languages_name_their_queue_with_the_configured_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let queue = "[queues.orders]\nmodule = \"names.wasm\"\nadd_to_queues = [\"orders\"]\n";
    let prefixed = dir.path().join("prefixed.toml");
    std::fs::write(&prefixed, format!("[redis]\nprefix = \"shop\"\n\n{queue}")).unwrap();
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, queue).unwrap();
    for source in [
        "tests/fixtures/js/names.js",
        "tests/fixtures/python/names.py",
    ] {
        let module = script_guest(source);
        let run = |parent_queue: &str, config: &std::path::Path| {
            let args: Vec<String> = vec![
                "--data".into(),
                json!({ "parentQueue": parent_queue }).to_string(),
                "--queue".into(),
                "orders".into(),
                "-c".into(),
                config.display().to_string(),
            ];
            exec_module(&module, &args)
        };
        let report = run("shop:orders", &prefixed);
        assert_eq!(report["outcome"], "completed", "{source}: {report}");
        assert_eq!(
            report["return_value"]["qualified"], "shop:orders",
            "{source}"
        );
        assert_eq!(
            report["jobs_added"].as_array().map(Vec::len),
            Some(1),
            "{source}: {report}"
        );
        let report = run("bull:orders", &prefixed);
        assert_eq!(report["outcome"], "failed", "{source}: {report}");
        // Without a prefix in the config, BullMQ's default.
        let report = run("bull:orders", &plain);
        assert_eq!(
            report["return_value"]["qualified"], "bull:orders",
            "{source}: {report}"
        );
    }
}

/// Node's built-ins that processors commonly reach for (`Buffer`, `crypto`,
/// `events`, `path`, `url`, `util`) answer in bullpen as in Node: the same
/// file runs in both and the answers are compared. One without a stand-in
/// fails the build, naming it and what to use instead.
#[test]
fn node_builtins_answer_as_in_node_or_are_refused_at_build() {
    let source = "tests/fixtures/js/node_builtins.js";
    let data = json!({"text": "héllo, bullpen", "key": "the-secret"});
    let module = script_guest(source);
    let report = exec_module(&module, &["--data".into(), data.to_string()]);
    assert_eq!(report["outcome"], "completed", "{report}");
    let output = std::process::Command::new("node")
        .arg("--input-type=module")
        .arg("-e")
        .arg(format!(
            "const {{ process }} = await import({:?}); console.log(JSON.stringify(await process({{ data: {data} }})));",
            workspace_root().join(source).display().to_string()
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let in_node: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["return_value"], in_node);
    assert_eq!(in_node["uuid"], true);

    let scratch = tempfile::tempdir().unwrap();
    let output = bullpen()
        .args(["build", "tests/fixtures/js/node_http.js", "-o"])
        .arg(scratch.path().join("x.wasm"))
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        errors.contains("\"node:http\" is a Node built-in that bullpen's sandbox does not have")
            && errors.contains("fetch()")
            && errors.contains("node_http.js:3"),
        "{errors}"
    );
}
