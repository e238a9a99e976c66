//! Readings of what a run cost: CPU time of a process tree and its memory
//! (from `/proc`), and the Redis server's own CPU time (from `INFO cpu`).

use std::collections::HashMap;
use std::time::Duration;

/// Ticks per second of `/proc/<pid>/stat`'s CPU fields.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `(ppid, utime + stime in ticks)` of one `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU time used so far by `root` and every live descendant (BullMQ's
/// child-process sandbox runs jobs in children).
pub fn tree_cpu(root: u32) -> Duration {
    let mut by_pid: HashMap<u32, (u32, u64)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
            && let Some(s) = stat(pid)
        {
            by_pid.insert(pid, s);
        }
    }
    let in_tree = |mut pid: u32| {
        while pid > 1 {
            if pid == root {
                return true;
            }
            pid = by_pid.get(&pid).map_or(0, |(ppid, _)| *ppid);
        }
        false
    };
    let ticks: u64 = by_pid
        .iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(_, (_, t))| t)
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// `(resident now, peak resident)` of one process, in bytes.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The Redis server's CPU time so far (user + system).
pub async fn redis_cpu(connection: &mut redis::aio::MultiplexedConnection) -> Duration {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(connection)
        .await
        .expect("INFO cpu");
    let seconds: f64 = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(seconds)
}

/// The time Redis has spent running scripts so far (`INFO commandstats`:
/// `EVALSHA` and `EVAL`, which include the commands they call): BullMQ's
/// work for a contender, all of it Lua, without the reading, writing and
/// waiting around it, which a busy neighbour on a small machine inflates.
pub async fn redis_script_time(connection: &mut redis::aio::MultiplexedConnection) -> Duration {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO commandstats");
    let micros: u64 = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split_once(",usec=").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum();
    Duration::from_micros(micros)
}

/// Every command's `(calls, µs)` so far, by name (`INFO commandstats`;
/// the commands scripts call are counted too, under their own names).
pub async fn command_stats(
    connection: &mut redis::aio::MultiplexedConnection,
) -> HashMap<String, (u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((name.to_owned(), (field("calls=")?, field("usec=")?)))
        })
        .collect()
}

/// Bytes as MiB, for the tables.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
