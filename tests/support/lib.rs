//! Shared helpers of bullpen's end-to-end tests: the example guests and the
//! `bullpen` binary, each built once per test run, found by asking cargo.

pub mod hook_server;
pub mod oci_registry;
pub mod oracle;
pub mod signing;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The example guests, by crate name.
pub const EXAMPLES: [&str; 11] = [
    "echo",
    "json-transform",
    "flaky",
    "validate",
    "rate-limited",
    "delayed",
    "custom-backoff",
    "misbehave",
    "render",
    "webhook",
    "fan-out",
];

/// The built `.wasm` of an example guest (e.g. `"json-transform"`).
///
/// The first call builds every example for `wasm32-wasip2` with cargo's
/// `guest` profile; later calls, in this process or the next, reuse it.
pub fn guest(name: &str) -> PathBuf {
    static GUESTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let built = GUESTS.get_or_init(|| {
        let mut args = vec!["--profile", "guest", "--target", "wasm32-wasip2"];
        for example in EXAMPLES {
            args.extend(["-p", example]);
        }
        cargo_build(&args, ".wasm")
    });
    let file = format!("{}.wasm", name.replace('-', "_"));
    built
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f == file.as_str()))
        .unwrap_or_else(|| panic!("no guest named {name} among {built:?}"))
        .clone()
}

/// A JavaScript, TypeScript or Python processor (`source` relative to the
/// workspace, e.g. `examples/js/echo.js`) built into a component by
/// `bullpen build`, once per test process. bullpen keeps what it built by
/// the hash of its inputs (in `~/.cache/bullpen/processors`), so only a
/// changed processor takes the ~20 s of a real build; its check compiles
/// the component into the shared compile cache that
/// [`RunningHost::start_with_modules`] copies into each host's data dir (a
/// 12 MB component takes a debug host ~15 s to compile, a cached one
/// milliseconds).
pub fn script_guest(source: &str) -> PathBuf {
    script_guest_built_by(source, &bullpen_binary())
}

/// [`script_guest`], built by the `bullpen` binary `bullpen` (a benchmark
/// builds with the release binary it measures, not a debug one it would
/// have to build first).
pub fn script_guest_built_by(source: &str, bullpen: &Path) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(source) {
        return path.clone();
    }
    let out = shared_data_dir()
        .parent()
        .expect("script-guests/data has a parent")
        .join(format!("{}.wasm", source.replace(['/', '.'], "-")));
    let output = Command::new(bullpen)
        .arg("build")
        .arg(source)
        .arg("-o")
        .arg(&out)
        .arg("--data-dir")
        .arg(shared_data_dir())
        .current_dir(workspace_root())
        .output()
        .expect("running bullpen build");
    assert!(
        output.status.success(),
        "bullpen build {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(source.to_owned(), out.clone());
    out
}

/// The data dir whose compile cache [`script_guest`] fills and
/// [`RunningHost::start_with_modules`] copies: `bullpen exec --data-dir`
/// it to run a [`script_guest`] without compiling it again.
pub fn shared_data_dir() -> PathBuf {
    target_dir().join("script-guests").join("data")
}

/// The `bullpen` binary, built (debug) on first use.
pub fn bullpen_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            // The workspace's default members, as `cargo test` selects them:
            // `-p bullpen` alone unifies the dependencies' features
            // differently, and each of the two builds would make the other
            // rebuild the host (a minute each way).
            cargo_build(&["--bin", "bullpen"], "bullpen")
                .into_iter()
                .next()
                .expect("cargo built no bullpen binary")
        })
        .clone()
}

/// The `bullpen` binary built with the release profile (for benchmarks).
pub fn bullpen_release_binary() -> PathBuf {
    cargo_build(
        &["--release", "-p", "bullpen", "--bin", "bullpen"],
        "bullpen",
    )
    .into_iter()
    .next()
    .expect("cargo built no bullpen binary")
}

