//! Micro-benchmark of the sandbox: what one job costs, sandbox included.
//!
//! Each iteration is a whole job as `bullpen run` does it: a fresh store and
//! instance, the call, the drop, with the time budget and the memory cap on.
//! Prints medians and p99s as a markdown table (for docs/BENCHMARKS.md).
//!
//! ```sh
//! cargo bench -p bullpen-bench --bench sandbox            # full run
//! cargo bench -p bullpen-bench --bench sandbox -- --quick # a few hundred jobs
//! cargo bench -p bullpen-bench --bench sandbox -- --scripts # JavaScript and Python only
//! ```

use bullpen::config::{FileGrant, GrantsConfig};
use bullpen::sandbox::grants::{EnvironmentConfig, Grants, HttpConfig};
use bullpen::sandbox::{
    CallOptions, Ignore, Instances, JobObserver, Module, Reuse, Sandbox, SandboxOptions, test_job,
};
use bullpen_bench::records;
use bullpen_tests::{guest, script_guest};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        mean: samples.iter().sum::<Duration>() / samples.len() as u32,
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// One measured case: something that runs one job.
enum Case<'a> {
    Sandbox(&'a Module, &'a str),
    /// In the sandbox, with these limits (grants) instead of the shared ones.
    Granted(&'a Module, &'a str, &'a CallOptions),
    Native(&'a str),
    /// `n` jobs in the sandbox at once, as a worker at concurrency `n` runs
    /// them (each job then finds its pool slot as the others left it);
    /// a sample is the batch's time over `n`.
    AtOnce(&'a Module, &'a str, usize),
}

impl Case<'_> {
    async fn run_once(&self, limits: &CallOptions, observer: &Arc<dyn JobObserver>) {
        match self {
            Case::Sandbox(module, data) => {
                let run = module
                    .process(&test_job(data), limits, observer.clone())
                    .await;
                assert!(matches!(run.outcome, Ok(Ok(_))), "{:?}", run.outcome);
            }
            Case::Granted(module, data, limits) => {
                let run = module
                    .process(&test_job(data), limits, observer.clone())
                    .await;
                assert!(matches!(run.outcome, Ok(Ok(_))), "{:?}", run.outcome);
            }
            Case::Native(data) => {
                std::hint::black_box(
                    json_transform::transform(std::hint::black_box(data)).unwrap(),
                );
            }
            Case::AtOnce(module, data, n) => {
                let job = test_job(data);
                let runs = (0..*n).map(|_| module.process(&job, limits, observer.clone()));
                for run in futures::future::join_all(runs).await {
                    assert!(matches!(run.outcome, Ok(Ok(_))), "{:?}", run.outcome);
                }
            }
        }
    }

    /// Jobs one [`Case::run_once`] runs.
    fn jobs(&self) -> u32 {
        match self {
            Case::AtOnce(_, _, n) => *n as u32,
            _ => 1,
        }
    }
}

