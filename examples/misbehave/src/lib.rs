//! `misbehave`: a processor that does what processors must not, so tests can
//! check that the host survives it.
//!
//! Data: `{"mode": M}` with M one of
//! - `spin`: loops forever (ended by the time budget);
//! - `sleep`: sleeps for an hour in a WASI call (ended by the time budget);
//! - `oom`: allocates until the memory cap stops it;
//! - `stack-overflow`: recurses without end;
//! - `panic`: panics with `misbehave asked to panic`;
//! - `print`: writes 1 MiB to stdout and completes;
//! - `flood`: logs 20,000 lines and completes;
//! - `bad-progress`: reports a progress that is not JSON and completes;
//! - `work`: sleeps `ms` milliseconds (data `{"mode": "work", "ms": 500}`),
//!   then completes with `"fine"`: a job that takes a while;
//! - `job-log`: appends `times` lines of `bytes` bytes each to the job's log
//!   (`{"mode": "job-log", "times": 10000, "bytes": 65536}`), then completes;
//! - `progress`: reports progress 1 to `times`, then completes;
//! - `read`: completes with the text of the file at `path`;
//! - `write`: writes `text` to the file at `path`, completes with `"written"`;
//! - `list`: completes with the names in the directory at `path`;
//! - `env`: completes with the value of the environment variable `name`
//!   (`null` when it is not set);
//! - `fail-with-env`: fails with a message that holds the value of the
//!   environment variable `name`;
//! - `http`: sends a `GET` to `url` with the SDK's client and completes with
//!   `{"status": S, "body": TEXT}`; a request that gets no answer fails the
//!   attempt with the SDK's error (which names the URL and the code);
//! - `tcp`: opens a TCP connection to `path` (`"127.0.0.1:6379"`) and
//!   completes with `"connected"`;
//! - `udp`: sends a datagram to `path` and completes with `"sent"`;
//! - `dns`: looks `path` up (`"example.com:80"`) and completes with the
//!   addresses;
//! - `leftover`: completes with `{"left": N}`, the bytes of a 256 KiB
//!   static buffer that are not as the module's image has them (zero), then
//!   fills the buffer and sleeps `ms` milliseconds: N is what an earlier
//!   attempt in the same memory left behind (0 when every attempt starts
//!   fresh);
//! - `leak`: says the values of the environment variables in `names`
//!   (joined by a space) on every path a guest has: a log message, a
//!   job-log line, progress, stdout, stderr; then, by `how`:
//!   `complete` (returns them), `fail` (a failure named after the first,
//!   its message holding them all), `unrecoverable`, `panic` (a panic
//!   message where they start 6 bytes before the host's 4 KiB cut),
//!   `update-data` (sets the job's data to them, then completes) or
//!   `backoff` (fails with a custom backoff type, `leak`, whose strategy
//!   panics with them): what the host must mask;
//! - `ok`: completes with `"fine"`.
//!
//! A job named `data-text`, whatever its data, completes with the text of
//! its data as a JSON string: what the host handed over, byte for byte.

use bullpen_guest::{Backoff, Error, Failure, Job, Processor, Result};
use serde::Deserialize;
use std::hint::black_box;
use std::io::Write;

#[derive(Deserialize)]
struct Plan {
    mode: String,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    times: u64,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    path: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    how: String,
}

struct Misbehave;

/// Zero in the module's image; `leftover` fills it.
static SCRATCH: std::sync::Mutex<[u8; 256 * 1024]> = std::sync::Mutex::new([0; 256 * 1024]);

