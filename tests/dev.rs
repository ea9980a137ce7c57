//! `otaplane dev`: the real binary rolls the demo firmware out on all three simulated vendors
//! and says so in its summary; with `--serve` it keeps kube-lite up for kubectl until Ctrl-C;
//! and the templates of examples/dev/ validate against the CRDs once filled in.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crd_validate::{CrdValidator, invalid_message};
use otaplane::api::{FirmwarePackage, OtaProvider, UpgradeCampaign, Vendor};
use otaplane::dev::{BUILTIN_MANIFESTS, Placeholders, demo_sim_config};
use otaplane::reconcile::plan_waves;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_otaplane");
/// Secret keys whose values must never be printed.
const SECRET_KEYS: [&str; 3] = ["password", "appSecret", "secretAccessKey"];

/// examples/dev/*.yaml, by file name.
fn template_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("examples/dev"))
        .expect("examples/dev is readable")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn dummy_placeholders() -> Placeholders {
    Placeholders {
        sim_url: "http://127.0.0.1:18080".into(),
        obs_url: "http://127.0.0.1:19000".into(),
        artifact_url: "http://127.0.0.1:18081/firmware/demo-fw-2.0.0.bin".into(),
        artifact_sha256: "ab".repeat(32),
    }
}

/// The documents of one template after substitution.
fn filled_documents(path: &Path) -> Vec<Value> {
    let template = std::fs::read_to_string(path).unwrap();
    let text = dummy_placeholders()
        .substitute(&template)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(
        !text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .any(|line| line.contains("${")),
        "{}: a placeholder is left after substitution",
        path.display()
    );
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|err| panic!("{} is YAML: {err}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The names of the documents of `kind` in every template.
fn names_of(kind: &str) -> Vec<String> {
    template_files()
        .iter()
        .flat_map(|path| filled_documents(path))
        .filter(|doc| doc["kind"] == kind)
        .map(|doc| doc["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The values of the demo Secrets' secret keys.
fn secret_values() -> Vec<String> {
    let values: Vec<String> = template_files()
        .iter()
        .flat_map(|path| filled_documents(path))
        .filter(|doc| doc["kind"] == "Secret")
        .flat_map(|doc| {
            SECRET_KEYS
                .iter()
                .filter_map(|key| doc["stringData"][key].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        values.len(),
        4,
        "one secret per IoTaaP and IoTDA Secret, two per ThingSpace one"
    );
    values
}

#[test]
fn dev_templates_fill_in_and_validate_against_the_crds() {
    let files = template_files();
    let names: BTreeSet<String> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let builtin: BTreeSet<String> = BUILTIN_MANIFESTS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        names, builtin,
        "otaplane dev builds in every file of examples/dev"
    );
    for (name, text) in BUILTIN_MANIFESTS {
        let on_disk = std::fs::read_to_string(Path::new(ROOT).join("examples/dev").join(name));
        assert_eq!(on_disk.unwrap(), text, "{name}");
    }

    let validators: Vec<(String, CrdValidator)> = otaplane::api::crds()
        .into_iter()
        .map(|crd| {
            let json = serde_json::to_value(&crd).unwrap();
            let validator = CrdValidator::from_crd(&json, "v1alpha1").unwrap();
            (crd.spec.names.kind, validator)
        })
        .collect();
    let fleet = demo_sim_config(60.0).fleet.devices;
    let mut vendors = BTreeSet::new();
    for path in &files {
        let file = path.display();
        let template = std::fs::read_to_string(path).unwrap();
        let header: String = template
            .lines()
            .take_while(|line| line.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            header.contains("otaplane dev"),
            "{file}: the header names otaplane dev"
        );
        for placeholder in Placeholders::NAMES {
            assert!(
                header.contains(&format!("${{{placeholder}}}")),
                "{file}: the header documents ${{{placeholder}}}"
            );
        }

        let documents = filled_documents(path);
        let kinds: Vec<&str> = documents
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Secret",
                "OtaProvider",
                "FirmwarePackage",
                "UpgradeCampaign"
            ],
            "{file}"
        );
        for doc in &documents {
            let kind = doc["kind"].as_str().unwrap();
            let Some((_, validator)) = validators.iter().find(|(k, _)| k == kind) else {
                continue;
            };
            let mut object = doc.clone();
            validator.prune_and_default(&mut object);
            assert_eq!(
                object, *doc,
                "{file}: {kind} has fields the CRD does not know"
            );
            let errors = validator.validate(&object, None);
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert!(
                errors.is_empty(),
                "{file}: {}",
                invalid_message(kind, "otaplane.io", name, &errors)
            );
        }

        let secret = &documents[0];
        let provider: OtaProvider = serde_json::from_value(documents[1].clone()).unwrap();
        let package: FirmwarePackage = serde_json::from_value(documents[2].clone()).unwrap();
        let campaign: UpgradeCampaign = serde_json::from_value(documents[3].clone()).unwrap();

        let vendor = provider.spec.vendor().expect("one vendor block");
        vendors.insert(vendor.to_string());
        let credentials = match vendor {
            Vendor::ThingSpace => &provider.spec.thingspace.as_ref().unwrap().credentials_ref,
            Vendor::Iotda => &provider.spec.iotda.as_ref().unwrap().credentials_ref,
            Vendor::Iotaap => &provider.spec.iotaap.as_ref().unwrap().credentials_ref,
        };
        assert_eq!(
            secret["metadata"]["name"],
            credentials.name.as_str(),
            "{file}"
        );
        assert_eq!(
            package.spec.provider_ref.name,
            provider.metadata.name.clone().unwrap()
        );
        assert_eq!(
            campaign.spec.package_ref.name,
            package.metadata.name.clone().unwrap()
        );
        assert_eq!(
            package.spec.artifact.url,
            dummy_placeholders().artifact_url,
            "{file}: the package fetches the demo artifact"
        );
        assert_eq!(
            package.spec.artifact.sha256.as_deref(),
            Some(dummy_placeholders().artifact_sha256.as_str()),
            "{file}: the package pins the demo artifact's checksum"
        );
        let waves = plan_waves(
            campaign.spec.devices.len(),
            campaign
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.waves.as_ref()),
        )
        .unwrap();
        assert_eq!(waves.len(), 3, "{file}: three waves");

        let sim_vendor = match vendor {
            Vendor::ThingSpace => otaplane::sim::Vendor::ThingSpace,
            Vendor::Iotda => otaplane::sim::Vendor::Iotda,
            Vendor::Iotaap => otaplane::sim::Vendor::Iotaap,
        };
        for device in &campaign.spec.devices {
            assert!(
                fleet
                    .iter()
                    .any(|d| d.vendor == sim_vendor && &d.id == device),
                "{file}: {device} is not a {vendor} device of the demo fleet"
            );
        }
    }
    assert_eq!(
        vendors,
        ["IoTDA", "IoTaaP", "ThingSpace"].map(str::to_owned).into(),
        "one template per vendor"
    );
}

/// Waits for `child` at most `limit`, killing it after that.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Reads a pipe to the end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The summary rows (after the `KIND` header): (kind, name, ready/phase, progress/external id).
fn summary_rows(stdout: &str) -> Vec<(String, String, String, String)> {
    stdout
        .lines()
        .skip_while(|line| !line.starts_with("KIND "))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert!(cells.len() >= 4, "summary row {line:?}");
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .collect()
}

/// Asserts the summary names every demo object as Ready / Succeeded with every device upgraded.
fn assert_all_succeeded(stdout: &str, output: &str) {
    let rows = summary_rows(stdout);
    let expected = [
        ("OtaProvider", "True"),
        ("FirmwarePackage", "True"),
        ("UpgradeCampaign", "Succeeded"),
    ];
    for (kind, state) in expected {
        let names = names_of(kind);
        assert_eq!(names.len(), 3, "three {kind}s in examples/dev");
        for name in names {
            let row = rows
                .iter()
                .find(|row| row.0 == kind && row.1 == name)
                .unwrap_or_else(|| panic!("the summary has no row for {kind} {name}:\n{output}"));
            assert_eq!(row.2, state, "{kind} {name}:\n{output}");
            if kind == "UpgradeCampaign" {
                let (done, total) = row.3.split_once('/').expect("progress n/m");
                assert_eq!(
                    done, total,
                    "{kind} {name} upgraded every device:\n{output}"
                );
                assert_ne!(done, "0", "{output}");
            }
        }
    }
    assert_eq!(rows.len(), 9, "nothing else in the summary:\n{output}");
}

fn assert_no_secret(output: &str) {
    for value in secret_values() {
        assert!(
            !output.contains(&value),
            "a demo Secret value was printed:\n{output}"
        );
    }
}

#[test]
fn dev_rolls_the_demo_firmware_out_on_every_vendor() {
    let mut child = Command::new(BIN)
        .args(["dev", "--timeout", "3m"])
        .env_remove("OTAPLANE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otaplane starts");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_at_most(&mut child, Duration::from_secs(240));
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let output = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("otaplane dev did not exit within 4m:\n{output}"));
    assert_eq!(status.code(), Some(0), "{output}");

    assert_all_succeeded(&stdout, &output);
    assert_no_secret(&output);
    // Without a terminal, progress comes as lines: every campaign was seen running.
    for name in names_of("UpgradeCampaign") {
        assert!(
            stdout.contains(&format!("UpgradeCampaign {name}: Running")),
            "no progress line for {name}:\n{output}"
        );
    }
    assert!(
        stdout.contains("All 3 campaigns succeeded"),
        "the verdict:\n{output}"
    );
}

#[test]
fn dev_serve_keeps_everything_up_for_kubectl_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("dev.kubeconfig");
    let mut child = Command::new(BIN)
        .args(["dev", "--serve", "--timeout", "3m", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env_remove("OTAPLANE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otaplane starts");
    let stderr = drain(child.stderr.take().unwrap());
    let (lines, received) = mpsc::channel::<String>();
    let reader = {
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        })
    };
    let mut stdout = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !stdout.contains("Press Ctrl-C to stop.") {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                stdout.push_str(&line);
                stdout.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "otaplane dev --serve never said it is serving:\n{stdout}\n--- stderr\n{}",
                    stderr.join().unwrap()
                );
            }
        }
    }
    assert!(
        stdout.contains(&format!(
            "kubectl --kubeconfig {} get ota -w",
            kubeconfig.display()
        )),
        "{stdout}"
    );

    // The written kubeconfig reaches the API server that is still running.
    let phases = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig is readable"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig is usable");
        let client = kube::Client::try_from(config).unwrap();
        let campaigns: kube::Api<UpgradeCampaign> = kube::Api::all(client);
        campaigns
            .list(&Default::default())
            .await
            .expect("campaigns are listed through the kubeconfig")
            .items
            .into_iter()
            .map(|c| c.status.and_then(|s| s.phase).map(|p| p.to_string()))
            .collect::<Vec<_>>()
    });
    assert_eq!(phases, vec![Some("Succeeded".to_owned()); 3], "{stdout}");

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    reader.join().unwrap();
    stdout.extend(received.try_iter().map(|line| line + "\n"));
    let output = format!(
        "--- stdout\n{stdout}\n--- stderr\n{}",
        stderr.join().unwrap()
    );
    let status = status.unwrap_or_else(|| panic!("Ctrl-C did not stop otaplane dev:\n{output}"));
    assert_eq!(status.code(), Some(0), "the rollout succeeded:\n{output}");
    assert_all_succeeded(&stdout, &output);
    assert_no_secret(&output);
    assert!(
        !kubeconfig.exists(),
        "the kubeconfig of a stopped server is removed"
    );
}

