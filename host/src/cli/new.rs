//! `bullpen new`: a standalone processor project, in its language's own
//! conventions, with an example processor, a test that passes as created and
//! a README that says how to build, test and run it.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) const AFTER_HELP: &str = "\
Examples:
  bullpen new rust thumbnails           # against the SDK this bullpen ships
  cd thumbnails && cargo test && bullpen build
  bullpen new rust thumbnails --sdk ~/sdk/bullpen-guest-0.2.1   # an unpacked SDK crate";

/// The languages `bullpen new` writes projects in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Language {
    /// A Cargo crate built for wasm32-wasip2 against the `bullpen-guest` SDK.
    Rust,
}

/// Arguments of `bullpen new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's language.
    #[arg(value_enum)]
    pub language: Language,
    /// The project's name: its directory, and its crate's name.
    pub name: String,
    /// The Rust SDK (`bullpen-guest`) the project depends on by path: an
    /// unpacked `cargo package` crate, or guest-sdk/ of bullpen's checkout.
    /// Default: the SDK this bullpen ships, unpacked into ~/.cache/bullpen
    /// ($BULLPEN_CACHE).
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
    let sdk = match &args.sdk {
        Some(path) => sdk_crate(path)?,
        None => crate::authoring::shipped::sdk_dir(&crate::authoring::cache_dir()?)?,
    };
    let files = match args.language {
        Language::Rust => rust_project(name, &sdk),
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
        "{}: a {} processor; see its README.md (cargo test, then bullpen build)",
        project.display(),
        match args.language {
            Language::Rust => "Rust",
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The absolute path of the SDK crate at `path`, once its manifest says it
/// is `bullpen-guest`.
fn sdk_crate(path: &Path) -> anyhow::Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "--sdk {}: no Cargo.toml there (give an unpacked bullpen-guest crate: `cargo package -p bullpen-guest`, then `tar xzf` it)",
            path.display()
        )
    })?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not TOML", manifest.display()))?;
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

/// The files of a Rust processor project named `name`, by path.
fn rust_project(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let module = name.replace('-', "_");
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# A WebAssembly component: `cargo build --release --target wasm32-wasip2`.
crate-type = ["cdylib"]

[dependencies]
bullpen-guest = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A project of its own, not a member of a workspace above it.
[workspace]
"#,
        // A TOML string, escaped as TOML escapes (a path may hold `"` or `\`).
        sdk = toml::Value::from(sdk.display().to_string()),
    );
    let source = r##"//! A bullpen job processor: what `process` returns decides the job's fate.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    price_cents: u64,
    quantity: u32,
}

/// Totals an order: `{"items": [{"price_cents": 250, "quantity": 2}]}`.
pub struct Totals;

impl Processor for Totals {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        // Data that is not an order fails for good: no retry can fix it.
        let order: Order = job
            .data()
            .map_err(|e| Error::unrecoverable(format!("not an order: {e}")))?;
        let total: u64 = order
            .items
            .iter()
            .map(|item| item.price_cents * u64::from(item.quantity))
            .sum();
        Ok(serde_json::json!({ "total_cents": total }))
    }
}

bullpen_guest::export!(Totals);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_totalled() {
        let job = Job::for_test(r#"{"items": [{"price_cents": 250, "quantity": 2}, {"price_cents": 99, "quantity": 1}]}"#);
        let value = serde_json::to_value(Totals::process(job).ok().unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({ "total_cents": 599 }));
    }

    #[test]
    fn what_is_not_an_order_fails_for_good() {
        let job = Job::for_test(r#"{"items": "none"}"#);
        assert!(Totals::process(job).is_err());
    }
}
"##
    .to_owned();
    let readme = format!(
        r#"# {name}

A [bullpen](https://github.com/bullpen-rs/bullpen) job processor in Rust.

```sh
cargo test                          # the processor's own tests, natively
bullpen build -o {module}.wasm      # cargo build --release --target wasm32-wasip2, then a check
bullpen exec {module}.wasm --data '{{"items": [{{"price_cents": 250, "quantity": 2}}]}}'
```

To run it on a BullMQ queue, copy the `.wasm` into bullpen's module
directory and bind it in `bullpen.toml`:

```toml
[queues.orders]
module = "{module}.wasm"
```
"#
    );
    vec![
        ("Cargo.toml", manifest),
        ("src/lib.rs", source),
        ("README.md", readme),
        (".gitignore", "/target\n".to_owned()),
    ]
}
