//! Outbound HTTP(S) (issue 13): `allowed_outbound_hosts` per queue, denied
//! by default, with the resolved-address guard, a body cap and the attempt's
//! time budget; the webhook example's outcomes against a real loopback
//! server; HTTPS against a loopback TLS server with a test CA; and the
//! other ways out of the sandbox (TCP, UDP, DNS) refused.

use bullpen::queue::bullmq::types::BackoffStrategy;
use bullpen::queue::bullmq::{Job, JobOptions, Queue};
use bullpen_tests::hook_server::{HookServer, test_certificates};
use bullpen_tests::{RedisServer, RunningHost, finished, queue as open};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

const TOKEN: &str = "hook-t0ken-5f1c";

/// The test CA's PEM, trusted by every bullpen this binary starts (through
/// `SSL_CERT_FILE`), and the server chain and key it signed.
fn certificates() -> &'static (String, String, String, tempfile::TempDir) {
    static CERTS: OnceLock<(String, String, String, tempfile::TempDir)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let (ca, chain, key) = test_certificates();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        // SAFETY: set once, before this binary starts any bullpen (children
        // inherit it); nothing in the test process reads it concurrently.
        unsafe {
            std::env::set_var("SSL_CERT_FILE", &ca_file);
            std::env::set_var("BULLPEN_TEST_HOOK_TOKEN", TOKEN);
        }
        (ca, chain, key, dir)
    })
}

fn options(attempts: u32) -> JobOptions {
    JobOptions {
        attempts: Some(attempts),
        backoff: Some(BackoffStrategy::Fixed(100)),
        ..JobOptions::default()
    }
}

