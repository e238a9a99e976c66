//! The benchmark harness is not a test, but its quick mode runs here so it
//! cannot rot: every contender drains a few hundred jobs and gets a row, and
//! the latency, start-up and target tables are printed.

use bullpen_tests::{bullpen_binary, harness_binary};

#[test]
fn the_benchmark_harness_runs_in_quick_mode() {
    let output = std::process::Command::new(harness_binary())
        .args([
            "--quick",
            "--jobs",
            "200",
            "--latency-jobs",
            "20",
            "--bullpen",
        ])
        .arg(bullpen_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    for row in [
        "| BullMQ Node, in-process | no-op | 64 |",
        "| BullMQ Node, sandboxed (child processes) | no-op | 8 |",
        "| BullMQ Node, sandboxed (worker threads) | no-op | 8 |",
        "| bullmq-official, native closure | no-op | 64 |",
        "| bullpen | no-op | 1 |",
        "| bullpen | no-op | 64 |",
        "| BullMQ Node, in-process | json-transform | 8 |",
        "| bullpen | json-transform | 8 |",
        "| bullpen | pickup, added → completed | 8 |",
        "| cold (no compile cache) | warm (cache) | idle RSS |",
        "| warm start to first job ≤ 200 ms |",
        "| pickup latency p50 ≤ 1 ms, p99 ≤ 3 ms (added → completed) |",
    ] {
        assert!(stdout.contains(row), "no row {row}:\n{stdout}");
    }
}

/// `--help` prints the usage and runs nothing; a flag the harness does not
/// know is refused, naming it, rather than ignored.
#[test]
fn the_harness_explains_itself_and_refuses_unknown_flags() {
    let help = std::process::Command::new(harness_binary())
        .arg("--help")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(stdout.contains("Usage: harness"), "{stdout}");
    assert!(stdout.contains("--baseline"), "{stdout}");
    let wrong = std::process::Command::new(harness_binary())
        .arg("--job")
        .arg("5")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("unexpected argument '--job'"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}
