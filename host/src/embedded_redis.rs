//! The `redis-server` bullpen starts for itself when the config names no
//! Redis: a child process on a private unix socket, with append-only
//! persistence under the data dir, so jobs survive a restart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A running `redis-server` child.
pub struct EmbeddedRedis {
    child: Child,
    socket: PathBuf,
    // Held while the server runs: two servers on one append-only file would
    // corrupt it.
    _lock: std::fs::File,
}

/// Why the embedded Redis could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedRedisError {
    /// `redis-server` is not on PATH.
    #[error(
        "no [redis] url is configured and redis-server is not installed: install it (Debian: apt-get install redis-server) or set [redis] url in {config}"
    )]
    NotInstalled {
        /// The configuration file.
        config: String,
    },
    /// The data directory could not be prepared.
    #[error("cannot prepare {path} for the embedded Redis: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process already runs the embedded server of this data dir.
    #[error("another bullpen process runs the embedded Redis of {dir}")]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
    /// The server did not come up.
    #[error("the embedded redis-server did not start: {reason} (see {log})")]
    Start {
        /// What happened.
        reason: String,
        /// Its log file.
        log: String,
    },
}

/// In the server's process before exec: asks the kernel for SIGTERM when the
/// thread that started it ends, which for bullpen (it starts the server from
/// its main thread) is when bullpen ends, however it ends. `kill_on_drop`
/// covers the orderly exits only; a bullpen killed with SIGKILL or by the
/// OOM killer would otherwise leave an orphan server holding the data dir's
/// append-only file while the next bullpen starts another one on it. On
/// SIGTERM, redis-server syncs its file and exits.
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid are async-signal-safe.
    unsafe {
        let parent = libc::getppid();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl.
        if libc::getppid() != parent {
            libc::raise(libc::SIGTERM);
        }
    }
    Ok(())
}

/// How long the server gets to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl EmbeddedRedis {
    /// Starts `redis-server` with its data in `<data_dir>/redis` and waits
    /// until it answers. `config` names the configuration file in errors.
    pub async fn start(data_dir: &Path, config: &Path) -> Result<Self, EmbeddedRedisError> {
        let dir = data_dir.join("redis");
        std::fs::create_dir_all(&dir).map_err(|source| EmbeddedRedisError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|source| EmbeddedRedisError::DataDir {
                path: dir.clone(),
                source,
            })?;
        let lock = std::fs::File::create(dir.join("lock")).map_err(|source| {
            EmbeddedRedisError::DataDir {
                path: dir.clone(),
                source,
            }
        })?;
        if lock.try_lock().is_err() {
            return Err(EmbeddedRedisError::InUse { dir });
        }
        let socket = dir.join("redis.sock");
        let log = dir.join("redis.log");
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--dir")
            .arg(&dir)
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", ""])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, getppid).
        unsafe {
            command.pre_exec(die_with_parent);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EmbeddedRedisError::NotInstalled {
                    config: config.display().to_string(),
                });
            }
            Err(e) => {
                return Err(EmbeddedRedisError::Start {
                    reason: e.to_string(),
                    log: log.display().to_string(),
                });
            }
        };
        let started = Instant::now();
        let url = unix_url(&socket);
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Err(EmbeddedRedisError::Start {
                    reason: format!("it exited with {status}"),
                    log: log.display().to_string(),
                });
            }
            if ping(&url).await {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                return Err(EmbeddedRedisError::Start {
                    reason: format!("no answer on {} after {START_TIMEOUT:?}", socket.display()),
                    log: log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(socket = %socket.display(), "embedded redis-server started");
        Ok(EmbeddedRedis {
            child,
            socket,
            _lock: lock,
        })
    }

    /// The URL of an embedded server already running on `data_dir` (a
    /// `bullpen run` of the same config), if one answers.
    pub async fn running(data_dir: &Path) -> Option<String> {
        let socket = data_dir.join("redis").join("redis.sock");
        let url = unix_url(&socket.canonicalize().ok()?);
        ping(&url).await.then_some(url)
    }

    /// For a client command: the URL of the server running on `data_dir`,
    /// waiting for one that is starting; or a server started now (to be
    /// stopped by the caller) when none runs.
    pub async fn connect_or_start(
        data_dir: &Path,
        config: &Path,
    ) -> Result<(String, Option<EmbeddedRedis>), EmbeddedRedisError> {
        if let Some(url) = Self::running(data_dir).await {
            return Ok((url, None));
        }
        match Self::start(data_dir, config).await {
            Ok(redis) => Ok((redis.url(), Some(redis))),
            Err(EmbeddedRedisError::InUse { dir }) => {
                let started = Instant::now();
                while started.elapsed() < START_TIMEOUT {
                    if let Some(url) = Self::running(data_dir).await {
                        return Ok((url, None));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(EmbeddedRedisError::InUse { dir })
            }
            Err(e) => Err(e),
        }
    }

    /// The URL clients connect with.
    pub fn url(&self) -> String {
        unix_url(&self.socket)
    }

    /// Stops the server (SIGTERM: it flushes its append-only file first) and
    /// waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc_kill(pid as i32, 15) };
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(_) => tracing::info!("embedded redis-server stopped"),
            Err(_) => {
                tracing::warn!("embedded redis-server did not stop in 10s; killing it");
                let _ = self.child.kill().await;
            }
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

fn unix_url(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}
