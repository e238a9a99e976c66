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

use super::OutboundHost;
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

/// Default `max_response_size`: 10 MiB, well inside the default 64 MiB of
/// guest memory that has to hold it.
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 10 << 20;

/// Largest `max_response_size` accepted.
const MAX_RESPONSE_SIZE_LIMIT: u64 = 4 << 30;

/// Default `max_added_jobs`: jobs one attempt may add.
pub const DEFAULT_MAX_ADDED_JOBS: u32 = 1_000;
/// Default `max_added_size`: bytes of added jobs (data and options) and
/// updated data one attempt may write.
pub const DEFAULT_MAX_ADDED_SIZE: u64 = 16 << 20;

/// Largest `max_added_jobs` accepted.
const MAX_ADDED_JOBS_LIMIT: u32 = 100_000;
/// Largest `max_added_size` accepted.
const MAX_ADDED_SIZE_LIMIT: u64 = 512 << 20;

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
        let max_response_size = match self.max_response_size {
            None => DEFAULT_MAX_RESPONSE_SIZE,
            Some(size) if size.get_ref().0 == 0 || size.get_ref().0 > MAX_RESPONSE_SIZE_LIMIT => {
                return Err(error(
                    size.span(),
                    format!(
                        "max_response_size must be between 1 B and {}",
                        ByteSize(MAX_RESPONSE_SIZE_LIMIT)
                    ),
                ));
            }
            Some(size) => size.into_inner().0,
        };
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
        let max_added_jobs = match self.max_added_jobs {
            None => DEFAULT_MAX_ADDED_JOBS,
            Some(n) if *n.get_ref() == 0 || *n.get_ref() > MAX_ADDED_JOBS_LIMIT => {
                return Err(error(
                    n.span(),
                    format!("max_added_jobs must be between 1 and {MAX_ADDED_JOBS_LIMIT}"),
                ));
            }
            Some(n) => n.into_inner(),
        };
        let max_added_size = match self.max_added_size {
            None => DEFAULT_MAX_ADDED_SIZE,
            Some(size) if size.get_ref().0 == 0 || size.get_ref().0 > MAX_ADDED_SIZE_LIMIT => {
                return Err(error(
                    size.span(),
                    format!(
                        "max_added_size must be between 1 B and {}",
                        ByteSize(MAX_ADDED_SIZE_LIMIT)
                    ),
                ));
            }
            Some(size) => size.into_inner().0,
        };
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
