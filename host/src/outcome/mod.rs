//! From a guest's answer to what happens to the job: BullMQ's retry and
//! backoff rules. Pure functions; no I/O.

pub mod backoff;
