//! The side-by-side benchmark: BullMQ's Node worker, `bullmq-official`'s
//! native worker and bullpen, each draining the same N jobs from one
//! `redis-server` the harness starts itself.
//!
//! ```sh
//! cargo run --release -p bullpen-bench --bin harness            # 20,000 jobs, 3 runs each
//! cargo run --release -p bullpen-bench --bin harness -- --quick # a few hundred jobs, 1 run
//! cargo run --release -p bullpen-bench --bin harness -- --only bullpen
//! ```
//!
//! For every run the queue is paused, N small-JSON jobs are added with
//! `addBulk`, the contender is started and waits as a registered worker, and
//! the clock runs from `resume` until all N are completed. Redis is flushed
//! between runs; each case reports the median of its runs.

use bullpen::queue::RedisTarget;
use bullpen::queue::bullmq::{BulkJob, Job, Queue, Worker, WorkerOptions};
use bullpen_tests::{RedisServer, bullpen_release_binary, guest, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const QUEUE: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    NodeInProcess,
    NodeProcesses,
    NodeThreads,
    Native,
    Bullpen,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::NodeInProcess => "BullMQ Node, in-process",
            Contender::NodeProcesses => "BullMQ Node, sandboxed (child processes)",
            Contender::NodeThreads => "BullMQ Node, sandboxed (worker threads)",
            Contender::Native => "bullmq-official, native closure",
            Contender::Bullpen => "bullpen, echo guest",
        }
    }
}

struct Options {
    jobs: usize,
    runs: usize,
    bullpen: PathBuf,
}

/// A started contender, stopped by `stop`.
enum Running {
    /// A child process, and the temp dir of its config if it has one.
    Process(Box<(Child, Option<tempfile::TempDir>)>),
    InProcess(Box<Worker>),
}