/// The benchmark harness (`bench/`), built (debug) on first use.
pub fn harness_binary() -> PathBuf {
    cargo_build(&["-p", "bullpen-bench", "--bin", "harness"], "harness")
        .into_iter()
        .next()
        .expect("cargo built no harness binary")
}

/// A `Command` for the `bullpen` binary, with logs quiet unless asked.
pub fn bullpen() -> Command {
    let mut command = Command::new(bullpen_binary());
    command.env_remove("BULLPEN_LOG");
    command
}

/// Runs a `bullpen exec …` `command` and reads the report it prints,
/// panicking with what it said on stderr if there is none.
pub fn exec_report(command: &mut Command) -> serde_json::Value {
    let output = command.output().expect("starting bullpen exec");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)))
}

/// The workspace's target directory, where the projects outside it build
/// too: their dependencies are built once, not once per test run.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo` run from `dir`, without what cargo set for this test process
/// (CARGO_MANIFEST_DIR=tests/, CARGO_PKG_NAME=bullpen-tests, ...), which
/// is not what the outer `cargo test` had: build scripts that watch those
/// (ring's) would run again and rebuild the host here, then once more in
/// the next `cargo test`.
pub fn cargo_command(dir: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    without_cargo_env(&mut command);
    command.current_dir(dir);
    command
}

/// Removes from `command`'s environment what cargo set for this test
/// process (see [`cargo_command`]): for any command that runs cargo itself,
/// such as `bullpen build` of a Rust project.
pub fn without_cargo_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_CRATE_")
            || name.starts_with("CARGO_BIN_")
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "OUT_DIR"
        {
            command.env_remove(name.as_ref());
        }
    }
}

/// Runs `cargo build <args> --message-format=json` at the workspace root and
/// returns the artifacts whose file names end with `suffix`.
fn cargo_build(args: &[&str], suffix: &str) -> Vec<PathBuf> {
    let mut command = cargo_command(&workspace_root());
    let output = command
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .output()
        .expect("running cargo");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: rustup target add wasm32-wasip2"
            } else {
                ""
            };
        panic!("cargo build {args:?} failed:\n{stderr}{hint}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut artifacts = Vec::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        let exe = message["executable"].as_str();
        for file in files.filter_map(|f| f.as_str()).chain(exe) {
            if file.ends_with(suffix) && !artifacts.iter().any(|a: &PathBuf| a == Path::new(file)) {
                artifacts.push(PathBuf::from(file));
            }
        }
    }
    artifacts
}

/// The repository root.
///
/// Read from the `CARGO_MANIFEST_DIR` cargo sets when it runs a test, not the
/// one compiled in: builds from two checkouts sharing one target dir (CI's
/// clone, a developer's tree) can reuse this crate compiled for the other.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// This process's resident memory, in bytes.
pub fn resident_memory() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("reading /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's second field is the resident page count");
    pages * 4096
}

