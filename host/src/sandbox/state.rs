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
