//! `bullpen new`: a standalone processor project, in its language's own
//! conventions, with an example processor, a test that passes as created and
//! a README that says how to build, test and run it.

use crate::authoring::{shipped, templates};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen new rust thumbnails           # against the SDK this bullpen ships
  cd thumbnails && cargo test && bullpen build
  bullpen new rust thumbnails --sdk ~/sdk/bullpen-guest-0.2.2   # an unpacked SDK crate
  bullpen new ts webhooks && cd webhooks && npm install && npm test && bullpen build
  bullpen new python reports && cd reports && python3 -m venv .venv \\
    && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest && bullpen build";

/// The languages `bullpen new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A Cargo crate built for wasm32-wasip2 against the `bullpen-guest` SDK.
    Rust,
    /// An npm package in TypeScript against the `bullpen` npm package,
    /// tested with `node --test` (through tsx), type-checked by tsc.
    Ts,
    /// An npm package in JavaScript against the `bullpen` npm package,
    /// tested with `node --test`.
    Js,
    /// A Python project (pyproject.toml) against the `bullpen` wheel,
    /// tested with pytest.
    Python,
}

/// Arguments of `bullpen new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's language.
    #[arg(value_enum)]
    pub language: Language,
    /// The project's name: its directory, and its crate's name.
    pub name: String,
    /// The SDK the project depends on. Rust: the `bullpen-guest` crate's
    /// directory (an unpacked `cargo package` crate, or guest-sdk/ of
    /// bullpen's checkout). TypeScript, JavaScript: the `bullpen` npm
    /// package's tarball (`npm pack`). Python: the `bullpen` wheel. Default: the SDK this bullpen ships,
    /// unpacked into ~/.cache/bullpen ($BULLPEN_CACHE).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// Where to create the project's directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

pub(super) fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "{name:?}: a project name starts with a letter and holds only letters, digits, `-` and `_`"
        );
    }
    let project = args.dir.join(name);
    if project.exists() {
        bail!(
            "{}: already exists; choose another name or --dir",
            project.display()
        );
    }
    let shipped = || shipped::sdk_dir(&crate::authoring::cache_dir()?);
    let files = match args.language {
        Language::Rust => {
            let sdk = match &args.sdk {
                Some(path) => sdk_crate(path)?,
                None => shipped()?,
            };
            templates::rust_project(name, &sdk)
        }
        Language::Ts | Language::Js => {
            let tarball = match &args.sdk {
                Some(path) => sdk_artifact(
                    path,
                    "tgz",
                    "the .tgz that `npm pack` makes of the bullpen package",
                )?,
                None => shipped::js_package(&shipped()?)?,
            };
            templates::script_project(
                name,
                &format!("file:{}", tarball.display()),
                args.language == Language::Ts,
            )
        }
        Language::Python => {
            let wheel = match &args.sdk {
                Some(path) => sdk_artifact(
                    path,
                    "whl",
                    "the wheel of the bullpen Python SDK (`pip wheel guest-sdk/python`)",
                )?,
                None => shipped::python_package(&crate::authoring::cache_dir()?, &shipped()?)?,
            };
            templates::python_project(name, &wheel)
        }
    };
    for (path, text) in &files {
        let path = project.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    super::say!(
        "{}: a {} processor; see its README.md ({}, then bullpen build)",
        project.display(),
        match args.language {
            Language::Rust => "Rust",
            Language::Ts => "TypeScript",
            Language::Js => "JavaScript",
            Language::Python => "Python",
        },
        match args.language {
            Language::Rust => "cargo test",
            Language::Ts | Language::Js => "npm install, npm test",
            Language::Python => "pip install -e '.[test]' in a venv, pytest",
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The absolute path of the SDK crate at `path`, once its manifest says it
/// is `bullpen-guest`.
fn sdk_crate(path: &Path) -> anyhow::Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "--sdk {}: no Cargo.toml there (give an unpacked bullpen-guest crate: `cargo package -p bullpen-guest`, then `tar xzf` it)",
            path.display()
        );
    }
    let table = crate::authoring::read_toml(&manifest)?;
    let name = table
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(|name| name.as_str());
    if name != Some("bullpen-guest") {
        bail!(
            "--sdk {}: its Cargo.toml is the package {}, not bullpen-guest",
            path.display(),
            name.map_or("(none)".to_owned(), |n| format!("{n:?}"))
        );
    }
    std::path::absolute(path).with_context(|| format!("--sdk {}", path.display()))
}

/// The absolute path of `path` once it is a file ending in `.{extension}`
/// (an npm tarball, a wheel); `what` says what to give instead.
fn sdk_artifact(path: &Path, extension: &str, what: &str) -> anyhow::Result<PathBuf> {
    if !path.is_file() || path.extension().is_none_or(|e| e != extension) {
        bail!(
            "--sdk {}: not a .{extension} file (give {what})",
            path.display()
        );
    }
    std::path::absolute(path).with_context(|| format!("--sdk {}", path.display()))
}
