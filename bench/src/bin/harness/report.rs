//! The harness's output: the tables, the machine and versions they were
//! measured on, the command, each target of issue 6 against its figure; and
//! writing all that into `docs/BENCHMARKS.md`.

use crate::Options;
use crate::contender::{Case, Contender, Work};
use crate::latency::Latency;
use crate::probe::mib;
use crate::startup::Startup;
use crate::throughput::Sample;
use bullpen_tests::workspace_root;
use std::fmt::Write;
use std::time::Duration;

/// Everything one run measured.
#[derive(Default)]
pub struct Report {
    pub throughput: Vec<(Case, Sample)>,
    pub latency: Vec<(Contender, Latency)>,
    pub startup: Option<Startup>,
}

const BEGIN: &str = "<!-- harness:begin (written by `harness --write`) -->";
const END: &str = "<!-- harness:end -->";

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| format!("({program} not found)"))
}

/// The version of `package` in the workspace's Cargo.lock.
fn locked(package: &str) -> String {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap_or_default();
    let needle = format!("name = \"{package}\"\nversion = \"");
    lock.split_once(&needle)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("?".into(), |(v, _)| v.to_owned())
}

fn npm_version(package: &str) -> String {
    let file = workspace_root().join(format!("bench/node/node_modules/{package}/package.json"));
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    format!(
        "{} × {model}, {memory}, Linux {}, Debian {}",
        command_output("nproc", &[]),
        command_output("uname", &["-r"]),
        std::fs::read_to_string("/etc/debian_version")
            .unwrap_or_default()
            .trim()
    )
}

impl Report {
    fn rate(&self, contender: Contender, work: Work, concurrency: usize) -> Option<f64> {
        self.sample(contender, work, concurrency)
            .map(|s| s.jobs_per_second)
    }

    fn sample(&self, contender: Contender, work: Work, concurrency: usize) -> Option<Sample> {
        self.throughput
            .iter()
            .find(|(c, _)| {
                c.contender == contender && c.work == work && c.concurrency == concurrency
            })
            .map(|(_, s)| *s)
    }

