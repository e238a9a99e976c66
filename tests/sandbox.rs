//! The sandbox through the library: every example guest, every outcome, and
//! guests that misbehave while the host keeps serving.

use bullpen::sandbox::{
    BackoffDecision, BackoffOptions, CallOptions, Crash, Failure, Ignore, Job, JobError, Level,
    LoadError, LoadedFrom, Module, Recorder, Report, Sandbox, SandboxOptions, test_job,
};
use bullpen_tests::{guest, resident_memory};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxOptions::default()).expect("sandbox"))
}

fn load(name: &str) -> Module {
    sandbox()
        .load(&guest(name))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn limits(timeout: Duration, memory: u64) -> CallOptions {
    CallOptions {
        timeout,
        memory,
        ..CallOptions::default()
    }
}

async fn process(module: &Module, job: &Job) -> Result<Result<String, JobError>, Crash> {
    module
        .process(job, &CallOptions::default(), Arc::new(Ignore))
        .await
        .outcome
}

fn job_with(data: &str, attempts_made: u32) -> Job {
    Job {
        attempts_made,
        attempts_started: attempts_made + 1,
        max_attempts: 5,
        ..test_job(data)
    }
}

#[tokio::test]
async fn echo_returns_the_data_byte_for_byte() {
    let echo = load("echo");
    let data = r#"{"z":1,"a":[true,null,"é"],"m":{"y":2.5}}"#;
    assert_eq!(
        process(&echo, &test_job(data)).await,
        Ok(Ok(data.to_owned()))
    );
}

#[tokio::test]
async fn json_transform_summarises_records() {
    let module = load("json-transform");
    let data = r#"{"records":[
        {"name":"a","tags":["x","y"],"value":3},
        {"name":"b","tags":["x"],"value":1},
        {"name":"c","tags":[],"value":5}]}"#;
    let out = process(&module, &test_job(data)).await.unwrap().unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["count"], 3);
    assert_eq!(out["total"], 9.0);
    assert_eq!(out["top"], serde_json::json!(["c", "a", "b"]));
    assert_eq!(out["by_tag"]["x"]["count"], 2);
    assert_eq!(out["by_tag"]["x"]["max"], 3.0);
    assert_eq!(
        out.to_string(),
        json_transform::transform(data).unwrap(),
        "the guest computes what the same code computes natively"
    );
}

