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
//! - `connections`: sends `times` GET requests to `url` (`http://host:port/path`)
//!   at once, each on its own connection, and waits up to a second for
//!   their answers; fails naming the error codes some of them ended with,
//!   else completes with `{"answered": N, "waiting": N}`;
//! - `late-body`: sends a GET to `url` and writes its empty body only once
//!   the response is in; completes with `{"status": N}`;
//! - `fill`: writes `times` files of `bytes` bytes each, `f0`, `f1`, …, in
//!   the directory `path`; fails at the first refusal, naming the file and
//!   the error;
//! - `open`: opens the file at `path` `times` times, holding each (closing
//!   each at once with `"how": "close"`); fails at the first refusal,
//!   naming its number;
//! - `link`: makes a symbolic link at `path` to `text`, then a hard link at
//!   `path` + `.hard` to `text`; completes with what each got;
//! - `copies`: adds `times` copies of itself to its own queue (granted in
//!   `add_to_queues`), and completes with `{"added": N}`;
//! - `leftover`: completes with `{"left": N}`, the bytes of a 256 KiB
//!   static buffer that are not as the module's image has them (zero), then
//!   fills the buffer and sleeps `ms` milliseconds: N is what an earlier
//!   attempt in the same memory left behind (0 when every attempt starts
//!   fresh);
//! - `count`: completes with `{"count": N}`, N the attempts this instance
//!   has run (a global counter: 1 in a fresh instance);
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
            "count" => {
                static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let count = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                return Ok(serde_json::json!({ "count": count }));
            }
            "leak" => return leak(job, &plan),
            "connections" => return connections(&plan),
            "late-body" => return late_body(&plan),
            "fill" => {
                // `times` files of `bytes` each under the directory `path`.
                let chunk = vec![b'x'; plan.bytes];
                for i in 0..plan.times {
                    let file = format!("{}/f{i}", plan.path);
                    std::fs::write(&file, &chunk).map_err(|e| {
                        Error::failed(format!("writing {file}: {e} ({:?})", e.kind()))
                    })?;
                }
                return Ok(serde_json::json!({ "files": plan.times }));
            }
            "open" => {
                // The file at `path`, opened `times` times and held.
                let mut held = Vec::new();
                for i in 0..plan.times {
                    let file = std::fs::File::open(&plan.path).map_err(|e| {
                        Error::failed(format!("open {} #{i}: {e} ({:?})", plan.path, e.kind()))
                    })?;
                    if plan.how != "close" {
                        held.push(file);
                    }
                }
                return Ok(serde_json::json!({ "open": held.len() }));
            }
            "link" => {
                // std's symlink is unstable on WASI: raw wasi:filesystem,
                // in the preopen `path` is under.
                let (dir, name) = preopen_of(&plan.path)
                    .ok_or_else(|| Error::unrecoverable("link: `path` is in no preopen"))?;
                let said = |r: std::result::Result<(), wasip2::filesystem::types::ErrorCode>| {
                    r.map(|()| "made".to_owned())
                        .unwrap_or_else(|e| format!("{e:?}"))
                };
                let symbolic = said(dir.symlink_at(&plan.text, &name));
                let hard = said(dir.link_at(
                    wasip2::filesystem::types::PathFlags::empty(),
                    &plan.text,
                    &dir,
                    &format!("{name}.hard"),
                ));
                return Ok(serde_json::json!({ "symlink": symbolic, "hard_link": hard }));
            }
            "copies" => {
                // A fork bomb: `times` copies of this job on its own queue.
                let queue = bullpen_guest::queue(job.queue.clone());
                for _ in 0..plan.times {
                    queue.add(&job.name, &job.data::<serde_json::Value>()?)?;
                }
                return Ok(serde_json::json!({ "added": plan.times }));
            }
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

/// A GET whose (empty) body is written only once the response is in: the
/// order is the guest's to choose (wasi:http lets it write the body at any
/// time after `handle`).
fn late_body(plan: &Plan) -> Result<serde_json::Value> {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::OutgoingBody;
    let request = get_request(&plan.url)?;
    let body = request.body().expect("the body is taken once");
    let response = outgoing_handler::handle(request, None)
        .map_err(|code| Error::failed(format!("handle: {code:?}")))?;
    response.subscribe().block();
    let status = match response.get() {
        Some(Ok(Ok(response))) => response.status(),
        other => return Err(Error::failed(format!("no response: {other:?}"))),
    };
    let stream = body.write().expect("the stream is taken once");
    stream
        .blocking_write_and_flush(b"")
        .map_err(|e| Error::failed(format!("writing the body after the response: {e:?}")))?;
    drop(stream);
    OutgoingBody::finish(body, None)
        .map_err(|code| Error::failed(format!("finishing the body: {code:?}")))?;
    Ok(serde_json::json!({ "status": status }))
}

/// A raw wasi:http GET of `url` (`http://host:port/path`).
fn get_request(url: &str) -> Result<wasip2::http::types::OutgoingRequest> {
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::unrecoverable(format!("{url}: the url must be http://")))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    Ok(request)
}

/// `times` requests to `plan.url` in flight at once; see the module's docs.
fn connections(plan: &Plan) -> Result<serde_json::Value> {
    use wasip2::http::outgoing_handler;
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut in_flight = Vec::new();
    for _ in 0..plan.times {
        match outgoing_handler::handle(get_request(&plan.url)?, None) {
            Ok(response) => in_flight.push(response),
            Err(code) => *errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }
    let mut answered = 0;
    let second = wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000);
    loop {
        let ready: Vec<usize> = in_flight
            .iter()
            .enumerate()
            .filter_map(|(i, response)| response.get().map(|result| (i, result)))
            .map(|(i, result)| {
                match result {
                    Ok(Ok(_)) => answered += 1,
                    Ok(Err(code)) => *errors.entry(format!("{code:?}")).or_default() += 1,
                    Err(()) => *errors.entry("taken twice".into()).or_default() += 1,
                }
                i
            })
            .collect();
        for i in ready.into_iter().rev() {
            in_flight.swap_remove(i);
        }
        if in_flight.is_empty() || second.ready() {
            break;
        }
        let pollables: Vec<_> = in_flight.iter().map(|r| r.subscribe()).collect();
        let mut waiting: Vec<&wasip2::io::poll::Pollable> = pollables.iter().collect();
        waiting.push(&second);
        wasip2::io::poll::poll(&waiting);
    }
    if !errors.is_empty() {
        let said: Vec<String> = errors
            .iter()
            .map(|(code, n)| format!("{n} × {code}"))
            .collect();
        return Err(Error::failed(format!(
            "of {} requests, {answered} answered, {} still waiting, and {}",
            plan.times,
            in_flight.len(),
            said.join(", ")
        )));
    }
    Ok(serde_json::json!({ "answered": answered, "waiting": in_flight.len() }))
}

/// The preopened directory `path` is under, and the rest of the path.
fn preopen_of(path: &str) -> Option<(wasip2::filesystem::types::Descriptor, String)> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find_map(|(dir, at)| {
            let rest = path.strip_prefix(&at)?.trim_start_matches('/').to_owned();
            Some((dir, rest))
        })
}
