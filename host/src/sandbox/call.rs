//! Running one call of a module: a fresh store and instance (or one the
//! queue keeps, `reuse.rs`), the job's budgets, captured output, and what
//! the call cost.

use super::Budget;
use super::bindings::{BackoffDecision, Failure, Instance, Job, ProcessAnswer};
use super::cpu::CpuTimed;
use super::crash::{self, Crash, Evidence};
use super::gate::Gated;
use super::grants::{FileQuotas, Granting, Grants, Outbound};
use super::job_api::Jobs;
use super::limits::MemoryLimiter;
use super::mask::Mask;
use super::module::Module;
use super::output::{CapturePipe, Captured};
use super::report::{Dropped, JobObserver, MAX_REPORT_LEN, Reporter};
use super::reuse::{Instances, Relay, Warm};
use super::share::{Held, Lane};
use super::state::{AttemptParts, JobState};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

/// How one call runs: its budgets, what it is granted, and whether its CPU
/// time is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOptions {
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
    /// The queue's place in the CPU share: a guest that computes past a
    /// tick takes turns there. Without one it only yields to other tasks.
    pub lane: Option<Arc<Lane>>,
    /// The queue's waiting instances, when it reuses them
    /// (`max_instance_reuse_count`): a `process` call runs in one of them
    /// if one waits, and its instance waits there after a clean end.
    /// Without it every call has a fresh instance.
    pub instances: Option<Arc<Instances>>,
    /// BullMQ's key prefix of the queue (`[redis] prefix`), which the guest
    /// asks for to name its queue as BullMQ does (`jobs.queue-prefix`).
    pub queue_prefix: Arc<str>,
}

impl Default for CallOptions {
    /// 30 s, 64 MiB, 64 KiB of each output stream, 1 MiB of reports, BullMQ's
    /// default prefix `bull`.
    fn default() -> Self {
        CallOptions {
            timeout: Duration::from_secs(30),
            memory: 64 << 20,
            capture: 64 << 10,
            reports: 1 << 20,
            grants: Grants::default(),
            cpu_time: false,
            lane: None,
            instances: None,
            queue_prefix: Arc::from("bull"),
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
    /// it), when [`CallOptions::cpu_time`] asked for it.
    pub cpu: Option<Duration>,
    /// Attempts its instance had run before this one: 0 for a fresh
    /// instance.
    pub reused: u32,
}

/// The result of one call.
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

/// One export's call, made once its fresh instance is up: the only thing
/// that differs between `process` and `backoff`. (Boxed: an `impl Future`
/// here cannot be shown `Send` for every lifetime the worker needs.)
trait Export {
    /// What the call answers.
    type Answer: Send;

    fn call<'a>(
        self,
        instance: &'a Instance,
        store: &'a mut Store<JobState>,
        mask: &'a Mask,
    ) -> BoxFuture<'a, wasmtime::Result<Result<Self::Answer, Crash>>>
    where
        Self: 'a;
}

struct Process<'j>(&'j Job);

impl Export for Process<'_> {
    type Answer = ProcessAnswer;

    fn call<'a>(
        self,
        instance: &'a Instance,
        store: &'a mut Store<JobState>,
        mask: &'a Mask,
    ) -> BoxFuture<'a, wasmtime::Result<Result<ProcessAnswer, Crash>>>
    where
        Self: 'a,
    {
        Box::pin(instance.process(store, self.0, mask))
    }
}

struct Backoff<'j> {
    attempts_made: u32,
    strategy: &'j str,
    failure: &'j Failure,
    job: &'j Job,
}

impl Export for Backoff<'_> {
    type Answer = BackoffDecision;

    fn call<'a>(
        self,
        instance: &'a Instance,
        store: &'a mut Store<JobState>,
        _mask: &'a Mask,
    ) -> BoxFuture<'a, wasmtime::Result<Result<BackoffDecision, Crash>>>
    where
        Self: 'a,
    {
        Box::pin(async move {
            instance
                .backoff(
                    store,
                    self.attempts_made,
                    self.strategy,
                    self.failure,
                    self.job,
                )
                .await
                .map(Ok)
        })
    }
}

