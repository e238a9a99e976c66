//! bullpen: runs BullMQ jobs in isolated WebAssembly components.
//!
//! The library behind the `bullpen` binary. Data flows one way:
//! configuration, the module registry, the queue workers, the [`sandbox`]
//! that runs one attempt, and the outcome that goes back to the queue.

#![warn(missing_docs)]

pub mod authoring;
pub mod cli;
pub mod config;
pub mod embedded_redis;
pub mod fleet;
pub mod host;
pub mod json;
pub mod observe;
pub mod outcome;
pub mod queue;
pub mod registry;
pub mod relay;
pub mod sandbox;
pub mod timer;
pub mod units;
pub mod worker;
