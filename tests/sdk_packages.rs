//! The SDKs as a processor written outside this repository gets them
//! (issue 29): from their packed artifacts, in a directory of its own.

use bullpen_tests::hook_server::HookServer;
use bullpen_tests::{
    RedisServer, RunningHost, bullpen, cargo_command, exec_report, node_with, target_dir,
    without_cargo_env, workspace_root,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The order every scaffold's example processor totals to 500 cents.
const ORDER: &str = r#"{"items": [{"price_cents": 250, "quantity": 2}]}"#;

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

/// Runs `module` as the queue `orders` of a `bullpen run`, and has BullMQ's
/// Node client add a job with each of `data` and wait for it: each job as
/// BullMQ reads it back, and the host's log.
fn run_orders(module: &Path, data: &[&str]) -> (Vec<Value>, String) {
    let redis = RedisServer::start();
    let name = module.file_name().unwrap().to_str().unwrap();
    let host = RunningHost::start_with_modules(
        &redis,
        &format!("[queues.orders]\nmodule = \"{name}\"\n"),
        &[(name, module)],
    );
    let jobs = data
        .iter()
        .map(|data| node_with("add-and-wait.mjs", &["orders", "order", data], &redis))
        .collect();
    (jobs, host.log())
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
        built.contains("order_totals.wasm: ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );
    let report = exec_report(
        bullpen()
            .arg("exec")
            .arg(&module)
            .args(["--data", ORDER, "--data-dir"])
            .arg(outside.path().join("data")),
    );
    assert_eq!(report["outcome"], "completed", "{report}");
    assert_eq!(report["return_value"], json!({"total_cents": 500}));
    // Under `bullpen run`, a job from BullMQ's Node client.
    let (jobs, log) = run_orders(
        &module,
        &[r#"{"items": [{"price_cents": 99, "quantity": 3}]}"#],
    );
    assert_eq!(jobs[0]["state"], "completed", "{}\n{log}", jobs[0]);
    assert_eq!(jobs[0]["returnvalue"], json!({"total_cents": 297}));
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
        built.contains("totals.wasm: ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );
    let report = exec_report(bullpen().current_dir(outside.path()).args([
        "exec",
        "totals.wasm",
        "--data",
        ORDER,
        "--data-dir",
        "data",
    ]));
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
    let tarball = outside.path().join("bullpen-0.2.2.tgz");
    assert!(tarball.is_file(), "npm pack made no bullpen-0.2.2.tgz");
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
        built.contains("order-totals.wasm: ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );
    let module = project.join("order-totals.wasm");
    let report = exec_report(bullpen().current_dir(&project).args([
        "exec",
        "order-totals.wasm",
        "--data",
        ORDER,
    ]));
    assert_eq!(
        report["return_value"],
        json!({"total_cents": 500}),
        "{report}"
    );
    assert_eq!(report["job_log"], json!(["1 items"]), "{report}");

    let (jobs, log) = run_orders(&module, &[r#"{"items": "none"}"#]);
    assert_eq!(jobs[0]["state"], "failed", "{}\n{log}", jobs[0]);
    assert_eq!(
        jobs[0]["failedReason"],
        "not an order: \"items\" is not a list"
    );
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
            && dependency.ends_with("/bullpen-0.2.2.tgz"),
        "{dependency}"
    );
    npm(&project, &["install"]);
    let tested = npm(&project, &["test"]);
    assert!(tested.contains("# pass 2"), "{tested}");
    let built = run(&mut bullpen_build(&project));
    assert!(
        built.contains("/plain/plain.wasm: ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );
    // Without -o, the project's name beside its package.json.
    let module = project.join("plain.wasm");
    let report =
        exec_report(
            bullpen()
                .current_dir(&project)
                .args(["exec", "plain.wasm", "--data", ORDER]),
        );
    assert_eq!(
        report["return_value"],
        json!({"total_cents": 500}),
        "{report}"
    );
    let (jobs, log) = run_orders(
        &module,
        &[r#"{"items": [{"price_cents": 99, "quantity": 3}]}"#],
    );
    assert_eq!(
        jobs[0]["returnvalue"],
        json!({"total_cents": 297}),
        "{}\n{log}",
        jobs[0]
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

/// A venv at `dir` made by the machine's python3; its directory.
fn venv(dir: &Path) -> PathBuf {
    run(Command::new("python3").args(["-m", "venv"]).arg(dir));
    dir.to_owned()
}

/// `pip` of the venv `venv`, quietly.
fn pip(venv: &Path, args: &[&str]) -> String {
    run(Command::new(venv.join("bin/pip"))
        .args(args)
        .args(["--quiet", "--disable-pip-version-check"]))
}

#[test]
fn bullpen_new_python_makes_a_project_that_pytest_tests_and_bullpen_builds_with_its_pypi_dependencies()
 {
    let outside = tempfile::tempdir().unwrap();
    // The Python SDK as PyPI would publish it: the wheel pip builds from its
    // pyproject.toml.
    let tools = venv(&outside.path().join("tools"));
    let sdk = workspace_root().join("guest-sdk/python");
    pip(
        &tools,
        &[
            "wheel",
            "--no-deps",
            "--wheel-dir",
            outside.path().to_str().unwrap(),
            sdk.to_str().unwrap(),
        ],
    );
    let wheel = outside.path().join("bullpen-0.2.2-py3-none-any.whl");
    assert!(
        wheel.is_file(),
        "pip wheel made no bullpen-0.2.2-py3-none-any.whl"
    );
    run(bullpen()
        .args(["new", "python", "order-totals", "--sdk"])
        .arg(&wheel)
        .arg("--dir")
        .arg(outside.path()));
    let project = outside.path().join("order-totals");
    let env = venv(&project.join(".venv"));
    pip(
        &env,
        &["install", "-e", &format!("{}[test]", project.display())],
    );
    // Installed from the wheel, typed, importable outside a component.
    let typed = run(Command::new(env.join("bin/python")).args([
        "-c",
        "import bullpen, pathlib; print((pathlib.Path(bullpen.__file__).parent / 'py.typed').is_file())",
    ]));
    assert_eq!(typed.trim(), "True");
    // A test of the user's own beside the template's: children, through the
    // local runner, in both spellings.
    std::fs::write(
        project.join("tests/test_children.py"),
        r#"from bullpen import WaitingChildrenError
from bullpen.testing import run, test_job


async def process(job):
    if await job.move_to_waiting_children():
        raise WaitingChildrenError()
    return {
        "values": await job.get_children_values(),
        "ignored": await job.get_ignored_children_failures(),
        "same": await job.getIgnoredChildrenFailures() == await job.get_ignored_children_failures(),
    }


def test_a_parent_waits_then_reads_its_children():
    assert run(process, test_job({}, children={"pending": True})).kind == "waiting-children"
    children = {"values": {"bull:c:1": 2}, "ignored": {"bull:c:2": "boom"}}
    outcome = run(process, test_job({}, children=children))
    assert outcome.value == {"values": {"bull:c:1": 2}, "ignored": {"bull:c:2": "boom"}, "same": True}
"#,
    )
    .unwrap();
    let tested = run(Command::new(env.join("bin/pytest"))
        .arg("-q")
        .current_dir(&project));
    assert!(tested.contains("3 passed"), "{tested}");

    // A dependency from PyPI, pure Python, bundled by the build; the venv is
    // not (the component would carry pytest and pip otherwise).
    let manifest = std::fs::read_to_string(project.join("pyproject.toml")).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        manifest.replace(
            "dependencies = [\n",
            "dependencies = [\n    \"python-dateutil==2.9.0.post0\",\n",
        ),
    )
    .unwrap();
    let source = std::fs::read_to_string(project.join("processor.py")).unwrap();
    std::fs::write(
        project.join("processor.py"),
        source
            .replace(
                "from bullpen import UnrecoverableError\n",
                "from bullpen import UnrecoverableError\nfrom dateutil import parser\n",
            )
            .replace(
                "    return {\"total_cents\": total}",
                "    due = parser.isoparse(job.data.get(\"due\", \"2026-12-04\")).strftime(\"%A\")\n    return {\"total_cents\": total, \"due\": due}",
            ),
    )
    .unwrap();
    let built = run(bullpen_build(&project).args(["-o", "order_totals.wasm"]));
    assert!(
        built.contains("order_totals.wasm: ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );
    let module = project.join("order_totals.wasm");
    let size = std::fs::metadata(&module).unwrap().len();
    assert!(
        size < 60 << 20,
        "the component is {size} bytes: the venv went in"
    );
    let report = exec_report(bullpen().current_dir(&project).args([
        "exec",
        "order_totals.wasm",
        "--data",
        r#"{"items": [{"price_cents": 250, "quantity": 2}], "due": "2026-12-05"}"#,
    ]));
    assert_eq!(
        report["return_value"],
        json!({"total_cents": 500, "due": "Saturday"}),
        "{report}"
    );
    assert_eq!(report["job_log"], json!(["1 items"]), "{report}");

    let (jobs, log) = run_orders(
        &module,
        &[
            r#"{"items": [{"price_cents": 99, "quantity": 3}]}"#,
            r#"{"items": "none"}"#,
        ],
    );
    assert_eq!(jobs[0]["state"], "completed", "{}\n{log}", jobs[0]);
    assert_eq!(
        jobs[0]["returnvalue"],
        json!({"total_cents": 297, "due": "Friday"})
    );
    assert_eq!(jobs[1]["state"], "failed", "{}\n{log}", jobs[1]);
    assert_eq!(
        jobs[1]["failedReason"],
        "not an order: \"items\" is not a list"
    );

    // A dependency with native code cannot run in the sandbox: refused,
    // naming it.
    std::fs::write(
        project.join("pyproject.toml"),
        manifest.replace(
            "dependencies = [\n",
            "dependencies = [\n    \"rpds-py==0.22.3\",\n",
        ),
    )
    .unwrap();
    let output = bullpen_build(&project)
        .args(["-o", "native.wasm"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{errors}");
    assert!(
        errors.contains("rpds-py==0.22.3") && errors.contains("pure-Python wheels"),
        "{errors}"
    );
}

#[test]
fn bullpen_new_python_without_sdk_depends_on_the_wheel_bullpen_ships() {
    let outside = tempfile::tempdir().unwrap();
    // The default cache: the wheel is built with the Python build tools the
    // other tests install there.
    run(bullpen()
        .args(["new", "python", "plain", "--dir"])
        .arg(outside.path()));
    let manifest: toml::Table =
        std::fs::read_to_string(outside.path().join("plain/pyproject.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let requirement = manifest["project"]["dependencies"][0].as_str().unwrap();
    let wheel = requirement
        .strip_prefix("bullpen @ file://")
        .unwrap_or_else(|| panic!("{requirement}"));
    assert!(
        wheel.ends_with("/bullpen-0.2.2-py3-none-any.whl"),
        "{wheel}"
    );
    let listed = run(Command::new("python3").args([
        "-c",
        "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        wheel,
    ]));
    for file in ["bullpen/py.typed", "bullpen/testing.py", "bullpen/job.py"] {
        assert!(
            listed.lines().any(|l| l == file),
            "{file} not in {wheel}:\n{listed}"
        );
    }
    // What it refuses, saying why.
    let output = bullpen()
        .args(["new", "python", "other", "--sdk"])
        .arg(outside.path().join("plain/pyproject.toml"))
        .arg("--dir")
        .arg(outside.path())
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && errors.contains("not a .whl file"),
        "{errors}"
    );
}

/// The HMAC-SHA256 of `body` under `key`, in hex, by Python's own `hmac`.
fn hmac_sha256(key: &str, body: &[u8]) -> String {
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import hmac, sys; print(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), 'sha256').hexdigest())",
        key,
    ]);
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_webhook_example_signs_with_its_granted_secret_through_npm_and_node_builtins()
 {
    let example = workspace_root().join("examples/ts-webhook");
    // Its own tests first: tsc --noEmit, then node --test with zod and
    // node:crypto as Node has them.
    npm(&example, &["install"]);
    let tested = npm(&example, &["test"]);
    assert!(tested.contains("# pass 3"), "{tested}");
    let outside = tempfile::tempdir().unwrap();
    let module = outside.path().join("ts-webhook.wasm");
    let built = run(bullpen_build(&example).arg("-o").arg(&module));
    assert!(
        built.contains("ok: a bullpen:processor@0.2.2 processor"),
        "{built}"
    );

    let server = HookServer::start().await;
    let port = server.addr.port();
    let config = outside.path().join("bullpen.toml");
    let exec = |path: &str, data: &str| -> Value {
        std::fs::write(
            &config,
            format!(
                "[queues.hooks]\nmodule = \"ts-webhook.wasm\"\n\
                 allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n\
                 environment = {{ WEBHOOK_URL = \"http://127.0.0.1:{port}{path}\" }}\n\
                 secrets = {{ WEBHOOK_SECRET = {{ env = \"TEST_WEBHOOK_SECRET\" }} }}\n"
            ),
        )
        .unwrap();
        exec_report(
            bullpen()
                .arg("exec")
                .arg(&module)
                .arg("-c")
                .arg(&config)
                .args(["--queue", "hooks", "--data", data, "--data-dir"])
                .arg(outside.path().join("data"))
                .env("TEST_WEBHOOK_SECRET", "the-granted-secret"),
        )
    };
    let event = json!({"type": "order.paid", "orderId": "A-1", "totalCents": 599});
    let report = exec("/ok", &event.to_string());
    assert_eq!(report["outcome"], "completed", "{report}");
    let received = &server.received_on("/ok")[0];
    // The receiver's check: the signature is the body's HMAC under the
    // secret the queue granted.
    assert_eq!(
        received.headers["x-signature"],
        format!(
            "sha256={}",
            hmac_sha256("the-granted-secret", &received.body)
        )
    );
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(body["event"], event);
    assert_eq!(report["return_value"]["delivery"], body["delivery"]);
    assert_eq!(
        received.headers["x-delivery"],
        body["delivery"].as_str().unwrap()
    );

    assert_eq!(exec("/status/503", &event.to_string())["outcome"], "failed");
    assert_eq!(
        exec("/status/410", &event.to_string())["outcome"],
        "unrecoverable"
    );
    let report = exec("/ok", r#"{"type": "order.paid", "orderId": 5}"#);
    assert_eq!(report["outcome"], "unrecoverable", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("orderId"),
        "{report}"
    );
    assert_eq!(server.received_on("/ok").len(), 1);
}
