//! `environment` and `secrets`: the variables a guest reads with
//! `std::env::var`. Only these; secrets' values are also handed to
//! the gate ([`Mask`](crate::sandbox::Mask)).

use super::{Grant, GrantApplyError, Granting};
use crate::config::GrantsConfig;

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

impl Environment {
    /// The variables of a queue's `environment` and `secrets`.
    pub fn from_config(config: &GrantsConfig) -> Self {
        let mut vars: Vec<(String, String)> = config
            .secrets
            .iter()
            .map(|(name, secret)| (name.clone(), secret.expose().to_owned()))
            .collect();
        let secret_count = vars.len();
        vars.extend(config.environment.clone());
        Environment { vars, secret_count }
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
