//! `bullpen check`: is this file a processor this host can run?

use crate::sandbox::Module;
use crate::sandbox::{CONTRACT_PACKAGE, Sandbox, SandboxOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen check modules/echo.wasm
  bullpen check modules/*.wasm

Exit code: 0 when every file is a valid processor, 1 otherwise.";

/// Arguments of `bullpen check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The module files to check.
    #[arg(required = true)]
    pub modules: Vec<PathBuf>,
}

pub(super) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        ..SandboxOptions::default()
    })?;
    let mut all_valid = true;
    for path in &args.modules {
        match sandbox.load(path) {
            Ok(module) => say_valid(path, &module)?,
            Err(e) => {
                all_valid = false;
                eprintln!("{e}");
            }
        }
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The line that says `path` is a processor this host runs.
pub(super) fn say_valid(path: &Path, module: &Module) -> std::io::Result<()> {
    super::say!(
        "{}: ok: a {CONTRACT_PACKAGE}@{} processor (sha256 {})",
        path.display(),
        module.contract_version(),
        module.short_hash()
    )
}