impl Module {
    /// Runs one attempt of `job` in a fresh instance, or in one of the
    /// queue's waiting instances ([`CallOptions::instances`]).
    ///
    /// Never fails: a guest that traps, spins, or runs out of memory yields a
    /// [`Crash`] in [`Run::outcome`], and the host is unaffected.
    pub async fn process(
        &self,
        job: &Job,
        options: &CallOptions,
        observer: Arc<dyn JobObserver>,
    ) -> Run<ProcessAnswer> {
        // Boxed where it starts: the call's state (the store, the WASI
        // context, the instance's futures) is kilobytes, and inline it would
        // make every future holding an attempt that large, each copied whole
        // as the crate moves its processor's future (a profile put those
        // copies at about 3 µs a job).
        Box::pin(self.call(Process(job), options, observer, options.instances.as_ref())).await
    }

    /// Asks a fresh instance's `backoff` export when the failed `job` should
    /// be retried.
    pub async fn backoff(
        &self,
        attempts_made: u32,
        strategy: &str,
        failure: &Failure,
        job: &Job,
        options: &CallOptions,
        observer: Arc<dyn JobObserver>,
    ) -> Run<BackoffDecision> {
        let export = Backoff {
            attempts_made,
            strategy,
            failure,
            job,
        };
        // Always a fresh instance: a strategy is asked rarely, and its
        // answer must not depend on what the queue's attempts left.
        self.call(export, options, observer, None).await
    }

