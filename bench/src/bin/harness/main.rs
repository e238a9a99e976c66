//! The side-by-side benchmark: BullMQ's Node worker (in-process and
//! sandboxed), `bullmq-official`'s native worker and bullpen, each draining
//! the same N jobs from one `redis-server` the harness starts itself; then
//! pickup latency, and bullpen's start-up time and idle memory.
//!
//! ```sh
//! target/release/harness --bullpen target/release/bullpen          # the full run (~6 min)
//! target/release/harness --bullpen target/release/bullpen --write  # …and update docs/BENCHMARKS.md
//! target/release/harness --quick                                   # a few hundred jobs, 1 run
//! target/release/harness --only 'bullpen|bullmq-official' --at 8 --sections throughput # a subset
//! target/release/harness --baseline old/bullpen ...  # adds an older bullpen's no-op cases
//! target/release/harness --sections deploy          # a module deployed while jobs flow
//! target/release/harness --sections many-queues     # 100 idle queues; jobs on 1 queue vs spread over 100
//! target/release/harness --sections noisy-neighbour  # queue b alone and beside 16 spinning guests
//! target/release/harness --sections cancel           # Relay cancels: publish → attempt ended; an idle node's cost
//! target/release/harness --pin ...                   # Redis on core 0, the contender on the rest
//! ```
//!
//! `--pin` keeps a contender's own CPU from slowing Redis down: on a
//! 2-core machine, a contender that uses more CPU leaves Redis less cache
//! and more preemption, and Redis then spends more CPU on the same commands.
//!
//! `BULLPEN_WORKERS=N` in the environment sets the bullpen queue's `workers`
//! (docs/CONFIG.md) instead of its default, capped at each case's
//! concurrency.
//!
//! Every contender is a process of its own, so the table can give its CPU per
//! job and its peak memory beside the Redis server's CPU per job.

// The native-crate contender is this binary: it gets bullpen's allocator, so
// that it differs from bullpen by the sandbox alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cancel;
mod contender;
mod deploy;
mod events;
mod latency;
mod many_queues;
mod noisy;
mod probe;
mod report;
mod startup;
mod throughput;

use bullpen_tests::{RedisServer, bullpen_release_binary, workspace_root};
use contender::{Case, Contender, Work};
use std::path::PathBuf;

/// The command line, as given.
#[derive(Debug, clap::Parser)]
#[command(
    name = "harness",
    about = "BullMQ's Node worker, bullmq-official's native worker and bullpen, side by side \
             on one redis-server the harness starts; results for docs/BENCHMARKS.md",
    after_help = "Examples:\n  \
      harness --bullpen target/release/bullpen          # the full run (~6 min)\n  \
      harness --write                                   # ...and update docs/BENCHMARKS.md\n  \
      harness --quick                                   # a few hundred jobs, 1 run\n  \
      harness --only 'bullpen|bullmq-official' --at 8 --sections throughput\n  \
      harness --baseline old/bullpen --sections throughput\n  \
      harness --sections deploy,many-queues\n  \
      harness --sections noisy-neighbour\n  \
      harness --sections cancel"
)]
struct Args {
    /// Jobs per throughput run [default: 20000, 300 with --quick].
    #[arg(long)]
    jobs: Option<usize>,
    /// Runs of each case, the median kept [default: 3, 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Jobs timed one by one for pickup latency [default: 1000, 50 with
    /// --quick].
    #[arg(long)]
    latency_jobs: Option<usize>,
    /// A short run: fewer jobs, one run.
    #[arg(long)]
    quick: bool,
    /// The bullpen binary [default: the workspace's release build].
    #[arg(long)]
    bullpen: Option<PathBuf>,
    /// An older bullpen binary whose no-op cases run beside this one's.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Only the cases whose label starts with one of these (`a|b`, any
    /// case).
    #[arg(long)]
    only: Option<String>,
    /// Only the cases at these concurrencies (`8` or `8,64`).
    #[arg(long, value_delimiter = ',')]
    at: Vec<usize>,
    /// The sections to run, comma-separated: throughput, latency, startup,
    /// deploy, many-queues, noisy-neighbour, cancel
    #[arg(long, default_value = "throughput,latency,startup")]
    sections: String,
    /// Write the results into docs/BENCHMARKS.md.
    #[arg(long)]
    write: bool,
    /// Redis on the first core, every contender on the others.
    #[arg(long)]
    pin: bool,
    /// Print Redis's calls and time per job of every command, each run.
    #[arg(long)]
    commandstats: bool,
}

