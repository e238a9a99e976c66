//! Shared helpers of bullpen's end-to-end tests: the example guests and the
//! `bullpen` binary, each built once per test run, found by asking cargo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The example guests, by crate name.
pub const EXAMPLES: [&str; 8] = [
    "echo",
    "json-transform",
    "flaky",
    "validate",
    "rate-limited",
    "delayed",
    "custom-backoff",
    "misbehave",
];

/// The built `.wasm` of an example guest (e.g. `"json-transform"`).
///
/// The first call builds every example for `wasm32-wasip2` with cargo's
/// `guest` profile; later calls, in this process or the next, reuse it.
pub fn guest(name: &str) -> PathBuf {
    static GUESTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let built = GUESTS.get_or_init(|| {
        let mut args = vec!["--profile", "guest", "--target", "wasm32-wasip2"];
        for example in EXAMPLES {
            args.extend(["-p", example]);
        }
        cargo_build(&args, ".wasm")
    });
    let file = format!("{}.wasm", name.replace('-', "_"));
    built
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f == file.as_str()))
        .unwrap_or_else(|| panic!("no guest named {name} among {built:?}"))
        .clone()
}

/// The `bullpen` binary, built (debug) on first use.
pub fn bullpen_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            cargo_build(&["-p", "bullpen", "--bin", "bullpen"], "bullpen")
                .into_iter()
                .next()
                .expect("cargo built no bullpen binary")
        })
        .clone()
}

/// A `Command` for the `bullpen` binary, with logs quiet unless asked.
pub fn bullpen() -> Command {
    let mut command = Command::new(bullpen_binary());
    command.env_remove("BULLPEN_LOG");
    command
}

/// Runs `cargo build <args> --message-format=json` at the workspace root and
/// returns the artifacts whose file names end with `suffix`.
fn cargo_build(args: &[&str], suffix: &str) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace_root())
        .output()
        .expect("running cargo");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: rustup target add wasm32-wasip2"
            } else {
                ""
            };
        panic!("cargo build {args:?} failed:\n{stderr}{hint}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut artifacts = Vec::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        let exe = message["executable"].as_str();
        for file in files.filter_map(|f| f.as_str()).chain(exe) {
            if file.ends_with(suffix) && !artifacts.iter().any(|a: &PathBuf| a == Path::new(file)) {
                artifacts.push(PathBuf::from(file));
            }
        }
    }
    artifacts
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// This process's resident memory, in bytes.
pub fn resident_memory() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's second field is the resident page count");
    pages * 4096
}
