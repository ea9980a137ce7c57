//! The `kube-lite` binary: prints a usable kubeconfig and keeps its state file across restarts.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{TestResult, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running binary, stopped when dropped so a failing test leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the kubeconfig it printed.
fn launch(
    state: &std::path::Path,
) -> Result<(Running, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_kube-lite"))
            .args(["--port", "0", "--state"])
            .arg(state)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut kubeconfig = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with('#') {
            continue;
        }
        let done = line.starts_with("  user:");
        kubeconfig.push_str(&line);
        kubeconfig.push('\n');
        if done {
            break;
        }
    }
    Ok((child, kubeconfig))
}

async fn client_for(
    kubeconfig: &str,
) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> {
    let parsed = Kubeconfig::from_yaml(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

#[tokio::test]
async fn binary_prints_kubeconfig_and_restores_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.json");
    let (first, kubeconfig) = launch(&state)?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client_for(&kubeconfig).await?);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("persisted".into());
    cms.create(&PostParams::default(), &cm).await?;
    let saved = eventually(|| async {
        std::fs::read_to_string(&state).is_ok_and(|text| text.contains("\"persisted\""))
    })
    .await;
    drop(first);
    assert!(saved, "the state file is written while the server runs");

    let (_second, kubeconfig) = launch(&state)?;
    let cms: Api<ConfigMap> = Api::default_namespaced(client_for(&kubeconfig).await?);
    let restored = cms.get("persisted").await;
    assert!(restored.is_ok(), "objects survive a restart: {restored:?}");
    Ok(())
}