/// A `redis-server` of a test's own, on a free loopback port; stopped on drop.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    persistent: bool,
    cluster: bool,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start() -> RedisServer {
        // A free port can be taken between choosing it and redis binding it:
        // then redis exits and another port is tried.
        (0..20)
            .find_map(|_| Self::try_start())
            .expect("could not start redis-server on a free port")
    }

    /// Starts one that keeps its data in an append-only file, fsynced on
    /// every write, so that [`RedisServer::restart`] loses nothing.
    pub fn start_persistent() -> RedisServer {
        (0..20)
            .find_map(|_| Self::try_start_with(true))
            .expect("could not start redis-server on a free port")
    }

    fn try_start() -> Option<RedisServer> {
        Self::try_start_with(false)
    }

    fn try_start_with(persistent: bool) -> Option<RedisServer> {
        Self::try_start_as(persistent, false)
    }

    fn try_start_as(persistent: bool, cluster: bool) -> Option<RedisServer> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            child: Self::spawn(port, dir.path(), persistent, cluster),
            port,
            persistent,
            cluster,
            _dir: dir,
        };
        server.wait_ready().then_some(server)
    }

    fn spawn(port: u16, dir: &Path, persistent: bool, cluster: bool) -> std::process::Child {
        let aof: &[&str] = if persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        // A cluster node keeps its view of the cluster in `nodes.conf`, so a
        // restarted node rejoins with its slots.
        let cluster_args: &[&str] = if cluster {
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
        } else {
            &[]
        };
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(aof)
            .args(cluster_args)
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run the tests (Debian: apt-get install redis-server)")
    }

    /// Whether it answers within 5 s (`false`: it exited, e.g. port taken).
    fn wait_ready(&mut self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.answers_ping() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// Whether it answers `PING` (not `-LOADING`, as while it reads its
    /// append-only file).
    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let mut reply = [0u8; 5];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG"
    }

    /// Stops the server at once (SIGKILL); [`RedisServer::restart`] starts it
    /// again on the same port and data.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again after [`RedisServer::stop`], on the same port and
    /// directory, and waits until it answers.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, self._dir.path(), self.persistent, self.cluster);
        assert!(
            self.wait_ready(),
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A Redis Cluster of three masters (no replicas), each a [`RedisServer`]
/// with an append-only file, formed with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, forms the cluster and waits until every node
    /// says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                (0..20)
                    .find_map(|_| RedisServer::try_start_as(true, true))
                    .expect("could not start a cluster redis-server on a free port")
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli comes with redis-server (Debian: apt-get install redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for node in &self.nodes {
            while !redis_cli(node.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster did not become ok on port {}",
                    node.port
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// The seed URLs a client is given.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `host:port,host:port,…`, for the Node client.
    pub fn addresses(&self) -> String {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        addresses.join(",")
    }

    /// Which of [`RedisCluster::nodes`] holds the slot of keys tagged `tag`.
    pub fn owner_of(&self, tag: &str) -> usize {
        let slot: u16 = redis_cli(
            self.nodes[0].port,
            &["CLUSTER", "KEYSLOT", &format!("{{{tag}}}")],
        )
        .trim()
        .parse()
        .unwrap();
        self.nodes
            .iter()
            .position(|node| {
                let nodes = redis_cli(node.port, &["CLUSTER", "NODES"]);
                let myself = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
                myself.split_whitespace().skip(8).any(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    match (from.parse::<u16>(), to.parse::<u16>()) {
                        (Ok(from), Ok(to)) => (from..=to).contains(&slot),
                        _ => false,
                    }
                })
            })
            .expect("a node holds every slot")
    }
}

/// `redis-cli -p <port> <args>`'s output.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli comes with redis-server");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `bullpen run` process on a temp config whose module directory holds
/// every example guest; killed on drop.
pub struct RunningHost {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// The temp directory with `bullpen.toml`, `modules/` and `.bullpen/`.
    pub dir: tempfile::TempDir,
}

impl RunningHost {
    /// Writes a config with `[redis] url` and the given queue tables, starts
    /// `bullpen run` on it, and waits until it takes jobs.
    pub fn start(redis: &RedisServer, queues: &str) -> RunningHost {
        Self::start_with(&format!("[redis]\nurl = \"{}\"\n\n", redis.url()), queues)
    }

    /// Like [`RunningHost::start`], with more files in `modules/`: each
    /// `(name, source)` is copied to `modules/<name>` first.
    pub fn start_with_modules(
        redis: &RedisServer,
        queues: &str,
        modules: &[(&str, &Path)],
    ) -> RunningHost {
        Self::start_with_host_and_modules(redis, "", queues, modules)
    }

    /// Like [`RunningHost::start_with_modules`], with more keys in the
    /// `[host]` table (`host`, TOML lines).
    pub fn start_with_host_and_modules(
        redis: &RedisServer,
        host: &str,
        queues: &str,
        modules: &[(&str, &Path)],
    ) -> RunningHost {
        let dir = Self::prepare_with(
            &format!("[redis]\nurl = \"{}\"\n\n", redis.url()),
            host,
            queues,
        );
        for (name, source) in modules {
            std::fs::copy(source, dir.path().join("modules").join(name)).unwrap();
        }
        // Machine code compiled before (by script_guest), keyed by module
        // hash and engine: what a second start of the same host would find.
        if let Ok(entries) = std::fs::read_dir(shared_data_dir().join("cache")) {
            let cache = dir.path().join(".bullpen").join("cache");
            std::fs::create_dir_all(&cache).unwrap();
            for entry in entries.flatten() {
                let _ = std::fs::copy(entry.path(), cache.join(entry.file_name()));
            }
        }
        Self::start_in(dir)
    }

    /// Like [`RunningHost::start`], in a process that may open at most
    /// `open_files` files (`ulimit -n`, soft and hard).
    pub fn start_with_open_files(
        redis: &RedisServer,
        queues: &str,
        open_files: u32,
    ) -> RunningHost {
        let dir = Self::prepare(&format!("[redis]\nurl = \"{}\"\n\n", redis.url()), queues);
        let (mut child, log, ready) = Self::spawn_unready_with(dir.path(), Some(open_files));
        if ready
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            let _ = child.kill();
            panic!("bullpen run did not start:\n{}", log.lock().unwrap());
        }
        RunningHost { child, log, dir }
    }

    /// Like [`RunningHost::start`], with no `[redis]` table: the host runs its
    /// own redis-server under its data dir.
    pub fn start_embedded(queues: &str) -> RunningHost {
        Self::start_with("", queues)
    }

    /// Like [`RunningHost::start`], without waiting until it takes jobs (its
    /// Redis may be down): see [`RunningHost::wait_for_log`].
    pub fn launch(redis: &RedisServer, queues: &str) -> RunningHost {
        let dir = Self::prepare(&format!("[redis]\nurl = \"{}\"\n\n", redis.url()), queues);
        let (child, log, _ready) = Self::spawn_unready(dir.path());
        RunningHost { child, log, dir }
    }

    /// Waits up to `timeout` until the host's stderr has `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    /// Like [`RunningHost::start`], with `redis` as the config's `[redis]`
    /// table (e.g. a cluster's `nodes`).
    pub fn start_with(redis: &str, queues: &str) -> RunningHost {
        Self::start_in(Self::prepare(redis, queues))
    }

    fn prepare(redis: &str, queues: &str) -> tempfile::TempDir {
        Self::prepare_with(redis, "", queues)
    }

    fn prepare_with(redis: &str, host: &str, queues: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&modules).unwrap();
        for example in EXAMPLES {
            std::fs::copy(guest(example), modules.join(format!("{example}.wasm"))).unwrap();
        }
        let config = format!("{redis}[host]\nshutdown_grace = \"5s\"\n{host}\n{queues}");
        std::fs::write(dir.path().join("bullpen.toml"), config).unwrap();
        dir
    }

    /// Starts another `bullpen run` on the same directory (after this one
    /// exited or was killed).
    pub fn start_again(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, log) = Self::spawn(self.dir.path());
        self.child = child;
        self.log = log;
    }

    fn start_in(dir: tempfile::TempDir) -> RunningHost {
        let (child, log) = Self::spawn(dir.path());
        RunningHost { child, log, dir }
    }

    /// Spawns `bullpen run` on `dir/bullpen.toml` and waits until it takes
    /// jobs.
    #[allow(clippy::type_complexity)]
    fn spawn(
        dir: &Path,
    ) -> (
        std::process::Child,
        std::sync::Arc<std::sync::Mutex<String>>,
    ) {
        let (mut child, log, ready_rx) = Self::spawn_unready(dir);
        if ready_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            let _ = child.kill();
            panic!("bullpen run did not start:\n{}", log.lock().unwrap());
        }
        (child, log)
    }

    /// Spawns `bullpen run` on `dir/bullpen.toml`; the receiver hears once
    /// it takes jobs.
    #[allow(clippy::type_complexity)]
    fn spawn_unready(
        dir: &Path,
    ) -> (
        std::process::Child,
        std::sync::Arc<std::sync::Mutex<String>>,
        std::sync::mpsc::Receiver<()>,
    ) {
        Self::spawn_unready_with(dir, None)
    }

    /// [`RunningHost::spawn_unready`], under `ulimit -n open_files` if given.
    #[allow(clippy::type_complexity)]
    fn spawn_unready_with(
        dir: &Path,
        open_files: Option<u32>,
    ) -> (
        std::process::Child,
        std::sync::Arc<std::sync::Mutex<String>>,
        std::sync::mpsc::Receiver<()>,
    ) {
        use std::io::BufRead;
        let mut command = match open_files {
            None => bullpen(),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(bullpen_binary())
                    .env_remove("BULLPEN_LOG");
                sh
            }
        };
        let mut child = command
            .arg("run")
            .arg("-c")
            .arg(dir.join("bullpen.toml"))
            .env("BULLPEN_LOG", "bullpen=debug")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("bullpen: taking jobs") {
                    let _ = ready_tx.send(());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        (child, log, ready_rx)
    }

    /// Runs `bullpen <args> -c <this host's config>` in the host's
    /// directory (`modules/echo.wasm` names its module): exit code, stdout,
    /// stderr.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = bullpen()
            .current_dir(self.dir.path())
            .args(args)
            .arg("-c")
            .arg(self.dir.path().join("bullpen.toml"))
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Queue `queue`'s module as the host serves it (its `serving.json`).
    pub fn serving(&self, queue: &str) -> serde_json::Value {
        let text = std::fs::read(self.dir.path().join(".bullpen/serving.json")).unwrap_or_default();
        let state: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        state["queues"][queue].clone()
    }

    /// Waits until [`RunningHost::serving`] satisfies `ready`; returns it.
    pub fn wait_for_serving(
        &self,
        queue: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let state = self.serving(queue);
            if ready(&state) {
                return state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{state}\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits until the queue's new attempts, and its workers, are on the
    /// version of sha256 `sha256`.
    pub fn wait_until_serving(&self, queue: &str, sha256: &str) {
        self.wait_for_serving(queue, |s| {
            s["serving"]["sha256"] == sha256 && s["workers_on"] == sha256
        });
    }

    /// Everything the host wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `"TERM"`, `"KILL"`) to the host.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the host to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a script of BullMQ's own Node client (`tests/interop/node/<script>`)
/// against `redis` and returns the JSON it prints.
pub fn node(script: &str, redis: &RedisServer) -> serde_json::Value {
    node_with(script, &[], redis)
}

/// [`node`] with arguments for the script.
pub fn node_with(script: &str, args: &[&str], redis: &RedisServer) -> serde_json::Value {
    let url = redis.url();
    node_run(script, args, &[("REDIS_URL", &url)])
}

/// [`node`] with environment variables for the script.
pub fn node_env(script: &str, env: &[(&str, &str)], redis: &RedisServer) -> serde_json::Value {
    let url = redis.url();
    let mut env = env.to_vec();
    env.push(("REDIS_URL", &url));
    node_run(script, &[], &env)
}

/// Runs a Node script with only `env` to tell it where Redis is (e.g. a
/// cluster's nodes); the JSON it prints.
pub fn node_run(script: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let dir = workspace_root().join("tests/interop/node");
    assert!(
        dir.join("node_modules/bullmq").exists(),
        "the Node interop client is not installed: run scripts/test (it runs `npm ci` in tests/interop/node)"
    );
    let output = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("node must be installed to run the interop tests (Debian: apt-get install nodejs)");
    parse_peer_output(&format!("node {script}"), output)
}

/// Runs a script of BullMQ's own Python client
/// (`tests/interop/python/<script>`) against `redis`, with the interpreter of
/// the venv `scripts/test` prepares (`BULLPEN_INTEROP_PYTHON`), and returns
/// the JSON it prints.
pub fn python(script: &str, redis: &RedisServer) -> serde_json::Value {
    python_with(script, &[], redis)
}

/// [`python`] with arguments for the script.
pub fn python_with(script: &str, args: &[&str], redis: &RedisServer) -> serde_json::Value {
    let interpreter = std::env::var("BULLPEN_INTEROP_PYTHON").unwrap_or_else(|_| {
        panic!("BULLPEN_INTEROP_PYTHON is not set: run scripts/test (it installs the Python interop client in a venv)")
    });
    let output = Command::new(&interpreter)
        .arg(workspace_root().join("tests/interop/python").join(script))
        .args(args)
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {interpreter}: {e}"));
    parse_peer_output(&format!("python {script}"), output)
}

fn parse_peer_output(what: &str, output: std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed:\n{stderr}\n{stdout}"
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// Queue `name` on `redis`, through the crate bullpen uses.
pub async fn queue(redis: &RedisServer, name: &str) -> bullpen::queue::bullmq::Queue {
    bullpen::queue::RedisTarget::server(redis.url(), "bull")
        .queue(name)
        .await
        .unwrap()
}

/// Waits until job `id` is in one of `states` (BullMQ's names) and returns
/// that state; panics after `timeout`.
pub async fn wait_for_state(
    queue: &bullpen::queue::bullmq::Queue,
    id: &str,
    states: &[&str],
    timeout: std::time::Duration,
) -> &'static str {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = bullpen::queue::state_name(&queue.get_job_state(id).await.unwrap());
        if states.contains(&state) {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} still {state} after {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until `total` jobs of `queue` are finished and asserts that every
/// one completed; panics after `timeout`, with the host's log.
pub async fn wait_until_all_completed(
    queue: &bullpen::queue::bullmq::Queue,
    total: u64,
    timeout: std::time::Duration,
    host: &RunningHost,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let counts = queue.get_job_counts().await;
        if let Ok(counts) = &counts
            && counts.completed + counts.failed == total
        {
            assert_eq!(counts.failed, 0, "{counts:?}\n{}", host.log());
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every job finished after {timeout:?}: {counts:?}\n{}",
            host.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until job `id` is completed or failed; returns the state and the
/// job.
pub async fn finished(
    queue: &bullpen::queue::bullmq::Queue,
    id: &str,
    timeout: std::time::Duration,
) -> (String, bullpen::queue::bullmq::Job) {
    let state = wait_for_state(queue, id, &["completed", "failed"], timeout).await;
    (state.to_owned(), queue.get_job(id).await.unwrap().unwrap())
}

/// Runs `bullpen run -c config`, which should stop at start (killed after
/// a minute if it does not): whether it succeeded, and its stderr.
pub fn start_refused(config: &Path) -> (bool, String) {
    let output = Command::new("timeout")
        .arg("60")
        .arg(bullpen_binary())
        .args(["run", "-c"])
        .arg(config)
        .env_remove("BULLPEN_LOG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Adds a job of `data` and waits until it completes; the name of the
/// worker that ran it (BullMQ's `processedBy`: the module file, its hash,
/// and its signer's key when a trusted key signed it).
pub async fn completed_by(
    queue: &bullpen::queue::bullmq::Queue,
    host: &RunningHost,
    data: serde_json::Value,
) -> String {
    let id = queue.add("t", data).await.unwrap().id().to_owned();
    let (state, job) = finished(queue, &id, std::time::Duration::from_secs(20)).await;
    assert_eq!(state, "completed", "{}", host.log());
    job.processed_by().unwrap_or_default().to_owned()
}

/// The queue's events stream, every entry.
pub async fn events(queue: &bullpen::queue::bullmq::Queue) -> Vec<redis::Value> {
    let mut connection = queue.connection().connection();
    redis::cmd("XRANGE")
        .arg(queue.keys().events())
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// One field of job `id`'s hash, as stored.
pub async fn field(queue: &bullpen::queue::bullmq::Queue, id: &str, name: &str) -> Option<String> {
    use redis::AsyncCommands;
    let mut connection = queue.connection().connection();
    connection
        .hget(queue.keys().job_key(id), name)
        .await
        .unwrap()
}

/// Job `id`'s hash and log, as text: where a leak would show.
pub async fn stored(queue: &bullpen::queue::bullmq::Queue, id: &str) -> String {
    use redis::AsyncCommands;
    let mut connection = queue.connection().connection();
    let key = queue.keys().job_key(id);
    let hash: Vec<(String, String)> = connection.hgetall(&key).await.unwrap();
    let log: Vec<String> = connection
        .lrange(format!("{key}:logs"), 0, -1)
        .await
        .unwrap();
    format!("{hash:?}\nlogs: {log:?}")
}

/// A job's `attemptsMade` and `attemptsStarted` as a JSON peer reported them.
pub fn attempts(job: &serde_json::Value) -> (Option<u64>, Option<u64>) {
    (
        job["attemptsMade"].as_u64(),
        job["attemptsStarted"].as_u64(),
    )
}

/// `GET path` on `addr` with a bare HTTP/1.1 client: the status and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// [`http_get`] that returns the I/O error: for polling a server that is
/// still starting, which may refuse or reset a connection.
pub fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// What a finished command wrote, stdout then stderr.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A host's queues for `cluster.mjs`'s `MODE=outcomes`: one per outcome
/// BullMQ defines, with the example processor that gives it.
pub const EVERY_OUTCOME_QUEUES: &str = "[queues.echo]\nmodule = \"echo.wasm\"\n\n\
     [queues.flaky]\nmodule = \"flaky.wasm\"\n\n\
     [queues.signups]\nmodule = \"validate.wasm\"\n\n\
     [queues.limited]\nmodule = \"rate-limited.wasm\"\n\n\
     [queues.later]\nmodule = \"delayed.wasm\"\n\n\
     [queues.custom]\nmodule = \"custom-backoff.wasm\"\n\n\
     [queues.fan]\nmodule = \"fan-out.wasm\"\nadd_to_queues = [\"fan\"]\nconcurrency = 4\n";

/// Checks the jobs `cluster.mjs`'s `MODE=outcomes` printed (the host's
/// `log` in the message): each ended as BullMQ's semantics say.
pub fn assert_every_outcome(jobs: &serde_json::Value, log: &str) {
    let job = |key: &str| -> &serde_json::Value { &jobs[key] };
    let state = |key: &str| job(key)["state"].as_str().unwrap_or("?").to_owned();
    assert_eq!(state("completed"), "completed", "{jobs}\n{log}");
    assert_eq!(
        job("completed")["returnvalue"],
        serde_json::json!({"hello": "cluster"})
    );
    assert_eq!(state("retried"), "completed", "{jobs}");
    assert_eq!(job("retried")["attemptsMade"], 3);
    assert_eq!(state("exhausted"), "failed", "{jobs}");
    assert_eq!(job("exhausted")["attemptsMade"], 2);
    assert_eq!(state("unrecoverable"), "failed", "{jobs}");
    assert_eq!(job("unrecoverable")["attemptsMade"], 1);
    assert!(
        job("unrecoverable")["failedReason"]
            .as_str()
            .unwrap()
            .starts_with("Invalid job data"),
        "{jobs}"
    );
    // Given back on a rate limit, then delayed: no attempt counted for either.
    for key in ["rate-limited", "delayed"] {
        assert_eq!(state(key), "completed", "{key}: {jobs}");
        assert_eq!(job(key)["attemptsMade"], 1, "{key}: {jobs}");
        assert_eq!(job(key)["attemptsStarted"], 2, "{key}: {jobs}");
    }
    // The module's own backoff: linear after `Transient`, at once after
    // `RetryNow`, then success on attempt 3.
    assert_eq!(state("custom"), "completed", "{jobs}");
    assert_eq!(
        job("custom")["returnvalue"],
        serde_json::json!({"attempt": 3})
    );
    // Children in the same slot as their parent (the prefix's hash tag),
    // then the parent's second step.
    assert_eq!(state("parent"), "completed", "{jobs}");
    assert_eq!(job("parent")["returnvalue"]["sum"], 14, "{jobs}");
}
