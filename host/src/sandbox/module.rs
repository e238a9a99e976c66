//! Loading a processor module: from a `.wasm` file to a pre-linked component
//! ready to instantiate once per job, with an error naming the file and the
//! reason when the file is not a processor this host can run.

use super::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, CONTRACT_VERSIONS, Pre};
use super::cache::{CompileCache, LoadedFrom, sha256_hex};
use super::engine::EpochClock;
use super::signature::{Signer, Trust};
use super::state::JobState;
use crate::units::ByteSize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

/// A processor module, compiled and linked, ready to run jobs.
///
/// Cheap to clone: clones share the compiled code.
#[derive(Clone)]
pub struct Module {
    pub(crate) engine: Engine,
    pub(crate) pre: Pre<JobState>,
    path: PathBuf,
    sha256: String,
    loaded_from: LoadedFrom,
    load_time: Duration,
    /// The contract version it was built against.
    contract_version: &'static str,
    /// The trusted key that signed it, when one did.
    signer: Option<Signer>,
    /// The epoch clock, when the module has epoch checks.
    pub(crate) clock: Option<Arc<EpochClock>>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("loaded_from", &self.loaded_from)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// The file the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name, e.g. `echo.wasm`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// The contract version the module was built against, e.g. `0.2.2`.
    pub fn contract_version(&self) -> &'static str {
        self.contract_version
    }

    /// The sha256 of the file, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The trusted key that signed it (`[host] trusted_keys`), when one did.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The first 12 hex digits of [`Module::sha256`]: what logs show.
    pub fn short_hash(&self) -> &str {
        &self.sha256[..12]
    }

    /// Whether the machine code came from the compile cache.
    pub fn loaded_from(&self) -> LoadedFrom {
        self.loaded_from
    }

    /// How long loading took (reading, compiling or reading the cache,
    /// linking).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// Why a file is not a processor this host can run. Every message starts
/// with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, a FIFO, a device).
    #[error("{path}: not a regular file ({kind}): a module is a .wasm file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than any module bullpen loads.
    #[error(
        "{path}: {size} is more than the {max} a module may be",
        size = ByteSize(*size),
        max = ByteSize(MAX_MODULE_SIZE)
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least; it may still be growing).
        size: u64,
    },
    /// The file is not WebAssembly at all.
    #[error("{path}: not a WebAssembly file (it does not start with the \\0asm header)")]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "{path}: a core WebAssembly module, not a component: build the processor for wasm32-wasip2 (cargo build --target wasm32-wasip2)"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The component does not parse, validate or compile.
    #[error("{path}: not a valid component (truncated or corrupt?): {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The component was built against another version of the contract.
    #[error(
        "{path}: built for {CONTRACT_PACKAGE}@{found}, but this host runs {CONTRACT_PACKAGE} {versions} processors",
        versions = versions_known()
    )]
    ContractVersion {
        /// The file.
        path: PathBuf,
        /// The version it imports.
        found: String,
    },
    /// The component does not export what a processor must.
    #[error(
        "{path}: not a bullpen processor: it does not export `{export}` (build it against the {CONTRACT_PACKAGE}@{CONTRACT_VERSION} world `processor`, e.g. with the bullpen-guest crate)"
    )]
    MissingExport {
        /// The file.
        path: PathBuf,
        /// The export that is missing.
        export: &'static str,
    },
    /// The component uses the contract's imports but lacks its exports:
    /// a processor cut short (exports come last in a component, and a
    /// component cut between two sections still parses).
    #[error(
        "{path}: truncated or corrupt: it imports {CONTRACT_PACKAGE}/host but does not export `{export}`, as a processor cut short would (copied while it was being written?); copy or build it again"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The export that is missing.
        export: &'static str,
    },
    /// The module is not signed by a trusted key, and must be.
    #[error("{path}: {reason}")]
    Signature {
        /// The file.
        path: PathBuf,
        /// Not signed, or not by a trusted key, or changed since.
        reason: String,
    },
    /// The component's imports or exports do not fit the host.
    #[error("{path}: cannot be linked: {reason}")]
    Link {
        /// The file.
        path: PathBuf,
        /// What did not fit.
        reason: String,
    },
}

