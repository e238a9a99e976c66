//! Rust types and glue generated from `wit/processor.wit`: the one place the
//! host's view of the contract comes from.

// The generated items carry the WIT file's doc comments where it has them;
// the few it cannot document (generated helpers) are not ours to document.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "processor",
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::bullpen::processor::host::Level;
pub use self::bullpen::processor::types::BackoffOptions;

/// The contract version this host speaks: `bullpen:processor@<this>`.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The WIT package name, without its version.
pub const CONTRACT_PACKAGE: &str = "bullpen:processor";
