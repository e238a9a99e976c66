//! Processors from an OCI registry (issue 31, part 3): components pushed by
//! `wkg oci push` to a real registry (Debian's `docker-registry`) on
//! loopback are pulled by digest, kept in the data dir and served like
//! files; `bullpen deploy` takes a reference, a reload resolves the tag
//! again, a registry that serves bytes other than their digest is refused,
//! and one that is down leaves the kept copy serving, with a word saying so.

use bullpen::queue::bullmq::Queue;
use bullpen_tests::oci_registry::OciRegistry;
use bullpen_tests::{RedisServer, RunningHost, completed_by, guest, queue as open, start_refused};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn sha256(path: &Path) -> String {
    bullpen::registry::watch::file_sha256(path).unwrap()
}

/// The worker name BullMQ records for a job run by `example`'s component
/// kept as `proc.wasm`.
fn ran_by(example: &str) -> String {
    format!("proc.wasm@{}", &sha256(&guest(example))[..12])
}

/// A job `echo`, `validate` and `json-transform` all complete; the worker
/// that ran it.
async fn run_one(queue: &Queue, host: &RunningHost) -> String {
    let data = json!({
        "email": "ada@example.com",
        "name": "Ada",
        "records": [{"name": "a", "value": 1.5}]
    });
    completed_by(queue, host, data).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_from_a_registry_serves_and_follows_deploys_reloads_and_outages() {
    let mut registry = OciRegistry::start();
    let redis = RedisServer::start();
    registry.push(&guest("echo"), "acme/proc:v1");
    registry.push(&guest("validate"), "acme/proc:v2");
    let proc = registry.reference("acme/proc");
    let mut host = RunningHost::start(&redis, &format!("[queues.q]\nmodule = \"{proc}:v1\"\n"));
    let queue = open(&redis, "q").await;

    // Pulled, kept in the data dir, and run.
    assert_eq!(run_one(&queue, &host).await, ran_by("echo"));
    let kept = host
        .dir
        .path()
        .join(".bullpen/oci")
        .join(&registry.addr)
        .join("acme/proc.wasm");
    assert_eq!(sha256(&kept), sha256(&guest("echo")));
    let (code, stdout, stderr) = host.cli(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{proc}:v1 (")), "{stdout}");

    // Deployed by reference: the queue bound to acme/proc gets v2.
    let (code, stdout, stderr) = host.cli(&["deploy", &format!("{proc}:v2")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("serving"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "names {proc}:v1: a reload or restart pulls that again"
        )),
        "{stdout}"
    );
    assert_eq!(run_one(&queue, &host).await, ran_by("validate"));
    let (_, stdout, _) = host.cli(&["status"]);
    assert!(stdout.contains(&format!("{proc}:v2 (")), "{stdout}");

    // A reload pulls what bullpen.toml names: v1 again.
    let (code, stdout, stderr) = host.cli(&["reload"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{proc}:v1 (sha256:")) && stdout.contains("pulled"),
        "{stdout}"
    );
    host.wait_until_serving("q", &sha256(&guest("echo")));
    assert_eq!(run_one(&queue, &host).await, ran_by("echo"));

    // The tag moves: the next reload resolves it again.
    registry.push(&guest("json-transform"), "acme/proc:v1");
    let (code, stdout, _) = host.cli(&["reload"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("pulled"), "{stdout}");
    host.wait_until_serving("q", &sha256(&guest("json-transform")));
    assert_eq!(run_one(&queue, &host).await, ran_by("json-transform"));
    // Nothing new: nothing pulled, nothing changed.
    let (code, stdout, _) = host.cli(&["reload"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing changed"), "{stdout}");

    // The registry is down: the reload says so and the kept copy serves.
    registry.stop();
    let (code, stdout, stderr) = host.cli(&["reload"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("serving the copy kept from {proc}:v1 (sha256:")),
        "{stdout}"
    );
    assert_eq!(run_one(&queue, &host).await, ran_by("json-transform"));
    // And a host started while it is down serves the kept copy too.
    host.signal("TERM");
    host.wait_exit(Duration::from_secs(20))
        .expect("the host stops");
    host.start_again();
    assert!(
        host.log().contains("serving the copy kept from"),
        "{}",
        host.log()
    );
    assert_eq!(run_one(&queue, &host).await, ran_by("json-transform"));
}

/// `bullpen check <module>`: exit code, stdout, stderr.
fn check(module: &str) -> (i32, String, String) {
    let output = bullpen_tests::bullpen()
        .args(["check", module])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_are_not_their_digest_never_serve_and_bad_references_are_named() {
    let registry = OciRegistry::start();
    let redis = RedisServer::start();
    let v1 = registry.push(&guest("echo"), "acme/proc:v1");
    registry.push(&guest("custom-backoff"), "acme/proc:v2");
    let proc = registry.reference("acme/proc");
    // The registry's disk is changed under it: it serves other bytes
    // under v2's layer digest.
    let layer = format!("sha256:{}", sha256(&guest("custom-backoff")));
    std::fs::copy(guest("flaky"), registry.blob_file(&layer)).unwrap();

    // Pinned by digest.
    let host = RunningHost::start(&redis, &format!("[queues.q]\nmodule = \"{proc}@{v1}\"\n"));
    let queue = open(&redis, "q").await;
    assert_eq!(run_one(&queue, &host).await, ran_by("echo"));

    let (code, stdout, stderr) = host.cli(&["deploy", &format!("{proc}:v2"), "--queue", "q"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("{proc}:v2")), "{stderr}");
    assert!(stderr.contains(&format!("Expected {layer}")), "{stderr}");
    assert_eq!(run_one(&queue, &host).await, ran_by("echo"));
    let (code, _, stderr) = check(&format!("{proc}:v2"));
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("Expected {layer}")), "{stderr}");
    let (code, stdout, stderr) = check(&format!("{proc}:v1"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{proc}:v1 (sha256:")), "{stdout}");
    assert!(stdout.contains("ok: a bullpen:processor@"), "{stdout}");

    // A tag the registry does not have.
    let (code, _, stderr) = host.cli(&["deploy", &format!("{proc}:v9"), "--queue", "q"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("{proc}:v9: ")), "{stderr}");

    // A host whose module names a digest the registry does not have, and
    // nothing kept: it does not start, and says which queue and why.
    let missing = format!("{proc}@sha256:{}", "0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bullpen.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\n\n[queues.q]\nmodule = \"{missing}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let (ok, stderr) = start_refused(&config);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("queues.q.module: {missing}: ")),
        "{stderr}"
    );

    // A reference that is not one, at parse time.
    std::fs::write(&config, "[queues.q]\nmodule = \"oci://Registry/UPPER\"\n").unwrap();
    let (ok, stderr) = start_refused(&config);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("not an OCI reference"), "{stderr}");
}
