//! Proof of faithfulness: Verizon's official Python SDK (`sdksio-verizon-apis-sdk==2.0.0`)
//! drives the ThingSpace simulator through token, login, upload, list, schedule, get, device
//! report, cancel and logout (`tests/sdk/verizon_flow.py`).
//!
//! The SDK lives in a venv: `OTAPLANE_TEST_PYTHON` names its python, default
//! `$CARGO_MANIFEST_DIR/.venv/bin/python`. Without it this test fails (run `scripts/test`,
//! which creates the venv).

use std::path::PathBuf;
use std::time::Duration;

use otaplane::sim::{self, SimConfig};

fn python() -> PathBuf {
    std::env::var_os("OTAPLANE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_verizon_sdk_runs_a_file_campaign_against_the_simulator() {
    let python = python();
    assert!(
        python.exists(),
        "no Python venv with the vendor SDKs at {}: run `scripts/test` (or set OTAPLANE_TEST_PYTHON)",
        python.display()
    );
    let config = SimConfig::from_yaml(
        r#"
time_scale: 0
start_time: 2024-06-01T10:00:00Z
fleet:
  rules:
    - device: "1111*"
      behaviour: {fails: {}}
"#,
    )
    .unwrap();
    let account = config.thingspace.accounts[0].clone();
    let handle = sim::start(config).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/verizon_flow.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&handle.base_url)
        .arg(handle.admin_url())
        .env("TS_ACCOUNT", &account.name)
        .env("TS_CLIENT_ID", &account.client_id)
        .env("TS_CLIENT_SECRET", account.client_secret.expose())
        .env("TS_USERNAME", &account.username)
        .env("TS_PASSWORD", account.password.expose())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the SDK script finished within 2 minutes")
        .expect("python started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK flow failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("verizon SDK flow OK"), "{stdout}");

    let calls = handle.state.calls.snapshot();
    let count = |method: &str, route: &str| {
        calls
            .iter()
            .filter(|c| c.method == method && c.route == route && c.status == 200)
            .map(|c| c.count)
            .sum::<u64>()
    };
    assert_eq!(count("POST", "/api/fota/v2/files/{acc}"), 1);
    assert_eq!(count("POST", "/api/fota/v2/campaigns/files/{acc}"), 2);
    assert_eq!(count("POST", "/api/m2m/v1/session/login"), 1);
    assert!(count("POST", "/api/ts/v1/oauth2/token") >= 1);
    handle.shutdown().await;
}
