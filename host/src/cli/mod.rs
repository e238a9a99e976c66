//! The `bullpen` command line: argument parsing and one function per
//! subcommand, each a thin layer over the library.

mod add;
mod build;
mod cancel;
mod check;
mod connect;
mod deploy;
mod exec;
mod jobs;
mod new;
mod retry;
mod run;
mod status;
mod steer;

use crate::config::LogFormat;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// `bullpen -V`: the version and the commit built.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BULLPEN_COMMIT"),
    ")"
);

/// `bullpen --version`: [`VERSION`], the processor contracts this binary
/// runs, and what it is built on.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use crate::sandbox::{CONTRACT_PACKAGE, CONTRACT_VERSION, CONTRACT_VERSIONS};
    format!(
        "{VERSION}\n\
         contract: {CONTRACT_PACKAGE}@{CONTRACT_VERSION}; runs processors built for {}\n\
         built on: wasmtime {}, bullmq-official {} (BullMQ's on-Redis format)",
        CONTRACT_VERSIONS.join(", "),
        env!("BULLPEN_WASMTIME_VERSION"),
        env!("BULLPEN_BULLMQ_OFFICIAL_VERSION"),
    )
});

/// Runs BullMQ jobs in isolated WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "bullpen", version = VERSION, long_version = LONG_VERSION.as_str(), about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for more detail). BULLPEN_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines are written: `json` gives one object per line. For
    /// `run`, [host] log_format sets it too. Default: text.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job through a processor module, without Redis, and print the
    /// outcome as JSON.
    #[command(after_help = exec::AFTER_HELP)]
    Exec(exec::ExecArgs),
    /// Say whether files are valid bullpen processors, and why not.
    #[command(after_help = check::AFTER_HELP)]
    Check(check::CheckArgs),
    /// Take jobs from the config's queues until SIGINT/SIGTERM.
    #[command(after_help = run::AFTER_HELP)]
    Run(run::RunArgs),
    /// Add a job to a queue.
    #[command(after_help = add::AFTER_HELP)]
    Add(add::AddArgs),
    /// List a queue's jobs: id, name, state, attempts, failed reason.
    #[command(after_help = jobs::AFTER_HELP)]
    Jobs(jobs::JobsArgs),
    /// Retry finished jobs by hand, optionally resetting their attempts.
    #[command(after_help = retry::AFTER_HELP)]
    Retry(retry::RetryArgs),
    /// Stop a running job wherever it runs (BullMQ's Relay).
    #[command(after_help = cancel::AFTER_HELP)]
    Cancel(cancel::CancelArgs),
    /// Make every host stop fetching a queue's jobs (BullMQ's Relay).
    #[command(after_help = steer::AFTER_HELP)]
    Pause(steer::QueueArgs),
    /// Make every host fetch a paused queue's jobs again.
    #[command(after_help = steer::AFTER_HELP)]
    Resume(steer::QueueArgs),
    /// Set a queue's concurrency on every host.
    #[command(after_help = steer::AFTER_HELP)]
    Concurrency(steer::ConcurrencyArgs),
    /// Show each queue's job counts, workers and module.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Put a new module in place for the running host and wait until it
    /// serves it.
    #[command(after_help = deploy::DEPLOY_AFTER_HELP)]
    Deploy(deploy::DeployArgs),
    /// Go back to the module version a queue served before.
    #[command(after_help = deploy::ROLLBACK_AFTER_HELP)]
    Rollback(deploy::RollbackArgs),
    /// Make the running host read its config file again.
    #[command(after_help = deploy::RELOAD_AFTER_HELP)]
    Reload(deploy::ReloadArgs),
    /// Write a new processor project: an example, its test, its README.
    #[command(after_help = new::AFTER_HELP)]
    New(new::NewArgs),
    /// Build a processor project or file into a component, and check it.
    #[command(after_help = build::AFTER_HELP)]
    Build(build::BuildArgs),
}

/// Parses the command line, runs the subcommand and returns the process's
/// exit code.
pub fn main() -> ExitCode {
    main_with(|| {})
}

/// [`main`], calling `on_idle` on a runtime thread each time it runs out of
/// work (the binary gives its allocator freed memory back to the system
/// there).
pub fn main_with(on_idle: fn()) -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.or_else(|| match &cli.command {
        Command::Run(args) => args.configured_log_format(),
        _ => None,
    });
    init_logging(cli.verbose, format.unwrap_or(LogFormat::Text));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(on_idle)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bullpen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Exec(args) => exec::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Add(args) => add::run(args).await,
            Command::Jobs(args) => jobs::run(args).await,
            Command::Retry(args) => retry::run(args).await,
            Command::Cancel(args) => cancel::run(args).await,
            Command::Pause(args) => steer::pause(args).await,
            Command::Resume(args) => steer::resume(args).await,
            Command::Concurrency(args) => steer::concurrency(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Deploy(args) => deploy::deploy(args).await,
            Command::Rollback(args) => deploy::rollback(args).await,
            Command::Reload(args) => deploy::reload(args).await,
            Command::New(args) => new::run(args),
            Command::Build(args) => build::run(args),
        }
    });
    match result {
        Ok(code) => code,
        // The reader of our output went away (`bullpen exec … | head`):
        // nothing is wrong, and nobody is left to tell.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bullpen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `println!` that returns the error instead of panicking when stdout is a
/// pipe whose reader has gone.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use say;

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info,bullpen=info",
        2 => "info,bullpen=debug",
        _ => "debug,bullpen=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BULLPEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::observe::log::MaskedStderr);
    match format {
        LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's fields beside `message`; the innermost span (an
        // attempt's `job`) under `span`.
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
