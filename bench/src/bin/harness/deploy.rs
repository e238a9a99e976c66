//! Deploying while jobs flow: a host drains a backlog on one module, a new
//! module file is renamed into place, and the jobs' own records tell how
//! long until the first attempt ran on it (`processedBy` names the version,
//! `processedOn` the start) and how the pace of completions changed around
//! it. Once with an empty compile cache, once with the new module in it.

use bullpen::queue::bullmq::{BulkJob, Queue};
use bullpen_tests::guest;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One deploy.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// The module deployed.
    pub module: &'static str,
    /// Whether its compiled code was in the cache.
    pub cached: bool,
    /// From the rename to the first attempt on it.
    pub to_first_attempt: Duration,
    /// Completions per second over the second before the rename...
    pub before: f64,
    /// ...and over the second after it.
    pub after: f64,
}

const BACKLOG: usize = 80_000;
const CONCURRENCY: u32 = 8;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Deploys `to` over `from` twice (empty cache, then cached) and reports
/// both.
pub async fn measure(redis_url: &str, bullpen: &Path) -> Vec<Deploy> {
    let mut deploys = Vec::new();
    for (from, to) in [("misbehave", "echo"), ("echo", "misbehave")] {
        let dir = tempfile::tempdir().unwrap();
        for cached in [false, true] {
            deploys.push(once(redis_url, bullpen, dir.path(), from, to, cached).await);
        }
    }
    deploys
}

async fn once(
    redis_url: &str,
    bullpen: &Path,
    dir: &Path,
    from: &'static str,
    to: &'static str,
    cached: bool,
) -> Deploy {
    let (_, queue) = crate::throughput::empty_queue(redis_url).await;
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::copy(guest(from), modules.join("q.wasm")).unwrap();
    let config = dir.join("bullpen.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{redis_url}\"\n\n[queues.{}]\nmodule = \"q.wasm\"\nconcurrency = {CONCURRENCY}\n",
            crate::contender::QUEUE
        ),
    )
    .unwrap();
    if !cached {
        let _ = std::fs::remove_dir_all(dir.join(".bullpen"));
    }
    queue.pause().await.unwrap();
    for start in (0..BACKLOG).step_by(500) {
        let batch = (start..BACKLOG.min(start + 500))
            .map(|i| BulkJob::new("d", serde_json::json!({"mode": "ok", "i": i})))
            .collect();
        queue.add_bulk(batch).await.unwrap();
    }
    let mut command = tokio::process::Command::new(bullpen);
    command
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env_remove("BULLPEN_LOG");
    let host = crate::contender::spawn_until(command, "taking jobs", true).await;
    queue.resume().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let renamed_at = now_ms();
    let staged = modules.join(".q.wasm.tmp");
    std::fs::copy(guest(to), &staged).unwrap();
    std::fs::rename(&staged, modules.join("q.wasm")).unwrap();
    let new_name = format!(
        "q.wasm@{}",
        &bullpen::registry::watch::file_sha256(&guest(to)).unwrap()[..12]
    );
    loop {
        if queue.get_completed_count().await.unwrap() as usize >= BACKLOG {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::contender::terminate(host).await;

    let jobs = finished_jobs(&queue).await;
    let first_new = jobs
        .iter()
        .filter(|j| j.0 == new_name)
        .map(|j| j.1)
        .min()
        .expect("no job ran on the new version");
    let rate = |from: u64, to: u64| {
        jobs.iter().filter(|j| (from..to).contains(&j.2)).count() as f64 * 1000.0
            / (to - from) as f64
    };
    queue.close().await;
    Deploy {
        module: to,
        cached,
        to_first_attempt: Duration::from_millis(first_new.saturating_sub(renamed_at)),
        before: rate(renamed_at - 1000, renamed_at),
        after: rate(renamed_at, renamed_at + 1000),
    }
}

/// Every completed job's `processedBy`, `processedOn` and `finishedOn`.
async fn finished_jobs(queue: &Queue) -> Vec<(String, u64, u64)> {
    let mut all = Vec::new();
    let mut start = 0;
    loop {
        let page = queue
            .get_jobs(&["completed"], start, start + 999, true)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        start += page.len() as i64;
        all.extend(page.into_iter().map(|job| {
            (
                job.processed_by().unwrap_or_default().to_owned(),
                job.processed_on().unwrap_or(0),
                job.finished_on().unwrap_or(0),
            )
        }));
    }
    all
}
