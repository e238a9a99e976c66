//! The benchmark harness is not a test, but its quick mode runs here so it
//! cannot rot: every contender drains a few hundred jobs and gets a row.

use bullpen_tests::{bullpen_binary, harness_binary};

#[test]
fn the_benchmark_harness_runs_in_quick_mode() {
    let output = std::process::Command::new(harness_binary())
        .args(["--quick", "--jobs", "200", "--bullpen"])
        .arg(bullpen_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    for contender in [
        "| BullMQ Node, in-process | 64 |",
        "| BullMQ Node, sandboxed (child processes) | 8 |",
        "| BullMQ Node, sandboxed (worker threads) | 8 |",
        "| bullmq-official, native closure | 64 |",
        "| bullpen, echo guest | 1 |",
        "| bullpen, echo guest | 64 |",
    ] {
        assert!(stdout.contains(contender), "no row {contender}:\n{stdout}");
    }
}