impl Processor for Misbehave {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        if job.name == "data-text" {
            return Ok(serde_json::json!(job.data_text()));
        }
        let plan: Plan = job.data()?;
        match plan.mode.as_str() {
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "stack-overflow" => {
                black_box(recurse(black_box(1)));
            }
            "panic" => panic!("misbehave asked to panic"),
            "print" => {
                let chunk = [b'x'; 1024];
                let mut out = std::io::stdout().lock();
                for _ in 0..1024 {
                    out.write_all(&chunk)?;
                }
                out.flush()?;
            }
            "flood" => {
                for i in 0..20_000 {
                    bullpen_guest::log(bullpen_guest::Level::Debug, format!("line {i}"));
                }
            }
            "bad-progress" => bullpen_guest::progress(serde_json::json!(10)),
            "work" => std::thread::sleep(std::time::Duration::from_millis(plan.ms)),
            "job-log" => {
                let line = "x".repeat(plan.bytes);
                for _ in 0..plan.times {
                    bullpen_guest::add_log(&line);
                }
            }
            "progress" => {
                for i in 1..=plan.times {
                    bullpen_guest::progress(i);
                }
            }
            "read" => return Ok(serde_json::json!(std::fs::read_to_string(&plan.path)?)),
            "write" => {
                std::fs::write(&plan.path, &plan.text)?;
                return Ok(serde_json::json!("written"));
            }
            "list" => {
                let mut names = Vec::new();
                for entry in std::fs::read_dir(&plan.path)? {
                    names.push(entry?.file_name().to_string_lossy().into_owned());
                }
                return Ok(serde_json::json!(names));
            }
            "env" => return Ok(serde_json::json!(std::env::var(&plan.name).ok())),
            "fail-with-env" => {
                let value = std::env::var(&plan.name).unwrap_or_default();
                return Err(Error::failed(format!("the server rejected token {value}")));
            }
            "http" => {
                let response = bullpen_guest::http::get(&plan.url).send()?;
                return Ok(serde_json::json!({
                    "status": response.status(),
                    "body": response.text(),
                }));
            }
            "tcp" => {
                std::net::TcpStream::connect(&plan.path)?;
                return Ok(serde_json::json!("connected"));
            }
            "udp" => {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
                socket.send_to(b"escape", &plan.path)?;
                return Ok(serde_json::json!("sent"));
            }
            "dns" => {
                use std::net::ToSocketAddrs;
                let addresses: Vec<String> = plan
                    .path
                    .to_socket_addrs()?
                    .map(|a| a.to_string())
                    .collect();
                return Ok(serde_json::json!(addresses));
            }
            "leftover" => {
                let mut scratch = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
                let left = scratch.iter().filter(|b| **b != 0).count();
                scratch.fill(0xAB);
                std::thread::sleep(std::time::Duration::from_millis(plan.ms));
                return Ok(serde_json::json!({ "left": left }));
            }
            "leak" => return leak(job, &plan),
            "ok" => {}
            other => return Err(Error::unrecoverable(format!("unknown mode `{other}`"))),
        }
        if plan.mode == "bad-progress" {
            // Bypasses the SDK's serialisation to send text that is not JSON.
            bullpen_guest::__private::bindings::bullpen::processor::host::progress("{not json");
        }
        Ok(serde_json::json!("fine"))
    }

    fn backoff(_: u32, strategy: &str, _: &Failure, _: &Job) -> Backoff {
        if strategy == "leak" {
            panic!("the strategy saw {}", secrets(&["API_TOKEN", "API_PREFIX"]));
        }
        Backoff::Builtin
    }
}

/// The values of the variables `names`, joined by a space.
fn secrets(names: &[impl AsRef<str>]) -> String {
    let values: Vec<String> = names
        .iter()
        .map(|name| std::env::var(name.as_ref()).unwrap_or_default())
        .collect();
    values.join(" ")
}

fn leak(mut job: Job, plan: &Plan) -> Result<serde_json::Value> {
    let said = secrets(&plan.names);
    let first = secrets(&plan.names[..plan.names.len().min(1)]);
    bullpen_guest::log(bullpen_guest::Level::Warn, format!("log {said}"));
    bullpen_guest::add_log(format!("job log {said}"));
    bullpen_guest::progress(serde_json::json!({ "said": said }));
    println!("stdout {said}");
    eprintln!("stderr {said}");
    match plan.how.as_str() {
        "complete" => Ok(serde_json::json!({ "echo": said })),
        "fail" => Err(Error::failed_named(first, format!("bad {said}"))),
        "unrecoverable" => Err(Error::unrecoverable(format!("bad {said}"))),
        "panic" => panic!("{}{said}", "x".repeat(4096 - 6)),
        "update-data" => {
            job.update_data(&serde_json::json!({ "said": said }))?;
            Ok(serde_json::json!("updated"))
        }
        "backoff" => Err(Error::failed_named("Transient", "asks the strategy")),
        other => Err(Error::unrecoverable(format!("unknown how `{other}`"))),
    }
}

#[inline(never)]
#[allow(unconditional_recursion)] // overflowing the stack is the point
fn recurse(depth: u64) -> u64 {
    // Each frame keeps a value live across the call, so the recursion cannot
    // become a loop.
    let here = black_box(depth.wrapping_mul(31));
    black_box(recurse(black_box(depth + 1))) ^ here
}

bullpen_guest::export!(Misbehave);
