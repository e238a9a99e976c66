//! The `bullpen` command line: argument parsing and one function per
//! subcommand, each a thin layer over the library.

mod check;
mod exec;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Runs BullMQ jobs in isolated WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "bullpen", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for more detail). BULLPEN_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

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
}

/// Parses the command line, runs the subcommand and returns the process's
/// exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
            Command::Check(args) => check::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bullpen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,bullpen=info",
        2 => "info,bullpen=debug",
        _ => "debug,bullpen=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BULLPEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
