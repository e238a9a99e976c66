//! Human-readable durations (`"30s"`, `"250ms"`) and sizes (`"64MiB"`), as
//! users write them in the config and on the command line, and as bullpen
//! writes them back in messages.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written as a number and a unit: `ms`, `s`, `m` or `h`
/// (`"250ms"`, `"30s"`, `"1.5m"`, `"2h"`).
///
/// ```
/// use bullpen::units::HumanDuration;
/// let d: HumanDuration = "1.5s".parse().unwrap();
/// assert_eq!(d.0, std::time::Duration::from_millis(1500));
/// assert_eq!(d.to_string(), "1.5s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// The longest duration accepted: longer ones are mistakes, and would
/// overflow the millisecond timestamps BullMQ computes from them.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A size in bytes written with an optional unit: `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
///
/// ```
/// use bullpen::units::ByteSize;
/// let s: ByteSize = "64MiB".parse().unwrap();
/// assert_eq!(s.0, 64 * 1024 * 1024);
/// assert_eq!(s.to_string(), "64 MiB");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a duration or size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a {what}: {why}")]
pub struct UnitError {
    input: String,
    what: &'static str,
    why: &'static str,
}

fn split_number(input: &str) -> (&str, &str) {
    let end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    (&input[..end], input[end..].trim())
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, UnitError> {
        let error = |why| UnitError {
            input: input.to_owned(),
            what: "duration",
            why,
        };
        let (number, unit) = split_number(input.trim());
        let value: f64 = number
            .parse()
            .map_err(|_| error("expected a number followed by ms, s, m or h, e.g. 30s"))?;
        let millis_per_unit = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "" => return Err(error("the unit is missing: write ms, s, m or h, e.g. 30s")),
            _ => return Err(error("unknown unit: use ms, s, m or h")),
        };
        let millis = value * millis_per_unit;
        if !millis.is_finite() || millis > MAX_DURATION.as_millis() as f64 {
            return Err(error("too large: at most 365 days"));
        }
        Ok(HumanDuration(Duration::from_micros(
            (millis * 1000.0) as u64,
        )))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            let secs = d.as_secs();
            if secs != 0 && secs.is_multiple_of(3600) {
                return write!(f, "{}h", secs / 3600);
            }
            if secs != 0 && secs.is_multiple_of(60) {
                return write!(f, "{}m", secs / 60);
            }
            return write!(f, "{secs}s");
        }
        if d < Duration::from_secs(1) {
            let ms = d.as_secs_f64() * 1000.0;
            return write!(f, "{}ms", trim_float(ms));
        }
        write!(f, "{}s", trim_float(d.as_secs_f64()))
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, UnitError> {
        let error = |why| UnitError {
            input: input.to_owned(),
            what: "size",
            why,
        };
        let (number, unit) = split_number(input.trim());
        let value: f64 = number
            .parse()
            .map_err(|_| error("expected a number followed by a unit, e.g. 64MiB"))?;
        let multiplier: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(error("unknown unit: use B, KiB, MiB, GiB, KB, MB or GB")),
        };
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(error("too large"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in UNITS {
            if self.0 >= size {
                let value = self.0 as f64 / size as f64;
                return write!(f, "{} {name}", trim_float(value));
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// Deserialises from a string such as `"30s"`, so a bad value in a config
/// file is reported at its position.
impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserialises from a string such as `"128MiB"`.
impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, millis) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.0, Duration::from_millis(millis));
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(
            "0.5ms".parse::<HumanDuration>().unwrap().to_string(),
            "0.5ms"
        );
    }

    #[test]
    fn bad_durations_say_why() {
        let err = "30".parse::<HumanDuration>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`30` is not a duration: the unit is missing: write ms, s, m or h, e.g. 30s"
        );
        assert!("thirty s".parse::<HumanDuration>().is_err());
        assert!("3 weeks".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!("128MiB".parse::<ByteSize>().unwrap().0, 128 << 20);
        assert_eq!("1.5 GiB".parse::<ByteSize>().unwrap().0, 3 << 29);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
        assert!("64 mib".parse::<ByteSize>().is_err());
    }
}