/// What the run does, from [`Args`].
pub struct Options {
    pub jobs: usize,
    pub runs: usize,
    pub latency_jobs: usize,
    pub bullpen: PathBuf,
    /// Label prefixes of the cases to run (`--only 'a|b'`; labels hold
    /// commas); all if empty.
    pub only: Vec<String>,
    /// The concurrencies of the cases to run (`--at 8,64`); all if empty.
    pub at: Vec<usize>,
    pub sections: Vec<String>,
    pub write: bool,
    /// `--pin`: Redis on the first core, every contender on the others.
    pub pin: bool,
    pub baseline: Option<PathBuf>,
}

fn parse_options(args: Args) -> Options {
    let quick = args.quick;
    Options {
        jobs: args.jobs.unwrap_or(if quick { 300 } else { 20_000 }),
        runs: args.runs.unwrap_or(if quick { 1 } else { 3 }),
        latency_jobs: args.latency_jobs.unwrap_or(if quick { 50 } else { 1_000 }),
        bullpen: args.bullpen.unwrap_or_else(bullpen_release_binary),
        only: args
            .only
            .map(|o| o.to_lowercase().split('|').map(str::to_owned).collect())
            .unwrap_or_default(),
        at: args.at,
        sections: args.sections.split(',').map(str::to_owned).collect(),
        write: args.write,
        pin: args.pin,
        baseline: args.baseline,
    }
}

/// Every throughput case, in the order they run.
fn cases() -> Vec<Case> {
    let case = |contender, work, concurrency| Case {
        contender,
        work,
        concurrency,
    };
    use Contender::*;
    use Work::*;
    let mut cases = vec![
        case(NodeInProcess, Noop, 1),
        case(NodeInProcess, Noop, 8),
        case(NodeInProcess, Noop, 64),
        case(NodeProcesses, Noop, 8),
        case(NodeThreads, Noop, 8),
        case(Native, Noop, 1),
        case(Native, Noop, 8),
        case(Native, Noop, 64),
        case(Bullpen, Noop, 1),
        case(Bullpen, Noop, 8),
        case(Bullpen, Noop, 64),
        case(NodeInProcess, Transform, 8),
        case(Native, Transform, 8),
        case(Bullpen, Transform, 8),
        case(BullpenGranted, Noop, 8),
        case(BullpenMetrics, Noop, 1),
        case(BullpenMetrics, Noop, 8),
        case(BullpenMetrics, Noop, 64),
        case(NodeInProcess, Webhook, 8),
        case(Bullpen, Webhook, 8),
        case(NodeInProcess, Webhook, 64),
        case(Bullpen, Webhook, 64),
        case(BullpenJs, Noop, 8),
        case(BullpenPython, Noop, 8),
        case(BullpenReused, Noop, 8),
        case(BullpenJsReused, Noop, 8),
        case(BullpenPythonReused, Noop, 8),
        case(NodeProcesses, Transform, 8),
        case(NodeThreads, Transform, 8),
        case(BullpenJs, Transform, 8),
        case(BullpenJsReused, Transform, 8),
    ];
    if contender::BASELINE.get().is_some() {
        // Beside the baseline: json-transform at 1 and 64 too, for this
        // build and the baseline alike.
        cases.extend([
            case(BullpenBaseline, Noop, 1),
            case(BullpenBaseline, Noop, 8),
            case(BullpenBaseline, Noop, 64),
            case(Bullpen, Transform, 1),
            case(Bullpen, Transform, 64),
            case(BullpenBaseline, Transform, 1),
            case(BullpenBaseline, Transform, 8),
            case(BullpenBaseline, Transform, 64),
        ]);
    }
    cases
}

