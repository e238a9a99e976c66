//! The build tools of JavaScript and Python processors, installed on first
//! use into the cache by the registries' ordinary clients from the pinned
//! manifests the SDK ships: `npm ci` of guest-sdk/js/tools (esbuild,
//! ComponentizeJS, by its lock file) and `pip install` of
//! guest-sdk/python/tools/requirements.txt (componentize-py) into a venv.
//! One bullpen installs at a time; the others wait for it.

use super::shipped::sdk_file;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The JavaScript tools' directory (`<cache>/js-tools`, with node_modules),
/// installed if missing or installed from other manifests.
pub fn js_tools(cache: &Path) -> anyhow::Result<PathBuf> {
    need(
        "node",
        "JavaScript and TypeScript processors are built with ComponentizeJS on Node.js: install Node.js 20 or later (Debian: apt-get install nodejs npm)",
    )?;
    let manifest = sdk_file("js/tools/package.json")?;
    let lock = sdk_file("js/tools/package-lock.json")?;
    let dir = cache.join("js-tools");
    installed(
        cache,
        &dir.join("manifest.sha256"),
        &[manifest, lock],
        || {
            need(
                "npm",
                "installing ComponentizeJS and esbuild needs npm (Debian: apt-get install npm)",
            )?;
            eprintln!(
                "bullpen: installing ComponentizeJS and esbuild into {} (once)",
                dir.display()
            );
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("package.json"), manifest)?;
            std::fs::write(dir.join("package-lock.json"), lock)?;
            run(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir),
                &format!("npm ci in {}", dir.display()),
            )
        },
    )?;
    Ok(dir)
}

/// The Python tools' venv (`<cache>/py-tools`), installed if missing or
/// installed from another requirements file.
pub fn python_tools(cache: &Path) -> anyhow::Result<PathBuf> {
    let requirements = sdk_file("python/tools/requirements.txt")?;
    let dir = cache.join("py-tools");
    installed(
        cache,
        &dir.join("requirements.sha256"),
        &[requirements],
        || {
            need(
                "python3",
                "Python processors are built with componentize-py: install Python 3 with venv (Debian: apt-get install python3 python3-venv)",
            )?;
            eprintln!(
                "bullpen: installing componentize-py into {} (once)",
                dir.display()
            );
            let _ = std::fs::remove_dir_all(&dir);
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&dir),
                "python3 -m venv (Debian: apt-get install python3-venv)",
            )?;
            let file = dir.join("requirements.txt");
            std::fs::write(&file, requirements)?;
            run(
                Command::new(dir.join("bin/pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                    .arg(&file),
                &format!("pip install -r {}", file.display()),
            )
        },
    )?;
    Ok(dir)
}

/// Runs `install` unless `stamp` holds the hash of `manifests` (what an
/// earlier install wrote when it finished), under the cache's tools lock.
fn installed(
    cache: &Path,
    stamp: &Path,
    manifests: &[&str],
    install: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut hash = Sha256::new();
    for text in manifests {
        hash.update(text.as_bytes());
    }
    let want = format!("{:x}\n", hash.finalize());
    let current = || std::fs::read_to_string(stamp).is_ok_and(|s| s == want);
    if current() {
        return Ok(());
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock_path = cache.join("tools.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Another bullpen may have installed them while this one waited.
    if current() {
        return Ok(());
    }
    install()?;
    std::fs::write(stamp, want).with_context(|| format!("writing {}", stamp.display()))
}

/// Fails with `why` unless `program` is on PATH.
pub(crate) fn need(program: &str, why: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !found {
        bail!("{program} is not installed: {why}");
    }
    Ok(())
}

/// Runs `command` with its output on our stderr, failing with `what` unless
/// it succeeds.
pub(crate) fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    finish(command.stdout(Stdio::from(std::io::stderr())), what)
}

/// Like [`run`], with the command's stdout (what it made, that it worked)
/// left unsaid: its errors still reach our stderr.
pub(crate) fn run_quiet(command: &mut Command, what: &str) -> anyhow::Result<()> {
    finish(command.stdout(Stdio::null()), what)
}

fn finish(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: could not start"))?;
    if !status.success() {
        bail!("{what} failed ({status}; its output is above)");
    }
    Ok(())
}
