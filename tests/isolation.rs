//! What one attempt leaves in memory for the next: nothing, swap or not.
//!
//! Its own test binary: it turns a swap file on (where the machine lets it)
//! and pages this whole process out, which would disturb the memory
//! measurements of tests running beside it.

use bullpen::sandbox::{CallOptions, Ignore, Module, Sandbox, SandboxOptions, test_job};
use bullpen_tests::guest;
use std::sync::Arc;
use std::time::Duration;

async fn process(module: &Module, data: &str) -> String {
    let run = module
        .process(&test_job(data), &CallOptions::default(), Arc::new(Ignore))
        .await;
    match run.outcome {
        Ok(Ok(value)) => value,
        other => panic!("{other:?}"),
    }
}

/// Asks the kernel to page out every writable private mapping of this
/// process (`MADV_PAGEOUT`): with swap on, the guest memory an attempt
/// dirtied goes to swap; without swap, nothing anonymous moves.
fn page_out_this_process() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || !perms.ends_with('p') {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        // SAFETY: advice on this process's own mappings, as listed; paging
        // out changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
    }
}

/// A swap file turned on for as long as it lives, where this machine lets
/// the tests (as root) turn one on.
struct SwapFile(std::path::PathBuf);

impl SwapFile {
    fn on() -> Option<SwapFile> {
        let path = std::env::temp_dir().join(format!("bullpen-test-swap-{}", std::process::id()));
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .arg(&path)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let made = run("fallocate", &["-l", "256M"])
            && std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .is_ok()
            && run("mkswap", &[])
            && run("swapon", &[]);
        if !made {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(SwapFile(path))
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        let _ = std::process::Command::new("swapoff").arg(&self.0).output();
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Each attempt runs in a fresh instance whose memory reuses one pool slot:
/// it finds none of what the attempt before it wrote there, even when that
/// was paged out to swap while it ran. wasmtime 48's `pagemap_scan` reset
/// skips a swapped-out page (the next attempt read 221,184 bytes of the
/// last one's buffer); bullpen turns the scan off when swap is on
/// (docs/SECURITY.md, "Between attempts"). Where no swap can be turned on,
/// this checks the reset without swap.
#[tokio::test]
async fn an_attempt_finds_nothing_an_earlier_one_left_in_its_memory() {
    let swap = SwapFile::on();
    if swap.is_none() {
        eprintln!("no swap file could be turned on: the reset is checked without swap");
    }
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        ..SandboxOptions::default()
    })
    .unwrap();
    let module = sandbox.load(&guest("misbehave")).unwrap();
    for attempt in 1..=3 {
        // While the attempt sleeps with its buffer filled.
        let paging = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            page_out_this_process();
        });
        assert_eq!(
            process(&module, r#"{"mode":"leftover","ms":600}"#).await,
            r#"{"left":0}"#,
            "attempt {attempt}"
        );
        paging.join().unwrap();
    }
}
