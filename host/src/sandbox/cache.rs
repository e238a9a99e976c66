//! The on-disk cache of compiled modules: a second start of the host loads
//! machine code instead of running the compiler again.
//!
//! Entries are keyed by the module's sha256 and by the engine's
//! compatibility hash (wasmtime version and every setting that changes the
//! machine code), so a changed module or a changed engine never loads a stale
//! entry.
//!
//! An entry is native code that runs outside the sandbox, and wasmtime loads
//! it without checking it: a truncated or flipped byte can crash the host.
//! So each entry has its sha256 in a file of its own beside it, written after
//! the entry, and an entry is loaded only when its bytes match it; any other
//! entry is compiled again, with a warning. The digest catches corruption,
//! not a hostile writer: whoever can write to the cache directory can run
//! code as the host, so it is created readable by its owner only
//! (docs/GUARANTEES.md, "Trust").

use sha2::{Digest, Sha256};
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
            let loaded = read_verified(entry).and_then(|bytes| {
                // SAFETY: these bytes are what `Component::serialize` wrote
                // for an engine with the same compatibility hash (it is in
                // the name): they match the digest written after them, in a
                // directory only this host's user can write.
                unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| format!("{e:#}"))
            });
            match loaded {
                Ok(component) => {
                    // Used now: pruning (`cache_size`) takes it last.
                    if let Ok(file) = std::fs::File::options().write(true).open(entry) {
                        let _ = file.set_modified(std::time::SystemTime::now());
                    }
                    return Ok((component, LoadedFrom::Cache));
                }
                Err(why) => tracing::warn!(
                    path = %entry.display(),
                    "compile cache entry unusable ({why}); compiling again"
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

/// Where an entry's digest lives: beside it, in a file of its own.
fn digest_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

/// The entry's bytes, if they match its digest.
fn read_verified(entry: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(entry).map_err(|e| format!("cannot read it: {e}"))?;
    let digest = std::fs::read_to_string(digest_path(entry))
        .map_err(|e| format!("cannot read its digest: {e}"))?;
    if sha256_hex(&bytes) != digest.trim() {
        return Err("it does not match its digest: corrupted or changed".into());
    }
    Ok(bytes)
}

fn write_atomically(entry: &Path, component: &Component) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = entry.parent().expect("cache entries live in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory keeps its mode unless it is told.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let bytes = component.serialize()?;
    let write = |path: &Path, contents: &[u8]| -> std::io::Result<()> {
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        std::io::Write::write_all(&mut file, contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    // The entry first: a reader between the two renames finds a digest that
    // does not match, and compiles.
    write(entry, &bytes)?;
    write(&digest_path(entry), sha256_hex(&bytes).as_bytes())?;
    Ok(())
}

/// The sha256 of `bytes`, in lower-case hex: how modules, cache entries and
/// kept versions are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
