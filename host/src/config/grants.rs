//! A queue's grants as its table writes them, with Spin's names: `files`
//! (directories, read-only unless `writable`), `environment` (literal
//! variables) and `secrets` (variables read from the host's environment at
//! start). Checked here, where the error can point at the line; turned into
//! what a store gets by `sandbox::grants`.
//!
//! ```
//! let config = bullpen::config::Config::parse(
//!     "/etc/bullpen/bullpen.toml".as_ref(),
//!     r#"
//!         [queues.render]
//!         module = "render.wasm"
//!         files = [{ source = "/", destination = "/root-of-host" }]
//!         environment = { REGION = "eu-west-1" }
//!     "#,
//! )?;
//! let grants = &config.queues["render"].grants;
//! assert_eq!(grants.files[0].destination, "/root-of-host");
//! assert!(!grants.files[0].writable);
//! assert_eq!(grants.environment["REGION"], "eu-west-1");
//! # Ok::<(), bullpen::config::ConfigError>(())
//! ```

use super::{OutboundHost, bounds};
use crate::units::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use toml::Spanned;

/// What a queue grants its processor. Empty: nothing (WASI deny-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsConfig {
    /// Host directories the guest sees, and where.
    pub files: Vec<FileGrant>,
    /// Environment variables with literal values.
    pub environment: BTreeMap<String, String>,
    /// Environment variables whose values come from the host's environment.
    pub secrets: BTreeMap<String, Secret>,
    /// Where the guest may send HTTP(S) requests.
    pub allowed_outbound_hosts: Vec<OutboundHost>,
    /// Largest HTTP response body the guest may read, in bytes.
    pub max_response_size: u64,
    /// Queues the guest may add jobs to.
    pub add_to_queues: Vec<String>,
    /// Most jobs one attempt may add.
    pub max_added_jobs: u32,
    /// Most bytes of added jobs (data and options) and updated data one
    /// attempt may write.
    pub max_added_size: u64,
}

/// Default `max_response_size` ([`bounds::MAX_RESPONSE_SIZE`]).
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = bounds::MAX_RESPONSE_SIZE.default.0;
/// Default `max_added_jobs` ([`bounds::MAX_ADDED_JOBS`]).
pub const DEFAULT_MAX_ADDED_JOBS: u32 = bounds::MAX_ADDED_JOBS.default;
/// Default `max_added_size` ([`bounds::MAX_ADDED_SIZE`]).
pub const DEFAULT_MAX_ADDED_SIZE: u64 = bounds::MAX_ADDED_SIZE.default.0;

impl Default for GrantsConfig {
    fn default() -> Self {
        GrantsConfig {
            files: Vec::new(),
            environment: BTreeMap::new(),
            secrets: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            add_to_queues: Vec::new(),
            max_added_jobs: DEFAULT_MAX_ADDED_JOBS,
            max_added_size: DEFAULT_MAX_ADDED_SIZE,
        }
    }
}

impl GrantsConfig {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.environment.is_empty()
            && self.secrets.is_empty()
            && self.allowed_outbound_hosts.is_empty()
            && self.add_to_queues.is_empty()
    }
}

/// One `files` entry: a host directory preopened in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// The host directory (relative paths are relative to the config file).
    pub source: PathBuf,
    /// Where the guest sees it: an absolute guest path.
    pub destination: String,
    /// Whether the guest may create, change and delete files in it.
    pub writable: bool,
}

/// A secret's value: shown as `***` by `Debug` and `Display`, so that it
/// does not reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The host variable it was read from.
    pub from: String,
    value: String,
}

impl Secret {
    /// The value itself, for the one place that hands it to the guest.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(from ${}, ***)", self.from)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFileGrant {
    source: Spanned<PathBuf>,
    destination: Spanned<String>,
    #[serde(default)]
    writable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    env: String,
}

/// The grant keys of a queue's table.
#[derive(Default)]
pub(super) struct RawGrants {
    pub files: Vec<Spanned<RawFileGrant>>,
    pub environment: Option<Spanned<BTreeMap<String, String>>>,
    pub secrets: Option<Spanned<BTreeMap<String, RawSecret>>>,
    pub allowed_outbound_hosts: Vec<Spanned<String>>,
    pub max_response_size: Option<Spanned<ByteSize>>,
    pub add_to_queues: Vec<Spanned<String>>,
    pub max_added_jobs: Option<Spanned<u32>>,
    pub max_added_size: Option<Spanned<ByteSize>>,
}

