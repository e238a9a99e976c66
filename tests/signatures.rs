//! Signed modules only, when asked (issue 31, part 4): modules signed with
//! `wasmsign2 sign --ssh` by an OpenSSH ed25519 key of `[host]
//! trusted_keys` deploy, from a file or a registry; unsigned, foreign-signed
//! and tampered ones are refused with the reason while the serving version
//! stays; every attempt's `processedBy`, `bullpen status` and `bullpen
//! check` name the signer's key and the module's digest.

use bullpen_tests::oci_registry::OciRegistry;
use bullpen_tests::signing::SigningKey;
use bullpen_tests::{RedisServer, RunningHost, completed_by, guest, queue as open};
use serde_json::json;
use std::path::{Path, PathBuf};

fn sha256(path: &Path) -> String {
    bullpen::registry::watch::file_sha256(path).unwrap()
}

/// What `echo` and `validate` both complete.
fn data() -> serde_json::Value {
    json!({"email": "ada@example.com", "name": "Ada"})
}

/// The worker name of `module` kept as `file`, signed by `key`.
fn signed_worker(file: &str, module: &Path, key: &SigningKey) -> String {
    format!("{file}@{},key={}", &sha256(module)[..12], key.fingerprint)
}

/// `trusted_keys` naming `key`'s public key file, signatures required.
fn trusting(key: &SigningKey) -> String {
    format!(
        "trusted_keys = [\"{}\"]\nrequire_signatures = true\n",
        key.public.display()
    )
}

