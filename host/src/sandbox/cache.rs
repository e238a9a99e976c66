//! The on-disk cache of compiled modules: a second start of the host loads
//! machine code instead of running the compiler again.
//!
//! Entries are keyed by the module's sha256 and by the engine's
//! compatibility hash (wasmtime version and every setting that changes the
//! machine code), so a changed module or a changed engine never loads a stale
//! entry.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a module's machine code came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Read from the compile cache.
    Cache,
    /// Compiled from the `.wasm` file (and written to the cache, if any).
    Compiler,
}

impl LoadedFrom {
    /// `"cache"` or `"compiler"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadedFrom::Cache => "cache",
            LoadedFrom::Compiler => "compiler",
        }
    }
}

/// A directory of compiled modules, or none (always compile).
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn entry(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `bytes`, from the cache when it holds it.
    ///
    /// A cache that cannot be read or written is worked around (with a
    /// warning), never an error: only `bytes` that do not compile are.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, LoadedFrom)> {
        let entry = self.entry(sha256);
        if let Some(entry) = entry.as_deref().filter(|p| p.exists()) {
            // SAFETY: the entry was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name),
            // in a directory owned by this host.
            match unsafe { Component::deserialize_file(engine, entry) } {
                Ok(component) => return Ok((component, LoadedFrom::Cache)),
                Err(e) => tracing::warn!(
                    path = %entry.display(),
                    "compile cache entry unusable, compiling again: {e:#}"
                ),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(entry) = entry
            && let Err(e) = write_atomically(&entry, &component)
        {
            tracing::warn!(path = %entry.display(), "cannot write the compile cache: {e:#}");
        }
        Ok((component, LoadedFrom::Compiler))
    }
}

fn write_atomically(entry: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = entry.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, entry)?;
    Ok(())
}
