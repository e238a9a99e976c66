//! `files`: host directories preopened in the guest, read-only unless
//! `writable`. Paths are resolved by wasmtime-wasi on cap-std: `..`, absolute
//! paths and symlinks that lead out of a granted directory reach nothing.
//! A writable one holds at most `max_bytes` and `max_files`, and no grant
//! gets a link (`quota.rs`).

use super::quota::Quota;
use super::{
    Capability, Checking, Grant, GrantApplyError, GrantFlags, GrantedStore, Granting, Refusal,
    unplaced,
};
use crate::config::bounds;
use crate::units::ByteSize;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use toml::Spanned;
use wasmtime::component::Linker;
use wasmtime_wasi::filesystem::FsPerms;

/// One `files` entry: a host directory preopened in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// The host directory (relative paths are relative to the config file).
    pub source: PathBuf,
    /// Where the guest sees it: an absolute guest path.
    pub destination: String,
    /// Whether the guest may create, change and delete files in it.
    pub writable: bool,
    /// Bytes its files may hold, when writable.
    pub max_bytes: u64,
    /// Files and directories it may hold, when writable.
    pub max_files: u32,
}

/// The key as written.
#[derive(Deserialize, Default)]
pub struct Raw {
    #[serde(default)]
    files: Vec<Spanned<RawFileGrant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileGrant {
    source: Spanned<PathBuf>,
    destination: Spanned<String>,
    #[serde(default)]
    writable: bool,
    max_bytes: Option<Spanned<ByteSize>>,
    max_files: Option<Spanned<u32>>,
}

/// The granted directories, each with its quota when writable.
#[derive(Debug)]
pub struct Directories {
    dirs: Vec<(PathBuf, String, FsPerms, Option<Arc<Quota>>)>,
}

impl Capability for Directories {
    const KEYS: &'static [&'static str] = &["files"];
    const FLAG: &'static str = "--dir";
    type Raw = Raw;
    type Config = Vec<FileGrant>;

    /// Directories exist, destinations are absolute guest paths without
    /// `..`, and none is granted twice.
    fn check(raw: Raw, cx: &Checking<'_>) -> Result<Vec<FileGrant>, Refusal> {
        let mut files: Vec<FileGrant> = Vec::new();
        for grant in raw.files {
            let span = grant.span();
            let grant = grant.into_inner();
            let source = (cx.resolve)(grant.source.get_ref().clone());
            if !source.is_dir() {
                return Err(Refusal::at(
                    grant.source.span(),
                    format!(
                        "files: source {} {}",
                        source.display(),
                        if source.exists() {
                            "is not a directory"
                        } else {
                            "does not exist"
                        }
                    ),
                ));
            }
            let destination = grant.destination.get_ref();
            if !destination.starts_with('/') || destination.split('/').any(|p| p == "..") {
                return Err(Refusal::at(
                    grant.destination.span(),
                    format!(
                        "files: destination `{destination}` must be an absolute guest path such as \"/templates\""
                    ),
                ));
            }
            if files.iter().any(|f| &f.destination == destination) {
                return Err(Refusal::at(
                    span,
                    format!("files: destination `{destination}` is granted twice"),
                ));
            }
            if !grant.writable
                && let Some(span) = grant
                    .max_bytes
                    .as_ref()
                    .map(Spanned::span)
                    .or(grant.max_files.as_ref().map(Spanned::span))
            {
                return Err(Refusal::at(
                    span,
                    "files: max_bytes and max_files bound a writable grant; this one is \
                     read-only (add `writable = true`, or leave them out)"
                        .into(),
                ));
            }
            let refused = |(span, reason): (std::ops::Range<usize>, String)| {
                Refusal::at(span, format!("files: {reason}"))
            };
            files.push(FileGrant {
                source,
                destination: destination.clone(),
                writable: grant.writable,
                max_bytes: bounds::MAX_BYTES.read(grant.max_bytes).map_err(refused)?.0,
                max_files: bounds::MAX_FILES.read(grant.max_files).map_err(refused)?,
            });
        }
        Ok(files)
    }

    /// `--dir SRC:DST[:rw]`.
    fn add_flags(raw: &mut Raw, flags: &GrantFlags) -> Result<(), String> {
        for dir in &flags.dirs {
            let (rest, writable) = match dir.strip_suffix(":rw") {
                Some(rest) => (rest, true),
                None => (dir.strip_suffix(":ro").unwrap_or(dir), false),
            };
            let Some((source, destination)) = rest.rsplit_once(':') else {
                return Err(format!("--dir `{dir}`: write SRC:DST or SRC:DST:rw"));
            };
            // A flag's relative path is the working directory's.
            let source = std::path::absolute(source).unwrap_or_else(|_| PathBuf::from(source));
            raw.files.push(unplaced(RawFileGrant {
                source: unplaced(source),
                destination: unplaced(destination.to_owned()),
                writable,
                max_bytes: None,
                max_files: None,
            }));
        }
        Ok(())
    }

    /// Every grant's writes go through the quotas, and no link is made
    /// (`quota.rs`).
    fn link<S: GrantedStore>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
        super::quota::link(linker)
    }

    fn unit(files: &Vec<FileGrant>) -> Option<Self> {
        if files.is_empty() {
            return None;
        }
        let dirs = files
            .iter()
            .map(|grant| {
                let (perms, quota) = if grant.writable {
                    let quota =
                        Quota::new(&grant.source, grant.max_bytes, u64::from(grant.max_files));
                    (FsPerms::ReadWrite, Some(quota))
                } else {
                    (FsPerms::ReadOnly, None)
                };
                (
                    grant.source.clone(),
                    grant.destination.clone(),
                    perms,
                    quota,
                )
            })
            .collect();
        Some(Directories { dirs })
    }
}

impl Grant for Directories {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        for (source, destination, perms, quota) in &self.dirs {
            if let Some(quota) = quota {
                attempt.files.grant(destination, quota.clone());
            }
            attempt
                .wasi
                .preopened_dir(source, destination, *perms)
                .map_err(|e| {
                    GrantApplyError(format!(
                        "cannot open the granted directory {}: {e}",
                        source.display()
                    ))
                })?;
        }
        Ok(())
    }
}