#[tokio::test]
async fn flaky_fails_with_its_error_name_until_its_attempt() {
    let flaky = load("flaky");
    let data = r#"{"succeed_on":3,"error_name":"UpstreamDown"}"#;
    assert_eq!(
        process(&flaky, &job_with(data, 0)).await,
        Ok(Err(JobError::Failed(Failure {
            message: "attempt 1 of 3 failed".into(),
            name: Some("UpstreamDown".into()),
        })))
    );
    assert_eq!(
        process(&flaky, &job_with(data, 2)).await,
        Ok(Ok(r#"{"attempt":3}"#.into()))
    );
}

#[tokio::test]
async fn validate_is_unrecoverable_on_bad_data() {
    let validate = load("validate");
    let cases = [
        ("{}", "Invalid job data: \"email\" is required"),
        (
            r#"{"email":"not-an-email","name":"Ada"}"#,
            "Invalid job data: \"email\" must be a valid email",
        ),
        (
            r#"{"email":"ada@example.com","name":"A"}"#,
            "Invalid job data: \"name\" length must be at least 2 characters long",
        ),
        (
            r#"{"email":"ada@example.com"}"#,
            "Invalid job data: \"name\" is required",
        ),
    ];
    for (data, reason) in cases {
        assert_eq!(
            process(&validate, &test_job(data)).await,
            Ok(Err(JobError::Unrecoverable(reason.into()))),
            "data {data}"
        );
    }
    let recorder = Arc::new(Recorder::default());
    let run = validate
        .process(
            &test_job(r#"{"email":"ada@example.com","name":"Ada"}"#),
            &CallOptions::default(),
            recorder.clone(),
        )
        .await;
    assert_eq!(
        run.outcome,
        Ok(Ok(r#"{"registered":"ada@example.com"}"#.into()))
    );
    assert_eq!(
        recorder.reports(),
        [Report::JobLog("registered Ada <ada@example.com>".into())]
    );
}

#[tokio::test]
async fn data_that_is_not_the_expected_shape_is_unrecoverable() {
    let flaky = load("flaky");
    let outcome = process(&flaky, &test_job(r#"{"succeed_on":"soon"}"#)).await;
    match outcome {
        Ok(Err(JobError::Unrecoverable(reason))) => {
            assert!(reason.starts_with("job data does not match"), "{reason}")
        }
        other => panic!("expected unrecoverable, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limited_hands_the_job_back_then_completes() {
    let module = load("rate-limited");
    let recorder = Arc::new(Recorder::default());
    let first = module
        .process(
            &test_job(r#"{"wait_ms":2500,"times":1}"#),
            &CallOptions::default(),
            recorder.clone(),
        )
        .await;
    assert_eq!(first.outcome, Ok(Err(JobError::RateLimited(2500))));
    assert_eq!(
        recorder.reports(),
        [Report::Log {
            level: Level::Info,
            message: "upstream says: slow down".into()
        }]
    );
    let second = Job {
        attempts_started: 2,
        ..test_job(r#"{"wait_ms":2500,"times":1}"#)
    };
    assert_eq!(
        process(&module, &second).await,
        Ok(Ok(r#"{"attempts_started":2}"#.into()))
    );
}

#[tokio::test]
async fn delayed_asks_for_a_time_in_the_future() {
    let module = load("delayed");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    match process(&module, &test_job(r#"{"delay_ms":60000}"#)).await {
        Ok(Err(JobError::Delayed(until))) => {
            assert!(
                (now + 59_000..now + 61_000).contains(&until),
                "until {until}, now {now}"
            )
        }
        other => panic!("expected delayed, got {other:?}"),
    }
}

#[tokio::test]
async fn custom_backoff_answers_each_way() {
    let module = load("custom-backoff");
    let data = r#"{"errors":["Transient","RetryNow","Fatal"]}"#;
    let job = Job {
        backoff: Some(BackoffOptions {
            kind: "linear".into(),
            delay: 300,
            jitter: 0.0,
        }),
        ..job_with(data, 0)
    };
    let failure = |name: &str| Failure {
        message: "x".into(),
        name: Some(name.into()),
    };
    let ask = |attempts: u32, strategy: &'static str, name: &'static str| {
        let module = module.clone();
        let job = job.clone();
        let failure = failure(name);
        async move {
            module
                .backoff(
                    attempts,
                    strategy,
                    &failure,
                    &job,
                    &CallOptions::default(),
                    Arc::new(Ignore),
                )
                .await
                .outcome
        }
    };
    assert_eq!(
        ask(2, "linear", "Transient").await,
        Ok(BackoffDecision::After(600))
    );
    assert_eq!(ask(1, "linear", "RetryNow").await, Ok(BackoffDecision::Now));
    assert_eq!(ask(3, "linear", "Fatal").await, Ok(BackoffDecision::GiveUp));
    assert_eq!(
        ask(1, "other", "Transient").await,
        Ok(BackoffDecision::Builtin)
    );
    assert_eq!(
        process(&module, &job_with(data, 1)).await,
        Ok(Err(JobError::Failed(
            failure("RetryNow").clone_with("attempt 2 failed with RetryNow")
        )))
    );
    assert_eq!(
        process(&module, &job_with(data, 3)).await,
        Ok(Ok(r#"{"attempt":4}"#.into()))
    );
}

trait CloneWith {
    fn clone_with(&self, message: &str) -> Self;
}

impl CloneWith for Failure {
    fn clone_with(&self, message: &str) -> Self {
        Failure {
            message: message.into(),
            name: self.name.clone(),
        }
    }
}

#[tokio::test]
async fn guests_without_a_backoff_of_their_own_answer_builtin() {
    let flaky = load("flaky");
    let failure = Failure {
        message: "x".into(),
        name: None,
    };
    let run = flaky
        .backoff(
            1,
            "custom",
            &failure,
            &test_job("{}"),
            &CallOptions::default(),
            Arc::new(Ignore),
        )
        .await;
    assert_eq!(run.outcome, Ok(BackoffDecision::Builtin));
}

async fn misbehave(
    mode: &str,
    limits: CallOptions,
) -> bullpen::sandbox::Run<Result<String, JobError>> {
    let recorder: Arc<Recorder> = Arc::new(Recorder::default());
    load("misbehave")
        .process(
            &test_job(&format!(r#"{{"mode":"{mode}"}}"#)),
            &limits,
            recorder,
        )
        .await
}

#[tokio::test]
async fn a_spinning_guest_times_out() {
    let run = misbehave("spin", limits(Duration::from_millis(300), 64 << 20)).await;
    let crash = run.outcome.unwrap_err();
    assert_eq!(crash, Crash::Timeout(Duration::from_millis(300)));
    assert_eq!(crash.to_string(), "timeout after 300ms");
}

#[tokio::test]
async fn a_sleeping_guest_times_out() {
    let run = misbehave("sleep", limits(Duration::from_millis(300), 64 << 20)).await;
    assert_eq!(run.outcome.unwrap_err().to_string(), "timeout after 300ms");
}

#[tokio::test]
async fn a_guest_that_exhausts_memory_hits_its_cap() {
    let run = misbehave("oom", limits(Duration::from_secs(10), 32 << 20)).await;
    let crash = run.outcome.unwrap_err();
    assert_eq!(crash.to_string(), "memory limit 32 MiB exceeded");
    assert!(run.cost.peak_memory <= 32 << 20);
    assert!(run.cost.peak_memory > 16 << 20, "{}", run.cost.peak_memory);
}

#[tokio::test]
async fn a_guest_that_recurses_forever_overflows_its_stack() {
    let run = misbehave("stack-overflow", CallOptions::default()).await;
    assert_eq!(run.outcome.unwrap_err(), Crash::StackOverflow);
}

#[tokio::test]
async fn a_panic_is_reported_with_its_location_and_message() {
    let run = misbehave("panic", CallOptions::default()).await;
    let reason = run.outcome.unwrap_err().to_string();
    assert!(
        reason.starts_with("panicked at examples/misbehave/src/lib.rs:"),
        "{reason}"
    );
    assert!(reason.ends_with(": misbehave asked to panic"), "{reason}");
    assert!(run.stderr.text.contains("misbehave asked to panic"));
}

#[tokio::test]
async fn output_is_captured_up_to_its_bound() {
    let run = misbehave(
        "print",
        CallOptions {
            capture: 1000,
            ..CallOptions::default()
        },
    )
    .await;
    assert_eq!(run.outcome, Ok(Ok("\"fine\"".into())));
    assert_eq!(run.stdout.text, "x".repeat(1000));
    assert_eq!(run.stdout.dropped, (1 << 20) - 1000);
}

#[tokio::test]
async fn a_flood_of_reports_is_cut_at_the_budget() {
    let run = misbehave("flood", CallOptions::default()).await;
    assert_eq!(run.outcome, Ok(Ok("\"fine\"".into())));
    assert_eq!(
        run.reports_dropped.reports,
        20_000 - bullpen::sandbox::MAX_REPORTS_PER_JOB
    );
}

#[tokio::test]
async fn progress_that_is_not_json_is_dropped_with_a_warning() {
    let recorder = Arc::new(Recorder::default());
    let run = load("misbehave")
        .process(
            &test_job(r#"{"mode":"bad-progress"}"#),
            &CallOptions::default(),
            recorder.clone(),
        )
        .await;
    assert_eq!(run.outcome, Ok(Ok("\"fine\"".into())));
    let reports = recorder.reports();
    assert_eq!(reports[0], Report::Progress("10".into()));
    assert!(
        matches!(&reports[1], Report::Log { level: Level::Warn, message } if message.starts_with("progress ignored: `{not json` is not JSON")),
        "{reports:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_hold_up_other_jobs() {
    let spinner = tokio::spawn(misbehave("spin", limits(Duration::from_secs(5), 64 << 20)));
    tokio::task::yield_now().await;
    let echo = load("echo");
    for i in 0..50 {
        let data = format!("{{\"i\":{i}}}");
        assert_eq!(process(&echo, &test_job(&data)).await, Ok(Ok(data)));
    }
    assert!(
        !spinner.is_finished(),
        "50 jobs ran on the spinner's only thread while it spun"
    );
    spinner.abort();
}

#[tokio::test]
async fn after_every_kind_of_crash_the_host_keeps_serving_with_flat_memory() {
    let tight = limits(Duration::from_millis(200), 16 << 20);
    for mode in ["spin", "oom", "stack-overflow", "panic", "sleep"] {
        for _ in 0..3 {
            assert!(
                misbehave(mode, tight.clone()).await.outcome.is_err(),
                "{mode}"
            );
        }
    }
    let echo = load("echo");
    let run_many = |n: usize| {
        let echo = echo.clone();
        async move {
            for i in 0..n {
                let data = format!("[{i}]");
                assert_eq!(process(&echo, &test_job(&data)).await, Ok(Ok(data)));
            }
        }
    };
    run_many(1000).await;
    let before = resident_memory();
    run_many(1000).await;
    let after = resident_memory();
    assert!(
        after < before + (8 << 20),
        "resident memory grew from {before} to {after} over 1,000 jobs"
    );
}

#[tokio::test]
async fn memory_cost_is_recorded() {
    let echo = load("echo");
    let run = echo
        .process(&test_job("1"), &CallOptions::default(), Arc::new(Ignore))
        .await;
    assert!(run.cost.peak_memory >= 64 << 10, "{}", run.cost.peak_memory);
    assert!(run.cost.wall > Duration::ZERO);
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

fn load_error(bytes: &[u8]) -> (String, String) {
    let file = write_temp(bytes);
    let error = sandbox().load(file.path()).unwrap_err();
    let path = file.path().display().to_string();
    let message = error.to_string();
    assert!(message.starts_with(&format!("{path}: ")), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    (message[path.len() + 2..].to_owned(), format!("{error:?}"))
}

#[test]
fn garbage_is_not_wasm() {
    let (reason, _) = load_error(b"#!/bin/sh\necho hello\n");
    assert_eq!(
        reason,
        "not a WebAssembly file (it does not start with the \\0asm header)"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let (reason, _) = load_error(&wat::parse_str("(module (func (export \"process\")))").unwrap());
    assert!(
        reason.starts_with("a core WebAssembly module, not a component"),
        "{reason}"
    );
}

#[test]
fn a_component_of_another_world_lacks_the_exports() {
    let other = wat::parse_str(
        r#"(component
            (core module $m (func (export "run")))
            (core instance $i (instantiate $m))
            (func (export "run") (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let (reason, _) = load_error(&other);
    assert!(
        reason.starts_with("not a bullpen processor: it does not export `process`"),
        "{reason}"
    );
}

#[test]
fn a_processor_of_another_contract_version_is_named() {
    let newer = wat::parse_str(r#"(component (import "bullpen:processor/host@0.3.0" (instance)))"#)
        .unwrap();
    let (reason, _) = load_error(&newer);
    assert_eq!(
        reason,
        "built for bullpen:processor@0.3.0, but this host runs bullpen:processor 0.2.2, 0.2.1, 0.2.0 and 0.1.0 processors"
    );
}

#[test]
fn exports_of_the_wrong_type_do_not_link() {
    let wrong = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "process") (canon lift (core func $i "f")))
            (func (export "backoff") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let (reason, _) = load_error(&wrong);
    assert!(reason.starts_with("cannot be linked: "), "{reason}");
}

#[test]
fn broken_component_bytes_are_invalid() {
    let mut bytes = wat::parse_str("(component)").unwrap();
    bytes.extend_from_slice(&[0xff, 0x01, 0x02]);
    let (reason, _) = load_error(&bytes);
    assert!(
        reason.starts_with("not a valid component (truncated or corrupt?): "),
        "{reason}"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let error = sandbox()
        .load("/nonexistent/processor.wasm".as_ref())
        .unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/processor.wasm: cannot read: "),
        "{error}"
    );
}

#[test]
fn a_second_load_comes_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let options = || SandboxOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..SandboxOptions::default()
    };
    let first = Sandbox::new(options()).unwrap();
    assert_eq!(
        first.load(&guest("echo")).unwrap().loaded_from(),
        LoadedFrom::Compiler
    );
    let second = Sandbox::new(options()).unwrap();
    let module = second.load(&guest("echo")).unwrap();
    assert_eq!(module.loaded_from(), LoadedFrom::Cache);
    assert_eq!(module.short_hash().len(), 12);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the cache is its owner's only");
}

#[test]
fn a_corrupted_cache_entry_is_compiled_again_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let options = || SandboxOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..SandboxOptions::default()
    };
    Sandbox::new(options())
        .unwrap()
        .load(&guest("echo"))
        .unwrap();
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("an entry was written");
    // Flip bytes in the middle of the machine code: loaded unchecked, this
    // crashed the host (SIGILL) at the first job.
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte = !*byte;
    }
    std::fs::write(&entry, &bytes).unwrap();
    let module = Sandbox::new(options())
        .unwrap()
        .load(&guest("echo"))
        .unwrap();
    assert_eq!(module.loaded_from(), LoadedFrom::Compiler);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(process(&module, &test_job("{\"a\":1}")));
    assert_eq!(outcome, Ok(Ok("{\"a\":1}".into())));
    // Written again: the next load is from the cache once more.
    let again = Sandbox::new(options())
        .unwrap()
        .load(&guest("echo"))
        .unwrap();
    assert_eq!(again.loaded_from(), LoadedFrom::Cache);

    // A truncated entry, and one whose digest is gone, are compiled too.
    std::fs::write(&entry, &bytes[..bytes.len() / 3]).unwrap();
    let module = Sandbox::new(options())
        .unwrap()
        .load(&guest("echo"))
        .unwrap();
    assert_eq!(module.loaded_from(), LoadedFrom::Compiler);
    std::fs::remove_file(entry.with_extension("cwasm.sha256")).unwrap();
    let module = Sandbox::new(options())
        .unwrap()
        .load(&guest("echo"))
        .unwrap();
    assert_eq!(module.loaded_from(), LoadedFrom::Compiler);
}

/// A module kept as it was built against an earlier contract `version`:
/// 0.1.0 (before `jobs`), 0.2.0 (before `host.failure-stack`) or 0.2.1
/// (before `jobs.queue-prefix`).
fn built_against(version: &str, name: &str) -> Module {
    let path = bullpen_tests::workspace_root()
        .join(format!("tests/fixtures/contract-{version}"))
        .join(format!("{name}.wasm"));
    sandbox().load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn processors_built_against_contract_0_1_0_run_unchanged() {
    let echo = built_against("0.1.0", "echo");
    assert_eq!(echo.contract_version(), "0.1.0");
    assert_eq!(load("echo").contract_version(), "0.2.2");
    let data = r#"{"b":1,"a":[true,null]}"#;
    assert_eq!(
        process(&echo, &test_job(data)).await,
        Ok(Ok(data.to_owned()))
    );

    // Failures, names and the backoff export cross the older types too.
    let custom = built_against("0.1.0", "custom_backoff");
    let job = Job {
        backoff: Some(BackoffOptions {
            kind: "linear".into(),
            delay: 300,
            jitter: 0.0,
        }),
        ..job_with(r#"{"errors":["Transient"]}"#, 0)
    };
    assert_eq!(
        process(&custom, &job).await,
        Ok(Err(JobError::Failed(Failure {
            message: "attempt 1 failed with Transient".into(),
            name: Some("Transient".into()),
        })))
    );
    let failure = Failure {
        message: "x".into(),
        name: Some("Transient".into()),
    };
    let decision = custom
        .backoff(
            2,
            "linear",
            &failure,
            &job,
            &CallOptions::default(),
            Arc::new(Ignore),
        )
        .await
        .outcome;
    assert_eq!(decision, Ok(BackoffDecision::After(600)));
}

/// A patch version only adds functions (0.2.1 `host.failure-stack`, 0.2.2
/// `jobs.queue-prefix`): a processor of an earlier one links to the newest
/// as it is, its `jobs` imports included.
async fn a_0_2_processor_runs_unchanged(version: &str) {
    let echo = built_against(version, "echo");
    assert_eq!(echo.contract_version(), version);
    let data = r#"{"b":1,"a":[true,null]}"#;
    assert_eq!(
        process(&echo, &test_job(data)).await,
        Ok(Ok(data.to_owned()))
    );

    let (run, recorder) = first_sum_step(&built_against(version, "fan_out")).await;
    assert_eq!(run.outcome, Ok(Err(JobError::WaitingChildren)));
    let added = recorder
        .reports()
        .iter()
        .filter(|r| matches!(r, Report::JobAdded { child: true, .. }))
        .count();
    assert_eq!(added, 2);
    // The Rust SDK gives no stack: the host writes its own entry.
    assert_eq!(run.failure_stack, None);
}

#[tokio::test]
async fn processors_built_against_contract_0_2_0_run_unchanged() {
    a_0_2_processor_runs_unchanged("0.2.0").await;
}

#[tokio::test]
async fn processors_built_against_contract_0_2_1_run_unchanged() {
    a_0_2_processor_runs_unchanged("0.2.1").await;
}

fn granting(queues: &[&str]) -> CallOptions {
    let config = bullpen::config::GrantsConfig {
        add_jobs: bullpen::sandbox::job_api::AddAllowance {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    CallOptions {
        grants: bullpen::sandbox::grants::Grants::from_config(&config),
        ..CallOptions::default()
    }
}

/// The first run of fan-out's `sum` step job on [2, 3], granted its own
/// queue, and what it reported.
async fn first_sum_step(
    module: &Module,
) -> (
    bullpen::sandbox::Run<bullpen::sandbox::ProcessAnswer>,
    Arc<Recorder>,
) {
    let job = Job {
        name: "sum".into(),
        queue: "fan-out".into(),
        ..test_job(r#"{"numbers":[2,3]}"#)
    };
    let recorder = Arc::new(Recorder::default());
    let run = module
        .process(&job, &granting(&["fan-out"]), recorder.clone())
        .await;
    (run, recorder)
}

#[tokio::test]
async fn a_step_job_adds_its_children_records_its_step_and_waits() {
    let (run, recorder) = first_sum_step(&load("fan-out")).await;
    assert_eq!(run.outcome, Ok(Err(JobError::WaitingChildren)));
    let reports = recorder.reports();
    let added: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            Report::JobAdded {
                queue,
                name,
                data,
                child,
                ..
            } => Some((queue.as_str(), name.as_str(), data.as_str(), *child)),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        [
            ("fan-out", "square", r#"{"fail":false,"n":2}"#, true),
            ("fan-out", "square", r#"{"fail":false,"n":3}"#, true),
        ]
    );
    assert!(
        reports
            .iter()
            .any(|r| matches!(r, Report::DataUpdated(data) if data.contains(r#""step":1"#)))
    );
}

#[tokio::test]
async fn adding_a_job_to_a_queue_not_granted_fails_the_attempt_with_the_reason() {
    let module = load("fan-out");
    let job = Job {
        name: "notify".into(),
        ..test_job(r#"{"follow_up":"emails"}"#)
    };
    let recorder = Arc::new(Recorder::default());
    let run = module
        .process(&job, &granting(&["echo"]), recorder.clone())
        .await;
    assert_eq!(
        run.outcome,
        Ok(Err(JobError::Failed(Failure {
            message: "cannot add a job to queue `emails`: not in this queue's add_to_queues (echo)"
                .into(),
            name: Some("AddJobError".into()),
        })))
    );
    let run = module
        .process(&job, &CallOptions::default(), recorder.clone())
        .await;
    let Ok(Err(JobError::Failed(failure))) = run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert!(
        failure
            .message
            .contains("may add jobs to no queue (grant it with add_to_queues)"),
        "{}",
        failure.message
    );
    assert!(
        !recorder
            .reports()
            .iter()
            .any(|r| matches!(r, Report::JobAdded { .. })),
        "a refused job was added"
    );
}
