//! The SDKs as a processor written outside this repository gets them
//! (issue 29): from their packed artifacts, in a directory of its own.

use bullpen_tests::{
    RedisServer, RunningHost, bullpen, cargo_command, node_with, without_cargo_env, workspace_root,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `command`, panicking with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let output = command.output().expect("starting the command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The workspace's target directory, where the projects outside it build
/// too: their dependencies are built once, not once per test run.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo` in `dir`, building into [`target_dir`].
fn cargo(dir: &Path) -> Command {
    let mut command = cargo_command(dir);
    command.env("CARGO_TARGET_DIR", target_dir());
    command
}

/// `bullpen build` run from `dir`, building a Rust project into
/// [`target_dir`].
fn bullpen_build(dir: &Path) -> Command {
    let mut command = bullpen();
    without_cargo_env(&mut command);
    command
        .arg("build")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir());
    command
}

/// `cargo package`s the Rust SDK and unpacks the `.crate` into `into`;
/// the crate's directory.
fn packed_rust_sdk(into: &Path) -> PathBuf {
    let listed = run(cargo(&workspace_root()).args([
        "package",
        "-p",
        "bullpen-guest",
        "--allow-dirty",
        "--no-verify",
        "--list",
    ]));
    assert!(
        listed.lines().any(|file| file == "wit/processor.wit"),
        "the crate carries no WIT:\n{listed}"
    );
    assert!(
        !listed
            .lines()
            .any(|file| file.starts_with("js/") || file.starts_with("python/")),
        "the crate carries the other languages' SDKs:\n{listed}"
    );
    let packages = target_dir().join("package");
    let sdk_crates = || {
        std::fs::read_dir(&packages)
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| {
                        name.starts_with("bullpen-guest-") && name.ends_with(".crate")
                    })
            })
            .collect::<Vec<_>>()
    };
    // Another version's, from an earlier run, is not this one.
    for stale in sdk_crates() {
        std::fs::remove_file(stale).unwrap();
    }
    run(cargo(&workspace_root()).args([
        "package",
        "-p",
        "bullpen-guest",
        "--allow-dirty",
        "--no-verify",
        "--quiet",
    ]));
    let packed = sdk_crates()
        .pop()
        .expect("cargo package wrote no bullpen-guest .crate");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&packed)
        .arg("-C")
        .arg(into));
    let name = packed.file_stem().unwrap().to_owned();
    into.join(name)
}

/// Runs `bullpen new rust NAME --sdk SDK --dir DIR`: its exit status,
/// stdout and stderr.
fn new_rust(name: &str, sdk: &Path, dir: &Path) -> (bool, String, String) {
    let output = bullpen()
        .args(["new", "rust", name, "--sdk"])
        .arg(sdk)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bullpen_new_rust_makes_a_project_that_tests_builds_and_runs_outside_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    let sdk = packed_rust_sdk(outside.path());
    let (ok, said, errors) = new_rust("order-totals", &sdk, outside.path());
    assert!(ok, "{errors}");
    assert!(said.contains("order-totals"), "{said}");
    let project = outside.path().join("order-totals");

    // Its own tests pass as created, natively, through the SDK's helpers.
    let tested = run(cargo(&project).args(["test", "--quiet"]));
    assert!(tested.contains("2 passed"), "{tested}");
    // `bullpen build`: cargo for wasm32-wasip2, then the check.
    let module = project.join("order_totals.wasm");
    let built = run(bullpen_build(&project).args(["-o", "order_totals.wasm"]));
    assert!(
        built.contains("order_totals.wasm: ok: a bullpen:processor@0.2.1 processor"),
        "{built}"
    );
    let report: Value = serde_json::from_str(&run(bullpen()
        .arg("exec")
        .arg(&module)
        .args([
            "--data",
            r#"{"items": [{"price_cents": 250, "quantity": 2}]}"#,
            "--data-dir",
        ])
        .arg(outside.path().join("data"))))
    .unwrap();
    assert_eq!(report["outcome"], "completed", "{report}");
    assert_eq!(report["return_value"], json!({"total_cents": 500}));
    // Under `bullpen run`, a job from BullMQ's Node client.
    let redis = RedisServer::start();
    let host = RunningHost::start_with_modules(
        &redis,
        "[queues.orders]\nmodule = \"order_totals.wasm\"\n",
        &[("order_totals.wasm", &module)],
    );
    let job = node_with(
        "add-and-wait.mjs",
        &[
            "orders",
            "order",
            r#"{"items": [{"price_cents": 99, "quantity": 3}]}"#,
        ],
        &redis,
    );
    assert_eq!(job["state"], "completed", "{job}\n{}", host.log());
    assert_eq!(job["returnvalue"], json!({"total_cents": 297}));
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains("bullpen build -o order_totals.wasm"),
        "{readme}"
    );

    // What it refuses, saying why.
    let (ok, _, errors) = new_rust("order-totals", &sdk, outside.path());
    assert!(
        !ok && errors.contains("order-totals: already exists"),
        "{errors}"
    );
    let (ok, _, errors) = new_rust("other", &project, outside.path());
    assert!(
        !ok && errors.contains("is the package \"order-totals\", not bullpen-guest"),
        "{errors}"
    );
    let (ok, _, errors) = new_rust("9 lives", &sdk, outside.path());
    assert!(
        !ok && errors.contains("a project name starts with a letter"),
        "{errors}"
    );
}