fn ensure_node_deps() {
    let dir = workspace_root().join("bench/node");
    if !dir.join("node_modules/bullmq").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to benchmark BullMQ's Node worker");
        assert!(status.success(), "npm ci in bench/node failed");
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("--native-worker") {
        // `Contender::Native`'s own process (see `contender::start`).
        return contender::native_worker().await;
    }
    let args = <Args as clap::Parser>::parse();
    throughput::COMMAND_STATS.set(args.commandstats).unwrap();
    let options = parse_options(args);
    ensure_node_deps();
    // The Rust examples every section runs, all built by the first ask.
    bullpen_tests::guest("echo");
    if let Some(baseline) = &options.baseline {
        contender::BASELINE.set(baseline.clone()).unwrap();
    }
    let redis = RedisServer::start();
    let url = redis.url();
    if options.pin {
        contender::pin_redis(&url).await;
    }
    // The receiver of the `webhook` cases: a real loopback HTTP/1.1 server
    // in this process (the same for every contender).
    let hooks = bullpen_tests::hook_server::HookServer::start().await;
    contender::HOOK_SERVER
        .set(format!("http://{}", hooks.addr))
        .unwrap();
    let mut report = report::Report::default();
    let section = |name: &str| options.sections.iter().any(|s| s == name);

    if section("throughput") {
        let cases: Vec<Case> = cases()
            .into_iter()
            .filter(|c| {
                let label = format!("{} {}", c.contender.label(), c.work.label()).to_lowercase();
                (options.only.is_empty()
                    || options.only.iter().any(|o| label.starts_with(o.as_str())))
                    && (options.at.is_empty() || options.at.contains(&c.concurrency))
            })
            .collect();
        // Every case's module is built now: a build beside a case would be
        // measured with it.
        for case in &cases {
            contender::module(*case, &options.bullpen);
        }
        // Rounds of every case, not every run of one case in a row: this VM's
        // speed drifts over minutes, and each case should see all of it.
        let mut samples = vec![Vec::new(); cases.len()];
        for round in 1..=options.runs {
            for (case, samples) in cases.iter().zip(&mut samples) {
                let sample =
                    throughput::run_once(*case, options.jobs, &url, &options.bullpen).await;
                eprintln!(
                    "round {round}: {} {} @ {}: {:.0} jobs/s",
                    case.contender.label(),
                    case.work.label(),
                    case.concurrency,
                    sample.jobs_per_second
                );
                samples.push(sample);
            }
        }
        for (case, samples) in cases.into_iter().zip(samples) {
            report.throughput.push((case, throughput::median(samples)));
        }
    }
    if section("latency") {
        for contender in [
            Contender::NodeInProcess,
            Contender::Native,
            Contender::Bullpen,
        ] {
            let latency =
                latency::measure(contender, options.latency_jobs, &url, &options.bullpen).await;
            eprintln!("{} latency: {latency:?}", contender.label());
            report.latency.push((contender, latency));
        }
    }
    if section("startup") {
        let startup = startup::measure(options.runs, &url, &options.bullpen).await;
        eprintln!("start-up: {startup:?}");
        report.startup = Some(startup);
    }

    if section("deploy") {
        // Not part of the `--write` block: printed for docs/BENCHMARKS.md.
        println!(
            "| module deployed | compile | rename → first attempt on it | jobs/s, second before | jobs/s, second after |"
        );
        println!("|---|---|---|---|---|");
        for d in deploy::measure(&url, &options.bullpen).await {
            println!(
                "| {} | {} | {} ms | {:.0} | {:.0} |",
                d.module,
                if d.cached { "cached" } else { "compiled" },
                d.to_first_attempt.as_millis(),
                d.before,
                d.after
            );
        }
        println!();
    }
    if section("many-queues") {
        // Not part of the `--write` block: printed for docs/BENCHMARKS.md.
        let idle = many_queues::idle(100, &url, &options.bullpen).await;
        println!(
            "{} idle queues (concurrency 1): host CPU {:.2}% of a core, Redis CPU {:.2}%, \
             {} connections, {:.0} Redis commands/s\n",
            idle.queues,
            idle.host_cpu * 100.0,
            idle.redis_cpu * 100.0,
            idle.connections,
            idle.commands_per_second
        );
        println!(
            "| jobs | queues × concurrency | jobs/s (median of {}) |",
            options.runs
        );
        println!("|---|---|---|");
        let layouts = [(1, 8), (1, 64), (100, 1), (100, 8)];
        let mut rates = vec![Vec::new(); layouts.len()];
        for round in 1..=options.runs {
            for ((queues, concurrency), rates) in layouts.iter().zip(&mut rates) {
                let rate = many_queues::spread(
                    options.jobs,
                    *queues,
                    *concurrency,
                    &url,
                    &options.bullpen,
                )
                .await;
                eprintln!("round {round}: {queues} × {concurrency}: {rate:.0} jobs/s");
                rates.push(rate);
            }
        }
        for ((queues, concurrency), mut rates) in layouts.into_iter().zip(rates) {
            rates.sort_by(f64::total_cmp);
            println!(
                "| {} | {queues} × {concurrency} | {:.0} |",
                options.jobs,
                rates[rates.len() / 2]
            );
        }
        println!();
    }
    if section("cancel") {
        // Not part of the `--write` block: printed for docs/BENCHMARKS.md.
        // 100, or fewer with --quick.
        let cancels = options.latency_jobs.min(100);
        println!(
            "| {cancels} cancels of a spinning Rust guest, one host | publish → failed p50 | p99 | max | no-op jobs/s meanwhile |"
        );
        println!("|---|---|---|---|---|");
        for c in cancel::measure(cancels, &url, &options.bullpen).await {
            println!(
                "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} |",
                c.load,
                c.latency.0.as_secs_f64() * 1e3,
                c.latency.1.as_secs_f64() * 1e3,
                c.max.as_secs_f64() * 1e3,
                c.load_rate
            );
        }
        let idle = cancel::idle_node(&url).await;
        println!(
            "\nAn idle Relay node (subscribed to `jobs.*.cancel` and one queue's settings): \
             its CPU {:.3}% of a core; Redis CPU {:.3}% (with no client at all: {:.3}%); \
             {:.2} Redis commands/s, those inside its scripts counted\n",
            idle.node_cpu * 100.0,
            idle.redis_cpu.0 * 100.0,
            idle.redis_cpu.1 * 100.0,
            idle.commands_per_second
        );
    }
    if section("noisy-neighbour") {
        // Not part of the `--write` block: printed for docs/BENCHMARKS.md.
        let noisy = noisy::measure(
            options.runs,
            options.jobs,
            options.latency_jobs,
            &url,
            &options.bullpen,
        )
        .await;
        println!(
            "| queue b (echo, concurrency 8) | jobs/s (median of {}) | p50 add → completed | p99 |",
            options.runs
        );
        println!("|---|---|---|---|");
        for (label, side) in [
            ("alone", noisy.alone),
            (
                &*format!("beside {} spinning guests in queue a", noisy::SPINNERS),
                noisy.beside,
            ),
        ] {
            println!(
                "| {label} | {:.0} | {:.2} ms | {:.2} ms |",
                side.jobs_per_second,
                side.p50.as_secs_f64() * 1e3,
                side.p99.as_secs_f64() * 1e3
            );
        }
        println!(
            "\nbeside the spinners: {:.0} % of the throughput alone, p50 {:.1}× alone\n",
            noisy.beside.jobs_per_second / noisy.alone.jobs_per_second * 100.0,
            noisy.beside.p50.as_secs_f64() / noisy.alone.p50.as_secs_f64()
        );
    }
    let text = report.render(&options);
    println!("{text}");
    if options.write {
        report::write_into_docs(&text);
        eprintln!("written into docs/BENCHMARKS.md");
    }
}
