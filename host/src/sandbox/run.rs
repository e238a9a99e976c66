//! Running one call of a module: a fresh store and instance, the job's
//! budgets, captured output, and what the call cost.

use super::bindings::{BackoffDecision, Failure, Job, JobError};
use super::cpu::CpuTimed;
use super::crash::{self, Crash, Evidence};
use super::grants::{Granting, Grants, Outbound};
use super::jobs::Jobs;
use super::limits::MemoryLimiter;
use super::module::{Module, Pre};
use super::output::{CapturePipe, Captured};
use super::report::{Dropped, JobObserver, Reporter};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The budgets one call runs under, and what it is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for the call, instantiation included.
    pub timeout: Duration,
    /// Cap on the instance's linear memory, all memories together, in bytes.
    pub memory: u64,
    /// Bytes of stdout and of stderr kept; the rest is counted and dropped.
    pub capture: usize,
    /// Bytes of job-log lines and progress values the call may report, each
    /// charged [`REPORT_OVERHEAD`](super::REPORT_OVERHEAD) more; the rest is
    /// counted and dropped.
    pub reports: u64,
    /// What the guest may reach besides computing (nothing by default).
    pub grants: Grants,
    /// Whether the call's CPU time is measured ([`Cost::cpu`]).
    pub cpu_time: bool,
}

impl Default for Limits {
    /// 30 s, 64 MiB, 64 KiB of each output stream, 1 MiB of reports.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory: 64 << 20,
            capture: 64 << 10,
            reports: 1 << 20,
            grants: Grants::default(),
            cpu_time: false,
        }
    }
}

/// What one call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Wall time from store creation to the answer.
    pub wall: Duration,
    /// Of which setting up the store and instantiating the module (all of
    /// it when the instance never started).
    pub instantiate: Duration,
    /// The most linear memory the instance held at once, in bytes.
    pub peak_memory: u64,
    /// CPU time spent running the call (the guest and the host's work for
    /// it), when [`Limits::cpu_time`] asked for it.
    pub cpu: Option<Duration>,
}

/// The result of one call into a fresh instance.
#[derive(Debug, Clone)]
pub struct Run<T> {
    /// The guest's answer, or why there is none.
    pub outcome: Result<T, Crash>,
    /// What the call cost.
    pub cost: Cost,
    /// What the guest wrote to stdout.
    pub stdout: Captured,
    /// What the guest wrote to stderr.
    pub stderr: Captured,
    /// Reports (logs, job-log lines, progress) dropped because the call went
    /// over its budgets.
    pub reports_dropped: Dropped,
    /// The stack trace the guest gave for its failure
    /// (`host.failure-stack`), clipped to [`MAX_REPORT_LEN`] bytes.
    ///
    /// [`MAX_REPORT_LEN`]: super::report::MAX_REPORT_LEN
    pub failure_stack: Option<String>,
}

/// What `process` answered: the return value's JSON text, or how the attempt
/// ended.
pub type ProcessAnswer = Result<String, JobError>;

/// The data of a job's store: WASI (deny by default), the memory limiter, and
/// the reporter behind the `host` imports.
pub struct JobState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    outbound: Outbound,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) reporter: Reporter,
    pub(crate) jobs: Jobs,
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
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

enum Call<'a> {
    Process(&'a Job),
    Backoff {
        attempts_made: u32,
        strategy: &'a str,
        failure: &'a Failure,
        job: &'a Job,
    },
}

enum Answer {
    Process(ProcessAnswer),
    Backoff(BackoffDecision),
}

impl Module {
    /// Runs one attempt of `job` in a fresh instance.
    ///
    /// Never fails: a guest that traps, spins, or runs out of memory yields a
    /// [`Crash`] in [`Run::outcome`], and the host is unaffected.
    pub async fn process(
        &self,
        job: &Job,
        limits: &Limits,
        observer: Arc<dyn JobObserver>,
    ) -> Run<ProcessAnswer> {
        let run = self.call(Call::Process(job), limits, observer).await;
        map_run(run, |answer| match answer {
            Answer::Process(Ok(json)) => match serde_json::from_str::<serde::de::IgnoredAny>(&json)
            {
                Ok(_) => Ok(Ok(json)),
                Err(e) => Err(Crash::InvalidReturnValue(e.to_string())),
            },
            Answer::Process(Err(error)) => Ok(Err(error)),
            Answer::Backoff(_) => unreachable!("process answered as backoff"),
        })
    }

    /// Asks a fresh instance's `backoff` export when the failed `job` should
    /// be retried.
    pub async fn backoff(
        &self,
        attempts_made: u32,
        strategy: &str,
        failure: &Failure,
        job: &Job,
        limits: &Limits,
        observer: Arc<dyn JobObserver>,
    ) -> Run<BackoffDecision> {
        let call = Call::Backoff {
            attempts_made,
            strategy,
            failure,
            job,
        };
        let run = self.call(call, limits, observer).await;
        map_run(run, |answer| match answer {
            Answer::Backoff(decision) => Ok(decision),
            Answer::Process(_) => unreachable!("backoff answered as process"),
        })
    }

