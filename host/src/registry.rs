//! The module directory: each queue's processor module loaded, checked and
//! compiled (or read from the compile cache) before any job is taken, so a
//! missing or broken module stops the start with an error that points at the
//! config line.

use crate::config::{Config, ConfigError};
use crate::sandbox::{Module, Sandbox};
use std::collections::BTreeMap;

/// The modules of a configuration, by queue name.
pub struct Registry {
    modules: BTreeMap<String, Module>,
}

impl Registry {
    /// Loads every queue's module. Queues that share a file share one
    /// compiled module.
    pub fn load(config: &Config, sandbox: &Sandbox) -> Result<Self, ConfigError> {
        let mut by_path: BTreeMap<std::path::PathBuf, Module> = BTreeMap::new();
        let mut modules = BTreeMap::new();
        for (name, queue) in &config.queues {
            let module = match by_path.get(&queue.module) {
                Some(module) => module.clone(),
                None => {
                    let module = sandbox
                        .load(&queue.module)
                        .map_err(|e| config.module_error(name, e))?;
                    tracing::info!(
                        queue = name,
                        module = %module.file_name(),
                        hash = module.short_hash(),
                        from = module.loaded_from().as_str(),
                        "module ready in {:.1} ms",
                        module.load_time().as_secs_f64() * 1e3
                    );
                    by_path.insert(queue.module.clone(), module.clone());
                    module
                }
            };
            modules.insert(name.clone(), module);
        }
        Ok(Registry { modules })
    }

    /// Queue `queue`'s module.
    pub fn module(&self, queue: &str) -> Option<&Module> {
        self.modules.get(queue)
    }
}
