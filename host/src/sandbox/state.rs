//! The data of one call's store: WASI (deny by default), the `wasi:http`
//! hooks, the memory limiter, and the host side of the contract's imports.

use super::grants::{FileQuotas, Outbound};
use super::job_api::Jobs;
use super::limits::MemoryLimiter;
use super::report::Reporter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of a job's store: WASI (deny by default), the memory limiter, and
/// the reporter behind the `host` imports.
pub struct JobState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: Outbound,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) reporter: Reporter,
    pub(crate) jobs: Jobs,
    pub(crate) files: FileQuotas,
}

/// What is an attempt's own in a store: given anew to each attempt an
/// instance runs (its connections, its jobs allowance, its report budget).
pub(crate) struct AttemptParts {
    pub outbound: Outbound,
    pub jobs: Jobs,
    pub reporter: Reporter,
}

impl JobState {
    /// A next attempt in this store's instance: `parts` replace the last
    /// attempt's, and its memory peak starts from what the instance holds.
    pub(crate) fn next_attempt(&mut self, parts: AttemptParts) {
        self.outbound = parts.outbound;
        self.jobs = parts.jobs;
        self.reporter = parts.reporter;
        self.limiter.next_attempt();
    }
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::grants::GrantedStore for JobState {}

impl super::grants::QuotaStore for JobState {
    fn file_quotas(&mut self) -> &mut FileQuotas {
        &mut self.files
    }
}

impl WasiHttpView for JobState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