    async fn call(
        &self,
        call: Call<'_>,
        limits: &Limits,
        observer: Arc<dyn JobObserver>,
    ) -> Run<Answer> {
        let started = Instant::now();
        let stdout = CapturePipe::new(limits.capture);
        let stderr = CapturePipe::new(limits.capture);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut outbound = Outbound::new(observer.clone());
        let mut jobs = Jobs::new(observer.clone());
        let granted = limits.grants.apply(&mut Granting {
            wasi: &mut wasi,
            outbound: &mut outbound,
            jobs: &mut jobs,
        });
        if let Err(e) = granted {
            return Run {
                outcome: Err(Crash::Instantiate(e.to_string())),
                cost: Cost {
                    wall: started.elapsed(),
                    instantiate: started.elapsed(),
                    peak_memory: 0,
                    cpu: None,
                },
                stdout: stdout.captured(),
                stderr: stderr.captured(),
                reports_dropped: Dropped::default(),
                failure_stack: None,
            };
        }
        let wasi = wasi.build();
        let state = JobState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound,
            limiter: MemoryLimiter::new(limits.memory),
            reporter: Reporter::new(observer, limits.reports),
            jobs,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let deadline_at = started + limits.timeout;
        let _ticking = self.clock.as_ref().map(|clock| clock.hold());
        if self.clock.is_some() {
            // At every epoch tick a running guest checks its own deadline
            // (a spinning guest ends within a tick of it, without waiting
            // for the timer below to be seen) and otherwise yields with
            // tokio's `yield_now`, which puts it behind the tasks already
            // waiting, timers and I/O included: a plain self-wake would take
            // the worker's LIFO slot and run again first, and spinners kept
            // other jobs' wake-ups (in the global queue) waiting for up to
            // 61 of their slices.
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline_at {
                    return Ok(UpdateDeadline::Interrupt);
                }
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            });
        }

        let mut instantiated: Option<Duration> = None;
        let deadline = tokio::time::Instant::from_std(started) + limits.timeout;
        let call = crate::timer::within(deadline, async {
            match &self.pre {
                Pre::Now(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instantiated = Some(started.elapsed());
                    match call {
                        Call::Process(job) => instance
                            .call_process(&mut store, job)
                            .await
                            .map(Answer::Process),
                        Call::Backoff {
                            attempts_made,
                            strategy,
                            failure,
                            job,
                        } => instance
                            .call_backoff(&mut store, attempts_made, strategy, failure, job)
                            .await
                            .map(Answer::Backoff),
                    }
                }
                Pre::V0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instantiated = Some(started.elapsed());
                    match call {
                        Call::Process(job) => instance
                            .call_process(&mut store, &job.into())
                            .await
                            .map(|answer| Answer::Process(answer.map_err(Into::into))),
                        Call::Backoff {
                            attempts_made,
                            strategy,
                            failure,
                            job,
                        } => instance
                            .call_backoff(
                                &mut store,
                                attempts_made,
                                strategy,
                                &failure.into(),
                                &job.into(),
                            )
                            .await
                            .map(|decision| Answer::Backoff(decision.into())),
                    }
                }
            }
        });
        let (result, cpu) = CpuTimed::new(std::pin::pin!(call), limits.cpu_time).await;

        let stderr = stderr.captured();
        let state = store.data();
        let outcome = match result {
            Err(_elapsed) => Err(Crash::Timeout(limits.timeout)),
            Ok(Ok(answer)) => Ok(answer),
            // The epoch callback's interrupt: the budget ran out while the
            // guest computed.
            Ok(Err(error))
                if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
                    && Instant::now() >= deadline_at =>
            {
                Err(Crash::Timeout(limits.timeout))
            }
            Ok(Err(error)) => Err(crash::classify(
                &error,
                Evidence {
                    memory_cap_hit: state.limiter.cap_hit(),
                    memory_cap: limits.memory,
                    stderr: &stderr.text,
                    instantiating: instantiated.is_none(),
                },
            )),
        };
        Run {
            outcome,
            cost: Cost {
                wall: started.elapsed(),
                instantiate: instantiated.unwrap_or_else(|| started.elapsed()),
                peak_memory: state.limiter.peak(),
                cpu,
            },
            stdout: stdout.captured(),
            stderr,
            reports_dropped: state.reporter.dropped(),
            failure_stack: state.reporter.failure_stack().map(str::to_owned),
        }
    }
}

fn map_run<T>(run: Run<Answer>, f: impl FnOnce(Answer) -> Result<T, Crash>) -> Run<T> {
    Run {
        outcome: run.outcome.and_then(f),
        cost: run.cost,
        stdout: run.stdout,
        stderr: run.stderr,
        reports_dropped: run.reports_dropped,
        failure_stack: run.failure_stack,
    }
}
