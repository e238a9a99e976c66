//! `bullpen build`: a processor project or file into a component, checked
//! as `bullpen check` checks it.

use crate::authoring::build::{Source, build, project_output};
use crate::sandbox::{Sandbox, SandboxOptions};
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen build                          # the project here: Cargo.toml, package.json or pyproject.toml
  bullpen build webhook.ts -o modules/webhook.wasm
  bullpen build flaky.py -o modules/flaky.wasm

JavaScript and TypeScript are bundled by esbuild and embedded in SpiderMonkey
by ComponentizeJS; Python is embedded in CPython by componentize-py. Those
tools are installed on first use into ~/.cache/bullpen ($BULLPEN_CACHE) with
npm and pip, at pinned versions.";

/// Arguments of `bullpen build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// A project directory (Cargo.toml, package.json or pyproject.toml), or
    /// a .ts, .mts, .js, .mjs or .py processor file.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where to write the component. Default: cargo's output for Rust;
    /// `<name>.wasm` in an npm or Python project's directory (its
    /// package.json or pyproject.toml name); beside a file, its name with
    /// .wasm.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Where the compile cache of the check lives (<dir>/cache), the same as
    /// `bullpen exec`'s, so that exec runs the built component at once.
    #[arg(long, default_value = ".bullpen")]
    pub data_dir: PathBuf,
    /// Compile the component for the check even if the cache holds it, and
    /// do not write it.
    #[arg(long)]
    pub no_cache: bool,
}

pub(super) fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let source = Source::find(&args.path)?;
    let out = match args.out {
        Some(out) => Some(out),
        None => project_output(&args.path)?,
    };
    let built = build(&source, out.as_deref())?;
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        cache_dir: (!args.no_cache).then(|| args.data_dir.join("cache")),
        ..SandboxOptions::default()
    })?;
    match sandbox.load(&built) {
        Ok(module) => {
            super::check::say_valid(&built, &module)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
