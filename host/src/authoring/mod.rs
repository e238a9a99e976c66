//! What bullpen gives a processor's author, as opposed to what runs jobs:
//! the SDKs and WASI WIT it ships ([`shipped`]), the language tools it
//! installs on first use ([`tools`]), and `bullpen build` ([`build`]), which
//! turns a Rust, TypeScript, JavaScript or Python processor into a
//! component with each language's own tools.

pub mod build;
pub mod shipped;
pub mod templates;
pub mod tools;

use anyhow::Context;
use std::path::PathBuf;

/// Where bullpen keeps what it installs and builds for authors:
/// `$BULLPEN_CACHE`, else `~/.cache/bullpen`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BULLPEN_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context(
        "neither BULLPEN_CACHE nor HOME is set: bullpen has nowhere to keep its build tools",
    )?;
    Ok(PathBuf::from(home).join(".cache/bullpen"))
}

/// A project manifest in TOML (Cargo.toml, pyproject.toml), or an error
/// that names the file.
pub fn read_toml(path: &std::path::Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{}: not TOML", path.display()))
}
