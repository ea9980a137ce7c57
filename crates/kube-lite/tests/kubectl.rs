//! kube-lite driven by the real kubectl binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestResult;
use kube_lite::{Options, Server};

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &Server) -> Result<Self, std::io::Error> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig_yaml())?;
        let cache = dir.path().join("cache");
        Ok(Self {
            kubeconfig,
            cache,
            dir,
        })
    }

    fn file(&self, name: &str, contents: &str) -> Result<PathBuf, std::io::Error> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents)?;
        Ok(path)
    }

    /// Runs kubectl on a blocking thread; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new(kubectl_binary());
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        command.env("HOME", self.dir.path());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("kubectl thread")
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (success, stdout, stderr) = self.run(args).await;
        assert!(success, "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }
}

/// The kubectl that `scripts/install-test-tools` installed (`OTAPLANE_KUBECTL`), else the one on
/// this machine.
fn kubectl_binary() -> PathBuf {
    std::env::var_os("OTAPLANE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/usr/bin/kubectl").to_path_buf())
}

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: demo
spec:
  size: 4
";

const BUNDLE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: ota
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: operator
  namespace: ota
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: operator
rules:
- apiGroups: [\"example.com\"]
  resources: [\"widgets\", \"widgets/status\"]
  verbs: [\"*\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: operator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: operator
subjects:
- kind: ServiceAccount
  name: operator
  namespace: ota
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: ota
stringData:
  token: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: operator
  namespace: ota
spec:
  replicas: 1
  selector:
    matchLabels: {app: operator}
  template:
    metadata:
      labels: {app: operator}
    spec:
      serviceAccountName: operator
      containers:
      - name: operator
        image: otaplane:REPLACE
        env:
        - {name: A, value: \"1\"}
      - name: sidecar
        image: sidecar:1
---
apiVersion: v1
kind: Service
metadata:
  name: operator
  namespace: ota
spec:
  selector: {app: operator}
  ports:
  - port: 8080
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_patch_explain_delete_custom_resources() -> TestResult {
    let server = Server::start(Options::default()).await?;
    let kubectl = Kubectl::new(&server)?;
    let crd = kubectl.file(
        "crd.json",
        &serde_json::to_string_pretty(&common::widget_crd())?,
    )?;
    kubectl.ok(&["apply", "-f", crd.to_str().unwrap()]).await;
    kubectl
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ])
        .await;

    let widget = kubectl.file("widget.yaml", WIDGET)?;
    let applied = kubectl.ok(&["apply", "-f", widget.to_str().unwrap()]).await;
    assert!(
        applied.contains("widget.example.com/demo created"),
        "{applied}"
    );
    let reapplied = kubectl.ok(&["apply", "-f", widget.to_str().unwrap()]).await;
    assert!(reapplied.contains("unchanged"), "{reapplied}");

    let invalid = kubectl.file(
        "invalid.yaml",
        &WIDGET
            .replace("size: 4", "size: 40")
            .replace("demo", "huge"),
    )?;
    let (success, _, stderr) = kubectl
        .run(&["apply", "-f", invalid.to_str().unwrap()])
        .await;
    assert!(!success && stderr.contains("spec.size"), "{stderr}");

    let typo = kubectl.file(
        "typo.yaml",
        &WIDGET
            .replace("size: 4", "size: 4\n  colour: red")
            .replace("demo", "typo"),
    )?;
    let (success, _, stderr) = kubectl.run(&["apply", "-f", typo.to_str().unwrap()]).await;
    assert!(
        !success && stderr.contains("unknown field \"spec.colour\""),
        "{stderr}"
    );

    kubectl
        .ok(&[
            "patch",
            "widget",
            "demo",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ])
        .await;
    let table = kubectl.ok(&["get", "wd"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "READY", "AGE"], "{table}");
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["demo", "4", "True"], "{table}");

    let jsonpath = kubectl
        .ok(&["get", "widget", "demo", "-o", "jsonpath={.spec.color}"])
        .await;
    assert_eq!(jsonpath, "blue");

    let explained = kubectl.ok(&["explain", "widget.spec.size"]).await;
    assert!(explained.contains("How big the widget is."), "{explained}");

    kubectl
        .ok(&["delete", "widget", "demo", "--wait=true", "--timeout=20s"])
        .await;
    let (found, _, stderr) = kubectl.run(&["get", "widget", "demo"]).await;
    assert!(!found && stderr.contains("NotFound"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_a_rendered_chart_and_reapplies_changes() -> TestResult {
    let server = Server::start(Options::default()).await?;
    let kubectl = Kubectl::new(&server)?;
    let bundle = kubectl.file("bundle.yaml", &BUNDLE.replace("REPLACE", "1.0"))?;
    let output = kubectl.ok(&["apply", "-f", bundle.to_str().unwrap()]).await;
    assert_eq!(
        output.lines().filter(|l| l.ends_with(" created")).count(),
        7,
        "{output}"
    );

    let changed = kubectl.file("bundle2.yaml", &BUNDLE.replace("REPLACE", "2.0"))?;
    let output = kubectl
        .ok(&["apply", "-f", changed.to_str().unwrap()])
        .await;
    assert!(
        output.contains("deployment.apps/operator configured"),
        "{output}"
    );
    let images = kubectl
        .ok(&[
            "get",
            "deploy",
            "operator",
            "-n",
            "ota",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(images, "otaplane:2.0 sidecar:1");
    let generation = kubectl
        .ok(&[
            "get",
            "deploy",
            "operator",
            "-n",
            "ota",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(generation, "2");

    let token = kubectl
        .ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "ota",
            "-o",
            "jsonpath={.data.token}",
        ])
        .await;
    assert_eq!(token, "czNjcmV0");

    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "vendor",
            "-n",
            "ota",
            "--from-literal=apiKey=abc",
        ])
        .await;
    let key = kubectl
        .ok(&[
            "get",
            "secret",
            "vendor",
            "-n",
            "ota",
            "-o",
            "jsonpath={.data.apiKey}",
        ])
        .await;
    assert_eq!(key, "YWJj");
    kubectl
        .ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "ota",
            "--from-literal=mode=dev",
        ])
        .await;
    kubectl.ok(&["create", "namespace", "scratch"]).await;
    let phase = kubectl
        .ok(&[
            "get",
            "namespace",
            "scratch",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .await;
    assert_eq!(phase, "Active");

    let server_side = kubectl
        .ok(&["apply", "--server-side", "-f", changed.to_str().unwrap()])
        .await;
    assert!(server_side.contains("serverside-applied"), "{server_side}");

    kubectl
        .ok(&["delete", "namespace", "ota", "--wait=true", "--timeout=20s"])
        .await;
    let (found, _, _) = kubectl
        .run(&["get", "serviceaccount", "operator", "-n", "ota"])
        .await;
    assert!(!found, "namespace contents are gone");
    Ok(())
}