#[test]
fn bullpen_new_rust_without_sdk_uses_the_sdk_bullpen_ships() {
    let outside = tempfile::tempdir().unwrap();
    let cache = outside.path().join("cache");
    let output = bullpen()
        .args(["new", "rust", "shipped", "--dir"])
        .arg(outside.path())
        .env("BULLPEN_CACHE", &cache)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = std::fs::read_to_string(outside.path().join("shipped/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let sdk = PathBuf::from(
        manifest["dependencies"]["bullpen-guest"]["path"]
            .as_str()
            .unwrap(),
    );
    assert!(sdk.starts_with(cache.join("sdk")), "{sdk:?}");
    // The shipped SDK is guest-sdk/ as it is: the same crate, contract
    // included.
    for file in ["Cargo.toml", "src/lib.rs", "wit/processor.wit"] {
        assert_eq!(
            std::fs::read(sdk.join(file)).unwrap(),
            std::fs::read(workspace_root().join("guest-sdk").join(file)).unwrap(),
            "{file}"
        );
    }
    let tested = run(cargo(&outside.path().join("shipped")).args(["test", "--quiet"]));
    assert!(tested.contains("2 passed"), "{tested}");
}

#[test]
fn bullpen_build_bundles_typescript_and_refuses_what_it_cannot_build() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("totals.ts"),
        r#"interface Order { items: { price_cents: number; quantity: number }[] }

export async function process(job: { data: Order }): Promise<{ total_cents: number }> {
  const total: number = job.data.items.reduce((sum, item) => sum + item.price_cents * item.quantity, 0);
  return { total_cents: total };
}
"#,
    )
    .unwrap();
    let built = run(bullpen_build(outside.path()).args(["totals.ts", "--data-dir", "data"]));
    assert!(
        built.contains("totals.wasm: ok: a bullpen:processor@0.2.1 processor"),
        "{built}"
    );
    let report: Value = serde_json::from_str(&run(bullpen().current_dir(outside.path()).args([
        "exec",
        "totals.wasm",
        "--data",
        r#"{"items": [{"price_cents": 250, "quantity": 2}]}"#,
        "--data-dir",
        "data",
    ])))
    .unwrap();
    assert_eq!(
        report["return_value"],
        json!({"total_cents": 500}),
        "{report}"
    );

    // What it refuses, saying why.
    std::fs::write(outside.path().join("job.rb"), "puts 1\n").unwrap();
    let refused = |args: &[&str]| {
        let output = bullpen_build(outside.path()).args(args).output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let said = refused(&["job.rb"]);
    assert!(
        said.contains("job.rb: a processor is a Cargo project, or a .ts"),
        "{said}"
    );
    let said = refused(&["missing.ts"]);
    assert!(
        said.contains("missing.ts: no such file or directory"),
        "{said}"
    );
    let said = refused(&[]);
    assert!(
        said.contains("holds no Cargo.toml, package.json or pyproject.toml"),
        "{said}"
    );
    std::fs::write(
        outside.path().join("broken.ts"),
        "export function process(job {\n",
    )
    .unwrap();
    let said = refused(&["broken.ts"]);
    assert!(said.contains("broken.ts"), "{said}");
}

/// `npm` in `dir`, quietly.
fn npm(dir: &Path, args: &[&str]) -> String {
    run(Command::new("npm")
        .args(args)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir))
}

