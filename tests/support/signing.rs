//! Signing modules the way their authors do: an OpenSSH ed25519 key made by
//! `ssh-keygen`, and `wasmsign2 sign --ssh` (wasmsign2-cli, built by
//! `scripts/setup.sh` into ~/.cache/bullpen/wasmsign2).

use std::path::{Path, PathBuf};
use std::process::Command;

/// An ed25519 key pair in OpenSSH files.
pub struct SigningKey {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file (`<private>.pub`).
    pub public: PathBuf,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

impl SigningKey {
    /// `ssh-keygen -t ed25519 -C comment -f dir/name`, no passphrase.
    pub fn generate(dir: &Path, name: &str, comment: &str) -> SigningKey {
        let private = dir.join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&private));
        let public = dir.join(format!("{name}.pub"));
        let listed = run(Command::new("ssh-keygen").arg("-lf").arg(&public));
        let fingerprint = listed
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("ssh-keygen -l said {listed}"))
            .to_owned();
        SigningKey {
            private,
            public,
            fingerprint,
        }
    }

    /// `wasmsign2 sign --ssh`: `module`, signed, written to `out`.
    pub fn sign(&self, module: &Path, out: &Path) -> PathBuf {
        run(Command::new(wasmsign2_binary())
            .args(["sign", "--ssh", "-k"])
            .arg(&self.private)
            .arg("-i")
            .arg(module)
            .arg("-o")
            .arg(out));
        out.to_owned()
    }
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `wasmsign2` as `scripts/setup.sh` installs it, or `BULLPEN_WASMSIGN2`.
fn wasmsign2_binary() -> PathBuf {
    std::env::var_os("BULLPEN_WASMSIGN2").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/bullpen/wasmsign2/bin/wasmsign2")
        },
        PathBuf::from,
    )
}
