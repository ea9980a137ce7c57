//! `otaplane run` as a process and as a library under shutdown: JSON logs with a span per
//! reconcile, SIGTERM ends it cleanly, and a shutdown during an upload abandons it without
//! leaving a spool file or a second vendor package behind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use otaplane::sim::Vendor as SimVendor;
use otaplane::sim::faults::{FaultAction, FaultRule};
use otaplane::vendor::VendorClient;
use otaplane::vendor::iotda::SigningChoice;
use support::operator::{Stage, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_with_a_span_per_reconcile_and_stops_on_sigterm() {
    let stage = Stage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, stage.kube.kubeconfig_yaml()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_otaplane"))
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("OTAPLANE_RESYNC_INTERVAL", "1h")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("otaplane run starts");
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    stage.iotaap_provider("iot").await;
    stage.provider_ready("iot").await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM ends otaplane run cleanly: {status:?}"
    );
    let lines = lines.join().unwrap();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let reconcile = records
        .iter()
        .find(|record| {
            record["span"]["name"] == "reconcile" && record["span"]["kind"] == "OtaProvider"
        })
        .unwrap_or_else(|| panic!("no log line inside a reconcile span: {lines:#?}"));
    assert_eq!(reconcile["span"]["name"], "reconcile");
    assert_eq!(reconcile["span"]["namespace"], "default");
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "shutdown requested"),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|line| line.contains("demo-password")));
}

#[tokio::test]
async fn shutdown_during_an_upload_abandons_it_cleanly_and_a_restart_finishes_it() {
    let stage = Stage::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut settings = stage.settings();
    settings.artifact_policy.spool_dir = Some(spool.path().to_path_buf());
    settings.shutdown_grace = Duration::from_millis(500);
    let operator = stage.operator_with(settings.clone()).await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    stage.sim.state.faults.add(vec![FaultRule {
        id: 0,
        vendor: Some(SimVendor::Obs),
        method: Some("PUT".into()),
        path: Some("*".into()),
        after: 0,
        count: Some(1),
        rate: None,
        action: FaultAction::Latency { ms: 60_000 },
    }]);
    stage.package("fw", "hw", "iotda", "V1.0.0", 3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let package = stage.get::<otaplane::api::FirmwarePackage>("fw").await;
        let uploading = package
            .as_ref()
            .and_then(|p| reason(p.status.as_ref().map(|s| &s.conditions[..]), "Reconciling"))
            == Some("Uploading");
        if uploading && std::fs::read_dir(spool.path()).unwrap().count() > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    operator.shutdown().await.expect("graceful shutdown");
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "the abandoned upload's spool file is removed"
    );
    stage.sim.state.faults.clear();
    let operator = stage.operator_with(settings).await;
    stage.package_ready("fw").await;
    let client = VendorClient::Iotda(Box::new(support::iotda(
        &stage.sim,
        SigningChoice::Automatic,
        16 << 20,
        "otaplane/",
    )));
    let registered = client
        .list_packages()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.version == "V1.0.0")
        .count();
    assert_eq!(registered, 1);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stop_before_the_caches_fill_does_not_wait_for_them() {
    // An API server that never answers: the caches can never fill.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let settings = otaplane::controller::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_millis(200),
        ..otaplane::controller::Settings::default()
    };
    let operator = otaplane::controller::start(settings, client).await.unwrap();
    let ready = reqwest::get(format!("http://{}/readyz", operator.http_addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the caches are empty");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(30), operator.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown hung waiting for caches that never fill"
    );
    held.abort();
}
