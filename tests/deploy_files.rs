//! The deployment files an operator applies as they are: the Kubernetes
//! manifests checked against the Kubernetes API schemas
//! (`kubernetes-validate`, strict) and KEDA's and the Prometheus Operator's
//! published CRD schemas, their settings against bullpen's own config, and
//! the systemd unit against `systemd-analyze`.

use bullpen::config::Config;
use bullpen_tests::{bullpen_binary, output_text, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn kubernetes_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// The test tools' venv (`scripts/test` installs `kubernetes-validate`
/// into it, with BullMQ's Python client).
fn venv_tool(name: &str) -> PathBuf {
    let python = std::env::var("BULLPEN_INTEROP_PYTHON").expect(
        "BULLPEN_INTEROP_PYTHON is not set: run the tests through scripts/test, which prepares the venv",
    );
    Path::new(&python).with_file_name(name)
}

/// `kubernetes-validate --strict` (unknown fields refused) on `files`.
fn kubernetes_validate(files: &[PathBuf]) -> Output {
    Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(files)
        .output()
        .unwrap()
}

/// Checks the custom resources in `files` against their CRD schemas.
fn validate_crds(files: &[PathBuf]) -> Output {
    let dir = workspace_root().join("tests/deploy");
    assert!(
        dir.join("node_modules/@kubernetes-models/keda").exists(),
        "the CRD schemas are not installed: run scripts/test (npm install in tests/deploy)"
    );
    Command::new("node")
        .arg(dir.join("crds.mjs"))
        .args(files)
        .output()
        .unwrap()
}

/// Every resource of a manifest file, as JSON (PyYAML from the venv reads
/// it, so the test reads what kubectl would).
fn resources(file: &str) -> Vec<Value> {
    let output = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(kubernetes_dir().join(file))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A copy of a manifest with `from` replaced by `to`, to show a check
/// refuses what it must.
fn mutated(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let original = std::fs::read_to_string(kubernetes_dir().join(file)).unwrap();
    assert!(original.contains(from), "{file} has no `{from}`");
    let copy = dir.join(file);
    std::fs::write(&copy, original.replace(from, to)).unwrap();
    copy
}

#[test]
fn the_kubernetes_manifests_match_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
    ]
    .iter()
    .map(|f| kubernetes_dir().join(f))
    .collect();
    let output = kubernetes_validate(&files);
    let said = output_text(&output);
    assert!(output.status.success(), "{said}");
    for resource in [
        "configmap/bullpen",
        "deployment/bullpen",
        "persistentvolumeclaim/bullpen-modules",
        "service/bullpen",
        "poddisruptionbudget/bullpen",
    ] {
        assert!(
            said.contains(&format!("passed for resource {resource}")),
            "{resource} not checked:\n{said}"
        );
    }
    // Strict: a misspelt field is refused, not ignored.
    let dir = tempfile::tempdir().unwrap();
    let typo = mutated(
        dir.path(),
        "deployment.yaml",
        "readOnlyRootFilesystem",
        "readOnlyRootFileSystem",
    );
    let output = kubernetes_validate(&[typo]);
    assert!(!output.status.success(), "{}", output_text(&output));
}

#[test]
fn the_scaled_object_and_service_monitor_match_their_crd_schemas() {
    let files = [
        kubernetes_dir().join("scaledobject.yaml"),
        kubernetes_dir().join("servicemonitor.yaml"),
    ];
    let output = validate_crds(&files);
    assert!(output.status.success(), "{}", output_text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["checked"].as_array().unwrap().len(), 2, "{report}");
    // KEDA's schema wants the threshold as a string.
    let dir = tempfile::tempdir().unwrap();
    let wrong = mutated(
        dir.path(),
        "scaledobject.yaml",
        "threshold: \"100\"",
        "threshold: 100",
    );
    let output = validate_crds(&[wrong]);
    assert!(!output.status.success(), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("threshold"),
        "{}",
        output_text(&output)
    );
}

/// The manifests agree with each other and with bullpen: the ConfigMap's
/// `bullpen.toml` is a valid config whose metrics port the probes use, the
/// pod's grace covers `shutdown_grace`, and the pod runs as the image's
/// non-root user on a read-only root.
#[test]
fn the_deployment_fits_the_config_it_runs() {
    let config_map = &resources("configmap.yaml")[0];
    let toml = config_map["data"]["bullpen.toml"].as_str().unwrap();
    let config = Config::parse(Path::new("/etc/bullpen/bullpen.toml"), toml)
        .unwrap_or_else(|e| panic!("configmap.yaml's bullpen.toml: {e}"));
    let metrics = config.host.metrics.expect("the probes need [host] metrics");

    let deployment = &resources("deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap();
    assert_eq!(port["containerPort"], metrics.port());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace >= config.host.shutdown_grace + Duration::from_secs(pre_stop + 5),
        "terminationGracePeriodSeconds {grace:?} leaves no room after preStop ({pre_stop} s) and shutdown_grace {:?}",
        config.host.shutdown_grace
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for path in ["/etc/bullpen", "/etc/bullpen/modules", "/var/lib/bullpen"] {
        assert!(mounts.contains(&path), "{path} is not a volume: {mounts:?}");
    }

    let scaled = &resources("scaledobject.yaml")[0];
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    let query = trigger["metadata"]["query"].as_str().unwrap();
    assert!(
        ["bullpen_queue_jobs", "wait", "prioritized", "delayed-due"]
            .iter()
            .all(|s| query.contains(s)),
        "{query}"
    );
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit =
        std::fs::read_to_string(workspace_root().join("deploy/systemd/bullpen.service")).unwrap();
    for directive in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(directive), "no {directive} in the unit");
    }
    // Verified with a real bullpen where the unit expects it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bullpen.service");
    let install = |unit: &str| {
        let installed = unit.replace(
            "/usr/local/bin/bullpen run",
            &format!("{} run", bullpen_binary().display()),
        );
        std::fs::write(&file, installed).unwrap();
    };
    let verify = || -> Output {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .expect("systemd-analyze must be installed (Debian: apt-get install systemd)")
    };
    install(&unit);
    let output = verify();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        output_text(&output)
    );
    // systemd only warns about a misspelt directive: the warning is the
    // failure.
    install(&unit.replace("ProtectSystem=strict", "ProtectSystem=strictly"));
    assert!(!verify().stderr.is_empty(), "a bad value passed unnoticed");

    // systemd's own exposure score, 0 (locked down) to 10: at most 2.
    install(&unit);
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("Overall exposure level"),
        "{}",
        output_text(&output)
    );
}