/// A grant that cannot be given: where it is written, and why.
pub(super) struct GrantError {
    pub span: std::ops::Range<usize>,
    pub reason: String,
}

fn error(span: std::ops::Range<usize>, reason: String) -> GrantError {
    GrantError { span, reason }
}

/// Names a guest may read as environment variables: what POSIX shells
/// accept, so that a typo is caught here rather than in the guest.
fn valid_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RawGrants {
    /// Checks every grant: directories exist, destinations are absolute and
    /// distinct, variable names are valid and not given twice, and each
    /// secret's host variable is set (read now, once). `resolve` makes a
    /// source path absolute; `host_env` reads the host's environment.
    pub(super) fn check(
        self,
        resolve: impl Fn(PathBuf) -> PathBuf,
        host_env: impl Fn(&str) -> Option<String>,
    ) -> Result<GrantsConfig, GrantError> {
        let mut files = Vec::new();
        for grant in self.files {
            let span = grant.span();
            let grant = grant.into_inner();
            let source = resolve(grant.source.get_ref().clone());
            if !source.is_dir() {
                return Err(error(
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
                return Err(error(
                    grant.destination.span(),
                    format!(
                        "files: destination `{destination}` must be an absolute guest path such as \"/templates\""
                    ),
                ));
            }
            if files
                .iter()
                .any(|f: &FileGrant| &f.destination == destination)
            {
                return Err(error(
                    span,
                    format!("files: destination `{destination}` is granted twice"),
                ));
            }
            files.push(FileGrant {
                source,
                destination: destination.clone(),
                writable: grant.writable,
            });
        }
        let (environment, env_span) = match self.environment {
            Some(env) => {
                let span = env.span();
                (env.into_inner(), span)
            }
            None => (BTreeMap::new(), 0..0),
        };
        if let Some(name) = environment.keys().find(|n| !valid_variable(n)) {
            return Err(error(
                env_span,
                format!("environment: `{name}` is not a variable name"),
            ));
        }
        let mut secrets = BTreeMap::new();
        if let Some(raw) = self.secrets {
            let span = raw.span();
            for (name, secret) in raw.into_inner() {
                if !valid_variable(&name) {
                    return Err(error(
                        span,
                        format!("secrets: `{name}` is not a variable name"),
                    ));
                }
                if environment.contains_key(&name) {
                    return Err(error(
                        span,
                        format!("secrets: `{name}` is also in environment"),
                    ));
                }
                let Some(value) = host_env(&secret.env) else {
                    return Err(error(
                        span,
                        format!(
                            "secrets: `{name}` reads the host variable ${}, which is not set",
                            secret.env
                        ),
                    ));
                };
                secrets.insert(
                    name,
                    Secret {
                        from: secret.env,
                        value,
                    },
                );
            }
        }
        let mut allowed_outbound_hosts = Vec::new();
        for entry in self.allowed_outbound_hosts {
            let parsed = entry.get_ref().parse::<OutboundHost>().map_err(|reason| {
                error(entry.span(), format!("allowed_outbound_hosts: {reason}"))
            })?;
            allowed_outbound_hosts.push(parsed);
        }
        let bounded = |(span, reason)| error(span, reason);
        let max_response_size = bounds::MAX_RESPONSE_SIZE
            .read(self.max_response_size)
            .map_err(bounded)?
            .0;
        let mut add_to_queues: Vec<String> = Vec::new();
        for queue in self.add_to_queues {
            let name = queue.get_ref();
            if name.is_empty() || name.contains(':') {
                return Err(error(
                    queue.span(),
                    format!("add_to_queues: `{name}` is not a queue name (empty, or has a `:`)"),
                ));
            }
            if add_to_queues.contains(name) {
                return Err(error(
                    queue.span(),
                    format!("add_to_queues: `{name}` is listed twice"),
                ));
            }
            add_to_queues.push(queue.into_inner());
        }
        let max_added_jobs = bounds::MAX_ADDED_JOBS
            .read(self.max_added_jobs)
            .map_err(bounded)?;
        let max_added_size = bounds::MAX_ADDED_SIZE
            .read(self.max_added_size)
            .map_err(bounded)?
            .0;
        Ok(GrantsConfig {
            files,
            environment,
            secrets,
            allowed_outbound_hosts,
            max_response_size,
            add_to_queues,
            max_added_jobs,
            max_added_size,
        })
    }
}

/// A value given outside a file: nowhere to point at.
fn at<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// Grants given on a command line (`bullpen exec`'s flags), added to a
/// queue's and checked as a queue's table is: the same refusals, in the
/// same words, after the flag they came from.
#[derive(Debug, Clone, Default)]
pub struct GrantFlags {
    /// `--env NAME=VALUE`.
    pub env: Vec<String>,
    /// `--dir SRC:DST[:rw]`.
    pub dirs: Vec<String>,
    /// `--allow-host SCHEME://HOST[:PORT]`.
    pub allow_hosts: Vec<String>,
}

impl GrantFlags {
    /// `base` (a queue's checked grants, or none) with the flags' grants
    /// added, checked whole.
    pub fn add_to(&self, base: &GrantsConfig) -> Result<GrantsConfig, String> {
        let mut raw = RawGrants {
            files: base
                .files
                .iter()
                .map(|f| {
                    at(RawFileGrant {
                        source: at(f.source.clone()),
                        destination: at(f.destination.clone()),
                        writable: f.writable,
                    })
                })
                .collect(),
            environment: None,
            secrets: Some(at(base
                .secrets
                .iter()
                .map(|(name, secret)| {
                    let env = secret.from.clone();
                    (name.clone(), RawSecret { env })
                })
                .collect())),
            allowed_outbound_hosts: base
                .allowed_outbound_hosts
                .iter()
                .map(|host| at(host.to_string()))
                .collect(),
            max_response_size: Some(at(ByteSize(base.max_response_size))),
            add_to_queues: base.add_to_queues.iter().cloned().map(at).collect(),
            max_added_jobs: Some(at(base.max_added_jobs)),
            max_added_size: Some(at(ByteSize(base.max_added_size))),
        };
        let mut environment = base.environment.clone();
        for pair in &self.env {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!("--env `{pair}`: write NAME=VALUE"));
            };
            if environment
                .insert(name.to_owned(), value.to_owned())
                .is_some()
            {
                return Err(format!("--env: environment: `{name}` is given twice"));
            }
        }
        raw.environment = Some(at(environment));
        for dir in &self.dirs {
            let (rest, writable) = match dir.strip_suffix(":rw") {
                Some(rest) => (rest, true),
                None => (dir.strip_suffix(":ro").unwrap_or(dir), false),
            };
            let Some((source, destination)) = rest.rsplit_once(':') else {
                return Err(format!("--dir `{dir}`: write SRC:DST or SRC:DST:rw"));
            };
            raw.files.push(at(RawFileGrant {
                source: at(PathBuf::from(source)),
                destination: at(destination.to_owned()),
                writable,
            }));
        }
        raw.allowed_outbound_hosts
            .extend(self.allow_hosts.iter().cloned().map(at));
        raw.check(|path| path, |var| std::env::var(var).ok())
            .map_err(|e| {
                let flag = match e.reason.split_once(':').map(|(key, _)| key) {
                    Some("files") => "--dir",
                    Some("allowed_outbound_hosts") => "--allow-host",
                    _ => "--env",
                };
                format!("{flag}: {}", e.reason)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_its_value() {
        let secret = Secret {
            from: "TOKEN".into(),
            value: "s3cr3t".into(),
        };
        assert_eq!(format!("{secret:?}"), "Secret(from $TOKEN, ***)");
        assert_eq!(secret.expose(), "s3cr3t");
    }

    #[test]
    fn variable_names_are_checked() {
        assert!(valid_variable("API_TOKEN"));
        assert!(valid_variable("_x1"));
        assert!(!valid_variable("1X"));
        assert!(!valid_variable("A-B"));
        assert!(!valid_variable(""));
    }
}
