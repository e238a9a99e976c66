//! Start-up and idle memory: `bullpen run` on the example queues
//! (`examples/bullpen.toml`, every example guest), timed from spawning the
//! process until a job waiting on the `echo` queue is completed — cold (no
//! compile cache: every module is compiled) and warm (the cache from the
//! cold run) — and its resident memory once idle.

use crate::events::EventStream;
use crate::probe;
use bullpen::queue::RedisTarget;
use bullpen_tests::{EXAMPLES, guest, workspace_root};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Medians over the runs, and the idle memory.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    pub cold: Duration,
    pub warm: Duration,
    pub idle_rss: u64,
}

/// Where the JavaScript and Python queues of `examples/bullpen.toml` begin.
const SCRIPT_QUEUES: &str = "# Processors written in JavaScript and Python";

/// A temp dir with `examples/bullpen.toml` pointed at `redis_url`, every
/// example guest in its module directory and the templates it grants.
fn example_setup(redis_url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules")).unwrap();
    for example in EXAMPLES {
        std::fs::copy(
            guest(example),
            dir.path().join(format!("modules/{example}.wasm")),
        )
        .unwrap();
    }
    // What the example queues grant, beside the config as in examples/.
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("examples/templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), templates.join(entry.file_name())).unwrap();
    }
    // Without its metrics listener: the plain host's start, and no port to
    // share between runs. Without the JavaScript and Python queues at its
    // end: their start (a compile of ~10 s each when cold) is measured
    // apart, and these figures stay comparable with earlier runs.
    let toml = std::fs::read_to_string(workspace_root().join("examples/bullpen.toml")).unwrap();
    let toml = toml.split(SCRIPT_QUEUES).next().unwrap_or_default();
    let toml: String = toml
        .lines()
        .filter(|line| !line.starts_with("metrics ="))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = dir.path().join("bullpen.toml");
    std::fs::write(&config, format!("{toml}\n[redis]\nurl = \"{redis_url}\"\n")).unwrap();
    (dir, config)
}

/// One start: spawn, wait for the waiting job to complete; returns the time
/// it took and the process, still running.
async fn start_once(
    config: &Path,
    redis_url: &str,
    bullpen: &Path,
) -> (Duration, tokio::process::Child) {
    let queue = RedisTarget::server(redis_url.to_owned(), "bull")
        .queue("echo")
        .await
        .unwrap();
    let mut events = EventStream::open(redis_url, "echo").await;
    let job = queue
        .add("first", serde_json::json!({"hello": "world"}))
        .await
        .unwrap();
    let mut command = Command::new(bullpen);
    command
        .arg("run")
        .arg("-c")
        .arg(config)
        .env_remove("BULLPEN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command.spawn().expect("spawning bullpen");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let seen = events
        .wait_for(
            job.id(),
            &["completed"],
            "completed",
            Duration::from_secs(120),
        )
        .await;
    queue.close().await;
    (seen[0].unwrap() - spawned, child)
}

/// `runs` cold starts, each followed by a warm one on its cache.
pub async fn measure(runs: usize, redis_url: &str, bullpen: &Path) -> Startup {
    let (mut cold, mut warm, mut idle_rss) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let (_dir, config) = example_setup(redis_url);
        let (took, child) = start_once(&config, redis_url, bullpen).await;
        cold.push(took);
        crate::contender::terminate(child).await;
        let (took, child) = start_once(&config, redis_url, bullpen).await;
        warm.push(took);
        // Idle: every queue's worker waiting, nothing to do.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, _) = probe::memory(child.id().unwrap());
        idle_rss = idle_rss.max(rss);
        crate::contender::terminate(child).await;
    }
    cold.sort();
    warm.sort();
    Startup {
        cold: cold[cold.len() / 2],
        warm: warm[warm.len() / 2],
        idle_rss,
    }
}
