//! The `bullpen` binary: everything it does is in the library's `cli`.

// Each job allocates and frees many small buffers on every thread: the
// job's hash and its data as a JSON tree (parsed, cloned and dropped by the
// crate), Redis replies, the sandbox's store. With glibc's malloc that was a
// quarter of the host's CPU per no-op job and 45% per json-transform job;
// mimalloc cut the latter by a third (docs/BENCHMARKS.md). `no_thp` keeps
// transparent huge pages from inflating its resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bullpen::cli::main_with(return_freed_memory)
}

/// How often, at most, a runtime thread going idle hands the memory it freed
/// back to the system.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// mimalloc returns freed memory to the system after a delay, but only when
/// the thread that freed it allocates again: an idle host kept the ~800 MiB
/// a 40 MB job had used. Collecting when a thread goes idle (at most once a
/// second, so a busy host does not pay for it) gives it back.
fn return_freed_memory() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| {
        let now = std::time::Instant::now();
        if last
            .get()
            .is_none_or(|at| now.duration_since(at) >= COLLECT_EVERY)
        {
            last.set(Some(now));
            // SAFETY: mi_collect only walks the calling thread's heap.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}
