//! The sandbox: runs one call of a processor module in a fresh, isolated
//! WebAssembly instance. Knows nothing of Redis.
//!
//! One [`Sandbox`] owns the wasmtime engine, the linker (WASI 0.2, deny by
//! default, plus the `bullpen:processor/host` imports) and the compile cache.
//! [`Sandbox::load`] turns a `.wasm` file into a [`Module`];
//! [`Module::process`] and [`Module::backoff`] run one call each in a fresh
//! store under [`CallOptions`]. Everything the guest says leaves through one
//! gate (`gate.rs`), which masks its queue's secrets.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bullpen::sandbox::{Ignore, CallOptions, Sandbox, SandboxOptions};
//! use std::sync::Arc;
//!
//! let sandbox = Sandbox::new(SandboxOptions::default())?;
//! let module = sandbox.load("modules/echo.wasm".as_ref())?;
//! let job = bullpen::sandbox::test_job("{\"hello\":\"world\"}");
//! let run = module.process(&job, &CallOptions::default(), Arc::new(Ignore)).await;
//! assert_eq!(run.outcome.unwrap().unwrap(), "{\"hello\":\"world\"}");
//! # Ok(()) }
//! ```

mod bindings;
mod budget;
mod cache;
mod call;
mod cpu;
mod crash;
mod engine;
mod gate;
pub mod grants;
pub mod job_api;
mod limits;
mod mask;
mod module;
mod output;
mod report;
mod reuse;
mod share;
pub mod signature;
mod state;

pub use bindings::{
    BackoffDecision, BackoffOptions, CONTRACT_PACKAGE, CONTRACT_VERSION, CONTRACT_VERSIONS,
    Failure, Job, JobError, Level, ProcessAnswer,
};
pub use budget::Budget;
pub use cache::LoadedFrom;
pub use cache::sha256_hex;
pub use call::{CallOptions, Cost, Run};
pub use crash::Crash;
pub use engine::EPOCH_TICK;
pub use mask::{MASKED, Mask};
pub use module::{LoadError, MAX_MODULE_SIZE, Module, read_module};
pub use output::Captured;
pub use report::{
    Dropped, Ignore, JobObserver, MAX_REPORT_LEN, MAX_REPORTS_PER_JOB, REPORT_OVERHEAD, Recorder,
    Report, level_name,
};
pub use reuse::{Instances, Reuse};
pub use share::{CpuShare, Lane};
pub use state::JobState;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

/// How a [`Sandbox`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Most instances alive at once (all queues' concurrency, plus the
    /// instances that answer `backoff`). Sizes the pooling allocator.
    pub max_instances: u32,
    /// The largest memory cap any call will run with, in bytes.
    pub max_memory: u64,
    /// Where compiled modules are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Whether guest code is compiled with epoch checks, which is what lets
    /// [`CallOptions::timeout`] stop a guest that computes forever. Always on in
    /// bullpen; off only to measure what the checks cost (a benchmark).
    pub epoch_checks: bool,
    /// Whose signatures a module may carry, and whether it must: checked
    /// on every load.
    pub trust: signature::Trust,
}

impl Default for SandboxOptions {
    /// 64 instances, 4 GiB, no cache, epoch checks on.
    fn default() -> Self {
        SandboxOptions {
            max_instances: 64,
            max_memory: 4 << 30,
            cache_dir: None,
            epoch_checks: true,
            trust: signature::Trust::default(),
        }
    }
}

/// The host's wasmtime engine, linker and compile cache.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<JobState>,
    cache: cache::CompileCache,
    /// The epoch clock, when guests are compiled with epoch checks.
    clock: Option<Arc<engine::EpochClock>>,
    /// How queues share the runtime's threads.
    share: Arc<CpuShare>,
    trust: signature::Trust,
}

/// The engine or linker could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct SandboxError(String);

impl Sandbox {
    /// Builds the engine (and starts its epoch clock) and the linker.
    pub fn new(options: SandboxOptions) -> Result<Self, SandboxError> {
        let error = |e: wasmtime::Error| SandboxError(format!("{e:#}"));
        let engine = engine::build(&options).map_err(error)?;
        let clock = options
            .epoch_checks
            .then(|| engine::EpochClock::start(&engine));
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(error)?;
        grants::link(&mut linker).map_err(error)?;
        link_contract(&mut linker).map_err(error)?;
        let cache = cache::CompileCache::new(&engine, options.cache_dir);
        Ok(Sandbox {
            engine,
            linker,
            cache,
            clock,
            share: CpuShare::of_runtime(),
            trust: options.trust,
        })
    }

    /// Queue `queue`'s place in the CPU share, with weight `cpu_weight`
    /// (for [`CallOptions::lane`]).
    pub fn lane(&self, queue: &str, cpu_weight: u32) -> Arc<Lane> {
        self.share.lane(queue, cpu_weight)
    }

    /// Loads, checks and links the processor module in `path`, from the
    /// compile cache when it holds it.
    pub fn load(&self, path: &Path) -> Result<Module, LoadError> {
        let module = module::load(
            &self.engine,
            &self.linker,
            &self.cache,
            &self.trust,
            path,
            self.clock.clone(),
        )?;
        tracing::debug!(
            module = %module.file_name(),
            hash = module.short_hash(),
            from = module.loaded_from().as_str(),
            ms = module.load_time().as_secs_f64() * 1e3,
            "module loaded"
        );
        Ok(module)
    }
}

/// Links the contract's imports, of every version this host runs.
fn link_contract(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    use bindings::bullpen::processor as now;
    use bindings::v0_1::bullpen::processor as v0_1;
    fn reporter(state: &mut JobState) -> &mut report::Reporter {
        &mut state.reporter
    }
    now::types::add_to_linker::<_, HasSelf<report::Reporter>>(linker, reporter)?;
    now::host::add_to_linker::<_, HasSelf<report::Reporter>>(linker, reporter)?;
    now::jobs::add_to_linker::<_, HasSelf<job_api::Jobs>>(linker, |state: &mut JobState| {
        &mut state.jobs
    })?;
    v0_1::types::add_to_linker::<_, HasSelf<report::Reporter>>(linker, reporter)?;
    v0_1::host::add_to_linker::<_, HasSelf<report::Reporter>>(linker, reporter)?;
    Ok(())
}

/// A job with this data and otherwise the fields of a first attempt, for
/// `bullpen exec`, tests and examples.
pub fn test_job(data: &str) -> Job {
    Job {
        id: "1".into(),
        name: "test".into(),
        queue: "test".into(),
        data: data.into(),
        attempts_made: 0,
        attempts_started: 1,
        max_attempts: 1,
        timestamp: 0,
        backoff: None,
    }
}
