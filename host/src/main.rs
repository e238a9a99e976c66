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
    bullpen::cli::main()
}