/// The versions this host runs, as a sentence lists them: `0.2.2, 0.2.1,
/// 0.2.0 and 0.1.0`.
fn versions_known() -> String {
    match CONTRACT_VERSIONS.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The largest module file bullpen reads: a JavaScript or Python
/// processor, the largest kind, is 11–17 MiB.
pub const MAX_MODULE_SIZE: u64 = 256 << 20;

/// Reads a module file: a regular file of at most [`MAX_MODULE_SIZE`]
/// bytes. Opened without blocking and checked before it is read, so that a
/// FIFO or a device (`/dev/zero`) given as a module is refused at once
/// rather than waited on or read without end.
pub fn read_module(path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let owned = || path.to_path_buf();
    let read_error = |source| LoadError::Read {
        path: owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    let kind = meta.file_type();
    let not = |kind| LoadError::NotAFile {
        path: owned(),
        kind,
    };
    if kind.is_dir() {
        return Err(not("a directory"));
    }
    if kind.is_fifo() {
        return Err(not("a FIFO"));
    }
    if kind.is_char_device() || kind.is_block_device() {
        return Err(not("a device"));
    }
    if kind.is_socket() {
        return Err(not("a socket"));
    }
    if meta.len() > MAX_MODULE_SIZE {
        return Err(LoadError::TooLarge {
            path: owned(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MODULE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_MODULE_SIZE {
        return Err(LoadError::TooLarge {
            path: owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer of a core module: version 1, layer 0.
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
const REQUIRED_EXPORTS: [&str; 2] = ["process", "backoff"];

pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<JobState>,
    cache: &CompileCache,
    trust: &Trust,
    path: &Path,
    clock: Option<Arc<EpochClock>>,
) -> Result<Module, LoadError> {
    let started = Instant::now();
    let owned = || path.to_path_buf();
    let bytes = read_module(path)?;
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm { path: owned() });
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule { path: owned() });
    }
    // Before anything is compiled: an untrusted module costs no compile.
    let signer = trust.check(&bytes).map_err(|reason| LoadError::Signature {
        path: owned(),
        reason,
    })?;
    let sha256 = sha256_hex(&bytes);
    let (component, loaded_from) =
        cache
            .load(engine, &sha256, &bytes)
            .map_err(|e| LoadError::Invalid {
                path: owned(),
                reason: format!("{e:#}"),
            })?;
    let version = check_contract(engine, &component, path)?;
    let link_error = |e: wasmtime::Error| LoadError::Link {
        path: owned(),
        reason: format!("{e:#}"),
    };
    let instance_pre = linker.instantiate_pre(&component).map_err(link_error)?;
    let pre = Pre::new(version, instance_pre).map_err(link_error)?;
    Ok(Module {
        engine: engine.clone(),
        pre,
        path: owned(),
        sha256,
        loaded_from,
        load_time: started.elapsed(),
        contract_version: version,
        signer,
        clock,
    })
}

/// Checks the parts of the contract that have a clearer message than the
/// linker's: the contract version imported, and the exports. Returns the
/// version (the newest when the module imports nothing of the contract).
fn check_contract(
    engine: &Engine,
    component: &Component,
    path: &Path,
) -> Result<&'static str, LoadError> {
    let ty = component.component_type();
    let mut imports_contract = false;
    let mut built_for = CONTRACT_VERSION;
    for (name, _) in ty.imports(engine) {
        let Some(rest) = name
            .strip_prefix(CONTRACT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        imports_contract = true;
        let version = rest
            .split_once('@')
            .map(|(_, v)| v)
            .unwrap_or("(no version)");
        match CONTRACT_VERSIONS.iter().find(|v| **v == version) {
            Some(known) => built_for = known,
            None => {
                return Err(LoadError::ContractVersion {
                    path: path.to_path_buf(),
                    found: version.to_owned(),
                });
            }
        }
    }
    for export in REQUIRED_EXPORTS {
        match ty.get_export(engine, export).map(|e| e.ty) {
            Some(ComponentItem::ComponentFunc(_)) => {}
            _ if imports_contract => {
                return Err(LoadError::Truncated {
                    path: path.to_path_buf(),
                    export,
                });
            }
            _ => {
                return Err(LoadError::MissingExport {
                    path: path.to_path_buf(),
                    export,
                });
            }
        }
    }
    Ok(built_for)
}
