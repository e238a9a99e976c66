//! Processors pulled from OCI registries.
//!
//! A queue's `module = "oci://registry/repository:tag"` (or `@sha256:…`)
//! names a component pushed in the CNCF Wasm artifact format (`wkg oci
//! push`, `spin registry push`): a manifest whose config is
//! [`WASM_CONFIG`] and whose one layer is [`WASM_LAYER`]. The tag is
//! resolved to its manifest's digest, the layer is pulled by its digest and
//! checked against it, and the bytes are kept at
//! `<data_dir>/oci/<registry>/<repository>.wasm` with an [`Origin`] beside
//! them. From there the module is served like any file: the watcher swaps
//! in what lands there, and a host that cannot reach the registry serves
//! the copy it kept and says so.
//!
//! Registries on loopback are spoken to over plain HTTP, as Docker does;
//! every other one over HTTPS.

use crate::config::{Config, ConfigError};
use crate::sandbox::{MAX_MODULE_SIZE, sha256_hex};
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a module value names an OCI artifact.
pub const SCHEME: &str = "oci://";

/// The media type of a Wasm artifact's config (CNCF Wasm OCI artifact).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// The media type of its one layer: the component's bytes.
pub const WASM_LAYER: &str = "application/wasm";

/// `oci://…` parsed; `None` when `module` is not an OCI reference.
pub fn parse(module: &str) -> Option<Result<Reference, String>> {
    let reference = module.strip_prefix(SCHEME)?;
    Some(
        reference
            .parse::<Reference>()
            .map_err(|e| format!("{module}: not an OCI reference: {e}")),
    )
}

/// `oci://registry/repository:tag[@digest]`, as a user writes it.
pub fn display(reference: &Reference) -> String {
    format!("{SCHEME}{}", reference.whole())
}

/// Where the host keeps the module `reference` names: one file per
/// repository, whatever its tag, so a new tag replaces the old bytes the
/// way a new file replaces a module file.
pub fn kept_file(data_dir: &Path, reference: &Reference) -> PathBuf {
    let mut path = data_dir.join("oci").join(reference.registry());
    let repository = reference.repository();
    let (dirs, name) = repository.rsplit_once('/').unwrap_or(("", repository));
    for dir in dirs.split('/').filter(|d| !d.is_empty()) {
        path.push(dir);
    }
    path.push(format!("{name}.wasm"));
    path
}

/// Where a module file's bytes were pulled from, kept beside it as
/// `<file>.oci.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The reference pulled, as given (`oci://registry/repository:tag`).
    pub reference: String,
    /// The manifest's digest the reference resolved to (`sha256:…`).
    pub manifest: String,
    /// The layer's digest (`sha256:…`): the module file's sha256.
    pub layer: String,
}

impl Origin {
    fn path(file: &Path) -> PathBuf {
        let mut name = file.file_name().unwrap_or_default().to_owned();
        name.push(".oci.json");
        file.with_file_name(name)
    }

    /// The origin recorded beside `file`, if it still describes the bytes
    /// with sha256 `sha256` (hex): a file copied there by hand since has
    /// none.
    pub fn of(file: &Path, sha256: &str) -> Option<Origin> {
        let origin: Origin = serde_json::from_slice(&std::fs::read(Self::path(file)).ok()?).ok()?;
        (origin.layer.strip_prefix("sha256:") == Some(sha256)).then_some(origin)
    }

    /// Records this as the origin of `file`.
    pub fn write(&self, file: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("an origin serializes");
        write_atomically(&Self::path(file), &json)
    }

    /// Says that `file` no longer came from a registry.
    pub fn forget(file: &Path) {
        let _ = std::fs::remove_file(Self::path(file));
    }

    /// `oci://registry/repository:tag (sha256:1a2b3c4d5e6f)`.
    pub fn describe(&self) -> String {
        let short = self.manifest.get(..19).unwrap_or(&self.manifest);
        format!("{} ({short})", self.reference)
    }
}

/// A module pulled from a registry, its digests checked.
#[derive(Debug)]
pub struct Artifact {
    /// Where it came from.
    pub origin: Origin,
    /// The component's bytes.
    pub bytes: Vec<u8>,
}

/// Why an artifact was not pulled.
#[derive(Debug, thiserror::Error)]
#[error("{reference}: {reason}")]
pub struct PullError {
    reference: String,
    reason: String,
}

impl PullError {
    fn new(reference: &Reference, reason: impl Into<String>) -> Self {
        PullError {
            reference: display(reference),
            reason: reason.into(),
        }
    }
}

/// Resolves `reference` and pulls the component it names.
pub async fn pull(reference: &Reference) -> Result<Artifact, PullError> {
    Ok(pull_unless(reference, None)
        .await?
        .expect("pulled: no digest was known"))
}

