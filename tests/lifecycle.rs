//! `bullpen run` starting, refusing bad configs, and stopping: SIGTERM with
//! and without jobs in flight, and `kill -9` mid-job.

use bullpen::queue::bullmq::Queue;
use bullpen_tests::{
    RedisServer, RunningHost, bullpen, free_port, guest, http_get as probe, queue as open,
    try_http_get, wait_for_state,
};
use redis::AsyncCommands;
use serde_json::json;
use std::time::{Duration, Instant};

async fn state(queue: &Queue, id: &str) -> &'static str {
    bullpen::queue::state_name(&queue.get_job_state(id).await.unwrap())
}

async fn wait_for(queue: &Queue, id: &str, wanted: &str, timeout: Duration) {
    wait_for_state(queue, id, &[wanted], timeout).await;
}

fn run_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let modules = dir.path().join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::copy(guest("echo"), modules.join("echo.wasm")).unwrap();
    std::fs::write(modules.join("garbage.wasm"), "not wasm").unwrap();
    let path = dir.path().join("bullpen.toml");
    std::fs::write(&path, config).unwrap();
    let output = bullpen().arg("run").arg("-c").arg(&path).output().unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&*dir.path().to_string_lossy(), "DIR");
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_configs_are_refused_with_file_line_and_reason() {
    let cases = [
        (
            "[queues.q]\nmodule = \"echo.wasm\"\nconcurency = 2\n",
            "bullpen: DIR/bullpen.toml:3:1: unknown field `concurency`",
        ),
        (
            "[queues.q]\nmodule = \"echo.wasm\"\ntimeout = \"fast\"\n",
            "bullpen: DIR/bullpen.toml:3:11: `fast` is not a duration",
        ),
        (
            "[queues.q]\nmodule = \"gone.wasm\"\n",
            "bullpen: DIR/bullpen.toml:2:10: queues.q.module: DIR/modules/gone.wasm: cannot read: No such file or directory",
        ),
        (
            "[queues.q]\nmodule = \"garbage.wasm\"\n",
            "bullpen: DIR/bullpen.toml:2:10: queues.q.module: DIR/modules/garbage.wasm: not a WebAssembly file",
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = run_with(config);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.starts_with(expected),
            "expected {expected}\ngot {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let output = bullpen()
        .args(["run", "-c", "/nonexistent/bullpen.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("bullpen: /nonexistent/bullpen.toml: cannot read the configuration: ")
    );
}

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once_whatever_the_number_of_queues() {
    let redis = RedisServer::start();
    let mut queues: String = (0..6)
        .map(|i| format!("[queues.q{i}]\nmodule = \"echo.wasm\"\n\n"))
        .collect();
    // And a queue of several workers: each has its own blocking pop to wake.
    queues.push_str("[queues.wide]\nmodule = \"echo.wasm\"\nconcurrency = 8\nworkers = 4\n");
    let mut host = RunningHost::start(&redis, &queues);
    // Let every worker settle into its idle blocking wait.
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    host.signal("TERM");
    let status = host
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits");
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", host.log());
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?} with 7 idle queues of 10 workers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_job_in_flight_finish() {
    let redis = RedisServer::start();
    let mut host = RunningHost::start(&redis, "[queues.slow]\nmodule = \"misbehave.wasm\"\n");
    let queue = open(&redis, "slow").await;
    let job = queue
        .add("slow", json!({"mode": "work", "ms": 1500}))
        .await
        .unwrap();
    wait_for(&queue, job.id(), "active", Duration::from_secs(10)).await;
    host.signal("TERM");
    let status = host
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits");
    assert!(status.success());
    assert_eq!(state(&queue, job.id()).await, "completed", "{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_still_running_at_the_grace_deadline_is_not_lost() {
    let redis = RedisServer::start();
    let mut host = RunningHost::start(
        &redis,
        "[queues.slow]\nmodule = \"misbehave.wasm\"\ntimeout = \"1m\"\nlock_duration = \"2s\"\nstalled_interval = \"1s\"\n",
    );
    let config = host.dir.path().join("bullpen.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("shutdown_grace = \"5s\"", "shutdown_grace = \"500ms\""),
    )
    .unwrap();
    host.start_again();
    let queue = open(&redis, "slow").await;
    let job = queue
        .add("slow", json!({"mode": "work", "ms": 3000}))
        .await
        .unwrap();
    wait_for(&queue, job.id(), "active", Duration::from_secs(10)).await;
    let signalled = Instant::now();
    host.signal("TERM");
    assert!(
        host.wait_exit(Duration::from_secs(5)).is_some(),
        "the host exits after its grace"
    );
    // Grace (500 ms) honoured to within a second.
    assert!(
        signalled.elapsed() < Duration::from_millis(1500),
        "exited {:?} after SIGTERM",
        signalled.elapsed()
    );
    let log = host.log();
    assert!(
        log.contains("1 job(s) still running at the end of the shutdown grace are left to the stalled checker")
            && log.contains(&format!("them back in the queue: {}", job.id())),
        "{log}"
    );
    assert_eq!(
        state(&queue, job.id()).await,
        "active",
        "left to the stalled checker"
    );
    host.start_again();
    wait_for(&queue, job.id(), "completed", Duration::from_secs(15)).await;
}

async fn completed_events(queue: &Queue, id: &str) -> usize {
    let mut connection = queue.connection().connection();
    let entries: Vec<(String, Vec<(String, String)>)> =
        connection.xrange_all(queue.keys().events()).await.unwrap();
    entries
        .iter()
        .filter(|(_, fields)| {
            fields.contains(&("event".into(), "completed".into()))
                && fields.contains(&("jobId".into(), id.into()))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_job_the_next_host_completes_it_once() {
    let redis = RedisServer::start();
    let mut host = RunningHost::start(
        &redis,
        "[queues.slow]\nmodule = \"misbehave.wasm\"\nlock_duration = \"3s\"\n",
    );
    let queue = open(&redis, "slow").await;
    let job = queue
        .add("slow", json!({"mode": "work", "ms": 2000}))
        .await
        .unwrap();
    wait_for(&queue, job.id(), "active", Duration::from_secs(10)).await;
    host.signal("KILL");
    let killed = Instant::now();
    host.wait_exit(Duration::from_secs(5)).expect("killed");
    host.start_again();
    wait_for(&queue, job.id(), "completed", Duration::from_secs(30)).await;
    let took = killed.elapsed();
    // lock_duration + 5 s.
    assert!(
        took < Duration::from_secs(8),
        "the job came back after {took:?}"
    );
    let job = queue.get_job(job.id()).await.unwrap().unwrap();
    assert_eq!(job.attempts_started(), 2);
    assert_eq!(
        completed_events(&queue, job.id()).await,
        1,
        "completed exactly once"
    );
    // The recovery is said, naming the job.
    let log = host.log();
    assert!(
        log.lines().any(|l| l.contains("runs again after stalling")
            && l.contains(&format!("job_id=\"{}\"", job.id()))),
        "{log}"
    );
}

fn cli(host: &RunningHost, args: &[&str]) -> String {
    let (code, stdout, stderr) = host.cli(args);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

#[test]
fn the_embedded_redis_keeps_jobs_across_restarts() {
    let mut host = RunningHost::start_embedded("[queues.later]\nmodule = \"echo.wasm\"\n");
    let id = cli(&host, &["add", "later", "{\"x\":1}", "--delay", "1h"]);
    let id = id.trim();
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(10)).unwrap().success());
    assert!(
        !host.dir.path().join(".bullpen/redis/redis.sock").exists(),
        "the embedded redis-server stopped with the host"
    );
    host.start_again();
    let jobs = cli(&host, &["jobs", "later", "--state", "delayed"]);
    assert!(
        jobs.lines().any(|l| l.starts_with(&format!("{id} "))),
        "{jobs}"
    );
}

#[test]
fn a_killed_host_takes_its_embedded_redis_with_it() {
    let mut host = RunningHost::start_embedded("[queues.later]\nmodule = \"echo.wasm\"\n");
    let id = cli(&host, &["add", "later", "{\"x\":1}", "--delay", "1h"]);
    let dir_name = host.dir.path().file_name().unwrap().to_string_lossy();
    let server = process_whose_command_line_has(&format!("{dir_name}/.bullpen/redis/redis.sock"))
        .expect("the embedded redis-server runs");

    host.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(server) {
        assert!(
            Instant::now() < deadline,
            "redis-server {server} outlived its host, killed with SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The server synced its append-only file on the way out: the next host
    // finds the job.
    host.start_again();
    let jobs = cli(&host, &["jobs", "later", "--state", "delayed"]);
    assert!(
        jobs.lines()
            .any(|l| l.starts_with(&format!("{} ", id.trim()))),
        "{jobs}"
    );
}

/// The pid of a process whose command line contains `needle`.
fn process_whose_command_line_has(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&command)
                .contains(needle)
                .then_some(pid)
        })
}

/// Whether `pid` is alive: neither gone nor a zombie nobody reaped.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn readyz_follows_redis_and_shutdown_while_healthz_stays_up() {
    let mut redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    // The line lands in the helper's `[host]` table.
    let mut host = RunningHost::start(
        &redis,
        &format!("metrics = \"{addr}\"\n\n[queues.echo]\nmodule = \"echo.wasm\"\n"),
    );
    assert_eq!(probe(&addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(probe(&addr, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(probe(&addr, "/metricz").0, 404);

    redis.stop();
    let (status, body) = probe(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: Redis does not answer"),
        "{body}"
    );
    assert_eq!(probe(&addr, "/healthz").0, 200);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe(&addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    host.signal("TERM");
    assert!(host.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn readyz_is_not_ready_while_modules_compile() {
    let redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    // Compiling misbehave (the largest example) with an empty cache in a
    // debug build takes seconds; the probe listener is up before it starts.
    let host = RunningHost::launch(
        &redis,
        &format!("metrics = \"{addr}\"\n\n[queues.m]\nmodule = \"misbehave.wasm\"\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break probe(&addr, "/readyz");
        }
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        first,
        (
            503,
            "not ready: starting: loading modules or waiting for Redis\n".to_owned()
        )
    );
    assert_eq!(probe(&addr, "/healthz").0, 200);
    while probe(&addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "{}", host.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_metrics_address_in_use_stops_the_start_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, stderr) = run_with(&format!(
        "[host]\nmetrics = \"{addr}\"\n\n[queues.q]\nmodule = \"{}\"\n",
        guest("echo").display()
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "[host] metrics = \"{addr}\": cannot listen there: "
        )),
        "{stderr}"
    );
}

/// A database Redis does not have stops the start at once, naming the
/// key's line, rather than waiting for a Redis that will never accept it;
/// one no Redis can have is refused with the rest of the config.
#[test]
fn a_database_redis_refuses_stops_the_start_naming_the_key() {
    let redis = RedisServer::start();
    // A test server has Redis's default 16 databases.
    let url = format!("{}/20", redis.url().trim_end_matches('/'));
    let (code, stderr) = run_with(&format!(
        "[redis]\nurl = \"{url}\"\n\n[queues.q]\nmodule = \"echo.wasm\"\n"
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "bullpen: DIR/bullpen.toml:2:7: redis.url: Redis refuses the database it names"
        ) && stderr.contains("DB index is out of range"),
        "{stderr}"
    );
    let (code, stderr) = run_with(&format!(
        "[redis]\nurl = \"{}/99999999999\"\n\n[queues.q]\nmodule = \"echo.wasm\"\n",
        redis.url().trim_end_matches('/')
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "bullpen: DIR/bullpen.toml:2:7: redis.url: database 99999999999 is out of range"
        ),
        "{stderr}"
    );
}

#[test]
fn too_few_open_files_for_the_queues_is_said_at_once_with_what_is_needed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    std::fs::copy(guest("echo"), dir.path().join("modules/echo.wasm")).unwrap();
    // 20 queues of 4 workers: 180 connections, over a limit of 128.
    let mut config = format!("[redis]\nurl = \"{}\"\n\n", redis.url());
    for i in 0..20 {
        config += &format!("[queues.q{i}]\nmodule = \"echo.wasm\"\nconcurrency = 16\n\n");
    }
    let path = dir.path().join("bullpen.toml");
    std::fs::write(&path, config).unwrap();
    let binary = bullpen().get_program().to_owned();
    let started = Instant::now();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" run -c \"$1\"")
        .arg(binary)
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the queues hold about 180 Redis connections (1 + 2 × workers per queue, one more \
             per queue a processor adds to: docs/CONFIG.md), and this process may open only 128 \
             files; raise the limit (`ulimit -n 512`"
        ),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
}

/// `GET path`'s status, or `None` when the listener does not answer.
fn try_get(addr: &str, path: &str) -> Option<u16> {
    try_http_get(addr, path).ok().map(|(status, _)| status)
}

/// CPU seconds process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// More idle and half-sent connections to the metrics listener than the
/// host may open files: `/healthz` still answers (the oldest connections
/// are closed to make room), the accept loop does not spin, and jobs go on.
#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_listener_cannot_be_choked() {
    let redis = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    std::fs::copy(guest("echo"), dir.path().join("modules/echo.wasm")).unwrap();
    let config = dir.path().join("bullpen.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{}\"\n[host]\nmetrics = \"{addr}\"\n[queues.echo]\nmodule = \"echo.wasm\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    // A limit of 256 open files, well below the connections opened.
    let host = KillOnDrop(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" run -c \"$1\"")
            .arg(bullpen().get_program())
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while try_get(&addr, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "not ready:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut held = Vec::new();
    for i in 0..400 {
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i} refused ({e}): the listener is choked"));
        if i % 2 == 0 {
            // Half a request, never finished.
            use std::io::Write;
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        }
        held.push(stream);
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while try_get(&addr, "/healthz") != Some(200) {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            Instant::now() < deadline,
            "/healthz does not answer:\n{}",
            log()
        );
    }
    // Not spinning: some second within the deadline takes less than half
    // a core (an accept loop that retries at once takes all of one).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (before, at) = (cpu_seconds(host.0.id()), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let used = (cpu_seconds(host.0.id()) - before) / at.elapsed().as_secs_f64();
        if used < 0.5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host uses {used:.2} of a core"
        );
    }
    let queue = open(&redis, "echo").await;
    for n in 0..20 {
        let id = queue
            .add("j", json!({ "n": n }))
            .await
            .unwrap()
            .id()
            .to_owned();
        wait_for(&queue, &id, "completed", Duration::from_secs(20)).await;
    }
    let (status, metrics) = probe(&addr, "/metrics");
    assert_eq!(status, 200);
    let evicted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("bullpen_listener_evictions_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(evicted > 0, "{metrics}");
    drop(held);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
