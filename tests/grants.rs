//! Grants (issue 13, first slice): `files`, `environment` and `secrets` per
//! queue, denied by default; escapes refused; secrets kept out of bullpen's
//! words; each grant checked at start with the file, line and reason.

use bullpen_tests::{RedisServer, RunningHost, finished, queue as open};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "tok-5ecr3t-81f2";

/// A host directory with `templates/` (a file, and a symlink out of it),
/// a file beside it that no grant reaches, and an empty `out/`.
fn host_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(templates.join("hello.txt"), "Hello {name}").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "not granted").unwrap();
    std::os::unix::fs::symlink("../outside.txt", templates.join("escape")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_reaches_what_it_is_granted_and_nothing_else() {
    // The host's environment: the secret's source, and a variable nobody
    // granted.
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("BULLPEN_TEST_TOKEN", TOKEN);
        std::env::set_var("BULLPEN_TEST_NOT_GRANTED", "private");
    }
    let files = host_files();
    let root = files.path().display().to_string();
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.granted]\nmodule = \"misbehave.wasm\"\nconcurrency = 4\n\
             files = [{{ source = \"{root}/templates\", destination = \"/templates\" }},\n\
                      {{ source = \"{root}/out\", destination = \"/out\", writable = true }}]\n\
             environment = {{ REGION = \"eu-west-1\" }}\n\
             secrets = {{ API_TOKEN = {{ env = \"BULLPEN_TEST_TOKEN\" }} }}\n\
             [queues.bare]\nmodule = \"misbehave.wasm\"\n"
        ),
    );
    let granted = open(&redis, "granted").await;
    let bare = open(&redis, "bare").await;
    let run = |queue: &bullpen::queue::bullmq::Queue, data: Value| {
        let queue = queue.clone();
        async move {
            let id = queue.add("t", data).await.unwrap().id().to_owned();
            let (state, job) = finished(&queue, &id, Duration::from_secs(10)).await;
            let value: Value = serde_json::from_str(job.returnvalue()).unwrap_or(Value::Null);
            (state, value, job.failed_reason().to_owned())
        }
    };

    // Granted: read the template, write into the writable grant, read the
    // literal variable and the secret.
    let (state, value, _) = run(
        &granted,
        json!({"mode": "read", "path": "/templates/hello.txt"}),
    )
    .await;
    assert_eq!(
        (state.as_str(), value),
        ("completed", json!("Hello {name}")),
        "{}",
        host.log()
    );
    let (state, _, why) = run(
        &granted,
        json!({"mode": "write", "path": "/out/result.txt", "text": "done"}),
    )
    .await;
    assert_eq!(state, "completed", "{why}");
    assert_eq!(
        std::fs::read_to_string(files.path().join("out/result.txt")).unwrap(),
        "done"
    );
    let (_, value, _) = run(&granted, json!({"mode": "env", "name": "REGION"})).await;
    assert_eq!(value, json!("eu-west-1"));
    // The guest reads the secret; echoed in its return value, it is masked.
    let (_, value, _) = run(&granted, json!({"mode": "env", "name": "API_TOKEN"})).await;
    assert_eq!(value, json!("***"));

    // Refused: whatever was not granted, and every way out of a grant.
    for data in [
        json!({"mode": "read", "path": "/etc/passwd"}),
        json!({"mode": "list", "path": "/"}),
        json!({"mode": "read", "path": "/templates/../outside.txt"}),
        json!({"mode": "read", "path": "/templates/escape"}),
        json!({"mode": "write", "path": "/templates/new.txt", "text": "x"}),
        json!({"mode": "write", "path": "/out/../outside.txt", "text": "x"}),
    ] {
        let (state, _, why) = run(&granted, data.clone()).await;
        assert_eq!(state, "failed", "{data} was allowed");
        assert!(!why.is_empty(), "{data}");
    }
    assert!(!files.path().join("templates/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(files.path().join("outside.txt")).unwrap(),
        "not granted"
    );
    for name in ["BULLPEN_TEST_NOT_GRANTED", "HOME", "PATH"] {
        let (_, value, _) = run(&granted, json!({"mode": "env", "name": name})).await;
        assert_eq!(value, Value::Null, "{name} reached the guest");
    }
    // A queue with no grants sees none of the other queue's.
    let (state, _, _) = run(
        &bare,
        json!({"mode": "read", "path": "/templates/hello.txt"}),
    )
    .await;
    assert_eq!(state, "failed");
    let (_, value, _) = run(&bare, json!({"mode": "env", "name": "REGION"})).await;
    assert_eq!(value, Value::Null);

    // A secret the guest puts in its failure is masked in the failed reason
    // and the stack trace, and bullpen never logs it.
    let (state, _, why) = run(
        &granted,
        json!({"mode": "fail-with-env", "name": "API_TOKEN"}),
    )
    .await;
    assert_eq!(state, "failed");
    assert_eq!(why, "the server rejected token ***");
    assert!(!host.log().contains(TOKEN), "{}", host.log());
    let (_, stdout, _) = host.cli(&["status"]);
    assert!(!stdout.contains(TOKEN));
}

