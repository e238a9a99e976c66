//! `bullpen check`: is this file (or this component in an OCI registry) a
//! processor this host can run?

use crate::registry::oci;
use crate::sandbox::Module;
use crate::sandbox::{CONTRACT_PACKAGE, Sandbox, SandboxOptions};
use std::path::Path;
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen check modules/echo.wasm
  bullpen check modules/*.wasm
  bullpen check oci://registry.example.com/acme/mailer:2.1.0

Exit code: 0 when every file is a valid processor, 1 otherwise.";

/// Arguments of `bullpen check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The module files to check, or components in OCI registries
    /// (`oci://registry/repository:tag`), pulled and checked against their
    /// digests first.
    #[arg(required = true, value_name = "FILE|oci://REFERENCE")]
    pub modules: Vec<String>,
}

pub(super) async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        ..SandboxOptions::default()
    })?;
    let mut all_valid = true;
    for module in &args.modules {
        match check(&sandbox, module).await {
            Ok(()) => {}
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

async fn check(sandbox: &Sandbox, module: &str) -> anyhow::Result<()> {
    let Some(reference) = oci::parse(module) else {
        let path = Path::new(module);
        let loaded = sandbox.load(path)?;
        return Ok(say_valid(path, &loaded)?);
    };
    let artifact = oci::pull(&reference.map_err(anyhow::Error::msg)?).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("component.wasm");
    std::fs::write(&file, &artifact.bytes)?;
    let loaded = sandbox
        .load(&file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", artifact.origin.reference))?;
    Ok(say_valid(Path::new(&artifact.origin.describe()), &loaded)?)
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
