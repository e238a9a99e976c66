//! The keys that take a number, a size or a duration: each one's default
//! and the values accepted, in one table that the config file and
//! `bullpen exec`'s flags both read, so that both refuse a value with the
//! same words.
//!
//! ```
//! use bullpen::config::bounds::MEMORY;
//! use bullpen::units::ByteSize;
//! assert_eq!(MEMORY.check(ByteSize(1)).unwrap_err(), "memory must be between 2 MiB and 4 GiB");
//! assert_eq!(MEMORY.check(ByteSize(64 << 20)), Ok(ByteSize(64 << 20)));
//! ```

use crate::units::{ByteSize, HumanDuration};
use std::fmt::Display;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A value with a least and a most a key can ever hold: a bound at one of
/// them is left out of the refusal's words ("at least 1ms").
pub trait Extent: Copy + PartialOrd + Display {
    /// The least value of the type.
    const LEAST: Self;
    /// The most.
    const MOST: Self;
}

impl Extent for u32 {
    const LEAST: Self = 0;
    const MOST: Self = u32::MAX;
}

impl Extent for ByteSize {
    const LEAST: Self = ByteSize(0);
    const MOST: Self = ByteSize(u64::MAX);
}

impl Extent for HumanDuration {
    const LEAST: Self = HumanDuration(Duration::ZERO);
    const MOST: Self = HumanDuration(Duration::MAX);
}

/// One key's default and accepted range.
#[derive(Debug, Clone, Copy)]
pub struct Bound<T> {
    /// The key, as the config file writes it.
    pub key: &'static str,
    /// Its value when the file leaves it out.
    pub default: T,
    /// The least accepted.
    pub min: T,
    /// The most accepted.
    pub max: T,
}

impl<T: Extent> Bound<T> {
    /// `value` if accepted, else why not: `<key> must be between <min> and
    /// <max>` (or `at least`, `at most`).
    pub fn check(&self, value: T) -> Result<T, String> {
        if self.min <= value && value <= self.max {
            return Ok(value);
        }
        let key = self.key;
        Err(match (self.min > T::LEAST, self.max < T::MOST) {
            (true, true) => format!("{key} must be between {} and {}", self.min, self.max),
            (true, false) => format!("{key} must be at least {}", self.min),
            _ => format!("{key} must be at most {}", self.max),
        })
    }

    /// The key's value in a file: its default when absent; refused with
    /// where it is written.
    pub(crate) fn read(&self, value: Option<Spanned<T>>) -> Result<T, (Range<usize>, String)> {
        match value {
            None => Ok(self.default),
            Some(value) => self
                .check(*value.get_ref())
                .map_err(|reason| (value.span(), reason)),
        }
    }
}

const fn size(key: &'static str, default: u64, min: u64, max: u64) -> Bound<ByteSize> {
    Bound {
        key,
        default: ByteSize(default),
        min: ByteSize(min),
        max: ByteSize(max),
    }
}

const fn duration(key: &'static str, default: Duration) -> Bound<HumanDuration> {
    Bound {
        key,
        default: HumanDuration(default),
        min: HumanDuration(Duration::from_millis(1)),
        max: HumanDuration(Duration::MAX),
    }
}

/// Most jobs one queue may run at once.
pub const MAX_CONCURRENCY: u32 = 1_000;

/// `concurrency`.
pub const CONCURRENCY: Bound<u32> = Bound {
    key: "concurrency",
    default: 1,
    min: 1,
    max: MAX_CONCURRENCY,
};

/// `memory`: a Rust guest needs about 1.1 MiB to start, and a wasm32
/// memory cannot exceed 4 GiB.
pub const MEMORY: Bound<ByteSize> = size("memory", 64 << 20, 2 << 20, 4 << 30);

/// `timeout`.
pub const TIMEOUT: Bound<HumanDuration> = duration("timeout", Duration::from_secs(30));

/// `lock_duration`.
pub const LOCK_DURATION: Bound<HumanDuration> = duration("lock_duration", Duration::from_secs(30));

/// `stalled_interval`.
pub const STALLED_INTERVAL: Bound<HumanDuration> =
    duration("stalled_interval", Duration::from_secs(2));

/// `report_budget`: at least room for a few lines (a budget of nothing
/// would drop every report, and say so on every attempt).
pub const REPORT_BUDGET: Bound<ByteSize> = size("report_budget", 1 << 20, 1 << 10, 1 << 30);

/// `max_data_size`: at most Redis's own limit for a string.
pub const MAX_DATA_SIZE: Bound<ByteSize> = size("max_data_size", 16 << 20, 1, 512 << 20);

