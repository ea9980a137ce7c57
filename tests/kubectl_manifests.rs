//! What a user sees with the real kubectl against an API server (kube-lite): the CRDs install,
//! every example applies without `--validate=false`, every invalid manifest is refused with a
//! message that names the field, `kubectl explain` shows the field docs, and `kubectl get`
//! shows our columns.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_lite::{Options, Server};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &Server) -> Self {
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
        Self { kubeconfig, home }
    }

    /// Runs kubectl off the async runtime; returns (success, stdout + stderr).
    async fn run(&self, args: &[&str]) -> (bool, String) {
        let kubectl = std::env::var_os("OTAPLANE_KUBECTL").unwrap_or_else(|| "kubectl".into());
        let mut command = Command::new(&kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .args(args)
            .env("HOME", self.home.path());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap_or_else(|err| {
                panic!("kubectl runs (scripts/install-test-tools installs it): {err}")
            });
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (success, text) = self.run(args).await;
        assert!(success, "kubectl {args:?} failed:\n{text}");
        text
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_the_contract() {
    let server = Server::start(Options::default()).await.unwrap();
    let kubectl = Kubectl::new(&server);
    let crds = Path::new(ROOT).join("crds/otaplane-crds.yaml");
    kubectl.ok(&["apply", "-f", path_str(&crds)]).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=30s",
        ])
        .await;

    for example in yaml_files("examples") {
        let applied = kubectl.ok(&["apply", "-f", path_str(&example)]).await;
        assert!(applied.contains("created"), "{applied}");
    }

    let explained = kubectl
        .ok(&["explain", "firmwarepackage.spec.artifact.sha256"])
        .await;
    assert!(
        explained.contains("64 lowercase hex characters"),
        "{explained}"
    );
    let explained = kubectl
        .ok(&["explain", "upgradecampaign.spec.strategy.waves"])
        .await;
    assert!(explained.contains("percentages"), "{explained}");

    let listed = kubectl.ok(&["get", "fwpkg"]).await;
    let header = listed.lines().next().unwrap_or_default();
    for column in ["NAME", "PROVIDER", "VERSION", "READY", "EXTERNAL ID", "AGE"] {
        assert!(header.contains(column), "{listed}");
    }
    assert!(listed.contains("meter-fw-3.0.1"), "{listed}");
    let listed = kubectl.ok(&["get", "ota"]).await;
    for kind in [
        "otaprovider.otaplane.io/iotda",
        "firmwarepackage.otaplane.io/tracker-fw-2.1.0",
        "upgradecampaign.otaplane.io/sensor-fw-1.2.7-rollout",
    ] {
        assert!(
            listed.contains(kind),
            "kubectl get ota lists {kind}:\n{listed}"
        );
    }

    // Each invalid manifest: create the stored object first (for updates), then the refused one,
    // then remove the stored object so the next case starts clean.
    let mut failures = Vec::new();
    for path in yaml_files("tests/manifests/invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .collect();
        let docs: Vec<&str> = text.split("\n---\n").collect();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, doc: &str| {
            let file = dir.path().join(name);
            std::fs::write(&file, doc).unwrap();
            file
        };
        let stored = match docs.as_slice() {
            [stored, _] => Some(write("stored.yaml", stored)),
            _ => None,
        };
        if let Some(stored) = &stored {
            kubectl.ok(&["apply", "-f", path_str(stored)]).await;
            // The stored status (e.g. startedAt) goes through the status subresource.
            if stored_has_status(&text) {
                let patch = serde_json::to_string(&status_of(&text)).unwrap();
                let kind = kind_of(&text);
                let name = name_of(&text);
                kubectl
                    .ok(&[
                        "patch",
                        &kind,
                        &name,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &patch,
                    ])
                    .await;
            }
        }
        let refused = write("refused.yaml", docs.last().unwrap());
        let (success, output) = kubectl.run(&["apply", "-f", path_str(&refused)]).await;
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|want| !output.contains(**want))
            .collect();
        if success || !missing.is_empty() {
            failures.push(format!(
                "{}: accepted={success}, lacks {missing:?}:\n{output}",
                path.display()
            ));
        }
        if let Some(stored) = &stored {
            kubectl
                .ok(&["delete", "--wait", "-f", path_str(stored)])
                .await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.shutdown().await.unwrap();
}

fn first_doc(text: &str) -> serde_json::Value {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .unwrap()
        .into_iter()
        .find(|doc| !doc.is_null())
        .unwrap()
}

fn stored_has_status(text: &str) -> bool {
    first_doc(text).get("status").is_some()
}

fn status_of(text: &str) -> serde_json::Value {
    serde_json::json!({"status": first_doc(text)["status"]})
}

fn kind_of(text: &str) -> String {
    first_doc(text)["kind"].as_str().unwrap().to_lowercase()
}

fn name_of(text: &str) -> String {
    first_doc(text)["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}
