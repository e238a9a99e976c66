//! BullMQ's built-in backoff strategies, `fixed` and `exponential`, with
//! its `jitter` option.

use std::time::Duration;

/// The built-in strategies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The same delay before every retry.
    Fixed,
    /// `2^(attemptsMade - 1) × delay`.
    Exponential,
}

impl Builtin {
    /// The built-in strategy called `name`, if there is one.
    ///
    /// ```
    /// use bullpen::outcome::backoff::Builtin;
    /// assert_eq!(Builtin::named("exponential"), Some(Builtin::Exponential));
    /// assert_eq!(Builtin::named("linear"), None);
    /// ```
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "fixed" => Some(Builtin::Fixed),
            "exponential" => Some(Builtin::Exponential),
            _ => None,
        }
    }

    /// The delay before the next attempt, as BullMQ computes it.
    ///
    /// `attempts_made` counts the failure that just happened; `jitter`
    /// (0.0–1.0) randomises the delay down to `(1 - jitter) × delay`, and
    /// `random` (0.0–1.0) is the random draw.
    ///
    /// ```
    /// use bullpen::outcome::backoff::Builtin;
    /// use std::time::Duration;
    /// let d = Builtin::Exponential.delay(3, Duration::from_secs(1), 0.0, 0.5);
    /// assert_eq!(d, Duration::from_secs(4));
    /// ```
    pub fn delay(self, attempts_made: u32, delay: Duration, jitter: f64, random: f64) -> Duration {
        let base_ms = delay.as_millis() as f64;
        let raw_ms = match self {
            Builtin::Fixed => base_ms,
            Builtin::Exponential => {
                let exponent = attempts_made.saturating_sub(1).min(62) as i32;
                (2f64.powi(exponent) * base_ms).round()
            }
        };
        let jitter = jitter.clamp(0.0, 1.0);
        let ms = if jitter > 0.0 {
            let min = raw_ms * (1.0 - jitter);
            (random.clamp(0.0, 1.0) * raw_ms * jitter + min).floor()
        } else {
            raw_ms
        };
        Duration::from_millis(ms.min(u64::MAX as f64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn exponential_doubles_from_the_base_delay() {
        let delays: Vec<u64> = (1..=4)
            .map(|n| Builtin::Exponential.delay(n, SECOND, 0.0, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000]);
    }

    #[test]
    fn fixed_is_fixed() {
        assert_eq!(Builtin::Fixed.delay(7, SECOND, 0.0, 0.9), SECOND);
    }

    #[test]
    fn jitter_spreads_between_the_floor_and_the_delay() {
        let low = Builtin::Exponential.delay(2, SECOND, 0.5, 0.0);
        let high = Builtin::Exponential.delay(2, SECOND, 0.5, 1.0);
        assert_eq!(low, Duration::from_millis(1000));
        assert_eq!(high, Duration::from_millis(2000));
    }
}
