//! What the host keeps on disk for itself, within `cache_size`: the
//! compile cache (`<data_dir>/cache`) and the module files kept for
//! rollback (`<data_dir>/versions`), together.
//!
//! Each deploy adds a compiled entry (2 to 40 MB) and a kept file, and
//! nothing else ever removed them: 30 deploys of a 2 MiB module took
//! 42 MB. Past the budget, the least recently used go first (an entry's
//! modification time is set each time it is used); the versions serving
//! now are never removed, whatever the budget.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What one pruning removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed (a compiled module with its digest, or a kept file).
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One thing kept: its files, their bytes, when it was last used, and the
/// module's sha256.
struct Entry {
    files: Vec<PathBuf>,
    bytes: u64,
    used: SystemTime,
    sha256: String,
}

/// Removes the least recently used compiled modules and kept versions
/// under `data_dir` until they hold at most `budget` bytes, keeping every
/// version whose sha256 is in `serving`.
pub fn prune(data_dir: &Path, budget: u64, serving: &HashSet<String>) -> Pruned {
    let mut entries = Vec::new();
    for dir in ["cache", "versions"] {
        entries.extend(entries_in(&data_dir.join(dir)));
    }
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut pruned = Pruned::default();
    if total <= budget {
        return pruned;
    }
    entries.retain(|e| !serving.contains(&e.sha256));
    entries.sort_by_key(|e| e.used);
    for entry in entries {
        if total <= budget {
            break;
        }
        if entry
            .files
            .iter()
            .all(|f| std::fs::remove_file(f).is_ok() || !f.exists())
        {
            total -= entry.bytes;
            pruned.entries += 1;
            pruned.bytes += entry.bytes;
        }
    }
    if pruned.entries > 0 {
        tracing::info!(
            "removed {} compiled modules and kept versions ({:.1} MiB), least recently used \
             first: the data dir keeps at most cache_size ({:.1} MiB) of them, and now holds \
             {:.1} MiB",
            pruned.entries,
            pruned.bytes as f64 / (1 << 20) as f64,
            budget as f64 / (1 << 20) as f64,
            total as f64 / (1 << 20) as f64,
        );
    }
    pruned
}

/// Marks `path` as used now (its modification time), so pruning keeps it
/// longer; a file that cannot be touched is only pruned sooner.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The entries of one directory: files named `<sha256>…`, grouped by the
/// part of the name before the first dot (a compiled module and its
/// digest are one entry). Anything else (a temporary file) is left alone.
fn entries_in(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut by_stem: std::collections::BTreeMap<String, Entry> = Default::default();
    for file in read.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let stem = name.split('.').next().unwrap_or_default().to_owned();
        let sha256 = stem.get(..64).unwrap_or_default();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let entry = by_stem.entry(stem.clone()).or_insert_with(|| Entry {
            files: Vec::new(),
            bytes: 0,
            used,
            sha256: sha256.to_owned(),
        });
        entry.files.push(file.path());
        entry.bytes += meta.len();
        entry.used = entry.used.max(used);
    }
    by_stem.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sha(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn write(path: &Path, bytes: usize, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; bytes]).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_serving_never() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        // Oldest first: 1 (serving), 2, 3, 4; each 1,000 bytes of compiled
        // code and digest, and a 100-byte kept file.
        for (n, age) in [(1, 400), (2, 300), (3, 200), (4, 100)] {
            write(
                &data.join(format!("cache/{}-abcdef.cwasm", sha(n))),
                990,
                age,
            );
            write(
                &data.join(format!("cache/{}-abcdef.cwasm.sha256", sha(n))),
                10,
                age,
            );
            write(&data.join(format!("versions/{}.wasm", sha(n))), 100, age);
        }
        write(&data.join("cache/.partial.tmp"), 5_000, 1_000);
        // Using 2 makes it the newest.
        touch(&data.join(format!("cache/{}-abcdef.cwasm", sha(2))));
        let serving: HashSet<String> = [sha(1)].into();

        let pruned = prune(data, 2_300, &serving);
        // 4,400 bytes. Oldest first among the rest: 2's kept file, 3's
        // compiled module and kept file, 4's compiled module; then 2,200.
        assert_eq!(
            pruned,
            Pruned {
                entries: 4,
                bytes: 2_200
            }
        );
        let left = |p: &str| data.join(p).exists();
        assert!(left(&format!("cache/{}-abcdef.cwasm", sha(1))), "serving");
        assert!(left(&format!("versions/{}.wasm", sha(1))), "serving");
        assert!(left(&format!("cache/{}-abcdef.cwasm", sha(2))), "used");
        assert!(!left(&format!("cache/{}-abcdef.cwasm", sha(3))));
        assert!(!left(&format!("cache/{}-abcdef.cwasm.sha256", sha(3))));
        assert!(!left(&format!("versions/{}.wasm", sha(2))));
        assert!(left(&format!("versions/{}.wasm", sha(4))));
        assert!(left("cache/.partial.tmp"), "not an entry");
        // Within the budget now: nothing more goes.
        assert_eq!(prune(data, 2_300, &serving), Pruned::default());
    }
}