/// Runs `cases` in interleaved rounds (this VM's speed drifts; interleaving
/// makes every case see the same drift) and returns each case's samples.
async fn measure(cases: &[Case<'_>], limits: &CallOptions, jobs: &[usize]) -> Vec<Stats> {
    const ROUNDS: usize = 20;
    let observer: Arc<dyn JobObserver> = Arc::new(Ignore);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for (case, &n) in cases.iter().zip(jobs) {
        for _ in 0..n / 10 + 10 {
            case.run_once(limits, &observer).await;
        }
    }
    for _ in 0..ROUNDS {
        for ((case, &n), samples) in cases.iter().zip(jobs).zip(&mut samples) {
            for _ in 0..n.div_ceil(ROUNDS) {
                let started = Instant::now();
                case.run_once(limits, &observer).await;
                samples.push(started.elapsed() / case.jobs());
            }
        }
    }
    samples.into_iter().map(stats).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--scripts`: the JavaScript and Python table alone.
    let scripts_only = std::env::args().any(|a| a == "--scripts");
    let (n_echo, n_transform) = if quick { (300, 100) } else { (20_000, 3_000) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let limits = CallOptions {
        timeout: Duration::from_secs(30),
        memory: 64 << 20,
        ..CallOptions::default()
    };
    let load = |epoch_checks: bool, name: &str| {
        let sandbox = Sandbox::new(SandboxOptions {
            max_instances: 16,
            epoch_checks,
            ..SandboxOptions::default()
        })
        .unwrap();
        sandbox.load(&guest(name)).unwrap()
    };
    let small = r#"{"id":42,"user":"ada@example.com","tags":["a","b"]}"#;
    if scripts_only {
        script_processors(&runtime, &limits, small, if quick { 50 } else { 2_000 });
        return;
    }
    let echo = load(true, "echo");
    let echo_unchecked = load(false, "echo");
    let transform = load(true, "json-transform");
    let transform_unchecked = load(false, "json-transform");
    // What a queue with all three grants gives every attempt: a variable, a
    // read-only directory, an HTTP allowlist (echo uses none of them).
    let granted_dir = tempfile::tempdir().unwrap();
    let granted = CallOptions {
        grants: Grants::from_config(&GrantsConfig {
            environment: EnvironmentConfig {
                environment: [("REGION".to_owned(), "eu-west-1".to_owned())].into(),
                ..EnvironmentConfig::default()
            },
            files: vec![FileGrant {
                source: granted_dir.path().to_owned(),
                destination: "/granted".into(),
                writable: false,
                max_bytes: bullpen::config::bounds::MAX_BYTES.default.0,
                max_files: bullpen::config::bounds::MAX_FILES.default,
            }],
            http: HttpConfig {
                allowed_outbound_hosts: vec!["https://hooks.example.com".parse().unwrap()],
                ..HttpConfig::default()
            },
            ..GrantsConfig::default()
        }),
        ..limits.clone()
    };
    let big = records(200);

    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let cases = [
        (
            "echo: fresh instance + call (budget + cap on)",
            Case::Sandbox(&echo, small),
            n_echo,
        ),
        ("echo: 8 at once", Case::AtOnce(&echo, small, 8), n_echo / 8),
        (
            "echo, no epoch checks",
            Case::Sandbox(&echo_unchecked, small),
            n_echo,
        ),
        (
            "echo, all three grants (environment, files, allowed_outbound_hosts)",
            Case::Granted(&echo, small, &granted),
            n_echo,
        ),
        (
            "json-transform, 200 records (sandbox)",
            Case::Sandbox(&transform, &big),
            n_transform,
        ),
        (
            "json-transform, no epoch checks",
            Case::Sandbox(&transform_unchecked, &big),
            n_transform,
        ),
        (
            "json-transform, same code native",
            Case::Native(&big),
            n_transform,
        ),
    ];
    if let Some(only) = only {
        let (name, case, n) = cases
            .iter()
            .find(|(name, ..)| name.starts_with(only.as_str()))
            .expect("--only <case name prefix>");
        let stats = runtime.block_on(measure(std::slice::from_ref(case), &limits, &[*n * 5]));
        println!(
            "{name}: median {} p99 {}",
            micros(stats[0].p50),
            micros(stats[0].p99)
        );
        return;
    }
    let (names, rest): (Vec<_>, Vec<_>) = cases.into_iter().map(|(n, c, j)| (n, (c, j))).unzip();
    let (cases, jobs): (Vec<_>, Vec<_>) = rest.into_iter().unzip();
    let stats = runtime.block_on(measure(&cases, &limits, &jobs));

    println!("| case | jobs | median | p99 | mean |");
    println!("|---|---|---|---|---|");
    for ((name, n), s) in names.iter().zip(&jobs).zip(&stats) {
        println!(
            "| {name} | {n} | {} | {} | {} |",
            micros(s.p50),
            micros(s.p99),
            micros(s.mean)
        );
    }
    let [echo_stats, _, _, echo_granted, job, job_unchecked, native] = &stats[..] else {
        unreachable!("seven cases")
    };
    let ratio = job.p50.as_secs_f64() / native.p50.as_secs_f64();
    let instance_share = echo_stats.p50.as_secs_f64() / job.p50.as_secs_f64();
    let epoch_share =
        (job.p50.as_secs_f64() - job_unchecked.p50.as_secs_f64()) / job.p50.as_secs_f64();
    println!();
    println!(
        "all three grants add {:.1} µs to an echo job (median)",
        (echo_granted.p50.as_secs_f64() - echo_stats.p50.as_secs_f64()) * 1e6
    );
    println!("json-transform job / native: {ratio:.2}x (median)");
    println!(
        "of a json-transform job: instance setup and teardown (the echo job) {:.0}%, epoch checks {:.0}%",
        instance_share * 100.0,
        epoch_share * 100.0
    );
    script_processors(&runtime, &limits, small, if quick { 50 } else { 2_000 });
}

/// The JavaScript and Python `echo` (built by `bullpen build`):
/// what compiling them costs, cold and from the cache, and what an attempt
/// costs, of which how much is making the instance, and its peak memory.
fn script_processors(
    runtime: &tokio::runtime::Runtime,
    limits: &CallOptions,
    data: &str,
    jobs: usize,
) {
    println!();
    println!(
        "| processor | component | compile (no cache) | load from cache | attempt: median | p99 | back to back, with teardown: mean | instantiate: median | peak linear memory | reused instance: median | back to back, reused: mean |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for source in ["examples/js/echo.js", "examples/python/echo.py"] {
        let file = script_guest(source);
        let cache = tempfile::tempdir().unwrap();
        let load = || {
            Sandbox::new(SandboxOptions {
                max_instances: 16,
                cache_dir: Some(cache.path().to_owned()),
                ..SandboxOptions::default()
            })
            .unwrap()
            .load(&file)
            .unwrap()
        };
        let compiled = load();
        let module = load();
        assert_eq!(module.loaded_from().as_str(), "cache");
        let (costs, per_attempt) = attempts(runtime, &module, limits, data, jobs);
        let walls = stats(costs.iter().map(|cost| cost.wall).collect());
        let instantiations = stats(costs.iter().map(|cost| cost.instantiate).collect());
        let peak = costs.iter().map(|cost| cost.peak_memory).max().unwrap_or(0);
        // The same attempts in one instance (`max_instance_reuse_count`).
        let reusing = CallOptions {
            instances: Some(Instances::new(
                Reuse {
                    max_count: u32::MAX,
                    idle_timeout: Duration::from_secs(60),
                    max_memory: limits.memory,
                },
                1,
            )),
            ..limits.clone()
        };
        let (costs, per_reused) = attempts(runtime, &module, &reusing, data, jobs);
        assert!(costs.iter().all(|cost| cost.reused > 0));
        let reused_walls = stats(costs.iter().map(|cost| cost.wall).collect());
        println!(
            "| `{source}` | {:.1} MiB | {:.2} s | {:.0} ms | {} | {} | {} | {} | {:.1} MiB | {} | {} |",
            std::fs::metadata(&file).unwrap().len() as f64 / (1 << 20) as f64,
            compiled.load_time().as_secs_f64(),
            module.load_time().as_secs_f64() * 1e3,
            micros(walls.p50),
            micros(walls.p99),
            micros(per_attempt),
            micros(instantiations.p50),
            peak as f64 / (1 << 20) as f64,
            micros(reused_walls.p50),
            micros(per_reused)
        );
    }
}

/// Runs `jobs` attempts after a tenth as many to warm up; returns the timed
/// attempts' costs and the mean time per attempt back to back, which
/// includes each instance's teardown (its memory slot reset), as an
/// attempt's own wall time does not.
fn attempts(
    runtime: &tokio::runtime::Runtime,
    module: &bullpen::sandbox::Module,
    options: &CallOptions,
    data: &str,
    jobs: usize,
) -> (Vec<bullpen::sandbox::Cost>, Duration) {
    let observer: Arc<dyn JobObserver> = Arc::new(Ignore);
    let mut costs = Vec::new();
    let mut timed = None;
    runtime.block_on(async {
        for i in 0..jobs + jobs / 10 {
            if i == jobs / 10 {
                timed = Some(std::time::Instant::now());
            }
            let run = module
                .process(&test_job(data), options, observer.clone())
                .await;
            assert!(matches!(run.outcome, Ok(Ok(_))), "{:?}", run.outcome);
            if i >= jobs / 10 {
                costs.push(run.cost);
            }
        }
    });
    (costs, timed.unwrap().elapsed() / jobs as u32)
}
