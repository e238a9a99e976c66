//! `bullpen exec`: one job through one module, no Redis, the outcome as JSON.

use crate::json::ReturnValue;
use crate::outcome::backoff::Builtin;
use crate::sandbox::{
    BackoffDecision, BackoffOptions, CallOptions, Crash, Job, JobError, Module, ProcessAnswer,
    Recorder, Report, Run, Sandbox, SandboxOptions, level_name,
};
use crate::units::{ByteSize, HumanDuration};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen exec modules/echo.wasm --data '{\"hello\":\"world\"}'
  bullpen exec modules/flaky.wasm --data '{\"succeed_on\":3}' --attempts-made 1 --attempts 5 --backoff exponential:1s
  bullpen exec modules/misbehave.wasm --data '{\"mode\":\"spin\"}' --timeout 2s
  bullpen exec modules/render.wasm --dir templates:/templates --env REGION=eu-west-1
  bullpen exec modules/webhook.wasm --data '{\"url\":\"http://127.0.0.1:8080/hook\"}' --allow-host http://127.0.0.1:8080
  bullpen exec modules/render.wasm --queue render -c bullpen.toml   # as queue `render` runs it

The outcome is printed on stdout as one JSON object: outcome (completed, failed,
unrecoverable, rate-limited, delayed, waiting-children or crashed), the return
value or the error, duration_ms, cpu_ms, peak_memory_bytes, what the processor logged and
printed, and the jobs it added (jobs_added; nothing reaches Redis) and the data
it set (data_updated).

Exit code: 0 completed, 3 failed, 4 unrecoverable, 5 rate-limited, 6 delayed,
7 crashed (timeout, memory limit, stack overflow, panic, trap), 8 waiting for
children, 1 when the module or the arguments are unusable.";

/// Arguments of `bullpen exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The processor module (.wasm).
    pub module: PathBuf,
    /// The job's data, as JSON.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// The job's name.
    #[arg(long, default_value = "exec")]
    pub name: String,
    /// The job's id.
    #[arg(long, default_value = "1")]
    pub id: String,
    /// The queue name the processor sees.
    #[arg(long, default_value = "exec")]
    pub queue: String,
    /// Failed attempts before this one (BullMQ's attemptsMade).
    #[arg(long, default_value_t = 0)]
    pub attempts_made: u32,
    /// Most attempts the job may make (opts.attempts).
    #[arg(long, default_value_t = 1)]
    pub attempts: u32,
    /// The job's backoff as TYPE[:DELAY], e.g. exponential:1s, fixed:500ms,
    /// linear:1s (a custom type asks the module's backoff export).
    #[arg(long)]
    pub backoff: Option<String>,
    /// Wall-clock budget.
    #[arg(long, default_value = "30s")]
    pub timeout: HumanDuration,
    /// Linear memory cap.
    #[arg(long, default_value = "64MiB")]
    pub memory: ByteSize,
    /// Bytes of job-log lines and progress the job may report (each counts
    /// 256 bytes more than its length); the rest is dropped and counted.
    #[arg(long, default_value = "1MiB")]
    pub report_budget: ByteSize,
    /// Where the compile cache lives (<dir>/cache).
    #[arg(long, default_value = ".bullpen")]
    pub data_dir: PathBuf,
    /// Compile the module even if the cache holds it, and do not write it.
    #[arg(long)]
    pub no_cache: bool,
    /// Grants an environment variable (repeatable), as a queue's
    /// `environment` does.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Grants a host directory at a guest path, read-only unless `:rw`
    /// (repeatable), as a queue's `files` does.
    #[arg(long = "dir", value_name = "SRC:DST[:rw]")]
    pub dirs: Vec<String>,
    /// Allows HTTP(S) requests to a host (repeatable), as an entry of a
    /// queue's `allowed_outbound_hosts` does: `https://api.example.com`,
    /// `http://127.0.0.1:8080`, `https://*.example.com:*`.
    #[arg(long = "allow-host", value_name = "SCHEME://HOST[:PORT]")]
    pub allow_hosts: Vec<String>,
    /// Runs the job as queue `--queue` of this config file runs it: its
    /// grants, timeout, memory and report budget (flags add grants).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