/// A copy of `module` with one byte changed in its middle.
fn tampered(module: &Path, out: PathBuf) -> PathBuf {
    let mut bytes = std::fs::read(module).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&out, bytes).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn only_modules_a_trusted_key_signed_deploy_and_each_attempt_names_its_signer() {
    let keys = tempfile::tempdir().unwrap();
    let release = SigningKey::generate(keys.path(), "release", "release@acme");
    let intruder = SigningKey::generate(keys.path(), "intruder", "intruder@elsewhere");
    let echo = release.sign(&guest("echo"), &keys.path().join("echo.wasm"));
    let validate = release.sign(&guest("validate"), &keys.path().join("validate.wasm"));
    let redis = RedisServer::start();
    let host = RunningHost::start_with_host_and_modules(
        &redis,
        &trusting(&release),
        "[queues.q]\nmodule = \"q.wasm\"\n",
        &[("q.wasm", &echo)],
    );
    let queue = open(&redis, "q").await;

    // The attempt's record names the module's digest and its signer.
    assert_eq!(
        completed_by(&queue, &host, data()).await,
        signed_worker("q.wasm", &echo, &release)
    );
    let (code, stdout, stderr) = host.cli(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("signed by {} (release@acme)", release.fingerprint)),
        "{stdout}"
    );
    let config = host.dir.path().join("bullpen.toml");
    let check = |args: &[&str]| {
        let output = bullpen_tests::bullpen()
            .arg("check")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let config_arg = config.to_str().unwrap();
    let (code, stdout, _) = check(&["-c", config_arg, echo.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("signed by {} (release@acme)", release.fingerprint)),
        "{stdout}"
    );
    let (code, stdout, _) = check(&[echo.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("signed (give -c"), "{stdout}");
    let (code, _, stderr) = check(&["-c", config_arg, guest("echo").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not signed"), "{stderr}");

    // Refused, each with its reason; the signed echo keeps serving.
    let deploy = |module: &Path| host.cli(&["deploy", module.to_str().unwrap(), "--queue", "q"]);
    let (code, _, stderr) = deploy(&guest("validate"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not signed, and [host] require_signatures is on"),
        "{stderr}"
    );
    let foreign = intruder.sign(&guest("validate"), &keys.path().join("foreign.wasm"));
    let (code, _, stderr) = deploy(&foreign);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("its signature is valid for none of the 1 trusted key(s)"),
        "{stderr}"
    );
    let changed = tampered(&validate, keys.path().join("changed.wasm"));
    let (code, _, stderr) = deploy(&changed);
    assert_eq!(code, 1);
    assert!(stderr.contains("changed after it was signed"), "{stderr}");
    // Copied in by hand, past `bullpen deploy`: the host refuses it itself.
    let unsigned = sha256(&guest("validate"));
    std::fs::copy(guest("validate"), host.dir.path().join("modules/q.wasm")).unwrap();
    let state = host.wait_for_serving("q", |s| s["rejected"]["sha256"] == unsigned.as_str());
    assert!(
        state["rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{state}"
    );
    assert_eq!(
        completed_by(&queue, &host, data()).await,
        signed_worker("q.wasm", &echo, &release)
    );

    // Signed by the trusted key: it deploys.
    let (code, stdout, stderr) = deploy(&validate);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        completed_by(&queue, &host, data()).await,
        signed_worker("q.wasm", &validate, &release)
    );

    // A host whose module is not signed does not start, and says why.
    let (ok, stderr) = start_refused(
        &trusting(&release),
        &format!("[queues.q]\nmodule = \"{}\"\n", guest("echo").display()),
    );
    assert!(!ok);
    assert!(
        stderr.contains("queues.q.module: ") && stderr.contains("not signed"),
        "{stderr}"
    );
    // Nor one asked to require signatures with no key to check them.
    let (ok, stderr) = start_refused(
        "require_signatures = true\n",
        &format!("[queues.q]\nmodule = \"{}\"\n", echo.display()),
    );
    assert!(!ok);
    assert!(
        stderr.contains("host.require_signatures: no key"),
        "{stderr}"
    );
    // Nor one whose key file holds a key of another kind.
    let rsa = keys.path().join("rsa.pub");
    std::fs::write(&rsa, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old@acme\n").unwrap();
    let (ok, stderr) = start_refused(
        &format!("trusted_keys = [\"{}\"]\n", rsa.display()),
        &format!("[queues.q]\nmodule = \"{}\"\n", echo.display()),
    );
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "host.trusted_keys: {}: line 1: a `ssh-rsa` key",
            rsa.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_component_from_a_registry_carries_its_signature() {
    let keys = tempfile::tempdir().unwrap();
    let release = SigningKey::generate(keys.path(), "release", "release@acme");
    let echo = release.sign(&guest("echo"), &keys.path().join("echo.wasm"));
    let registry = OciRegistry::start();
    registry.push(&echo, "acme/proc:signed");
    registry.push(&guest("validate"), "acme/proc:unsigned");
    let proc = registry.reference("acme/proc");
    let redis = RedisServer::start();
    let host = RunningHost::start_with_host_and_modules(
        &redis,
        &trusting(&release),
        &format!("[queues.q]\nmodule = \"{proc}:signed\"\n"),
        &[],
    );
    let queue = open(&redis, "q").await;
    assert_eq!(
        completed_by(&queue, &host, data()).await,
        signed_worker("proc.wasm", &echo, &release)
    );
    let (_, stdout, _) = host.cli(&["status"]);
    assert!(stdout.contains(&format!("{proc}:signed (")), "{stdout}");
    assert!(
        stdout.contains(&format!("signed by {}", release.fingerprint)),
        "{stdout}"
    );

    let (code, _, stderr) = host.cli(&["deploy", &format!("{proc}:unsigned")]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&format!("{proc}:unsigned: ")), "{stderr}");
    assert!(stderr.contains("not signed"), "{stderr}");
    assert_eq!(
        completed_by(&queue, &host, data()).await,
        signed_worker("proc.wasm", &echo, &release)
    );
}

/// [`bullpen_tests::start_refused`] on a config with these `[host]` keys
/// and queues.
fn start_refused(host: &str, queues: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bullpen.toml");
    std::fs::write(&config, format!("[host]\n{host}\n{queues}")).unwrap();
    bullpen_tests::start_refused(&config)
}