/// [`pull`], unless the manifest digest `reference` resolves to is `known`
/// (then `Ok(None)`: nothing new to pull).
pub async fn pull_unless(
    reference: &Reference,
    known: Option<&str>,
) -> Result<Option<Artifact>, PullError> {
    let client = client_for(reference).map_err(|e| PullError::new(reference, e))?;
    let auth = RegistryAuth::Anonymous;
    let (manifest, digest) = client
        .pull_image_manifest(reference, &auth)
        .await
        .map_err(|e| PullError::new(reference, reason(&e)))?;
    if known == Some(digest.as_str()) {
        return Ok(None);
    }
    if manifest.config.media_type != WASM_CONFIG {
        return Err(PullError::new(
            reference,
            format!(
                "not a Wasm component artifact: its config is {}, not {WASM_CONFIG} (push components with `wkg oci push`)",
                manifest.config.media_type
            ),
        ));
    }
    let layer = match &manifest.layers[..] {
        [layer] if layer.media_type == WASM_LAYER => layer,
        layers => {
            let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            return Err(PullError::new(
                reference,
                format!(
                    "a Wasm artifact has one {WASM_LAYER} layer; this one has [{}]",
                    types.join(", ")
                ),
            ));
        }
    };
    if !(0..=MAX_MODULE_SIZE as i64).contains(&layer.size) {
        return Err(PullError::new(
            reference,
            format!(
                "its layer is {} bytes; a module is at most {MAX_MODULE_SIZE}",
                layer.size
            ),
        ));
    }
    // By digest from here on: a tag moved meanwhile changes nothing.
    let pinned = reference.clone_with_digest(digest.clone());
    let mut bytes = Vec::with_capacity(layer.size as usize);
    client
        .pull_blob(&pinned, layer, &mut bytes)
        .await
        .map_err(|e| PullError::new(reference, reason(&e)))?;
    // The client checked the bytes against the layer's digest as they came;
    // this is what the host serves under, so it is checked here too.
    let sha256 = format!("sha256:{}", sha256_hex(&bytes));
    if sha256 != layer.digest {
        return Err(PullError::new(
            reference,
            format!(
                "digest mismatch: the layer should be {} and is {sha256}",
                layer.digest
            ),
        ));
    }
    Ok(Some(Artifact {
        origin: Origin {
            reference: display(reference),
            manifest: digest,
            layer: sha256,
        },
        bytes,
    }))
}

/// A registry's error, with what caused it (reqwest's own message names
/// only the URL).
fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

fn client_for(reference: &Reference) -> Result<oci_client::Client, String> {
    // reqwest is built without a TLS provider of its own: it uses the ring
    // provider the rest of the host uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if on_loopback(reference.resolve_registry()) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::try_from(ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("bullpen/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })
    .map_err(|e| format!("cannot make a registry client: {}", reason(&e)))
}

/// Whether `registry` (`host[:port]`) is this machine.
fn on_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`,
/// so that a reader (the watcher) sees the old bytes or the new, never part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Brings the kept copy of every queue's OCI module up to date with its
/// reference (a tag is resolved again), before the modules are loaded at
/// start or on a reload. A reference that cannot be pulled leaves the
/// copy kept from before in place, and says so in the lines returned;
/// without one, it is the queue's module error.
pub async fn refresh(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut by_file: BTreeMap<&Path, (&str, &Reference)> = BTreeMap::new();
    for (name, queue) in &config.queues {
        if let Some(reference) = &queue.oci {
            by_file.entry(&queue.module).or_insert((name, reference));
        }
    }
    let mut said = Vec::new();
    for (file, (queue, reference)) in by_file {
        let kept =
            crate::registry::watch::file_sha256(file).and_then(|sha256| Origin::of(file, &sha256));
        let known = kept
            .as_ref()
            .filter(|o| o.reference == display(reference))
            .map(|o| o.manifest.as_str());
        match pull_unless(reference, known).await {
            Ok(None) => {}
            Ok(Some(artifact)) => {
                write_atomically(file, &artifact.bytes)
                    .and_then(|()| artifact.origin.write(file))
                    .map_err(|e| {
                        config.module_error(
                            queue,
                            format!("cannot keep it at {}: {e}", file.display()),
                        )
                    })?;
                let line = format!(
                    "{} pulled: {}",
                    artifact.origin.describe(),
                    &artifact.origin.layer[..19]
                );
                tracing::info!(queue, "{line}");
                said.push(line);
            }
            Err(e) => match kept {
                Some(kept) => {
                    let line = format!("{e}; serving the copy kept from {}", kept.describe());
                    tracing::warn!(queue, "{line}");
                    said.push(line);
                }
                None => return Err(config.module_error(queue, e)),
            },
        }
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_kept_as_one_file_whatever_its_tag() {
        let at = |r: &str| kept_file(Path::new("/d"), &r.parse().unwrap());
        assert_eq!(
            at("127.0.0.1:5000/acme/mail/sender:v1"),
            Path::new("/d/oci/127.0.0.1:5000/acme/mail/sender.wasm")
        );
        assert_eq!(
            at("127.0.0.1:5000/acme/mail/sender:v2"),
            at("127.0.0.1:5000/acme/mail/sender:v1")
        );
        assert_eq!(
            at(
                "ghcr.io/acme/echo.v1@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            Path::new("/d/oci/ghcr.io/acme/echo.v1.wasm")
        );
    }

    #[test]
    fn only_loopback_registries_are_spoken_to_in_plain_http() {
        assert!(on_loopback("127.0.0.1:5000"));
        assert!(on_loopback("localhost:5000"));
        assert!(on_loopback("[::1]:5000"));
        assert!(!on_loopback("ghcr.io"));
        assert!(!on_loopback("10.0.0.1:5000"));
        assert!(!on_loopback("localhost.example.com"));
    }

    #[test]
    fn a_module_value_is_an_oci_reference_only_with_the_scheme() {
        assert!(parse("echo.wasm").is_none());
        let reference = parse("oci://127.0.0.1:5000/acme/echo:v1").unwrap().unwrap();
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(display(&reference), "oci://127.0.0.1:5000/acme/echo:v1");
        let bad = parse("oci://127.0.0.1:5000/Acme/echo:v1")
            .unwrap()
            .unwrap_err();
        assert!(
            bad.starts_with("oci://127.0.0.1:5000/Acme/echo:v1: not an OCI reference"),
            "{bad}"
        );
    }
}
