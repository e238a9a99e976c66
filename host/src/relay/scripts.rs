//! The Relay's Lua scripts, as `bullmq-official` ships them in its
//! `src/commands` (embedded by the host's build.rs): bullpen writes no Lua
//! of its own, and a new crate version brings its scripts with it.

use std::collections::HashMap;
use std::sync::OnceLock;

mod files {
    include!(concat!(env!("OUT_DIR"), "/relay_scripts.rs"));
}

/// The script `name` (`relayPublish`, ...), ready to run: its number of
/// keys is the crate's, checked once against what the caller passes.
pub(super) fn script(name: &'static str) -> &'static redis::Script {
    static SCRIPTS: OnceLock<HashMap<&'static str, (usize, redis::Script)>> = OnceLock::new();
    let scripts = SCRIPTS.get_or_init(|| {
        files::RELAY_SCRIPTS
            .iter()
            .map(|(name, keys, text)| (*name, (*keys, redis::Script::new(text))))
            .collect()
    });
    let (keys, script) = scripts
        .get(name)
        .unwrap_or_else(|| panic!("bullmq-official ships no {name} script"));
    // Every Relay script takes one key: the namespace's nodes key, or for
    // relayTouchNamespace the prefix's registry of namespaces.
    debug_assert_eq!(*keys, 1, "{name} takes {keys} keys");
    script
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_crate_ships_every_script_a_node_calls() {
        for name in [
            "relayRegisterNode",
            "relayHeartbeat",
            "relayUnregisterNode",
            "relaySubscribe",
            "relayRemoveEndpoint",
            "relayPublish",
            "relayDeleteRetained",
            "relayReadInbox",
            "relayTrimInbox",
            "relaySweep",
            "relayTouchNamespace",
        ] {
            assert!(
                super::files::RELAY_SCRIPTS
                    .iter()
                    .any(|(n, keys, text)| *n == name && *keys == 1 && text.contains("redis.call")),
                "{name}"
            );
        }
    }
}