/// The grants and options of `--queue` in `--config`, if given, with the
/// flags' grants added: each checked as a queue's table is, and refused
/// with the same words.
fn limits_and_grants(args: &ExecArgs) -> anyhow::Result<CallOptions> {
    use crate::config::bounds;
    let flag = |flag: &'static str| move |reason: String| anyhow::anyhow!("--{flag}: {reason}");
    let mut options = CallOptions {
        timeout: bounds::TIMEOUT
            .check(args.timeout)
            .map_err(flag("timeout"))?
            .0,
        memory: bounds::MEMORY.check(args.memory).map_err(flag("memory"))?.0,
        reports: bounds::REPORT_BUDGET
            .check(args.report_budget)
            .map_err(flag("report-budget"))?
            .0,
        cpu_time: true,
        ..CallOptions::default()
    };
    let mut file = None;
    if let Some(path) = &args.config {
        let config = crate::config::Config::load(path)?;
        let Some(queue) = config.queues.get(&args.queue) else {
            bail!(
                "{}: no queue named `{}` (give it with --queue)",
                path.display(),
                args.queue
            );
        };
        options.timeout = queue.timeout.0;
        options.memory = queue.memory.0;
        options.reports = queue.report_budget.0;
        options.queue_prefix = std::sync::Arc::from(config.redis.prefix.as_str());
        file = Some(config);
    }
    let flags = crate::config::GrantFlags {
        env: args.env.clone(),
        dirs: args.dirs.clone(),
        allow_hosts: args.allow_hosts.clone(),
    };
    // The queue's keys as its file writes them, the flags added, checked
    // as the file's were: relative paths in the file are the file's.
    let base = file
        .as_ref()
        .and_then(|config| config.path.parent().map(PathBuf::from));
    let resolve = |path: PathBuf| match &base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    };
    let checking = crate::sandbox::grants::Checking {
        resolve: &resolve,
        host_env: &|var| std::env::var(var).ok(),
    };
    let text = file.as_ref().map(|config| config.text());
    let grants = crate::config::GrantsConfig::with_flags(text, &args.queue, &flags, &checking)
        .map_err(anyhow::Error::msg)?;
    options.grants = crate::sandbox::grants::Grants::from_config(&grants);
    Ok(options)
}

pub(super) async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&args.data) {
        bail!("--data is not JSON: {e}");
    }
    let backoff = args.backoff.as_deref().map(parse_backoff).transpose()?;
    let options = limits_and_grants(&args)?;
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 2,
        max_memory: options.memory,
        cache_dir: (!args.no_cache).then(|| args.data_dir.join("cache")),
        ..SandboxOptions::default()
    })?;
    let module = sandbox.load(&args.module)?;
    tracing::info!(
        module = %module.file_name(),
        hash = module.short_hash(),
        "module loaded from the {} in {:.1} ms",
        module.loaded_from().as_str(),
        module.load_time().as_secs_f64() * 1e3
    );
    let job = Job {
        id: args.id,
        name: args.name,
        queue: args.queue,
        data: args.data,
        attempts_made: args.attempts_made,
        attempts_started: args.attempts_made.saturating_add(1),
        max_attempts: args.attempts.max(1),
        timestamp: crate::timer::now_ms(),
        backoff,
    };
    let recorder = Arc::new(Recorder::default());
    let run = module.process(&job, &options, recorder.clone()).await;
    let next = match &run.outcome {
        Ok(Err(JobError::Failed(failure))) => {
            next_backoff(&module, &job, failure, &options, recorder.clone()).await
        }
        _ => None,
    };
    let (mut report, code) = describe(&module, &run);
    if let Some(next) = next {
        report["backoff"] = next;
    }
    attach_reports(&mut report, &recorder.reports());
    // What the guest said passed the sandbox's gate: its secrets are masked.
    super::say!("{}", serde_json::to_string_pretty(&report)?)?;
    Ok(ExitCode::from(code))
}

/// `exponential:1s` -> kind `exponential`, delay 1000 ms.
fn parse_backoff(text: &str) -> anyhow::Result<BackoffOptions> {
    let (kind, delay) = text.split_once(':').unwrap_or((text, "0ms"));
    if kind.is_empty() {
        bail!("--backoff `{text}`: the type is missing (e.g. exponential:1s)");
    }
    let delay: HumanDuration = delay
        .parse()
        .with_context(|| format!("--backoff `{text}`"))?;
    Ok(BackoffOptions {
        kind: kind.to_owned(),
        delay: delay.0.as_millis() as u64,
        jitter: 0.0,
    })
}

/// What BullMQ would do after this failure: the builtin delay, or the
/// module's own `backoff` answer for a custom type.
async fn next_backoff(
    module: &Module,
    job: &Job,
    failure: &crate::sandbox::Failure,
    call: &CallOptions,
    recorder: Arc<Recorder>,
) -> Option<Value> {
    let backoff = job.backoff.as_ref()?;
    let attempts_made = job.attempts_made + 1;
    if attempts_made >= job.max_attempts {
        return Some(json!({ "decision": "no-attempts-left" }));
    }
    let builtin = |kind: Builtin| {
        let delay = kind.delay(
            attempts_made,
            Duration::from_millis(backoff.delay),
            backoff.jitter,
            0.5,
        );
        json!({ "decision": "after", "ms": delay.as_millis() as u64, "source": "builtin" })
    };
    if let Some(kind) = Builtin::named(&backoff.kind) {
        return Some(builtin(kind));
    }
    let run = module
        .backoff(attempts_made, &backoff.kind, failure, job, call, recorder)
        .await;
    Some(match run.outcome {
        Ok(BackoffDecision::After(ms)) => {
            json!({ "decision": "after", "ms": ms, "source": "module" })
        }
        Ok(BackoffDecision::Now) => json!({ "decision": "now", "source": "module" }),
        Ok(BackoffDecision::GiveUp) => json!({ "decision": "give-up", "source": "module" }),
        Ok(BackoffDecision::Builtin) => json!({ "decision": "builtin", "source": "module" }),
        Err(crash) => json!({ "decision": "crashed", "reason": crash.to_string() }),
    })
}

