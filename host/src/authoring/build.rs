//! `bullpen build`: a processor's sources into a component. A Rust project
//! is built by cargo for wasm32-wasip2; a TypeScript or JavaScript file (or
//! project) is bundled with its npm imports by esbuild and embedded in
//! SpiderMonkey by ComponentizeJS; a Python file (or project) is embedded
//! with its directory in CPython by componentize-py. Script builds are kept
//! in `<cache>/processors` by the hash of every input, so building
//! unchanged sources again gives the same bytes at once.

use super::{shipped, tools};
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a path given to `bullpen build` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Cargo project: the directory of its Cargo.toml.
    Rust(PathBuf),
    /// A TypeScript or JavaScript processor: its entry file.
    Script(PathBuf),
    /// A Python processor: its module file.
    Python(PathBuf),
}

impl Source {
    /// What `path` is: a processor file by its extension (.ts, .mts, .js,
    /// .mjs, .py), or a project directory by its manifest — Cargo.toml;
    /// package.json, whose `main` names the entry (else processor.ts or
    /// processor.js); pyproject.toml, whose `[tool.bullpen] processor` names
    /// the module file (else processor.py).
    pub fn find(path: &Path) -> anyhow::Result<Source> {
        if path.is_file() {
            return Self::file(path);
        }
        if !path.is_dir() {
            bail!("{}: no such file or directory", path.display());
        }
        if path.join("Cargo.toml").is_file() {
            return Ok(Source::Rust(path.to_owned()));
        }
        if path.join("package.json").is_file() {
            let manifest = path.join("package.json");
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let package: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", manifest.display()))?;
            return match package["main"].as_str() {
                Some(main) => Self::file(&path.join(main))
                    .with_context(|| format!("{}: its \"main\"", manifest.display())),
                None => Self::first_of(path, &["processor.ts", "processor.js", "processor.mjs"])
                    .with_context(|| format!("{}: no \"main\"", manifest.display())),
            };
        }
        if path.join("pyproject.toml").is_file() {
            let manifest = path.join("pyproject.toml");
            let table = super::read_toml(&manifest)?;
            let named = table
                .get("tool")
                .and_then(|t| t.get("bullpen"))
                .and_then(|b| b.get("processor"))
                .and_then(|p| p.as_str());
            return match named {
                Some(file) => Self::file(&path.join(file)).with_context(|| {
                    format!("{}: its [tool.bullpen] processor", manifest.display())
                }),
                None => Self::first_of(path, &["processor.py"]).with_context(|| {
                    format!("{}: no [tool.bullpen] processor", manifest.display())
                }),
            };
        }
        Self::first_of(
            path,
            &[
                "processor.ts",
                "processor.js",
                "processor.mjs",
                "processor.py",
            ],
        )
        .with_context(|| {
            format!(
                "{}: holds no Cargo.toml, package.json or pyproject.toml",
                path.display()
            )
        })
    }

    fn first_of(dir: &Path, names: &[&str]) -> anyhow::Result<Source> {
        match names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
            Some(file) => Self::file(&file),
            None => bail!("and no {} in {}", names.join(" or "), dir.display()),
        }
    }

    fn file(path: &Path) -> anyhow::Result<Source> {
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("ts" | "mts" | "js" | "mjs") => Ok(Source::Script(path.to_owned())),
            Some("py") => Ok(Source::Python(path.to_owned())),
            _ => bail!(
                "{}: a processor is a Cargo project, or a .ts, .mts, .js, .mjs or .py file",
                path.display()
            ),
        }
    }
}

/// Where `bullpen build PATH` writes when no `-o` says: for an npm or
/// Python project's directory, `<dir>/<its name>.wasm` (package.json's
/// `name` without its scope, pyproject.toml's `[project] name`), not beside
/// the entry file deep in it; `None` for a file or a Cargo project (beside
/// the file; cargo's own output).
pub fn project_output(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !path.is_dir() || path.join("Cargo.toml").is_file() {
        return Ok(None);
    }
    let name = if path.join("package.json").is_file() {
        let manifest = path.join("package.json");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let package: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", manifest.display()))?;
        package["name"]
            .as_str()
            .map(|name| name.rsplit('/').next().unwrap_or(name).to_owned())
    } else if path.join("pyproject.toml").is_file() {
        super::read_toml(&path.join("pyproject.toml"))?
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned)
    } else {
        None
    };
    Ok(name
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(|name| path.join(format!("{name}.wasm"))))
}