#[test]
fn grants_are_checked_at_start_with_the_line_and_reason() {
    let files = host_files();
    let root = files.path().display().to_string();
    let cases = [
        (
            format!("files = [{{ source = \"{root}/missing\", destination = \"/m\" }}]"),
            format!("bullpen.toml:3:21: queues.q: files: source {root}/missing does not exist"),
        ),
        (
            format!("files = [{{ source = \"{root}/outside.txt\", destination = \"/m\" }}]"),
            format!("bullpen.toml:3:21: queues.q: files: source {root}/outside.txt is not a directory"),
        ),
        (
            format!("files = [{{ source = \"{root}/templates\", destination = \"templates\" }}]"),
            "queues.q: files: destination `templates` must be an absolute guest path".to_owned(),
        ),
        (
            "secrets = { API_TOKEN = { env = \"BULLPEN_TEST_SURELY_UNSET\" } }".to_owned(),
            "bullpen.toml:3:11: queues.q: secrets: `API_TOKEN` reads the host variable $BULLPEN_TEST_SURELY_UNSET, which is not set".to_owned(),
        ),
        (
            "allowed_outbound_hosts = [\"ftp://files.example.com\"]".to_owned(),
            "bullpen.toml:3:27: queues.q: allowed_outbound_hosts: `ftp://files.example.com` has a scheme other than http, https or *".to_owned(),
        ),
        (
            "allowed_outbound_hosts = [\"https://ok.example.com\", \"https://example.com/hooks\"]".to_owned(),
            "bullpen.toml:3:53: queues.q: allowed_outbound_hosts: `https://example.com/hooks` has a path".to_owned(),
        ),
        (
            "allowed_outbound_hosts = [\"hooks.example.com\"]".to_owned(),
            "queues.q: allowed_outbound_hosts: `hooks.example.com` needs a scheme".to_owned(),
        ),
        (
            "max_response_size = \"8GiB\"".to_owned(),
            "bullpen.toml:3:21: queues.q: max_response_size must be between 1 B and 4 GiB".to_owned(),
        ),
        (
            "environment = { \"A-B\" = \"1\" }".to_owned(),
            "bullpen.toml:3:15: queues.q: environment: `A-B` is not a variable name".to_owned(),
        ),
        (
            "add_to_queues = [\"emails\", \"bull:emails\"]".to_owned(),
            "bullpen.toml:3:28: queues.q: add_to_queues: `bull:emails` is not a queue name (empty, or has a `:`)".to_owned(),
        ),
        (
            "add_to_queues = [\"emails\", \"emails\"]".to_owned(),
            "bullpen.toml:3:28: queues.q: add_to_queues: `emails` is listed twice".to_owned(),
        ),
        (
            "max_added_jobs = 0".to_owned(),
            "bullpen.toml:3:18: queues.q: max_added_jobs must be between 1 and 100000".to_owned(),
        ),
        (
            "max_added_size = \"1GiB\"".to_owned(),
            "bullpen.toml:3:18: queues.q: max_added_size must be between 1 B and 512 MiB".to_owned(),
        ),
    ];
    for (line, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::copy(bullpen_tests::guest("echo"), modules.join("echo.wasm")).unwrap();
        let config = dir.path().join("bullpen.toml");
        std::fs::write(
            &config,
            format!("[queues.q]\nmodule = \"echo.wasm\"\n{line}\n"),
        )
        .unwrap();
        let output = bullpen_tests::bullpen()
            .args(["run", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&expected),
            "expected {expected}\ngot {stderr}"
        );
    }
}