    /// The one path of every call: an instance (a fresh one, or for a
    /// process call of a queue in `instances`, one that waits there), the
    /// guest's reports through the gate to `observer`, the export called,
    /// and what the guest left (its answer, output, stack) through the gate
    /// into the [`Run`]. An instance that ends its call cleanly goes back
    /// to `instances`.
    async fn call<E: Export>(
        &self,
        export: E,
        options: &CallOptions,
        observer: Arc<dyn JobObserver>,
        instances: Option<&Arc<Instances>>,
    ) -> Run<E::Answer> {
        let started = Instant::now();
        let mask = options.grants.mask();
        let warm = instances.and_then(|pool| pool.take(self));
        // From here on, the only observer there is: the gated one, which
        // the instance's imports reach through its relay while this
        // attempt runs.
        let relay = warm
            .as_ref()
            .map_or_else(Relay::new, |warm| warm.relay.clone());
        relay.serve(Gated::new(observer, mask.clone()));
        let reporting: Arc<dyn JobObserver> = relay.clone();
        let mut wasi = WasiCtxBuilder::new();
        let mut outbound = Outbound::new(reporting.clone());
        let mut jobs = Jobs::new(reporting.clone(), options.queue_prefix.clone());
        let mut files = FileQuotas::new(reporting.clone());
        let granted = options.grants.apply(&mut Granting {
            wasi: &mut wasi,
            outbound: &mut outbound,
            jobs: &mut jobs,
            files: &mut files,
        });
        if let Err(e) = granted {
            relay.end();
            return Run {
                outcome: Err(Crash::Instantiate(mask.mask(&e.to_string()).into_owned())),
                cost: Cost {
                    wall: started.elapsed(),
                    instantiate: started.elapsed(),
                    peak_memory: 0,
                    cpu: None,
                    reused: 0,
                },
                stdout: Captured::default(),
                stderr: Captured::default(),
                reports_dropped: Dropped::default(),
                failure_stack: None,
            };
        }
        let parts = AttemptParts {
            outbound,
            jobs,
            reporter: Reporter::new(reporting.clone(), options.reports),
        };
        // A waiting instance keeps its WASI context (its queue's
        // environment and directories) and its files' quotas; the rest is
        // this attempt's.
        let (mut store, instance, pipes, reused) = match warm {
            Some(mut warm) => {
                warm.store.data_mut().next_attempt(parts);
                let pipes = (warm.stdout, warm.stderr);
                (warm.store, Some(warm.instance), pipes, warm.runs)
            }
            None => {
                let pipes = (
                    CapturePipe::new(options.capture),
                    CapturePipe::new(options.capture),
                );
                wasi.stdout(pipes.0.clone())
                    .stderr(pipes.1.clone())
                    .allow_tcp(false)
                    .allow_udp(false)
                    .allow_ip_name_lookup(false);
                let state = JobState {
                    wasi: wasi.build(),
                    table: ResourceTable::new(),
                    http: WasiHttpCtx::new(),
                    outbound: parts.outbound,
                    limiter: MemoryLimiter::new(options.memory),
                    reporter: parts.reporter,
                    jobs: parts.jobs,
                    files,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|state| &mut state.limiter);
                (store, None, pipes, 0)
            }
        };
        let deadline_at = started + options.timeout;
        let _ticking = self.clock.as_ref().map(|clock| clock.hold());
        let turn = Turn {
            lane: options.lane.clone(),
            held: Arc::default(),
        };
        if let Some(lane) = &turn.lane {
            lane.call_started();
        }
        if self.clock.is_some() {
            // At every epoch tick a running guest checks its own deadline
            // (a spinning guest ends within a tick of it, without waiting
            // for the timer below to be seen) and otherwise yields: it
            // waits for its queue's next turn to compute (`share.rs`), or,
            // without a lane, for tokio's `yield_now`, which puts it behind
            // the tasks already waiting, timers and I/O included (a plain
            // self-wake would take the worker's LIFO slot and run again
            // first). Set anew for each attempt: the deadline is its own.
            store.set_epoch_deadline(1);
            let (lane, held) = (turn.lane.clone(), turn.held.clone());
            let observer = reporting;
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline_at {
                    return Ok(UpdateDeadline::Interrupt);
                }
                let Some(lane) = &lane else {
                    return Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(tokio::task::yield_now()),
                    ));
                };
                let (next, observer) = (lane.clone().next_turn(held.clone()), observer.clone());
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        if next.await {
                            observer.over_budget(Budget::CpuTurn);
                        }
                    }),
                ))
            });
        }

        let mut instantiated: Option<Duration> = None;
        let deadline = tokio::time::Instant::from_std(started) + options.timeout;
        let call = crate::timer::within(deadline, async {
            let instance = match instance {
                Some(instance) => instance,
                None => self.pre.instantiate(&mut store).await?,
            };
            instantiated = Some(started.elapsed());
            let answer = export.call(&instance, &mut store, mask).await?;
            Ok::<_, wasmtime::Error>((answer, instance))
        });
        let (result, cpu) = CpuTimed::new(std::pin::pin!(call), options.cpu_time).await;
        relay.end();

        let stdout = through_gate(pipes.0.take(), mask);
        let stderr = through_gate(pipes.1.take(), mask);
        let state = store.data();
        let (outcome, instance) = match result {
            Err(_elapsed) => (Err(Crash::Timeout(options.timeout)), None),
            // A bad answer is a crash too: the instance is not kept.
            Ok(Ok((answer, instance))) => {
                let clean = answer.is_ok();
                (answer, clean.then_some(instance))
            }
            // The epoch callback's interrupt: the budget ran out while the
            // guest computed.
            Ok(Err(error))
                if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
                    && Instant::now() >= deadline_at =>
            {
                (Err(Crash::Timeout(options.timeout)), None)
            }
            Ok(Err(error)) => {
                let crash = crash::classify(
                    &error,
                    Evidence {
                        memory_cap_hit: state.limiter.cap_hit(),
                        memory_cap: options.memory,
                        stderr: &stderr.text,
                        instantiating: instantiated.is_none(),
                    },
                    mask,
                );
                (Err(crash), None)
            }
        };
        let run = Run {
            outcome,
            cost: Cost {
                wall: started.elapsed(),
                instantiate: instantiated.unwrap_or_else(|| started.elapsed()),
                peak_memory: state.limiter.peak(),
                cpu,
                reused,
            },
            stdout,
            stderr,
            reports_dropped: state.reporter.dropped(),
            failure_stack: state.reporter.failure_stack().map(|(stack, cut)| {
                let masked = if cut {
                    mask.mask_cut(stack)
                } else {
                    mask.mask(stack)
                };
                let end = super::mask::floor_char_boundary(&masked, MAX_REPORT_LEN);
                masked[..end].to_owned()
            }),
        };
        if let (Some(pool), Some(instance)) = (instances, instance) {
            pool.give_back(Warm::new(store, instance, pipes, relay, self, reused + 1));
        }
        run
    }
}

/// The turn a call may hold in its lane, given up when the call ends
/// however it ends (an answer, a timeout, the attempt dropped).
struct Turn {
    lane: Option<Arc<Lane>>,
    held: Arc<Held>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(lane) = &self.lane {
            lane.release(&self.held);
        }
    }
}

/// Captured output, masked; output that was cut loses a trailing start of
/// a secret too.
fn through_gate(captured: Captured, mask: &Mask) -> Captured {
    let text = if captured.dropped > 0 {
        mask.mask_cut(&captured.text).into_owned()
    } else {
        mask.mask_owned(captured.text)
    };
    Captured {
        text,
        dropped: captured.dropped,
    }
}
