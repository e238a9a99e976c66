//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF
//! Distribution registry) on a free loopback port, storing under a temp
//! directory; and `wkg oci push`, the Bytecode Alliance's tool, to put
//! components in it the way their authors do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` of a test's own; stopped on drop.
pub struct OciRegistry {
    child: Option<Child>,
    /// Its `host:port`, e.g. `127.0.0.1:43121`.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl OciRegistry {
    /// Starts one and waits until it answers `GET /v2/`.
    pub fn start() -> OciRegistry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = OciRegistry {
            child: None,
            addr,
            dir,
        };
        registry.restart();
        registry
    }

    /// Stops it; what it stores stays for [`OciRegistry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", registry_binary().display()));
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // While it starts, a connection may be refused or reset.
            if matches!(crate::try_http_get(&self.addr, "/v2/"), Ok((200, _))) {
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the registry on {} exited while starting: {status}",
                    self.addr
                );
            }
            assert!(
                Instant::now() < deadline,
                "the registry on {} did not start",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `oci://<addr>/<repository>`.
    pub fn reference(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.addr)
    }

    /// Pushes `component` as `repository` (`name:tag`) with `wkg oci push`;
    /// the manifest's digest (`sha256:…`).
    pub fn push(&self, component: &Path, repository: &str) -> String {
        let output = Command::new(wkg_binary())
            .args(["oci", "push", "--insecure", &self.addr])
            .arg(format!("{}/{repository}", self.addr))
            .arg(component)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", wkg_binary().display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "wkg oci push failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("digest: "))
            .unwrap_or_else(|| panic!("wkg said no digest: {stdout}"))
            .trim()
            .to_owned()
    }

    /// Where the registry stores the blob `digest` (`sha256:…`): what a
    /// test overwrites to make the registry serve bytes that are not it.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's registry (package `docker-registry`), or `BULLPEN_OCI_REGISTRY`.
fn registry_binary() -> PathBuf {
    std::env::var_os("BULLPEN_OCI_REGISTRY")
        .map_or_else(|| PathBuf::from("/usr/bin/docker-registry"), PathBuf::from)
}

/// `wkg` as `scripts/setup.sh` installs it, or `BULLPEN_WKG`.
fn wkg_binary() -> PathBuf {
    std::env::var_os("BULLPEN_WKG").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/bullpen/wkg/bin/wkg")
        },
        PathBuf::from,
    )
}
