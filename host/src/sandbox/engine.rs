//! The one wasmtime [`Engine`] of a host: how guests are compiled and
//! allocated, and the clock that lets their time budgets expire.

use super::SandboxOptions;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A running guest checks its
/// deadline and yields to the async runtime once per tick, so a spinning
/// guest delays other jobs on its thread by about this much at a time, and
/// ends about this much after its budget once it is scheduled
/// (docs/BENCHMARKS.md, "Time budget under load").
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks without a guest running after which the clock sleeps until one
/// starts: an idle host does not wake a thousand times a second, and a busy
/// one never pays for waking the clock.
const IDLE_TICKS: u32 = 1_000;

/// Builds the engine every module of this host is compiled for.
///
/// The pooling allocator and the keep-resident settings make a fresh
/// instance per job cheap (measured: ~60 µs per job with pooling defaults,
/// ~12 µs with these); `concurrency_support(false)` keeps calls off the
/// component-model-async path, which bullpen's contract does not use.
///
/// `pagemap_scan` (resetting only the pages an attempt dirtied) is off on a
/// machine with swap: wasmtime 48's scan skips a dirty page that is swapped
/// out, neither resetting nor discarding it, so the next attempt in the slot
/// would read it (wasmtime pull request #14357). Without the scan a slot's
/// reset costs more (docs/BENCHMARKS.md) and leaves nothing behind.
pub fn build(options: &SandboxOptions) -> wasmtime::Result<Engine> {
    let swap = std::fs::read_to_string("/proc/swaps")
        .map(|swaps| swap_in_use(&swaps))
        .unwrap_or(false);
    if swap {
        tracing::info!(
            "swap is on: instance memory is reset without pagemap_scan (slower, but a swapped-out \
             page cannot outlive its attempt)"
        );
    }
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
        .pagemap_scan(if swap { Enabled::No } else { Enabled::Auto });

    let mut config = Config::new();
    config
        .epoch_interruption(options.epoch_checks)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Whether `/proc/swaps` lists a swap area (a file, a partition, zram):
/// anything past its header line.
fn swap_in_use(swaps: &str) -> bool {
    swaps.lines().skip(1).any(|line| !line.trim().is_empty())
}

/// The thread that advances an engine's epoch every [`EPOCH_TICK`] while
/// guests run (a guest's time budget and its yields need the ticks), and
/// sleeps when none has run for [`IDLE_TICKS`].
#[derive(Debug)]
pub struct EpochClock {
    running: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl EpochClock {
    /// Starts the clock of `engine`; it stops when the engine is dropped.
    pub fn start(engine: &Engine) -> Arc<Self> {
        let clock = Arc::new(EpochClock {
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let weak = engine.weak();
        let ticking = clock.clone();
        let handle = std::thread::Builder::new()
            .name("bullpen-epoch".into())
            .spawn(move || ticking.tick(weak))
            .expect("spawning the epoch thread");
        let _ = clock.thread.set(handle.thread().clone());
        clock
    }

    fn tick(&self, weak: wasmtime::EngineWeak) {
        let mut idle = 0;
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            if self.running.load(Ordering::SeqCst) > 0 {
                idle = 0;
            } else {
                idle += 1;
            }
            if idle >= IDLE_TICKS {
                self.parked.store(true, Ordering::SeqCst);
                // A guest that started before `parked` was set is seen here;
                // one that starts after it unparks this thread. Parked until
                // then: an idle host's clock does not tick at all.
                while self.running.load(Ordering::SeqCst) == 0 {
                    // Timed: the engine's drop is noticed within a second.
                    std::thread::park_timeout(Duration::from_secs(1));
                    if weak.upgrade().is_none() {
                        return;
                    }
                }
                self.parked.store(false, Ordering::SeqCst);
                idle = 0;
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
        }
    }

    /// Keeps the clock ticking until the returned guard is dropped: held
    /// for as long as a guest may run.
    pub fn hold(self: &Arc<Self>) -> Ticking {
        self.running.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
        Ticking(self.clone())
    }
}

/// Keeps an [`EpochClock`] ticking while it lives.
#[derive(Debug)]
pub struct Ticking(Arc<EpochClock>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_is_in_use_when_proc_swaps_lists_an_area() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swap_in_use(header));
        assert!(!swap_in_use(""));
        assert!(swap_in_use(&format!(
            "{header}/dev/zram0                               partition\t4194300\t\t0\t\t100\n"
        )));
    }

    #[test]
    fn an_idle_clock_stays_parked_until_a_guest_runs() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let clock = EpochClock::start(&engine);
        let parked = || clock.parked.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !parked() {
            assert!(std::time::Instant::now() < deadline, "never parked");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Past its 1 s park timeout, and past another second of ticks.
        for _ in 0..250 {
            assert!(parked(), "an idle clock woke up to tick");
            std::thread::sleep(Duration::from_millis(10));
        }
        let ticking = clock.hold();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while parked() {
            assert!(
                std::time::Instant::now() < deadline,
                "a guest did not wake it"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(ticking);
    }
}