/// Builds `source` into a component at `out` (by default: cargo's own
/// output for Rust, the source's name with `.wasm` for a file), returning
/// where it is.
pub fn build(source: &Source, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let cache = super::cache_dir()?;
    let default_out = |file: &Path| file.with_extension("wasm");
    match source {
        Source::Rust(dir) => {
            let built = rust(dir)?;
            match out {
                Some(out) => {
                    copy_into_place(&built, out)?;
                    Ok(out.to_owned())
                }
                None => Ok(built),
            }
        }
        Source::Script(file) => {
            let out = absolute(out.map_or_else(|| default_out(file), Path::to_owned))?;
            script(&cache, file, &out)?;
            Ok(out)
        }
        Source::Python(file) => {
            let out = absolute(out.map_or_else(|| default_out(file), Path::to_owned))?;
            python(&cache, file, &out)?;
            Ok(out)
        }
    }
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::path::absolute(&path).with_context(|| path.display().to_string())
}

/// `cargo build --release --target wasm32-wasip2` of the project in `dir`;
/// the component is its cdylib.
fn rust(dir: &Path) -> anyhow::Result<PathBuf> {
    tools::need(
        "cargo",
        "Rust processors are built with cargo: install Rust with rustup (https://rustup.rs)",
    )?;
    ensure_wasm_target()?;
    let manifest = std::path::absolute(dir.join("Cargo.toml"))?;
    let output = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!(
            "{}: cargo build failed (its output is above)",
            manifest.display()
        );
    }
    let mut built = None;
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())
        {
            let wasm = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"));
            if let Some(wasm) = wasm {
                built = Some(PathBuf::from(wasm));
            }
        }
    }
    built.with_context(|| {
        format!(
            "{}: cargo built no .wasm: a processor's crate has `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        )
    })
}

/// Adds rustup's wasm32-wasip2 target when rustup manages the toolchain and
/// lacks it; without rustup, cargo says what is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    tools::run(
        Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
        "rustup target add wasm32-wasip2",
    )
}

/// A TypeScript or JavaScript processor: the SDK's build.mjs bundles it
/// (esbuild) and componentizes the bundle (ComponentizeJS), reusing an
/// earlier component of the same bundle.
fn script(cache: &Path, file: &Path, out: &Path) -> anyhow::Result<()> {
    let js_tools = tools::js_tools(cache)?;
    let sdk = shipped::sdk_dir(cache)?;
    let stage = stage_dir(cache)?;
    let wit = stage.path().join("wit");
    shipped::stage_wit(&wit, shipped::sdk_file("js/world.wit")?)?;
    tools::run(
        Command::new("node")
            .arg(sdk.join("js/build.mjs"))
            .arg(file)
            .arg(out)
            .arg(&js_tools)
            .arg(&wit)
            .arg(cache.join("processors")),
        &format!("{}: the JavaScript build", file.display()),
    )
}

/// The CPython componentize-py embeds: what the wheels of a processor's
/// dependencies must suit.
const EMBEDDED_PYTHON: &str = "3.14";

