//! The contenders and the cases they run: each contender is a process of its
//! own (the native crate too, as this binary in its `--native-worker` role),
//! so its CPU and memory can be read from `/proc`.

use bullpen_tests::{guest, script_guest_built_by, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The queue every contender works on.
pub const QUEUE: &str = "bench";

/// The loopback server `webhook` jobs post to (`http://127.0.0.1:PORT`),
/// started by `main` when a case needs it.
pub static HOOK_SERVER: OnceLock<String> = OnceLock::new();

/// Whether contenders are kept off Redis's core (`--pin`).
pub static PINNED: OnceLock<bool> = OnceLock::new();

/// Pins the Redis server at `url` to the first core (`taskset`), and has
/// every contender started from now on kept off it.
pub async fn pin_redis(url: &str) {
    assert!(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "--pin needs at least 2 cores"
    );
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .unwrap();
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server gives the process id")
        .trim()
        .to_owned();
    taskset(&["-apc", "0", &pid]);
    PINNED.set(true).unwrap();
}

/// Keeps process `pid` (all its threads, and what they start) off core 0.
fn pin_contender(pid: u32) {
    let last = std::thread::available_parallelism().map_or(2, |n| n.get()) - 1;
    taskset(&["-apc", &format!("1-{last}"), &pid.to_string()]);
}

fn taskset(args: &[&str]) {
    let status = std::process::Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("taskset (util-linux) is needed for --pin");
    assert!(status.success(), "taskset {args:?} failed");
}

/// The `bullpen` binary of `--baseline`, when given.
pub static BASELINE: OnceLock<PathBuf> = OnceLock::new();

/// Who drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    NodeInProcess,
    NodeProcesses,
    NodeThreads,
    Native,
    Bullpen,
    /// bullpen with `environment`, `files` and `allowed_outbound_hosts`
    /// granted (the processor uses none of them): what granting costs.
    BullpenGranted,
    /// The `--baseline` binary, with the same config as `Bullpen`.
    BullpenBaseline,
    /// bullpen with `[host] metrics` set: what recording metrics costs.
    BullpenMetrics,
    /// bullpen running `bench/node/noop.js`, the file the sandboxed Node
    /// contenders run, componentized (no-op work only).
    BullpenJs,
    /// bullpen running `bench/python/noop.py` componentized (no-op only).
    BullpenPython,
    /// `Bullpen` with `max_instance_reuse_count` set: what reuse does for
    /// (or costs) a Rust guest.
    BullpenReused,
    /// `BullpenJs` with `max_instance_reuse_count` set.
    BullpenJsReused,
    /// `BullpenPython` with `max_instance_reuse_count` set.
    BullpenPythonReused,
}

/// The `max_instance_reuse_count` of the reusing contenders: high enough
/// that a run's instances are never dropped for their count.
const REUSE_COUNT: u32 = 1_000_000;

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::NodeInProcess => "BullMQ Node, in-process",
            Contender::NodeProcesses => "BullMQ Node, sandboxed (child processes)",
            Contender::NodeThreads => "BullMQ Node, sandboxed (worker threads)",
            Contender::Native => "bullmq-official, native closure",
            Contender::Bullpen => "bullpen",
            Contender::BullpenGranted => "bullpen, all three grants",
            Contender::BullpenBaseline => "bullpen, --baseline binary",
            Contender::BullpenMetrics => "bullpen, metrics on",
            Contender::BullpenJs => "bullpen, JavaScript (the same file)",
            Contender::BullpenPython => "bullpen, Python",
            Contender::BullpenReused => "bullpen, reused instances",
            Contender::BullpenJsReused => "bullpen, JavaScript, reused instances",
            Contender::BullpenPythonReused => "bullpen, Python, reused instances",
        }
    }
}

/// What each job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing: the processor returns the job's data at once (bullpen: the
    /// `echo` guest).
    Noop,
    /// The `json-transform` guest's work on 100 records (Node: the same
    /// work in JavaScript, `bench/node/transform.mjs`).
    Transform,
    /// POST the job's payload to a loopback HTTP server and return the
    /// status (bullpen: the `webhook` guest; Node: `fetch`).
    Webhook,
}

impl Work {
    pub fn label(self) -> &'static str {
        match self {
            Work::Noop => "no-op",
            Work::Transform => "json-transform",
            Work::Webhook => "webhook",
        }
    }

    /// The JavaScript file BullMQ's sandboxes and bullpen's JavaScript
    /// contenders run.
    fn script(self) -> &'static str {
        match self {
            Work::Transform => "bench/node/transform-sandboxed.js",
            _ => "bench/node/noop.js",
        }
    }

    /// The `WORK` variable a Node or native contender reads.
    fn env_value(self) -> &'static str {
        match self {
            Work::Noop => "noop",
            Work::Transform => "transform",
            Work::Webhook => "webhook",
        }
    }
}