/// Runs `otaplane` with `args` to completion (at most 60 s): (exit code, stdout, stderr).
fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("OTAPLANE_LOG")
        .env_remove("OTAPLANE_DEV_TIMEOUT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otaplane starts");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("{args:?} did not exit:\n{stdout}\n{stderr}"));
    (status.code(), stdout, stderr)
}

#[test]
fn dev_help_and_mistakes_are_explained() {
    let (code, stdout, _) = run_to_end(&["dev", "--help"]);
    assert_eq!(code, Some(0));
    for needle in [
        "${ARTIFACT_SHA256}",
        "--serve",
        "--kubeconfig-out",
        "--timeout",
        "kubectl",
    ] {
        assert!(
            stdout.contains(needle),
            "dev --help lacks {needle}:\n{stdout}"
        );
    }

    let (code, _, stderr) = run_to_end(&["dev", "--timeout", "soon"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");

    // A typo in a template is named with its file and line, and nothing is left running.
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(Path::new(ROOT).join("examples/dev/iotaap.yaml"))
        .unwrap()
        .replace("baseUrl: ${SIM_URL}/v1", "baseUrl: ${SIM_ULR}/v1");
    std::fs::write(dir.path().join("typo.yaml"), template).unwrap();
    let (code, stdout, stderr) = run_to_end(&[
        "dev",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--timeout",
        "30s",
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("typo.yaml") && stderr.contains("unknown placeholder ${SIM_ULR}"),
        "{stderr}"
    );
}