    /// The whole markdown section.
    pub fn render(&self, options: &Options) -> String {
        let mut out = String::new();
        let command: Vec<String> = std::env::args()
            .map(|a| a.replace(&*workspace_root().to_string_lossy(), "."))
            .collect();
        let _ = writeln!(out, "Command: `{}`\n", command.join(" "));
        let _ = writeln!(out, "- Machine: {}", machine());
        let _ = writeln!(
            out,
            "- Versions: {}; {}; {}; node {} with `bullmq` {}; `bullmq-official` {}; wasmtime {}",
            command_output(&options.bullpen.to_string_lossy(), &["--version"]),
            command_output("rustc", &["--version"]),
            command_output("redis-server", &["--version"])
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            command_output("node", &["--version"]),
            npm_version("bullmq"),
            locked("bullmq-official"),
            locked("wasmtime"),
        );
        let _ = writeln!(
            out,
            "- Throughput: {} jobs per run added with addBulk to a paused queue, clock from `resume` to all completed, Redis flushed between runs; {} round(s) of every case, median reported; `json-transform` jobs carry {} records. CPU is per job, during the run; the worker's is its whole process tree; Redis scripts is the time Redis spent running BullMQ's scripts (`INFO commandstats`, `EVALSHA`), without the I/O around them.\n",
            options.jobs,
            options.runs,
            crate::throughput::RECORDS
        );
        if !self.throughput.is_empty() || !self.latency.is_empty() {
            out.push_str("| contender | case | concurrency | jobs/s | vs Node in-process | p50 / p99 | worker CPU/job | Redis CPU/job | Redis scripts/job | peak RSS |\n");
            out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
            for (case, sample) in &self.throughput {
                let ratio = self
                    .rate(Contender::NodeInProcess, case.work, case.concurrency)
                    .map_or("—".to_owned(), |n| {
                        format!("{:.2}×", sample.jobs_per_second / n)
                    });
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {ratio} | — | {} | {} | {} | {:.0} MiB |",
                    case.contender.label(),
                    case.work.label(),
                    case.concurrency,
                    sample.jobs_per_second,
                    us(sample.worker_cpu),
                    us(sample.redis_cpu),
                    us(sample.redis_scripts),
                    mib(sample.peak_rss),
                );
            }
            // The pickup rows: one table, as the issue asks; their detail
            // (added → active as well) follows.
            for (contender, l) in &self.latency {
                let _ = writeln!(
                    out,
                    "| {} | pickup, added → completed | 8 | — | — | {} / {} | — | — | — | — |",
                    contender.label(),
                    ms(l.completed.0),
                    ms(l.completed.1)
                );
            }
            out.push('\n');
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "Pickup latency: {} jobs added one at a time to an idle queue (concurrency 8), from the `add` call until the worker's `active` and `completed` events reach a reader of the event stream.\n",
                options.latency_jobs
            );
            out.push_str("| contender | → active p50 | → active p99 | → completed p50 | → completed p99 |\n|---|---|---|---|---|\n");
            for (contender, l) in &self.latency {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    contender.label(),
                    ms(l.active.0),
                    ms(l.active.1),
                    ms(l.completed.0),
                    ms(l.completed.1)
                );
            }
            out.push('\n');
        }
        if let Some(s) = &self.startup {
            let _ = writeln!(
                out,
                "Start-up: `bullpen run` on `examples/bullpen.toml` ({} queues, {} guests), from spawning the process until a job waiting on `echo` is completed, median of {} run(s). Idle RSS: the same host 2 s after that job.\n",
                bullpen_tests::EXAMPLES.len(),
                bullpen_tests::EXAMPLES.len(),
                options.runs
            );
            let _ = writeln!(
                out,
                "| cold (no compile cache) | warm (cache) | idle RSS |\n|---|---|---|\n| {} | {} | {:.1} MiB |\n",
                ms(s.cold),
                ms(s.warm),
                mib(s.idle_rss)
            );
        }
        let targets = self.targets();
        if !targets.is_empty() {
            out.push_str("| target (issue 6) | measured | met |\n|---|---|---|\n");
            for (target, measured, met) in targets {
                let _ = writeln!(
                    out,
                    "| {target} | {measured} | {} |",
                    if met { "yes" } else { "**no**" }
                );
            }
        }
        out
    }

    /// `(target, measured, met)` for every target this run has figures for.
    fn targets(&self) -> Vec<(String, String, bool)> {
        use Contender::*;
        use Work::*;
        let mut rows = Vec::new();
        let mut ratio = |target: String, ours: Option<f64>, theirs: Option<f64>, at_least: f64| {
            if let (Some(a), Some(b)) = (ours, theirs) {
                let r = a / b;
                rows.push((target, format!("{r:.2}×"), r >= at_least));
            }
        };
        for c in [1, 8, 64] {
            ratio(
                format!("bullpen `echo` ≥ 1.0× the native crate at {c}"),
                self.rate(Bullpen, Noop, c),
                self.rate(Native, Noop, c),
                1.0,
            );
        }
        ratio(
            "bullpen `echo` ≥ 1.5× Node in-process at 64".into(),
            self.rate(Bullpen, Noop, 64),
            self.rate(NodeInProcess, Noop, 64),
            1.5,
        );
        ratio(
            "bullpen `echo` ≥ 5× Node child processes at 8".into(),
            self.rate(Bullpen, Noop, 8),
            self.rate(NodeProcesses, Noop, 8),
            5.0,
        );
        ratio(
            "bullpen `echo` ≥ 4× Node worker threads at 8".into(),
            self.rate(Bullpen, Noop, 8),
            self.rate(NodeThreads, Noop, 8),
            4.0,
        );
        for (label, theirs) in [
            ("child processes", NodeProcesses),
            ("worker threads", NodeThreads),
        ] {
            ratio(
                format!("bullpen, noop.js ≥ 1× Node {label} running it, at 8"),
                self.rate(BullpenJs, Noop, 8),
                self.rate(theirs, Noop, 8),
                1.0,
            );
        }
        ratio(
            "bullpen `json-transform` ≥ 2× Node in-process, same work, at 8".into(),
            self.rate(Bullpen, Transform, 8),
            self.rate(NodeInProcess, Transform, 8),
            2.0,
        );
        if let (Some(ours), Some(native)) =
            (self.sample(Bullpen, Noop, 8), self.sample(Native, Noop, 8))
        {
            let limit = native.worker_cpu + Duration::from_micros(15);
            rows.push((
                "worker CPU per no-op job ≤ the crate's + 15 µs (at 8)".into(),
                format!("{} (crate {})", us(ours.worker_cpu), us(native.worker_cpu)),
                ours.worker_cpu <= limit,
            ));
        }
        if let Some((_, l)) = self.latency.iter().find(|(c, _)| *c == Bullpen) {
            rows.push((
                "pickup latency p50 ≤ 1 ms, p99 ≤ 3 ms (added → completed)".into(),
                format!("{} / {}", ms(l.completed.0), ms(l.completed.1)),
                l.completed.0 <= Duration::from_millis(1)
                    && l.completed.1 <= Duration::from_millis(3),
            ));
        }
        if let Some(s) = &self.startup {
            rows.push((
                "warm start to first job ≤ 200 ms".into(),
                ms(s.warm),
                s.warm <= Duration::from_millis(200),
            ));
            rows.push((
                "idle host RSS ≤ 40 MiB with the example queues".into(),
                format!("{:.1} MiB", mib(s.idle_rss)),
                s.idle_rss <= 40 * 1024 * 1024,
            ));
        }
        rows
    }
}

/// Replaces the harness's section of `docs/BENCHMARKS.md` with `text`.
pub fn write_into_docs(text: &str) {
    let path = workspace_root().join("docs/BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).expect("reading docs/BENCHMARKS.md");
    let (before, rest) = doc
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("docs/BENCHMARKS.md has no line {BEGIN}"));
    let (_, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("docs/BENCHMARKS.md has no line {END}"));
    std::fs::write(&path, format!("{before}{BEGIN}\n{text}\n{END}{after}"))
        .expect("writing docs/BENCHMARKS.md");
}
