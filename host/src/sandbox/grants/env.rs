//! `environment` and `secrets`: the variables a guest reads with
//! `std::env::var`. Only these; secrets' values are read from the host's
//! environment at start and masked by the gate
//! ([`Mask`](crate::sandbox::Mask)) in everything the guest says.

use super::{
    Capability, Checking, Grant, GrantApplyError, GrantFlags, Granting, Refusal, unplaced,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A queue's `environment` and `secrets`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvironmentConfig {
    /// Environment variables with literal values.
    pub environment: BTreeMap<String, String>,
    /// Environment variables whose values come from the host's environment.
    pub secrets: BTreeMap<String, Secret>,
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

/// The keys as written.
#[derive(Deserialize, Default)]
pub struct Raw {
    environment: Option<Spanned<BTreeMap<String, String>>>,
    secrets: Option<Spanned<BTreeMap<String, RawSecret>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: String,
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

/// The granted variables, literal ones and secrets.
pub struct Environment {
    vars: Vec<(String, String)>,
    secret_count: usize,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Environment({names:?})")
    }
}

impl Capability for Environment {
    const KEYS: &'static [&'static str] = &["environment", "secrets"];
    const FLAG: &'static str = "--env";
    type Raw = Raw;
    type Config = EnvironmentConfig;

    /// Variable names are valid and given once, and each secret's host
    /// variable is set (read now, once).
    fn check(raw: Raw, cx: &Checking<'_>) -> Result<EnvironmentConfig, Refusal> {
        let (environment, env_span) = match raw.environment {
            Some(env) => {
                let span = env.span();
                (env.into_inner(), span)
            }
            None => (BTreeMap::new(), 0..0),
        };
        if let Some(name) = environment.keys().find(|n| !valid_variable(n)) {
            return Err(Refusal::at(
                env_span,
                format!("environment: `{name}` is not a variable name"),
            ));
        }
        let mut secrets = BTreeMap::new();
        if let Some(raw) = raw.secrets {
            let span = raw.span();
            for (name, secret) in raw.into_inner() {
                let refused = |reason: String| Err(Refusal::at(span.clone(), reason));
                if !valid_variable(&name) {
                    return refused(format!("secrets: `{name}` is not a variable name"));
                }
                if environment.contains_key(&name) {
                    return refused(format!("secrets: `{name}` is also in environment"));
                }
                let Some(value) = (cx.host_env)(&secret.env) else {
                    return refused(format!(
                        "secrets: `{name}` reads the host variable ${}, which is not set",
                        secret.env
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
        Ok(EnvironmentConfig {
            environment,
            secrets,
        })
    }

    /// `--env NAME=VALUE`.
    fn add_flags(raw: &mut Raw, flags: &GrantFlags) -> Result<(), String> {
        if flags.env.is_empty() {
            return Ok(());
        }
        let mut environment = raw
            .environment
            .take()
            .map(Spanned::into_inner)
            .unwrap_or_default();
        for pair in &flags.env {
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
        raw.environment = Some(unplaced(environment));
        Ok(())
    }

    fn unit(config: &EnvironmentConfig) -> Option<Self> {
        if config.environment.is_empty() && config.secrets.is_empty() {
            return None;
        }
        let mut vars: Vec<(String, String)> = config
            .secrets
            .iter()
            .map(|(name, secret)| (name.clone(), secret.expose().to_owned()))
            .collect();
        let secret_count = vars.len();
        vars.extend(config.environment.clone());
        Some(Environment { vars, secret_count })
    }
}

impl Grant for Environment {
    fn apply(&self, attempt: &mut Granting<'_>) -> Result<(), GrantApplyError> {
        attempt.wasi.envs(&self.vars);
        Ok(())
    }

    fn secrets(&self) -> Vec<&str> {
        self.vars[..self.secret_count]
            .iter()
            .map(|(_, value)| value.as_str())
            .collect()
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
