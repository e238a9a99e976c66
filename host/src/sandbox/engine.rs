//! The one wasmtime [`Engine`] of a host: how guests are compiled and
//! allocated, and the clock that lets their time budgets expire.

use super::SandboxOptions;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A running guest yields to the
/// async runtime once per tick, so a spinning guest delays other jobs on its
/// thread by at most this much, and overruns its budget by at most this much.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the engine every module of this host is compiled for.
///
/// The pooling allocator and the keep-resident settings make a fresh
/// instance per job cheap (measured: ~60 µs per job with pooling defaults,
/// ~12 µs with these); `concurrency_support(false)` keeps calls off the
/// component-model-async path, which bullpen's contract does not use.
pub fn build(options: &SandboxOptions) -> wasmtime::Result<Engine> {
    let slots = options.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 16)
        .async_stack_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .epoch_interruption(options.epoch_checks)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the engine
/// lives, on a thread of its own.
pub fn start_epoch_clock(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("bullpen-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