#[test]
fn bullpen_new_ts_makes_a_package_that_type_checks_tests_builds_and_runs() {
    let outside = tempfile::tempdir().unwrap();
    // The JavaScript SDK as npm publishes it: its packed tarball.
    npm(
        outside.path(),
        &[
            "pack",
            workspace_root().join("guest-sdk/js").to_str().unwrap(),
        ],
    );
    let tarball = outside.path().join("bullpen-0.2.1.tgz");
    assert!(tarball.is_file(), "npm pack made no bullpen-0.2.1.tgz");
    run(bullpen()
        .args(["new", "ts", "order-totals", "--sdk"])
        .arg(&tarball)
        .arg("--dir")
        .arg(outside.path()));
    let project = outside.path().join("order-totals");
    npm(&project, &["install"]);
    // The SDK is installed from the tarball, types included.
    assert!(
        project
            .join("node_modules/bullpen/src/index.d.ts")
            .is_file()
    );
    // tsc --noEmit, then node --test through the SDK's Node side.
    let tested = npm(&project, &["test"]);
    assert!(tested.contains("# pass 2"), "{tested}");

    let built = run(bullpen_build(&project).args(["-o", "order-totals.wasm"]));
    assert!(
        built.contains("order-totals.wasm: ok: a bullpen:processor@0.2.1 processor"),
        "{built}"
    );
    let module = project.join("order-totals.wasm");
    let report: Value = serde_json::from_str(&run(bullpen().current_dir(&project).args([
        "exec",
        "order-totals.wasm",
        "--data",
        r#"{"items": [{"price_cents": 250, "quantity": 2}]}"#,
    ])))
    .unwrap();
    assert_eq!(
        report["return_value"],
        json!({"total_cents": 500}),
        "{report}"
    );
    assert_eq!(report["job_log"], json!(["1 items"]), "{report}");

    let redis = RedisServer::start();
    let host = RunningHost::start_with_modules(
        &redis,
        "[queues.orders]\nmodule = \"order-totals.wasm\"\n",
        &[("order-totals.wasm", &module)],
    );
    let job = node_with(
        "add-and-wait.mjs",
        &["orders", "order", r#"{"items": "none"}"#],
        &redis,
    );
    assert_eq!(job["state"], "failed", "{job}\n{}", host.log());
    assert_eq!(job["failedReason"], "not an order: \"items\" is not a list");
}

#[test]
fn bullpen_new_js_without_sdk_installs_the_package_bullpen_ships() {
    let outside = tempfile::tempdir().unwrap();
    let cache = outside.path().join("cache");
    run(bullpen()
        .args(["new", "js", "plain", "--dir"])
        .arg(outside.path())
        .env("BULLPEN_CACHE", &cache));
    let project = outside.path().join("plain");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("package.json")).unwrap())
            .unwrap();
    let dependency = manifest["dependencies"]["bullpen"].as_str().unwrap();
    assert!(
        dependency.starts_with(&format!("file:{}", cache.join("sdk").display()))
            && dependency.ends_with("/bullpen-0.2.1.tgz"),
        "{dependency}"
    );
    npm(&project, &["install"]);
    let tested = npm(&project, &["test"]);
    assert!(tested.contains("# pass 2"), "{tested}");
    let built = run(&mut bullpen_build(&project));
    assert!(
        built.contains("processor.wasm: ok: a bullpen:processor@0.2.1 processor"),
        "{built}"
    );

    // In BullMQ's own Worker, the SDK's Node side: `Queue` adds through the
    // connection of the Worker named by `useWorker`, with BullMQ resolved
    // from the project's own dependencies (BullMQ 6 and its ioredis, as the
    // interop peers pin them).
    npm(&project, &["install", "bullmq@6.7.0", "ioredis@5.9.2"]);
    std::fs::write(
        project.join("in-node.mjs"),
        r#"import { Worker, Queue as BullQueue } from 'bullmq';
import { Queue, useWorker } from 'bullpen';
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const worker = new Worker('orders', async (job) => {
  await new Queue('receipts').add('receipt', { for: job.id });
  return 'ok';
}, { connection });
useWorker(worker);
const orders = new BullQueue('orders', { connection });
const receipts = new BullQueue('receipts', { connection });
const order = await orders.add('order', {});
const deadline = Date.now() + 20000;
let waiting = [];
while (waiting.length === 0 && Date.now() < deadline) {
  waiting = await receipts.getJobs(['waiting']);
  if (waiting.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(JSON.stringify({ order: order.id, receipts: waiting.map((job) => job.data) }));
await worker.close();
await orders.close();
await receipts.close();
"#,
    )
    .unwrap();
    let redis = RedisServer::start();
    let said: Value = serde_json::from_str(&run(Command::new("node")
        .arg("in-node.mjs")
        .env("REDIS_URL", redis.url())
        .current_dir(&project)))
    .unwrap();
    assert_eq!(
        said["receipts"],
        json!([{ "for": said["order"] }]),
        "{said}"
    );
}
