//! `bullpen jobs`: what is in a queue.

use super::connect::{ConfigArg, Connected};
use crate::config::Config;
use crate::observe::costs::{self, AttemptCost};
use crate::queue;
use crate::units::ByteSize;
use std::collections::HashMap;
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen jobs emails
  bullpen jobs emails --state failed --limit 100";

/// Arguments of `bullpen jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue.
    queue: String,
    /// Only jobs in this state.
    #[arg(long, value_parser = queue::LISTED_STATES)]
    state: Option<String>,
    /// Most jobs shown.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub(super) async fn run(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let connected = Connected::open(&args.config).await?;
    connected.check_queue(&args.queue)?;
    let queue = connected.target.queue(&args.queue).await?;
    let states: Vec<&str> = match &args.state {
        Some(state) => vec![state.as_str()],
        None => queue::LISTED_STATES.to_vec(),
    };
    let jobs = queue::list(&queue, &states, args.limit).await;
    let costs = last_costs(&connected.config, &args.queue).await;
    queue.close().await;
    connected.close().await;
    let jobs = jobs?;
    let rows: Vec<[String; 11]> = jobs
        .iter()
        .map(|(job, state)| {
            let cost = costs.get(job.id());
            [
                job.id().to_owned(),
                job.name().to_owned(),
                (*state).to_owned(),
                job.attempts_made().to_string(),
                job.attempts_started().to_string(),
                // The worker that last took it, named after its module
                // version (`echo.wasm@5a4b3adb383d`).
                job.processed_by().unwrap_or("").to_owned(),
                cost.and_then(|c| c.duration_ms)
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.3}")),
                cost.and_then(|c| c.cpu_ms)
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.3}")),
                cost.and_then(|c| c.peak_memory)
                    .map_or_else(|| "-".into(), |bytes| ByteSize(bytes).to_string()),
                // `fresh`, or the instance's run: `reused:3` ran 3 before.
                cost.and_then(|c| c.reused).map_or_else(
                    || "-".into(),
                    |runs| match runs {
                        0 => "fresh".into(),
                        runs => format!("reused:{runs}"),
                    },
                ),
                job.failed_reason().replace('\n', " "),
            ]
        })
        .collect();
    print_table(
        [
            "ID",
            "NAME",
            "STATE",
            "ATTEMPTS_MADE",
            "ATTEMPTS_STARTED",
            "MODULE",
            "LAST_MS",
            "CPU_MS",
            "PEAK_MEMORY",
            "INSTANCE",
            "FAILED_REASON",
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The last attempt's cost of each job the running host remembers (its
/// last attempts per queue, in memory), asked of its `[host] metrics`
/// listener; none, said on stderr, when there is no such host.
async fn last_costs(config: &Config, queue: &str) -> HashMap<String, AttemptCost> {
    let Some(addr) = config.host.metrics else {
        eprintln!(
            "bullpen: LAST_MS, CPU_MS and PEAK_MEMORY come from the running host's [host] metrics \
             listener, which {} does not set",
            config.path.display()
        );
        return HashMap::new();
    };
    match costs::fetch(addr, queue).await {
        // Newest first: the first seen of a job is its last attempt.
        Ok(costs) => costs
            .into_iter()
            .rev()
            .map(|c| (c.job_id.clone(), c))
            .collect(),
        Err(why) => {
            eprintln!("bullpen: no attempt costs: {why}");
            HashMap::new()
        }
    }
}

/// Prints left-aligned columns separated by two spaces.
pub(super) fn print_table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Padded by hand: `format!`'s width panics past 65,535, and a job's
    // name or failed reason can be longer.
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let fill = width.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(fill))
            })
            .collect();
        super::say!("{}", padded.join("  ").trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
