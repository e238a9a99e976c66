//! `bullpen exec` and `bullpen check`, driven as a user drives them.

use bullpen_tests::{bullpen, guest};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;

struct Exec {
    code: i32,
    report: Value,
    stderr: String,
}

fn exec(module: &str, args: &[&str]) -> Exec {
    let cache = tempfile::tempdir().unwrap();
    exec_with_cache(module, args, cache.path())
}

fn exec_with_cache(module: &str, args: &[&str], data_dir: &Path) -> Exec {
    let output = bullpen()
        .arg("exec")
        .arg(guest(module))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    Exec {
        code: output.status.code().unwrap(),
        report,
        stderr,
    }
}

#[test]
fn echo_completes_with_its_data() {
    let run = exec("echo", &["--data", r#"{"b":1,"a":[2]}"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["outcome"], "completed");
    assert_eq!(run.report["return_value"], json!({"b": 1, "a": [2]}));
    assert_eq!(run.report["hash"].as_str().unwrap().len(), 12);
    assert!(run.report["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(run.report["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(run.report["cpu_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn flaky_fails_and_shows_the_builtin_backoff() {
    let run = exec(
        "flaky",
        &[
            "--data",
            r#"{"succeed_on":4,"error_name":"Boom"}"#,
            "--attempts-made",
            "1",
            "--attempts",
            "5",
            "--backoff",
            "exponential:1s",
        ],
    );
    assert_eq!(run.code, 3);
    assert_eq!(run.report["outcome"], "failed");
    assert_eq!(
        run.report["error"],
        json!({"message": "attempt 2 of 4 failed", "name": "Boom"})
    );
    assert_eq!(
        run.report["backoff"],
        json!({"decision": "after", "ms": 2000, "source": "builtin"})
    );
}

#[test]
fn a_custom_backoff_type_asks_the_module() {
    let data = r#"{"errors":["Transient","RetryNow","Fatal"]}"#;
    let ask = |attempts_made: &str| {
        exec(
            "custom-backoff",
            &[
                "--data",
                data,
                "--attempts-made",
                attempts_made,
                "--attempts",
                "10",
                "--backoff",
                "linear:500ms",
            ],
        )
        .report["backoff"]
            .clone()
    };
    assert_eq!(
        ask("0"),
        json!({"decision": "after", "ms": 500, "source": "module"})
    );
    assert_eq!(ask("1"), json!({"decision": "now", "source": "module"}));
    assert_eq!(ask("2"), json!({"decision": "give-up", "source": "module"}));
}

#[test]
fn validate_rejects_empty_data_for_good() {
    let run = exec("validate", &["--data", "{}"]);
    assert_eq!(run.code, 4);
    assert_eq!(run.report["outcome"], "unrecoverable");
    assert_eq!(
        run.report["reason"],
        "Invalid job data: \"email\" is required"
    );
}

#[test]
fn validate_accepts_a_registration_and_logs_it() {
    let run = exec(
        "validate",
        &["--data", r#"{"email":"ada@example.com","name":"Ada"}"#],
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.report["job_log"],
        json!(["registered Ada <ada@example.com>"])
    );
}

#[test]
fn rate_limited_and_delayed_have_their_own_outcomes() {
    let run = exec("rate-limited", &["--data", r#"{"wait_ms":750}"#]);
    assert_eq!(run.code, 5);
    assert_eq!(run.report["outcome"], "rate-limited");
    assert_eq!(run.report["rate_limit_ms"], 750);
    assert_eq!(run.report["logs"][0]["level"], "info");

    let run = exec("delayed", &["--data", r#"{"delay_ms":5000}"#]);
    assert_eq!(run.code, 6);
    assert_eq!(run.report["outcome"], "delayed");
    assert!(run.report["delay_until"].as_u64().unwrap() > 1_700_000_000_000);
}

#[test]
fn misbehaving_guests_crash_with_a_reason() {
    let crash = |mode: &str, extra: &[&str]| {
        let data = format!(r#"{{"mode":"{mode}"}}"#);
        let mut args = vec!["--data", data.as_str()];
        args.extend_from_slice(extra);
        let run = exec("misbehave", &args);
        assert_eq!(run.code, 7, "{mode}: {}", run.report);
        assert_eq!(run.report["outcome"], "crashed");
        run.report
    };
    let spin = crash("spin", &["--timeout", "1s"]);
    assert_eq!(spin["reason"], "timeout after 1s");
    assert_eq!(spin["crash"], "timeout");
    let oom = crash("oom", &["--memory", "32MiB"]);
    assert_eq!(oom["reason"], "memory limit 32 MiB exceeded");
    let overflow = crash("stack-overflow", &[]);
    assert_eq!(overflow["reason"], "stack overflow");
    let panic = crash("panic", &[]);
    let reason = panic["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("panicked at examples/misbehave/src/lib.rs:")
            && reason.ends_with(": misbehave asked to panic"),
        "{reason}"
    );
}

#[test]
fn a_second_exec_loads_the_module_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = exec_with_cache("echo", &["--data", "1", "-v"], dir.path());
    assert_eq!(first.report["loaded_from"], "compiler");
    assert!(
        first.stderr.contains("module loaded from the compiler"),
        "{}",
        first.stderr
    );
    let second = exec_with_cache("echo", &["--data", "1", "-v"], dir.path());
    assert_eq!(second.report["loaded_from"], "cache");
    assert!(
        second.stderr.contains("module loaded from the cache"),
        "{}",
        second.stderr
    );
}

fn run(command: &mut std::process::Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code().unwrap(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn bad_data_is_refused_before_running() {
    let (code, stdout, stderr) = run(bullpen()
        .arg("exec")
        .arg(guest("echo"))
        .args(["--data", "{nope"]));
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("bullpen: --data is not JSON: "),
        "{stderr}"
    );
}

/// `bullpen exec`'s grant and budget flags go through the checks a queue's
/// table goes through, and are refused with the same words, after the flag.
#[test]
fn bad_flags_are_refused_as_the_config_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--env".into(), "1A=x".into()],
            "--env: environment: `1A` is not a variable name".into(),
        ),
        (
            vec!["--env".into(), "=x".into()],
            "--env: environment: `` is not a variable name".into(),
        ),
        (
            vec!["--env".into(), "A B=x".into()],
            "--env: environment: `A B` is not a variable name".into(),
        ),
        (
            vec!["--env".into(), "A=1".into(), "--env".into(), "A=2".into()],
            "--env: environment: `A` is given twice".into(),
        ),
        (
            vec!["--dir".into(), format!("{root}:/x/../y")],
            "--dir: files: destination `/x/../y` must be an absolute guest path such as \"/templates\"".into(),
        ),
        (
            vec!["--dir".into(), format!("{root}:/d"), "--dir".into(), format!("{root}:/d:rw")],
            "--dir: files: destination `/d` is granted twice".into(),
        ),
        (
            vec!["--dir".into(), format!("{root}/missing:/d")],
            format!("--dir: files: source {root}/missing does not exist"),
        ),
        (
            vec!["--allow-host".into(), "ftp://files.example.com".into()],
            "--allow-host: allowed_outbound_hosts: `ftp://files.example.com` has a scheme other than http, https or *: only HTTP(S) is granted".into(),
        ),
        (
            vec!["--timeout".into(), "0s".into()],
            "--timeout: timeout must be at least 1ms".into(),
        ),
        (
            vec!["--memory".into(), "1B".into()],
            "--memory: memory must be between 2 MiB and 4 GiB".into(),
        ),
    ];
    for (args, said) in cases {
        let (code, stdout, stderr) = run(bullpen().arg("exec").arg(guest("echo")).args(&args));
        assert_eq!(code, 1, "{args:?}: {stdout}");
        assert_eq!(stderr.trim_end(), format!("bullpen: {said}"), "{args:?}");
    }
}

#[test]
fn check_accepts_every_example() {
    for example in bullpen_tests::EXAMPLES {
        let (code, stdout, stderr) = run(bullpen().arg("check").arg(guest(example)));
        assert_eq!(code, 0, "{example}: {stderr}");
        assert!(
            stdout.contains(": ok: a bullpen:processor@0.2.2 processor (sha256 "),
            "{stdout}"
        );
    }
}

#[test]
fn check_names_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "hello").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let other = dir.path().join("other.wasm");
    std::fs::write(&other, wat::parse_str("(component)").unwrap()).unwrap();
    for (file, reason) in [
        (&garbage, "not a WebAssembly file"),
        (&core, "a core WebAssembly module, not a component"),
        (
            &other,
            "not a bullpen processor: it does not export `process`",
        ),
    ] {
        let (code, _, stderr) = run(bullpen().arg("check").arg(file));
        assert_eq!(code, 1);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("{}: {reason}", file.display())),
            "{stderr}"
        );
    }
}

/// Runs `command` to its end: its exit code and stderr. One still running
/// after a minute is blocked (on a FIFO, say): it is killed and the test
/// fails.
fn run_unless_blocked(command: &mut std::process::Command) -> (i32, String) {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} is blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A module path that is not a regular file is refused at once, saying
/// what it is (a FIFO would block `check`; `/dev/zero` would be read until
/// memory ran out), and so is a file past the size cap; `exec` and
/// `deploy` load through the same reader.
#[test]
fn check_refuses_what_is_not_a_module_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let huge = dir.path().join("huge.wasm");
    // Sparse: no disk is used.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let zero = Path::new("/dev/zero").to_path_buf();
    let folder = dir.path().join("folder.wasm");
    std::fs::create_dir(&folder).unwrap();
    for (file, reason) in [
        (&fifo, "not a regular file (a FIFO)".to_owned()),
        (&zero, "not a regular file (a device)".to_owned()),
        (&folder, "not a regular file (a directory)".to_owned()),
        (
            &huge,
            "300 MiB is more than the 256 MiB a module may be".to_owned(),
        ),
    ] {
        let (code, stderr) = run_unless_blocked(bullpen().arg("check").arg(file));
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("{}: {reason}", file.display())),
            "{stderr}"
        );
        let (code, stderr) = run_unless_blocked(bullpen().arg("exec").arg(file));
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(&reason), "{stderr}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_exec_quietly() {
    use std::io::Read;
    // `bullpen exec … | head -c 10`: the pipe closes after 10 bytes of a
    // report of about a megabyte (the guest prints 1 MiB, captured 64 KiB;
    // the return value is large too).
    let mut child = bullpen()
        .arg("exec")
        .arg(guest("misbehave"))
        .args(["--data", r#"{"mode":"print"}"#, "--no-cache"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_truncated_module_is_called_truncated_wherever_it_is_cut() {
    let whole = std::fs::read(guest("echo")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    // Every 1/16th of the file, and the last byte missing.
    let cuts = (1..16)
        .map(|i| whole.len() * i / 16)
        .chain([whole.len() - 1]);
    for cut in cuts {
        std::fs::write(&file, &whole[..cut]).unwrap();
        let (code, _, stderr) = run(bullpen().arg("check").arg(&file));
        assert_eq!(code, 1, "cut at {cut}: {stderr}");
        assert!(
            stderr.contains("truncated or corrupt"),
            "cut at {cut} of {}: {stderr}",
            whole.len()
        );
    }
}

#[test]
fn exec_grants_what_its_flags_or_a_queue_of_the_config_grant() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("t.txt"), "Dear {name}").unwrap();
    let read = r#"{"mode":"read","path":"/templates/t.txt"}"#;
    let env = r#"{"mode":"env","name":"REGION"}"#;

    // Nothing granted: refused.
    assert_eq!(
        exec("misbehave", &["--data", read]).report["outcome"],
        "failed"
    );
    assert_eq!(
        exec("misbehave", &["--data", env]).report["return_value"],
        Value::Null
    );

    // Granted by flags.
    let dir_flag = format!("{}:/templates", templates.display());
    let run = exec("misbehave", &["--data", read, "--dir", &dir_flag]);
    assert_eq!(run.report["return_value"], "Dear {name}", "{}", run.stderr);
    let run = exec("misbehave", &["--data", env, "--env", "REGION=eu-west-1"]);
    assert_eq!(run.report["return_value"], "eu-west-1");
    let write = r#"{"mode":"write","path":"/templates/new","text":"x"}"#;
    let run = exec("misbehave", &["--data", write, "--dir", &dir_flag]);
    assert_eq!(run.report["outcome"], "failed", "read-only by default");
    let rw = format!("{dir_flag}:rw");
    let run = exec("misbehave", &["--data", write, "--dir", &rw]);
    assert_eq!(run.report["return_value"], "written");

    // Granted as a queue of the config grants it.
    let config = dir.path().join("bullpen.toml");
    std::fs::write(
        &config,
        "[queues.render]\nmodule = \"misbehave.wasm\"\n\
         files = [{ source = \"templates\", destination = \"/templates\" }]\n\
         environment = { REGION = \"us-east-2\" }\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let as_queue = ["--queue", "render", "-c", config.as_str()];
    let run = exec("misbehave", &[&["--data", read][..], &as_queue].concat());
    assert_eq!(run.report["return_value"], "Dear {name}", "{}", run.stderr);
    let run = exec("misbehave", &[&["--data", env][..], &as_queue].concat());
    assert_eq!(run.report["return_value"], "us-east-2");

    let (code, _, stderr) = run_cmd(&["--dir", "/nonexistent:/x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--dir: files: source /nonexistent does not exist"),
        "{stderr}"
    );
}

#[test]
fn exec_sends_http_only_to_hosts_given_with_allow_host() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(bullpen_tests::hook_server::HookServer::start());
    let data =
        serde_json::json!({"url": server.url("http", "/ok"), "payload": {"n": 1}}).to_string();

    let run = exec("webhook", &["--data", &data]);
    assert_eq!(run.report["outcome"], "failed");
    assert!(
        run.report["error"]
            .to_string()
            .contains("HTTP-request-denied"),
        "{}",
        run.report
    );
    assert!(server.received().is_empty());

    let allow = format!("http://{}", server.addr);
    let run = exec("webhook", &["--data", &data, "--allow-host", &allow]);
    assert_eq!(run.report["outcome"], "completed", "{}", run.report);
    assert_eq!(
        run.report["return_value"],
        serde_json::json!({"status": 200})
    );
    assert_eq!(server.received_on("/ok").len(), 1);

    let (code, _, stderr) = run_cmd(&["--allow-host", "ftp://x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "--allow-host: allowed_outbound_hosts: `ftp://x` has a scheme other than http, https or *"
        ),
        "{stderr}"
    );
}

fn run_cmd(extra: &[&str]) -> (i32, String, String) {
    run(bullpen().arg("exec").arg(guest("misbehave")).args(extra))
}