impl Running {
    async fn stop(self) {
        match self {
            Running::Process(process) => {
                let (mut child, _dir) = *process;
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
            Running::InProcess(worker) => {
                let _ = worker.close(5_000).await;
            }
        }
    }
}

/// Spawns `command` and waits until a line of its `stdout` (or `stderr`)
/// contains `ready`.
async fn spawn_until(mut command: Command, ready: &str, on_stderr: bool) -> Child {
    command.stdin(Stdio::null()).kill_on_drop(true);
    if on_stderr {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = command.spawn().expect("spawning a contender");
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
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn start(
    contender: Contender,
    concurrency: usize,
    redis: &RedisServer,
    options: &Options,
) -> Running {
    let target = RedisTarget {
        url: redis.url(),
        prefix: "bull".into(),
    };
    match contender {
        Contender::NodeInProcess | Contender::NodeProcesses | Contender::NodeThreads => {
            let mode = match contender {
                Contender::NodeInProcess => "inprocess",
                Contender::NodeProcesses => "processes",
                _ => "threads",
            };
            let mut command = Command::new("node");
            command
                .arg(workspace_root().join("bench/node/worker.mjs"))
                .env("REDIS_URL", redis.url())
                .env("QUEUE", QUEUE)
                .env("CONCURRENCY", concurrency.to_string())
                .env("MODE", mode);
            Running::Process(Box::new((spawn_until(command, "ready", false).await, None)))
        }
        Contender::Native => {
            let mut worker_options = WorkerOptions::new();
            worker_options.connection = target.connection();
            worker_options.concurrency = concurrency;
            let worker = Worker::with_options(
                QUEUE,
                |_job: Job, _cancel| async { Ok(serde_json::Value::Null) },
                worker_options,
            )
            .await
            .expect("starting the native worker");
            Running::InProcess(Box::new(worker))
        }
        Contender::Bullpen => {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("modules")).unwrap();
            std::fs::copy(guest("echo"), dir.path().join("modules/echo.wasm")).unwrap();
            let config = dir.path().join("bullpen.toml");
            std::fs::write(
                &config,
                format!(
                    "[redis]\nurl = \"{}\"\n\n[queues.{QUEUE}]\nmodule = \"echo.wasm\"\nconcurrency = {concurrency}\n",
                    redis.url()
                ),
            )
            .unwrap();
            let mut command = Command::new(&options.bullpen);
            command
                .arg("run")
                .arg("-c")
                .arg(&config)
                .env_remove("BULLPEN_LOG");
            let child = spawn_until(command, "taking jobs", true).await;
            Running::Process(Box::new((child, Some(dir))))
        }
    }
}

async fn flush(redis: &RedisServer) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
}

async fn add_paused(queue: &Queue, jobs: usize) {
    queue.pause().await.unwrap();
    for start in (0..jobs).step_by(1000) {
        let batch = (start..jobs.min(start + 1000))
            .map(|i| {
                BulkJob::new(
                    "bench",
                    serde_json::json!({"id": i, "user": "ada@example.com", "tags": ["a", "b"]}),
                )
            })
            .collect();
        queue.add_bulk(batch).await.unwrap();
    }
}

/// One run: jobs per second.
async fn run_once(
    contender: Contender,
    concurrency: usize,
    redis: &RedisServer,
    options: &Options,
) -> f64 {
    flush(redis).await;
    let queue = RedisTarget {
        url: redis.url(),
        prefix: "bull".into(),
    }
    .queue(QUEUE)
    .await
    .unwrap();
    add_paused(&queue, options.jobs).await;
    let running = start(contender, concurrency, redis, options).await;
    let started = Instant::now();
    queue.resume().await.unwrap();
    let deadline = started + Duration::from_secs(600);
    loop {
        let done = queue.get_completed_count().await.unwrap() as usize;
        if done >= options.jobs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{contender:?}: {done} of {} after 600 s",
            options.jobs
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    running.stop().await;
    queue.close().await;
    options.jobs as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ensure_node_deps() {
    let dir = workspace_root().join("bench/node");
    if !dir.join("node_modules/bullmq").exists() {
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to benchmark BullMQ's Node worker");
        assert!(status.success(), "npm install in bench/node failed");
    }
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    Options {
        jobs: value("--jobs")
            .map(|v| v.parse().expect("--jobs N"))
            .unwrap_or(if quick { 300 } else { 20_000 }),
        runs: value("--runs")
            .map(|v| v.parse().expect("--runs N"))
            .unwrap_or(if quick { 1 } else { 3 }),
        bullpen: value("--bullpen")
            .map(PathBuf::from)
            .unwrap_or_else(bullpen_release_binary),
    }
}

#[tokio::main]
async fn main() {
    let options = parse_options();
    ensure_node_deps();
    let redis = RedisServer::start();
    let cases: Vec<(Contender, usize)> = vec![
        (Contender::NodeInProcess, 1),
        (Contender::NodeInProcess, 8),
        (Contender::NodeInProcess, 64),
        (Contender::NodeProcesses, 8),
        (Contender::NodeThreads, 8),
        (Contender::Native, 1),
        (Contender::Native, 8),
        (Contender::Native, 64),
        (Contender::Bullpen, 1),
        (Contender::Bullpen, 8),
        (Contender::Bullpen, 64),
    ];
    // `--only bullpen` (or any label prefix, case-insensitive) runs a subset.
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .map(|o| o.to_lowercase());
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(c, _)| {
            only.as_ref()
                .is_none_or(|o| c.label().to_lowercase().starts_with(o))
        })
        .collect();
    let mut results: Vec<(Contender, usize, f64)> = Vec::new();
    for (contender, concurrency) in cases {
        let mut rates = Vec::new();
        for _ in 0..options.runs {
            rates.push(run_once(contender, concurrency, &redis, &options).await);
        }
        let rate = median(rates);
        eprintln!("{} @ {concurrency}: {rate:.0} jobs/s", contender.label());
        results.push((contender, concurrency, rate));
    }
    let node_at = |c: usize| {
        results
            .iter()
            .find(|(k, cc, _)| *k == Contender::NodeInProcess && *cc == c)
            .map(|(_, _, r)| *r)
    };
    println!(
        "{} jobs per run, median of {} run(s), one redis-server ({}), {}",
        options.jobs,
        options.runs,
        redis_version(),
        Path::new(&options.bullpen).display()
    );
    println!();
    println!("| contender | concurrency | jobs/s | vs Node in-process |");
    println!("|---|---|---|---|");
    for (contender, concurrency, rate) in &results {
        let ratio = node_at(*concurrency).map_or("—".to_owned(), |n| format!("{:.2}×", rate / n));
        println!(
            "| {} | {concurrency} | {rate:.0} | {ratio} |",
            contender.label()
        );
    }
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
