//! `files`: host directories preopened in the guest, read-only unless
//! `writable`. Paths are resolved by wasmtime-wasi on cap-std: `..`, absolute
//! paths and symlinks that lead out of a granted directory reach nothing.

use super::{Grant, GrantApplyError, Granting};
use crate::config::GrantsConfig;
use std::path::PathBuf;
use wasmtime_wasi::filesystem::FsPerms;

/// The granted directories.
#[derive(Debug)]
pub struct Directories {
    dirs: Vec<(PathBuf, String, FsPerms)>,
}

impl Directories {
    /// The directories of a queue's `files`.
    pub fn from_config(config: &GrantsConfig) -> Self {
        let dirs = config
            .files
            .iter()
            .map(|grant| {
                let perms = if grant.writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                (grant.source.clone(), grant.destination.clone(), perms)
            })
            .collect();
        Directories { dirs }
    }
}

impl Grant for Directories {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        for (source, destination, perms) in &self.dirs {
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
