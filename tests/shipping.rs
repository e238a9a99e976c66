//! What bullpen ships: the binary (fully static, under 40 MB, naming its
//! version, commit and contracts), `cargo install` from a clone, and the
//! OCI image built from scratch, run by podman as an operator would.

use bullpen_tests::{
    EVERY_OUTCOME_QUEUES, EXAMPLES, RedisServer, assert_every_outcome, cargo_command, exec_report,
    free_port, guest, node_run, try_http_get, without_cargo_env, workspace_root,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The commit `--version` must name: git's, or `unknown` outside a checkout.
fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

/// `binary --version`, checked for what it must name.
fn check_version(binary: &Path) {
    let output = Command::new(binary).arg("--version").output().unwrap();
    assert!(output.status.success());
    check_version_text(&String::from_utf8_lossy(&output.stdout));
}

/// What `bullpen --version` said names the version, the commit built and
/// the contracts.
fn check_version_text(said: &str) {
    for wanted in [
        format!(
            "bullpen {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            commit()
        ),
        "contract: bullpen:processor@0.2.2; runs processors built for 0.2.2, 0.2.1, 0.2.0, 0.1.0"
            .into(),
        "wasmtime 48.0.8, bullmq-official 1.4.4".into(),
    ] {
        assert!(said.contains(&wanted), "no `{wanted}` in:\n{said}");
    }
}

/// What one of the repository's scripts printed (it names what it built),
/// after checking it succeeded.
fn script(args: &[&str]) -> String {
    let mut command = Command::new("bash");
    without_cargo_env(&mut command);
    let output = command
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `scripts/dist` builds a binary that needs no libc, is under 40 MB, and
/// runs a processor.
#[test]
fn the_shipped_binary_is_static_small_and_runs_a_job() {
    let binary = PathBuf::from(script(&["scripts/dist"]));
    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(size < 40 << 20, "{}: {size} bytes", binary.display());
    let elf = Command::new("readelf")
        .arg("-lW")
        .arg(&binary)
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&elf.stdout);
    assert!(
        headers.contains("LOAD") && !headers.contains("INTERP"),
        "{}: not static:\n{headers}",
        binary.display()
    );
    check_version(&binary);

    let data = tempfile::tempdir().unwrap();
    let report = exec_report(
        Command::new(&binary)
            .arg("exec")
            .arg(guest("echo"))
            .args(["--data", r#"{"hello": "static"}"#, "--data-dir"])
            .arg(data.path()),
    );
    assert_eq!(report["outcome"], "completed", "{report}");
}

/// `cargo install --locked --path host`, as the README says, from this
/// checkout (a debug build here, to share the tests' build).
#[test]
fn cargo_install_from_a_clone_gives_a_working_bullpen() {
    let root = tempfile::tempdir().unwrap();
    let output = cargo_command(&workspace_root())
        .args(["install", "--locked", "--debug", "--path", "host", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_version(&root.path().join("bin/bullpen"));
}

/// What a podman command printed, after checking it succeeded.
fn podman(args: &[&str]) -> String {
    let output = Command::new("podman").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Removes the test's container, volume and image, however the test ends.
struct PodmanObjects {
    container: String,
    volume: String,
    image: String,
}

impl Drop for PodmanObjects {
    fn drop(&mut self) {
        for args in [
            vec!["rm", "--force", "--time", "0", &self.container],
            vec!["volume", "rm", "--force", &self.volume],
            vec!["rmi", "--force", &self.image],
        ] {
            let _ = Command::new("podman").args(args).output();
        }
    }
}

/// `scripts/image` builds an image from scratch that podman runs as a
/// non-root user against a loopback Redis: every BullMQ outcome, `/readyz`,
/// and a clean stop on SIGTERM within the grace.
#[test]
fn the_image_runs_every_outcome_answers_readyz_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let tag = std::process::id();
    let objects = PodmanObjects {
        container: format!("bullpen-test-{tag}"),
        volume: format!("bullpen-test-data-{tag}"),
        image: format!("localhost/bullpen-test:{tag}"),
    };
    assert_eq!(script(&["scripts/image", &objects.image]), objects.image);
    let size: u64 = podman(&["image", "inspect", &objects.image, "--format", "{{.Size}}"])
        .parse()
        .unwrap();
    assert!(size < 40 << 20, "the image is {size} bytes");
    let layers = podman(&[
        "image",
        "inspect",
        &objects.image,
        "--format",
        "{{len .RootFS.Layers}}",
    ]);
    assert_eq!(layers, "1", "built from scratch: one layer, no base image");

    // The operator's config directory, read-only in the container.
    let config = tempfile::tempdir().unwrap();
    let modules = config.path().join("modules");
    std::fs::create_dir(&modules).unwrap();
    for example in EXAMPLES {
        std::fs::copy(guest(example), modules.join(format!("{example}.wasm"))).unwrap();
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        config.path().join("bullpen.toml"),
        format!(
            "[redis]\nurl = \"{}\"\n\n[host]\nmetrics = \"{metrics}\"\nshutdown_grace = \"10s\"\n\n{EVERY_OUTCOME_QUEUES}",
            redis.url()
        ),
    )
    .unwrap();
    // The image's user (65532) reads it, as from a ConfigMap.
    let chmod = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(config.path())
        .status()
        .unwrap();
    assert!(chmod.success());

    // runc with limits under the machine's own: podman's default runtime
    // (crun) cannot set rlimits in this test's container host.
    podman(&[
        "run",
        "--detach",
        "--name",
        &objects.container,
        "--network",
        "host",
        "--runtime",
        "runc",
        // As the Deployment runs it: nothing written but the volumes.
        "--read-only",
        "--ulimit",
        "nofile=16384:16384",
        "--ulimit",
        "nproc=4096:4096",
        "--volume",
        &format!("{}:/etc/bullpen:ro", config.path().display()),
        "--volume",
        &format!("{}:/var/lib/bullpen", objects.volume),
        &objects.image,
    ]);
    let logs = || {
        bullpen_tests::output_text(
            &Command::new("podman")
                .args(["logs", &objects.container])
                .output()
                .unwrap(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = matches!(
            try_http_get(&metrics, "/readyz"),
            Ok((200, body)) if body.trim() == "ready"
        );
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not ready in 60 s:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let jobs = node_run(
        "cluster.mjs",
        &[],
        &[
            ("REDIS_URL", &redis.url()),
            ("PREFIX", "bull"),
            ("MODE", "outcomes"),
        ],
    );
    assert_every_outcome(&jobs, &logs());

    let version = podman(&[
        "exec",
        &objects.container,
        "/usr/local/bin/bullpen",
        "--version",
    ]);
    check_version_text(&version);
    let user = podman(&["top", &objects.container, "huser"]);
    assert!(
        user.lines().skip(1).all(|line| line.trim() == "65532"),
        "not run as 65532:\n{user}"
    );

    let stopping = Instant::now();
    podman(&["stop", "--time", "20", &objects.container]);
    assert!(
        stopping.elapsed() < Duration::from_secs(12),
        "stopped in {:?}, past the 10 s grace",
        stopping.elapsed()
    );
    let exit = podman(&[
        "inspect",
        &objects.container,
        "--format",
        "{{.State.ExitCode}}",
    ]);
    assert_eq!(exit, "0", "{}", logs());
    assert!(logs().contains("bullpen: SIGTERM: stopping"), "{}", logs());
}