/// One row of the throughput table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub contender: Contender,
    pub work: Work,
    pub concurrency: usize,
}

/// A started contender; `stop` ends it.
pub struct Running {
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the contender is running")
    }

    pub async fn stop(self) {
        terminate(self.child).await;
    }
}

/// `bullpen run` on `queues` (tables after `[redis] url`), with the
/// examples `modules` in its `modules/`: its directory and process, once it
/// takes jobs.
pub async fn bullpen_host(
    redis_url: &str,
    queues: &str,
    modules: &[&str],
    bullpen: &Path,
) -> (tempfile::TempDir, Child) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    for module in modules {
        std::fs::copy(
            guest(module),
            dir.path().join(format!("modules/{module}.wasm")),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("bullpen.toml"),
        format!("[redis]\nurl = \"{redis_url}\"\n\n{queues}"),
    )
    .unwrap();
    let mut command = Command::new(bullpen);
    command
        .arg("run")
        .arg("-c")
        .arg(dir.path().join("bullpen.toml"))
        .env_remove("BULLPEN_LOG");
    let child = spawn_until(command, "taking jobs", true).await;
    (dir, child)
}

/// SIGTERM, then SIGKILL after 10 s.
pub async fn terminate(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Spawns `command` and waits until a line of its stdout (or stderr)
/// contains `ready`, then keeps draining that stream.
pub async fn spawn_until(mut command: Command, ready: &str, on_stderr: bool) -> Child {
    command.stdin(Stdio::null()).kill_on_drop(true);
    if on_stderr {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = command.spawn().expect("spawning a contender");
    if PINNED.get() == Some(&true) {
        pin_contender(child.id().expect("just spawned"));
    }
    let stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if on_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let mut lines = BufReader::new(stream).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(ready) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the contender did not get ready");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// The component `case`'s bullpen runs, built by `bullpen` on first use
/// (the harness asks for every case's before its first round, so that no
/// build runs beside a case being measured); `None` for the other
/// contenders.
pub fn module(case: Case, bullpen: &Path) -> Option<PathBuf> {
    let example = match case.work {
        Work::Noop => "echo",
        Work::Transform => "json-transform",
        Work::Webhook => "webhook",
    };
    match case.contender {
        Contender::NodeInProcess
        | Contender::NodeProcesses
        | Contender::NodeThreads
        | Contender::Native => None,
        Contender::BullpenJs | Contender::BullpenJsReused => {
            Some(script_guest_built_by(case.work.script(), bullpen))
        }
        Contender::BullpenPython | Contender::BullpenPythonReused => {
            Some(script_guest_built_by("bench/python/noop.py", bullpen))
        }
        Contender::Bullpen
        | Contender::BullpenGranted
        | Contender::BullpenBaseline
        | Contender::BullpenMetrics
        | Contender::BullpenReused => Some(guest(example)),
    }
}

/// Starts `case`'s contender on `redis_url` and returns once it is a
/// registered worker waiting for jobs.
pub async fn start(case: Case, redis_url: &str, bullpen: &Path) -> Running {
    // `BULLPEN_WORKERS=N` sets the bullpen queue's `workers` (else its
    // default), at most the case's concurrency: bullpen refuses more.
    let workers = std::env::var("BULLPEN_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .map(|w| format!("workers = {}\n", w.clamp(1, case.concurrency)))
        .unwrap_or_default();
    let concurrency = case.concurrency.to_string();
    match case.contender {
        Contender::NodeInProcess | Contender::NodeProcesses | Contender::NodeThreads => {
            let mode = match case.contender {
                Contender::NodeInProcess => "inprocess",
                Contender::NodeProcesses => "processes",
                _ => "threads",
            };
            let mut command = Command::new("node");
            command
                .arg(workspace_root().join("bench/node/worker.mjs"))
                .env("REDIS_URL", redis_url)
                .env("QUEUE", QUEUE)
                .env("CONCURRENCY", &concurrency)
                .env("MODE", mode)
                .env("WORK", case.work.env_value());
            Running {
                child: spawn_until(command, "ready", false).await,
                _dir: None,
            }
        }
        Contender::Native => {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .arg("--native-worker")
                .env("REDIS_URL", redis_url)
                .env("CONCURRENCY", &concurrency)
                .env("WORK", case.work.env_value());
            Running {
                child: spawn_until(command, "ready", false).await,
                _dir: None,
            }
        }
        Contender::Bullpen
        | Contender::BullpenGranted
        | Contender::BullpenBaseline
        | Contender::BullpenMetrics
        | Contender::BullpenJs
        | Contender::BullpenPython
        | Contender::BullpenReused
        | Contender::BullpenJsReused
        | Contender::BullpenPythonReused => {
            let module = module(case, bullpen).expect("a bullpen case has a module");
            let reuse = match case.contender {
                Contender::BullpenReused
                | Contender::BullpenJsReused
                | Contender::BullpenPythonReused => {
                    format!("max_instance_reuse_count = {REUSE_COUNT}\n")
                }
                _ => String::new(),
            };
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("modules")).unwrap();
            std::fs::create_dir_all(dir.path().join("granted")).unwrap();
            std::fs::copy(module, dir.path().join("modules/guest.wasm")).unwrap();
            let mut grants = String::new();
            if let Some(server) = HOOK_SERVER.get().filter(|_| case.work == Work::Webhook) {
                grants += &format!("allowed_outbound_hosts = [\"{server}\"]\n");
            }
            if case.contender == Contender::BullpenGranted {
                grants += "environment = { REGION = \"eu-west-1\" }\n\
                           files = [{ source = \"granted\", destination = \"/granted\" }]\n\
                           allowed_outbound_hosts = [\"https://hooks.example.com\"]\n";
            }
            let host = if case.contender == Contender::BullpenMetrics {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .unwrap()
                    .port();
                format!("[host]\nmetrics = \"127.0.0.1:{port}\"\n\n")
            } else {
                String::new()
            };
            let config = dir.path().join("bullpen.toml");
            std::fs::write(
                &config,
                format!(
                    "[redis]\nurl = \"{redis_url}\"\n\n{host}[queues.{QUEUE}]\nmodule = \"guest.wasm\"\nconcurrency = {concurrency}\n{workers}{reuse}{grants}",
                ),
            )
            .unwrap();
            let binary = match case.contender {
                Contender::BullpenBaseline => BASELINE.get().expect("--baseline").as_path(),
                _ => bullpen,
            };
            let mut command = Command::new(binary);
            command
                .arg("run")
                .arg("-c")
                .arg(&config)
                .env_remove("BULLPEN_LOG");
            Running {
                child: spawn_until(command, "taking jobs", true).await,
                _dir: Some(dir),
            }
        }
    }
}

/// The native contender's process: a `bullmq-official` worker whose closure
/// returns the job's data, run until SIGTERM.
pub async fn native_worker() {
    use bullpen::queue::RedisTarget;
    use bullpen::queue::bullmq::{Job, Worker, WorkerOptions};
    {
        let url = std::env::var("REDIS_URL").expect("REDIS_URL");
        let concurrency = std::env::var("CONCURRENCY").map_or(1, |c| c.parse().unwrap());
        let target = RedisTarget::server(url, "bull");
        let mut options = WorkerOptions::new();
        options.connection = target.connection();
        // `NATIVE_CONFIG="<toml lines>"`: the options bullpen gives its
        // workers for a queue with those lines (and its worker name), to
        // tell what bullpen costs Redis from what its options do.
        if let Ok(lines) = std::env::var("NATIVE_CONFIG") {
            let config = bullpen::config::Config::parse(
                "bench.toml".as_ref(),
                &format!("[queues.{QUEUE}]\nmodule = \"echo.wasm\"\n{lines}\n"),
            )
            .expect("NATIVE_CONFIG");
            options = bullpen::worker::worker_options(config.queue(QUEUE).unwrap(), &target);
            options.name = Some("echo.wasm@000000000000".into());
        }
        options.concurrency = concurrency;
        // `NATIVE_LIMITER=1`: the never-limiting limiter a bullpen worker
        // gets once its queue is rate limited, to measure what it costs Redis.
        if std::env::var_os("NATIVE_LIMITER").is_some() {
            options.limiter = Some(bullpen::queue::bullmq::RateLimiterOptions {
                max: 9_007_199_254_740_991,
                duration: 1_000,
            });
        }
        // `transform`: the guest's own code, natively, on the job's data as
        // text, as bullpen hands it over: what the crate costs around the
        // work, without the sandbox.
        let transform = std::env::var("WORK").is_ok_and(|w| w == "transform");
        let worker = Worker::with_options(
            QUEUE,
            move |job: Job, _cancel| async move {
                if !transform {
                    // What the `echo` guest does: Redis stores the same
                    // return value for every contender.
                    return Ok(job.data().clone());
                }
                let data = serde_json::to_string(job.data())?;
                let answer = json_transform::transform(&data)
                    .map_err(bullpen::queue::bullmq::Error::ProcessingError)?;
                Ok(serde_json::from_str(&answer)?)
            },
            options,
        )
        .await
        .expect("starting the native worker");
        println!("ready");
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        let _ = worker.close(5_000).await;
    }
}
