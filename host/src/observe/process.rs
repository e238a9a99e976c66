//! The process's own figures under the names every Prometheus client uses
//! (`process_resident_memory_bytes`, …), read from `/proc/self` at each
//! scrape; plus `bullpen_uptime_seconds`. Linux only: elsewhere the process
//! metrics are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::time::Instant;

/// Reads the process's figures when scraped.
#[derive(Debug)]
pub struct ProcessCollector {
    started: Instant,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector {
            started: Instant::now(),
        }
    }
}

/// What `/proc/self` says.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "bullpen_uptime_seconds",
            "Seconds since this host started",
            None,
            uptime.metric_type(),
        )?)?;
        let Some(figures) = read_proc() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(figures.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                Some(figures.start_time_seconds),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(figures.virtual_bytes),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(figures.resident_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                figures.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                figures.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

fn read_proc() -> Option<Figures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mut figures = parse_stat(&stat, &boot, ticks as f64, page as f64)?;
    figures.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as f64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        figures.max_fds = Some(limit.rlim_cur as f64);
    }
    Some(figures)
}

/// The figures in `/proc/self/stat` (see proc(5)), with `/proc/stat`'s boot
/// time for the start.
fn parse_stat(stat: &str, proc_stat: &str, ticks: f64, page: f64) -> Option<Figures> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on: utime is field 14, so index 11 here.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let boot: f64 = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Figures {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds: None,
        max_fds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (tokio (x) y) S 1 4242 4242 0 -1 4194560 3000 0 0 0 \
                    250 50 0 0 20 0 9 0 1000 123456789 2048 18446744073709551615";
        let figures = parse_stat(stat, "cpu 1 2 3\nbtime 1700000000\n", 100.0, 4096.0).unwrap();
        assert_eq!(
            figures,
            Figures {
                cpu_seconds: 3.0,
                start_time_seconds: 1_700_000_010.0,
                virtual_bytes: 123_456_789.0,
                resident_bytes: 2048.0 * 4096.0,
                open_fds: None,
                max_fds: None,
            }
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let figures = read_proc().expect("Linux's /proc");
        assert!(figures.resident_bytes > 0.0);
        assert!(figures.open_fds.unwrap() >= 3.0);
    }
}