/// Adds a job, waits until it finished; its state, return value and
/// failed reason.
async fn run(queue: &Queue, data: Value, attempts: u32) -> (String, Value, String, Job) {
    let id = queue
        .add("t", data)
        .options(options(attempts))
        .await
        .unwrap()
        .id()
        .to_owned();
    let (state, job) = finished(queue, &id, Duration::from_secs(20)).await;
    let value = serde_json::from_str(job.returnvalue()).unwrap_or(Value::Null);
    (state, value, job.failed_reason().to_owned(), job)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_example_turns_each_answer_into_its_bullmq_outcome() {
    certificates();
    let server = HookServer::start().await;
    let redis = RedisServer::start();
    let port = server.addr.port();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.hooks]\nmodule = \"webhook.wasm\"\nconcurrency = 4\ntimeout = \"2s\"\n\
             allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n\
             max_response_size = \"1KiB\"\n\
             secrets = {{ API_TOKEN = {{ env = \"BULLPEN_TEST_HOOK_TOKEN\" }} }}\n"
        ),
    );
    let hooks = open(&redis, "hooks").await;
    let url = |path: &str| server.url("http", path);

    // Allowed: completed with the status; the server got the body, the
    // job's id and the secret, which bullpen itself never writes.
    let payload = json!({"order": 42, "items": ["a", "b"]});
    let (state, value, why, job) =
        run(&hooks, json!({"url": url("/ok"), "payload": payload}), 1).await;
    assert_eq!(
        (state.as_str(), value),
        ("completed", json!({"status": 200})),
        "{why}\n{}",
        host.log()
    );
    let got = &server.received_on("/ok")[0];
    assert_eq!(got.method, "POST");
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap(), payload);
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["content-length"], got.body.len().to_string());
    assert_eq!(got.headers["x-bullpen-job"], job.id());
    assert_eq!(got.headers["authorization"], format!("Bearer {TOKEN}"));

    // A server that answers and closes the connection, as HTTP/1.0 servers
    // (python's http.server) do.
    let (state, value, why, _) = run(&hooks, json!({"url": url("/ok-close")}), 1).await;
    assert_eq!(
        (state.as_str(), value),
        ("completed", json!({"status": 200})),
        "{why}"
    );

    // Not allowed: another port of the same address. Refused before any
    // connection, with the URL and the reason in the failed reason.
    let other = format!("http://127.0.0.1:{}/ok", port.wrapping_add(1).max(1));
    let (state, _, why, _) = run(&hooks, json!({"url": other, "payload": 1}), 1).await;
    assert_eq!(state, "failed");
    assert!(
        why.contains(&other) && why.contains("HTTP-request-denied"),
        "{why}"
    );
    assert!(
        host.log()
            .contains("refused: not in the queue's allowed_outbound_hosts"),
        "{}",
        host.log()
    );

    // 5xx: retried with backoff until the server recovers.
    let (state, _, why, job) = run(&hooks, json!({"url": url("/fail-first/2")}), 5).await;
    assert_eq!(state, "completed", "{why}");
    assert_eq!(job.attempts_made(), 3);
    assert_eq!(server.received_on("/fail-first/2").len(), 3);
    // ... and failed once the attempts are spent, saying what it answered.
    let (state, _, why, job) = run(&hooks, json!({"url": url("/status/502")}), 2).await;
    assert_eq!(state, "failed");
    assert_eq!(job.attempts_made(), 2);
    assert!(why.contains("answered 502"), "{why}");

    // 4xx: failed at once, whatever attempts remain.
    let (state, _, why, job) = run(&hooks, json!({"url": url("/status/404")}), 5).await;
    assert_eq!(
        (state.as_str(), job.attempts_made()),
        ("failed", 1),
        "{why}"
    );
    assert!(why.contains("answered 404"), "{why}");

    // 3xx: not followed; failed for good, naming where it pointed.
    let (state, _, why, _) = run(&hooks, json!({"url": url("/redirect")}), 5).await;
    assert_eq!(state, "failed");
    assert!(
        why.contains("redirect to http://example.invalid/, not followed"),
        "{why}"
    );

    // 429: rate limited (no attempt counted), then completed.
    let started = std::time::Instant::now();
    let (state, _, why, job) = run(&hooks, json!({"url": url("/limit-first/1")}), 1).await;
    assert_eq!(state, "completed", "{why}");
    assert_eq!(
        job.attempts_made(),
        1,
        "the rate-limited attempt was counted"
    );
    assert_eq!(server.received_on("/limit-first/1").len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured"
    );

    // A server that never answers: the attempt's time budget ends it.
    let (state, _, why, _) = run(&hooks, json!({"url": url("/hang")}), 1).await;
    assert_eq!(state, "failed");
    assert_eq!(why, "timeout after 2s");

    // A body over max_response_size is cut off with its error code.
    let (state, _, why, _) = run(&hooks, json!({"url": url("/big/4096")}), 1).await;
    assert_eq!(state, "failed");
    assert!(why.contains("HTTP-response-body-size"), "{why}");

    assert!(!host.log().contains(TOKEN), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_sockets_reach_only_what_the_allowlist_names() {
    certificates();
    let server = HookServer::start().await;
    let redis = RedisServer::start();
    let port = server.addr.port();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.bare]\nmodule = \"misbehave.wasm\"\ntimeout = \"5s\"\n\
             [queues.names]\nmodule = \"misbehave.wasm\"\ntimeout = \"5s\"\n\
             # Names and wildcards, but no address: nothing private is reachable.\n\
             allowed_outbound_hosts = [\"http://localhost:{port}\", \"*://*:*\"]\n\
             [queues.literal]\nmodule = \"misbehave.wasm\"\ntimeout = \"5s\"\n\
             allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n"
        ),
    );
    let bare = open(&redis, "bare").await;
    let names = open(&redis, "names").await;
    let literal = open(&redis, "literal").await;
    let get = |url: String| json!({"mode": "http", "url": url});

    // The address named literally is reachable.
    let (state, value, why, _) = run(&literal, get(server.url("http", "/ok")), 1).await;
    assert_eq!(
        (state.as_str(), &value["status"]),
        ("completed", &json!(200)),
        "{why}\n{}",
        host.log()
    );
    assert_eq!(server.received().len(), 1);

    // No grant: every request denied, naming the URL.
    let url = server.url("http", "/ok");
    let (state, _, why, _) = run(&bare, get(url.clone()), 1).await;
    assert_eq!(state, "failed");
    assert!(
        why.contains(&url) && why.contains("HTTP-request-denied"),
        "{why}"
    );

    // An allowed name that resolves to loopback, an address only a wildcard
    // matches, the metadata service, a private network: each refused at
    // the address, before any connection.
    for url in [
        format!("http://localhost:{port}/ok"),
        server.url("http", "/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]:9/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::ffff:127.0.0.1]:9/".to_owned(),
    ] {
        let (state, _, why, _) = run(&names, get(url.clone()), 1).await;
        assert_eq!(state, "failed", "{url} was reached");
        assert!(why.contains("destination-IP-prohibited"), "{url}: {why}");
    }
    // Not allowed for this queue: another port of the literal address.
    let (state, _, why, _) = run(&literal, get(format!("http://127.0.0.1:{}/", port ^ 1)), 1).await;
    assert_eq!(state, "failed");
    assert!(why.contains("HTTP-request-denied"), "{why}");
    assert_eq!(
        server.received().len(),
        1,
        "a refused request reached the server"
    );

    // The other ways out are not granted by any key: TCP, UDP, DNS.
    let redis_addr = redis.url().trim_start_matches("redis://").to_owned();
    for (queue, data) in [
        (&names, json!({"mode": "tcp", "path": redis_addr})),
        (
            &names,
            json!({"mode": "tcp", "path": format!("127.0.0.1:{port}")}),
        ),
        (&names, json!({"mode": "udp", "path": "127.0.0.1:9"})),
        (&names, json!({"mode": "dns", "path": "localhost:80"})),
        (&bare, json!({"mode": "tcp", "path": redis_addr})),
    ] {
        let (state, value, why, _) = run(queue, data.clone(), 1).await;
        assert_eq!(state, "failed", "{data} answered {value}");
        assert!(!why.is_empty());
    }
    assert_eq!(server.received().len(), 1);
    assert!(host.log().contains("resolves to"), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_works_against_a_server_the_hosts_roots_trust_and_only_such() {
    let (_ca, chain, key, _) = certificates();
    let trusted = HookServer::start_tls(chain, key).await;
    // The same kind of certificate from a CA nobody trusts.
    let (_, rogue_chain, rogue_key) = test_certificates();
    let rogue = HookServer::start_tls(&rogue_chain, &rogue_key).await;
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.hooks]\nmodule = \"webhook.wasm\"\ntimeout = \"5s\"\n\
             allowed_outbound_hosts = [\"https://127.0.0.1:{}\", \"https://127.0.0.1:{}\"]\n",
            trusted.addr.port(),
            rogue.addr.port()
        ),
    );
    let hooks = open(&redis, "hooks").await;

    let payload = json!({"secure": true});
    let data = json!({"url": trusted.url("https", "/ok"), "payload": payload});
    let (state, value, why, _) = run(&hooks, data, 1).await;
    assert_eq!(
        (state.as_str(), value),
        ("completed", json!({"status": 200})),
        "{why}\n{}",
        host.log()
    );
    let got = trusted.received_on("/ok");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).unwrap(),
        payload
    );

    let data = json!({"url": rogue.url("https", "/ok")});
    let (state, _, why, _) = run(&hooks, data, 1).await;
    assert_eq!(state, "failed");
    assert!(why.contains("TLS-certificate-error"), "{why}");
    assert!(rogue.received().is_empty());

    // Plain HTTP to the HTTPS-only entry's port is not what was granted.
    let data = json!({"url": trusted.url("http", "/ok")});
    let (state, _, why, _) = run(&hooks, data, 1).await;
    assert_eq!(state, "failed");
    assert!(why.contains("HTTP-request-denied"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_body_written_after_the_response_is_taken() {
    // wasi:http lets a guest write a request's body at any time after
    // `handle`; hyper sends none with a GET and used to drop it at once,
    // so a guest that wrote its empty body late (or a busy guest, slower
    // than the host's connect) got `connection reset`.
    let server = HookServer::start().await;
    let redis = RedisServer::start();
    let host = RunningHost::start(
        &redis,
        &format!(
            "[queues.late]\nmodule = \"misbehave.wasm\"\ntimeout = \"5s\"\n\
             allowed_outbound_hosts = [\"http://{}\"]\n",
            server.addr
        ),
    );
    let late = open(&redis, "late").await;
    let (state, value, why, _) = run(
        &late,
        json!({"mode": "late-body", "url": server.url("http", "/ok")}),
        1,
    )
    .await;
    assert_eq!(
        (state.as_str(), &value["status"]),
        ("completed", &json!(200)),
        "{why}\n{}",
        host.log()
    );
    assert_eq!(server.received_on("/ok").len(), 1);
}
