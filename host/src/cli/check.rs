//! `bullpen check`: is this file (or this component in an OCI registry) a
//! processor this host can run, and who signed it?

use crate::config::Config;
use crate::registry::oci;
use crate::sandbox::signature::{self, Trust};
use crate::sandbox::{CONTRACT_PACKAGE, Module, Sandbox, SandboxOptions, read_module};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen check modules/echo.wasm
  bullpen check modules/*.wasm
  bullpen check oci://registry.example.com/acme/mailer:2.1.0
  bullpen check -c /etc/bullpen.toml build/mailer.wasm   # signed by one of [host] trusted_keys?

Exit code: 0 when every file is a valid processor, 1 otherwise.";

/// Arguments of `bullpen check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The module files to check, or components in OCI registries
    /// (`oci://registry/repository:tag`), pulled and checked against their
    /// digests first.
    #[arg(required = true, value_name = "FILE|oci://REFERENCE")]
    pub modules: Vec<String>,
    /// A config whose `[host] trusted_keys` the modules' signatures are
    /// checked against (and `require_signatures` applied).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

pub(super) async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let trust = match &args.config {
        Some(path) => Some(Config::load(path)?.host.trust),
        None => None,
    };
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        trust: trust.clone().unwrap_or_default(),
        ..SandboxOptions::default()
    })?;
    let mut all_valid = true;
    for module in &args.modules {
        match check(&sandbox, module).await {
            Ok((name, loaded, signed)) => {
                say_valid(Path::new(&name), &loaded)?;
                super::say!("  {}", signature_note(&loaded, signed, trust.as_ref()))?;
            }
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

/// The module loaded (pulled first, for an OCI reference), the name to
/// say it by, and whether it carries a signature.
async fn check(sandbox: &Sandbox, module: &str) -> anyhow::Result<(String, Module, bool)> {
    let Some(reference) = oci::parse(module) else {
        let loaded = sandbox.load(Path::new(module))?;
        let signed = read_module(loaded.path()).is_ok_and(|bytes| signature::is_signed(&bytes));
        return Ok((module.to_owned(), loaded, signed));
    };
    let artifact = oci::pull(&reference.map_err(anyhow::Error::msg)?).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("component.wasm");
    std::fs::write(&file, &artifact.bytes)?;
    let loaded = sandbox
        .load(&file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", artifact.origin.reference))?;
    let signed = signature::is_signed(&artifact.bytes);
    Ok((artifact.origin.describe(), loaded, signed))
}

/// Who signed `module`, as far as `trust` (from `-c`) tells.
fn signature_note(module: &Module, signed: bool, trust: Option<&Trust>) -> String {
    if let Some(signer) = module.signer() {
        return format!("signed by {signer}");
    }
    match (signed, trust) {
        (false, _) => "not signed".to_owned(),
        (true, None) => "signed (give -c with [host] trusted_keys to check by whom)".to_owned(),
        (true, Some(t)) if t.keys.is_empty() => {
            "signed (the config lists no trusted_keys to check it with)".to_owned()
        }
        (true, Some(_)) => {
            "signed, but by none of trusted_keys (or changed since it was signed)".to_owned()
        }
    }
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
