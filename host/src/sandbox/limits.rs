//! The per-job cap on linear memory, and the record of how much was used.

/// Most elements a guest table may grow to. Rust guests use a few hundred;
/// the cap only stops a runaway `table.grow`.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Enforces one job's memory cap across all the linear memories of its
/// instance, and remembers the peak and whether the cap was hit.
///
/// A failed `memory.grow` and a guest panic both end in the same
/// `unreachable` trap; [`MemoryLimiter::cap_hit`] is what tells them apart.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: u64,
    in_use: u64,
    peak: u64,
    cap_hit: bool,
}

impl MemoryLimiter {
    /// A limiter that allows `cap` bytes of linear memory in total.
    pub fn new(cap: u64) -> Self {
        MemoryLimiter {
            cap,
            in_use: 0,
            peak: 0,
            cap_hit: false,
        }
    }

    /// The most linear memory the instance held at once, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// Whether the guest asked for more memory than its cap.
    pub fn cap_hit(&self) -> bool {
        self.cap_hit
    }

    /// The linear memory the instance holds now, in bytes.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// A next attempt in the same instance: its peak starts from what the
    /// instance holds, and the cap is not yet hit.
    pub fn next_attempt(&mut self) {
        self.peak = self.in_use;
        self.cap_hit = false;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        if self.in_use.saturating_add(growth) > self.cap {
            self.cap_hit = true;
            return Ok(false);
        }
        self.in_use += growth;
        self.peak = self.peak.max(self.in_use);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn caps_the_total_of_all_memories_and_keeps_the_peak() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(0, 30, None).unwrap());
        assert!(!limiter.cap_hit());
        assert!(!limiter.memory_growing(30, 50, None).unwrap());
        assert!(limiter.cap_hit());
        assert_eq!(limiter.peak(), 90);
    }
}