/// The JSON report of a run, and the exit code that goes with it.
fn describe(module: &Module, run: &Run<ProcessAnswer>) -> (Value, u8) {
    let mut report = json!({
        "module": module.path().display().to_string(),
        "hash": module.short_hash(),
        "loaded_from": module.loaded_from().as_str(),
    });
    let code = match &run.outcome {
        // The same check `bullpen run` makes before the job is completed.
        Ok(Ok(value)) => match crate::json::storable_return_value(value) {
            Ok(ReturnValue::Value(value)) => {
                report["outcome"] = json!("completed");
                report["return_value"] = value;
                0
            }
            // Not a value this report can hold (a lone surrogate): its text.
            Ok(ReturnValue::Text(text)) => {
                report["outcome"] = json!("completed");
                report["return_value_json"] = json!(text);
                0
            }
            Err(message) => {
                report["outcome"] = json!("failed");
                report["error"] = json!({ "message": message, "name": "ReturnValueError" });
                3
            }
        },
        Ok(Err(JobError::Failed(failure))) => {
            report["outcome"] = json!("failed");
            report["error"] = json!({ "message": failure.message, "name": failure.name });
            if let Some(stack) = &run.failure_stack {
                report["error"]["stack"] = json!(stack);
            }
            3
        }
        Ok(Err(JobError::Unrecoverable(reason))) => {
            report["outcome"] = json!("unrecoverable");
            report["reason"] = json!(reason);
            if let Some(stack) = &run.failure_stack {
                report["stack"] = json!(stack);
            }
            4
        }
        Ok(Err(JobError::RateLimited(ms))) => {
            report["outcome"] = json!("rate-limited");
            report["rate_limit_ms"] = json!(ms);
            5
        }
        Ok(Err(JobError::Delayed(until))) => {
            report["outcome"] = json!("delayed");
            report["delay_until"] = json!(until);
            6
        }
        Ok(Err(JobError::WaitingChildren)) => {
            report["outcome"] = json!("waiting-children");
            8
        }
        Err(crash) => {
            report["outcome"] = json!("crashed");
            report["crash"] = json!(crash.kind());
            report["reason"] = json!(crash.to_string());
            if let Crash::Timeout(budget) = crash {
                report["timeout_ms"] = json!(budget.as_millis() as u64);
            }
            7
        }
    };
    report["duration_ms"] = json!(run.cost.wall.as_secs_f64() * 1e3);
    report["peak_memory_bytes"] = json!(run.cost.peak_memory);
    report["cpu_ms"] = json!(run.cost.cpu.map(|cpu| cpu.as_secs_f64() * 1e3));
    report["stdout"] = json!(run.stdout.text);
    report["stderr"] = json!(run.stderr.text);
    if run.stdout.dropped + run.stderr.dropped > 0 {
        report["output_bytes_dropped"] = json!(run.stdout.dropped + run.stderr.dropped);
    }
    if run.reports_dropped.reports > 0 {
        report["reports_dropped"] = json!(run.reports_dropped.reports);
        report["report_bytes_dropped"] = json!(run.reports_dropped.bytes);
    }
    (report, code)
}

fn attach_reports(report: &mut Value, reports: &[Report]) {
    let mut logs = Vec::new();
    let mut progress = Vec::new();
    let mut job_log = Vec::new();
    let mut added = Vec::new();
    let mut data = None;
    for entry in reports {
        match entry {
            Report::Log { level, message } => {
                logs.push(json!({ "level": level_name(*level), "message": message }))
            }
            Report::Progress(value) => progress.push(
                crate::json::storable(value, "the progress")
                    .unwrap_or_else(|reason| json!({ "dropped": reason })),
            ),
            Report::JobLog(line) => job_log.push(json!(line)),
            Report::JobAdded {
                queue,
                name,
                data,
                options,
                child,
            } => added.push(json!({
                "queue": queue,
                "name": name,
                "data": serde_json::from_str::<Value>(data).unwrap_or(Value::Null),
                "options": serde_json::from_str::<Value>(options).unwrap_or(Value::Null),
                "child": child,
            })),
            Report::DataUpdated(new) => data = serde_json::from_str::<Value>(new).ok(),
        }
    }
    report["logs"] = json!(logs);
    report["progress"] = json!(progress);
    report["job_log"] = json!(job_log);
    if !added.is_empty() {
        report["jobs_added"] = json!(added);
    }
    if let Some(data) = data {
        report["data_updated"] = data;
    }
}
