//! The guest SDKs and the WASI WIT compiled into the binary (see the host's
//! build.rs), and their copy on disk, which new projects depend on and
//! builds read.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod files {
    include!(concat!(env!("OUT_DIR"), "/shipped.rs"));
}
pub use files::{SDK_FILES, WASI_WIT};

/// The shipped SDKs on disk (guest-sdk/ as it was when bullpen was built):
/// `<cache>/sdk/<bullpen version>-<content hash>/`, written once. The Rust
/// SDK is its root, the JavaScript one `js/`, the Python one `python/`.
pub fn sdk_dir(cache: &Path) -> anyhow::Result<PathBuf> {
    let mut hash = Sha256::new();
    for (path, text) in SDK_FILES {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    let hash = hash.finalize();
    let id = format!(
        "{}-{}",
        env!("CARGO_PKG_VERSION"),
        hash.iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let parent = cache.join("sdk");
    let dir = parent.join(&id);
    if dir.is_dir() {
        return Ok(dir);
    }
    // Written beside, then renamed into place: a reader never sees half an
    // SDK, and of two bullpens writing at once one wins, both are served.
    let stage = parent.join(format!(".{id}.{}", std::process::id()));
    write_files(&stage, SDK_FILES)?;
    match std::fs::rename(&stage, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&stage);
            Ok(dir)
        }
        Err(e) => {
            Err(e).with_context(|| format!("moving {} to {}", stage.display(), dir.display()))
        }
    }
}

/// The shipped JavaScript SDK as npm installs a package: its tarball,
/// packed by `npm pack` beside the unpacked SDK (`sdk` is [`sdk_dir`]'s)
/// the first time it is asked for.
pub fn js_package(sdk: &Path) -> anyhow::Result<PathBuf> {
    let version = serde_json::from_str::<serde_json::Value>(sdk_file("js/package.json")?)
        .context("guest-sdk/js/package.json is not JSON")?["version"]
        .as_str()
        .context("guest-sdk/js/package.json has no version")?
        .to_owned();
    let tarball = sdk.join(format!("bullpen-{version}.tgz"));
    if tarball.is_file() {
        return Ok(tarball);
    }
    super::tools::need(
        "npm",
        "a JavaScript or TypeScript project installs its packages with npm (Debian: apt-get install npm)",
    )?;
    super::tools::run_quiet(
        std::process::Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(sdk)
            .arg(sdk.join("js")),
        &format!("npm pack {}", sdk.join("js").display()),
    )?;
    if !tarball.is_file() {
        bail!(
            "npm pack of {} made no {}",
            sdk.join("js").display(),
            tarball.display()
        );
    }
    Ok(tarball)
}

/// The shipped Python SDK as pip installs a package: its wheel, built from
/// its pyproject.toml by pip (with flit_core, both from the build tools'
/// venv) beside the unpacked SDK (`sdk` is [`sdk_dir`]'s) the first time it
/// is asked for.
pub fn python_package(cache: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let manifest: toml::Table = sdk_file("python/pyproject.toml")?
        .parse()
        .context("guest-sdk/python/pyproject.toml is not TOML")?;
    let version = manifest
        .get("project")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .context("guest-sdk/python/pyproject.toml has no [project] version")?;
    let wheel = sdk.join(format!("bullpen-{version}-py3-none-any.whl"));
    if wheel.is_file() {
        return Ok(wheel);
    }
    let py_tools = super::tools::python_tools(cache)?;
    // Into a directory of its own, then renamed: a reader never sees half
    // a wheel.
    let stage = tempfile::Builder::new()
        .prefix(".wheel-")
        .tempdir_in(sdk)
        .with_context(|| format!("creating a directory in {}", sdk.display()))?;
    super::tools::run(
        std::process::Command::new(py_tools.join("bin/pip"))
            .args([
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
            ])
            .arg(stage.path())
            .arg(sdk.join("python")),
        &format!("pip wheel {}", sdk.join("python").display()),
    )?;
    let built = stage.path().join(wheel.file_name().expect("a file name"));
    std::fs::rename(&built, &wheel).with_context(|| {
        format!(
            "pip wheel of {} made no {}",
            sdk.join("python").display(),
            built.display()
        )
    })?;
    Ok(wheel)
}

/// Writes into `dir` the WIT a script processor is built against: the
/// contract (`processor.wit`), the language's world (`world`, the text of
/// its SDK's world.wit) and the WASI packages under `deps/`.
pub fn stage_wit(dir: &Path, world: &str) -> anyhow::Result<()> {
    let contract = sdk_file("wit/processor.wit")?;
    write_files(dir, &[("processor.wit", contract), ("world.wit", world)])?;
    write_files(&dir.join("deps"), WASI_WIT)
}

/// The text of a shipped SDK file, by its path under guest-sdk/.
pub fn sdk_file(path: &str) -> anyhow::Result<&'static str> {
    SDK_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
        .with_context(|| format!("this bullpen was built without guest-sdk/{path}"))
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
