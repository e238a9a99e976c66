//! What bullpen ships: the binary (fully static, under 40 MB, naming its
//! version, commit and contracts), and `cargo install` from a clone.

use bullpen_tests::{cargo_command, exec_report, guest, without_cargo_env, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The commit `--version` must name: git's, or `unknown` outside a checkout.
fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// `binary --version`, checked for what it must name.
fn check_version(binary: &Path) {
    let output = Command::new(binary).arg("--version").output().unwrap();
    assert!(output.status.success());
    check_version_text(&String::from_utf8_lossy(&output.stdout));
}

/// What `bullpen --version` said names the version, the commit built and
/// the contracts.
fn check_version_text(said: &str) {
    for wanted in [
        format!(
            "bullpen {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            commit()
        ),
        "contract: bullpen:processor@0.2.2; runs processors built for 0.2.2, 0.2.1, 0.2.0, 0.1.0"
            .into(),
        "wasmtime 48.0.8, bullmq-official 1.4.4".into(),
    ] {
        assert!(said.contains(&wanted), "no `{wanted}` in:\n{said}");
    }
}

/// `scripts/dist` builds a binary that needs no libc, is under 40 MB, and
/// runs a processor.
#[test]
fn the_shipped_binary_is_static_small_and_runs_a_job() {
    let mut command = Command::new("bash");
    without_cargo_env(&mut command);
    let output = command
        .arg("scripts/dist")
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/dist failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(size < 40 << 20, "{}: {size} bytes", binary.display());
    let elf = Command::new("readelf")
        .arg("-lW")
        .arg(&binary)
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&elf.stdout);
    assert!(
        headers.contains("LOAD") && !headers.contains("INTERP"),
        "{}: not static:\n{headers}",
        binary.display()
    );
    check_version(&binary);

    let data = tempfile::tempdir().unwrap();
    let report = exec_report(
        Command::new(&binary)
            .arg("exec")
            .arg(guest("echo"))
            .args(["--data", r#"{"hello": "static"}"#, "--data-dir"])
            .arg(data.path()),
    );
    assert_eq!(report["outcome"], "completed", "{report}");
}

/// `cargo install --locked --path host`, as the README says, from this
/// checkout (a debug build here, to share the tests' build).
#[test]
fn cargo_install_from_a_clone_gives_a_working_bullpen() {
    let root = tempfile::tempdir().unwrap();
    let output = cargo_command(&workspace_root())
        .args(["install", "--locked", "--debug", "--path", "host", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_version(&root.path().join("bin/bullpen"));
}