/// A Python processor: componentize-py embeds CPython, the file's
/// directory, the PyPI packages its pyproject.toml depends on and the SDK.
fn python(cache: &Path, file: &Path, out: &Path) -> anyhow::Result<()> {
    let source_dir = std::path::absolute(file.parent().unwrap_or(Path::new(".")))?;
    let module = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|m| {
            m.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .with_context(|| {
            format!(
                "{}: a Python module's name is an identifier",
                file.display()
            )
        })?;
    let world = shipped::sdk_file("python/world.wit")?;
    let sources = project_files(&source_dir)?;
    let dependencies = python_dependencies(&source_dir)?;
    let mut key = Sha256::new();
    for (relative, path) in &sources {
        key.update(relative.to_string_lossy().as_bytes());
        key.update([0]);
        key.update(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    for (path, text) in shipped::SDK_FILES {
        if path.starts_with("python/") || *path == "wit/processor.wit" {
            key.update(path.as_bytes());
            key.update(text.as_bytes());
        }
    }
    key.update(module.as_bytes());
    let cached = cache
        .join("processors")
        .join(format!("{:x}.wasm", key.finalize()));
    if cached.is_file() {
        return copy_into_place(&cached, out);
    }
    let py_tools = tools::python_tools(cache)?;
    let sdk = shipped::sdk_dir(cache)?;
    let stage = stage_dir(cache)?;
    let wit = stage.path().join("wit");
    shipped::stage_wit(&wit, world)?;
    // Only the project's own files: not a venv, nor what tools left there.
    let app = stage.path().join("app");
    for (relative, path) in &sources {
        let to = app.join(relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(path, &to).with_context(|| format!("copying {}", path.display()))?;
    }
    // componentize-py looks for `WitWorld` in the app module: here, the
    // processor module wrapped by the SDK.
    std::fs::create_dir_all(&app)?;
    std::fs::write(
        app.join("bullpen_app.py"),
        format!(
            "import {module} as _processor\nfrom bullpen.world import world\n\nWitWorld = world(_processor)\n"
        ),
    )?;
    let mut componentize = Command::new(py_tools.join("bin/componentize-py"));
    componentize
        .arg("--wit-path")
        .arg(&wit)
        .args(["--world", "processor-py", "componentize", "bullpen_app"])
        .arg("-p")
        .arg(&app)
        .arg("-p")
        .arg(sdk.join("python"));
    if !dependencies.is_empty() {
        let packages = stage.path().join("packages");
        tools::run(
            Command::new(py_tools.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-compile",
                ])
                .args([
                    "--only-binary=:all:",
                    "--platform",
                    "any",
                    "--implementation",
                    "py",
                ])
                .args(["--python-version", EMBEDDED_PYTHON, "--target"])
                .arg(&packages)
                .args(&dependencies),
            &format!(
                "{}: installing its dependencies ({}) as pure-Python wheels for CPython {EMBEDDED_PYTHON} \
                 (a package with native code cannot run in the sandbox)",
                source_dir.join("pyproject.toml").display(),
                dependencies.join(", ")
            ),
        )?;
        componentize.arg("-p").arg(packages);
    }
    let partial = stage.path().join("processor.wasm");
    tools::run_quiet(
        componentize.arg("-o").arg(&partial).current_dir(&app),
        &format!("{}: the Python build", file.display()),
    )?;
    copy_into_place(&partial, &cached)?;
    copy_into_place(&partial, out)
}

/// The requirements of `[project] dependencies` in `dir`'s pyproject.toml,
/// if it has one, but the bullpen SDK's: a build embeds the SDK it ships.
fn python_dependencies(dir: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = dir.join("pyproject.toml");
    if !manifest.is_file() {
        return Ok(Vec::new());
    }
    let table = super::read_toml(&manifest)?;
    let Some(listed) = table.get("project").and_then(|p| p.get("dependencies")) else {
        return Ok(Vec::new());
    };
    let listed = listed.as_array().with_context(|| {
        format!(
            "{}: [project] dependencies is not a list",
            manifest.display()
        )
    })?;
    let mut dependencies = Vec::new();
    for requirement in listed {
        let requirement = requirement.as_str().with_context(|| {
            format!(
                "{}: [project] dependencies holds {requirement}, not a requirement string",
                manifest.display()
            )
        })?;
        // PEP 508: the name comes first; names compare case-, `-`, `_` and
        // `.`-blind.
        let name: String = requirement
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        if !name.eq_ignore_ascii_case("bullpen") {
            dependencies.push(requirement.to_owned());
        }
    }
    Ok(dependencies)
}

/// The files under `root` a build reads, by path relative to it, sorted:
/// not hidden ones, nor what Python, npm, pip or an earlier build left
/// behind (`__pycache__`, `node_modules`, `*.egg-info`, a venv, `.wasm`).
fn project_files(root: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                || name == "__pycache__"
                || name == "node_modules"
                || name.ends_with(".egg-info")
            {
                continue;
            }
            if path.is_dir() {
                if !path.join("pyvenv.cfg").is_file() {
                    walk(root, &path, found)?;
                }
            } else if path.extension().is_none_or(|e| e != "wasm") {
                let relative = path.strip_prefix(root).unwrap_or(&path).to_owned();
                found.push((relative, path));
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    Ok(found)
}

fn stage_dir(cache: &Path) -> anyhow::Result<tempfile::TempDir> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(cache)
        .with_context(|| format!("creating a build directory in {}", cache.display()))
}

/// Copies `from` to `to` through a file beside it, so that a reader (a
/// running host's module watcher) never sees half a component.
fn copy_into_place(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let partial = to.with_extension(format!("wasm.{}.partial", std::process::id()));
    std::fs::copy(from, &partial).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("writing {}", to.display()))
}
