//! Embeds what bullpen ships for writing processors (`src/authoring`): the
//! guest SDKs of `../guest-sdk`, and the WIT of the WASI version the host
//! implements, taken from the wasmtime-wasi-http crate it links, so that a
//! processor's build can never target another WASI than the one it runs on.
//! And the Lua scripts of BullMQ's Relay that the `bullmq-official` crate
//! ships but does not load (`src/relay`): the crate's own files, as cargo
//! resolved it. And what `bullpen --version` names: the commit built and
//! the versions of the runtime and the protocol crate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let metadata = cargo_metadata(&manifest_dir);
    write_relay_scripts(&metadata);
    version_env(&metadata, &manifest_dir);
    let sdk_root = manifest_dir.join("../guest-sdk");
    println!("cargo:rerun-if-changed={}", sdk_root.display());
    let mut sdk = Vec::new();
    collect(&sdk_root, &sdk_root, &mut sdk);
    sdk.sort();
    let wasi = wasi_wit(&metadata);

    let mut out = String::new();
    out.push_str("/// The guest SDKs' files, by path under guest-sdk/.\npub const SDK_FILES: &[(&str, &str)] = &[\n");
    for (name, path) in &sdk {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display()).unwrap();
    }
    out.push_str("];\n/// The WIT of the WASI packages the host implements, by file name.\npub const WASI_WIT: &[(&str, &str)] = &[\n");
    for (name, path) in &wasi {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display()).unwrap();
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("shipped.rs"), out).unwrap();
}

/// Every file under `dir`, by its `/`-separated path relative to `root`:
/// what an SDK package holds, not what building or running it left behind.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.')
            || ["node_modules", "__pycache__", "target"].contains(&name.as_str())
        {
            continue;
        }
        if path.is_dir() {
            // A directory named in rerun-if-changed is watched for files
            // added or removed.
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).unwrap();
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            files.push((parts.join("/"), path.canonicalize().unwrap()));
        }
    }
}

/// What `cargo metadata` says of the workspace, as cargo resolved it.
fn cargo_metadata(manifest_dir: &Path) -> serde_json::Value {
    let cargo = std::env::var_os("CARGO").unwrap();
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(manifest_dir)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Sets `BULLPEN_COMMIT` (the commit built: `BULLPEN_COMMIT` from the
/// environment, for a build outside a git checkout, else git's), and the
/// pinned versions of wasmtime and bullmq-official, for `--version`.
fn version_env(metadata: &serde_json::Value, manifest_dir: &Path) {
    println!("cargo:rerun-if-env-changed=BULLPEN_COMMIT");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match std::env::var("BULLPEN_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(commit) => {
                // A new commit, or another branch checked out, builds again.
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    let dir = Path::new(&dir);
                    println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
                    println!(
                        "cargo:rerun-if-changed={}",
                        dir.join("packed-refs").display()
                    );
                    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                        println!("cargo:rerun-if-changed={}", dir.join(branch).display());
                    }
                }
                commit
            }
            None => "unknown".into(),
        },
    };
    println!("cargo:rustc-env=BULLPEN_COMMIT={commit}");
    for (name, var) in [
        ("wasmtime", "BULLPEN_WASMTIME_VERSION"),
        ("bullmq-official", "BULLPEN_BULLMQ_OFFICIAL_VERSION"),
    ] {
        println!("cargo:rustc-env={var}={}", pinned_version(metadata, name));
    }
}

/// The version of `name` that bullpen's Cargo.toml pins (`=x.y.z`).
fn pinned_version(metadata: &serde_json::Value, name: &str) -> String {
    let packages = metadata["packages"].as_array().unwrap();
    let host = packages
        .iter()
        .find(|p| p["name"] == "bullpen")
        .expect("cargo metadata lists the bullpen package");
    host["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("bullpen depends on {name}"))["req"]
        .as_str()
        .unwrap()
        .trim_start_matches('=')
        .to_owned()
}

/// The directory of the package `name` that bullpen depends on, at the
/// version its Cargo.toml pins.
fn dependency_dir(metadata: &serde_json::Value, name: &str) -> PathBuf {
    let packages = metadata["packages"].as_array().unwrap();
    let version = pinned_version(metadata, name);
    let package = packages
        .iter()
        .find(|p| p["name"] == name && p["version"] == version.as_str())
        .unwrap_or_else(|| panic!("cargo metadata lists {name} {version}"));
    Path::new(package["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned()
}

/// Writes `relay_scripts.rs`: each `relay*.lua` of bullmq-official's
/// `src/commands`, by script name, with its number of keys (the number its
/// file name ends with).
fn write_relay_scripts(metadata: &serde_json::Value) {
    let commands = dependency_dir(metadata, "bullmq-official").join("src/commands");
    let mut scripts = Vec::new();
    for entry in
        std::fs::read_dir(&commands).unwrap_or_else(|e| panic!("{}: {e}", commands.display()))
    {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = file
            .strip_prefix("relay")
            .and_then(|f| f.strip_suffix(".lua"))
        {
            let (name, keys) = stem
                .rsplit_once('-')
                .expect("a script's file is <name>-<keys>.lua");
            scripts.push((format!("relay{name}"), keys.parse::<usize>().unwrap(), path));
        }
    }
    scripts.sort();
    assert!(
        scripts.iter().any(|(name, _, _)| name == "relayPublish"),
        "{}: no relay scripts there",
        commands.display()
    );
    let mut out = String::from(
        "/// BullMQ's Relay scripts as bullmq-official ships them: name, number of keys, text.\npub const RELAY_SCRIPTS: &[(&str, usize, &str)] = &[\n",
    );
    for (name, keys, path) in &scripts {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({name:?}, {keys}, include_str!({:?})),",
            path.display()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("relay_scripts.rs"), out).unwrap();
}

/// The WASI WIT files of the wasmtime-wasi-http crate this host links (as
/// cargo resolved it), by file name: wasi:http and every package it uses,
/// the same files wasmtime-wasi implements.
fn wasi_wit(metadata: &serde_json::Value) -> Vec<(String, PathBuf)> {
    let deps = dependency_dir(metadata, "wasmtime-wasi-http").join("wit/deps");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&deps).unwrap_or_else(|e| panic!("{}: {e}", deps.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wit") {
            files.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            ));
        }
    }
    files.sort();
    assert!(
        files.iter().any(|(n, _)| n == "http.wit") && files.iter().any(|(n, _)| n == "cli.wit"),
        "{}: no WASI WIT there: {files:?}",
        deps.display()
    );
    files
}