/// `max_started_attempts`.
pub const MAX_STARTED_ATTEMPTS: Bound<u32> = Bound {
    key: "max_started_attempts",
    default: 10_000,
    min: 1,
    max: u32::MAX,
};

/// `max_response_size`: by default well inside the default 64 MiB of
/// guest memory that has to hold it.
pub const MAX_RESPONSE_SIZE: Bound<ByteSize> = size("max_response_size", 10 << 20, 1, 4 << 30);

/// `max_added_jobs`: jobs one attempt may add.
pub const MAX_ADDED_JOBS: Bound<u32> = Bound {
    key: "max_added_jobs",
    default: 1_000,
    min: 1,
    max: 100_000,
};

/// `max_added_size`: bytes of added jobs (data and options) and updated
/// data one attempt may write.
pub const MAX_ADDED_SIZE: Bound<ByteSize> = size("max_added_size", 16 << 20, 1, 512 << 20);

const fn count(key: &'static str, default: u32, min: u32, max: u32) -> Bound<u32> {
    Bound {
        key,
        default,
        min,
        max,
    }
}

/// `cpu_weight`: the queue's share of the CPU beside other busy queues.
pub const CPU_WEIGHT: Bound<u32> = count("cpu_weight", 1, 1, 1_000);

/// `max_instance_reuse_count`: attempts one instance runs (1: a fresh
/// instance for each).
pub const MAX_INSTANCE_REUSE_COUNT: Bound<u32> = count("max_instance_reuse_count", 1, 1, u32::MAX);

/// `idle_instance_timeout`: how long a reused instance waits for its next
/// attempt.
pub const IDLE_INSTANCE_TIMEOUT: Bound<HumanDuration> =
    duration("idle_instance_timeout", Duration::from_secs(10));

/// `max_instance_memory`: linear memory past which a reused instance is
/// dropped after its attempt. Its default is half the queue's `memory`,
/// and it may not be more than `memory`.
pub const MAX_INSTANCE_MEMORY: Bound<ByteSize> =
    size("max_instance_memory", 32 << 20, 1 << 20, 4 << 30);

/// `max_outbound_connections`: connections one attempt may hold open at
/// once (an ordinary job holds one or a few).
pub const MAX_OUTBOUND_CONNECTIONS: Bound<u32> = count("max_outbound_connections", 64, 1, 65_536);

/// `max_queue_outbound_connections`: connections a queue's attempts may
/// hold open together.
pub const MAX_QUEUE_OUTBOUND_CONNECTIONS: Bound<u32> =
    count("max_queue_outbound_connections", 256, 1, 1 << 20);

/// `max_adds_per_second`: jobs a queue's attempts may add per second,
/// together (bursts of one second's worth).
pub const MAX_ADDS_PER_SECOND: Bound<u32> = count("max_adds_per_second", 1_000, 1, 1_000_000);

/// `max_target_depth`: waiting jobs a queue added to may hold before
/// adding to it is refused.
pub const MAX_TARGET_DEPTH: Bound<u32> = count("max_target_depth", 100_000, 1, u32::MAX);

/// `max_bytes` of a writable `files` grant.
pub const MAX_BYTES: Bound<ByteSize> = size("max_bytes", 1 << 30, 1, u64::MAX);

/// `max_files` of a writable `files` grant: files and directories in it.
pub const MAX_FILES: Bound<u32> = count("max_files", 10_000, 1, u32::MAX);

/// `cache_size`: the compile cache and kept versions in `data_dir`.
pub const CACHE_SIZE: Bound<ByteSize> = size("cache_size", 2 << 30, 1 << 20, u64::MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_key_and_the_range() {
        assert_eq!(
            TIMEOUT.check(HumanDuration(Duration::ZERO)).unwrap_err(),
            "timeout must be at least 1ms"
        );
        assert_eq!(
            REPORT_BUDGET.check(ByteSize(0)).unwrap_err(),
            "report_budget must be between 1 KiB and 1 GiB"
        );
        assert_eq!(
            STALLED_INTERVAL
                .check(HumanDuration(Duration::ZERO))
                .unwrap_err(),
            "stalled_interval must be at least 1ms"
        );
        assert_eq!(
            MAX_DATA_SIZE.check(ByteSize(0)).unwrap_err(),
            "max_data_size must be between 1 B and 512 MiB"
        );
        assert_eq!(
            CONCURRENCY.check(0).unwrap_err(),
            "concurrency must be between 1 and 1000"
        );
        assert_eq!(MAX_ADDED_JOBS.check(5), Ok(5));
    }
}
