//! Proof of faithfulness: Huawei's official Python SDKs (huaweicloudsdkcore/huaweicloudsdkiotda
//! 3.1.219, esdk-obs-python 3.26.6) drive the simulator started in-process. The SDKs sign, the
//! simulator verifies; the scripts under tests/sdk/ assert on the SDKs' parsed responses.
//!
//! The interpreter is `OTAPLANE_TEST_PYTHON` (default `.venv/bin/python`), which `scripts/test`
//! installs with the SDKs. Without it these tests fail rather than skip.

use std::path::PathBuf;
use std::time::Duration;

use otaplane::sim::{self, SimConfig, SimHandle};

const PID: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "ExampleSecretKey0000000000000000000000000";

fn python() -> PathBuf {
    let python = std::env::var_os("OTAPLANE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} does not exist: run `scripts/test` (it installs the vendor SDKs into .venv), or set OTAPLANE_TEST_PYTHON",
        python.display()
    );
    python
}

async fn start() -> SimHandle {
    let config = SimConfig::from_yaml(
        r#"
time_scale: 0
fleet:
  timing: {queue_secs: 10, download_secs: 20, install_secs: 10, jitter: 0}
  rules:
    - device: "sdk-bad*"
      behaviour: {fails: {code: "7"}}
    - device: "sdk-slow*"
      behaviour: {slow: {factor: 100}}
"#,
    )
    .unwrap();
    sim::start(config).await.unwrap()
}

async fn run_script(sim: &SimHandle, script: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let command = tokio::process::Command::new(python())
        .arg(&path)
        .env("SIM_IOTDA_URL", sim.iotda_url())
        .env("SIM_OBS_URL", &sim.obs_url)
        .env("SIM_ADMIN_URL", sim.admin_url())
        .env("SIM_PROJECT_ID", PID)
        .env("SIM_AK", AK)
        .env("SIM_SK", SK)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), command)
        .await
        .expect("the SDK script finishes within 5 minutes")
        .expect("the Python interpreter starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}");
    assert!(
        stdout.contains("all checks passed"),
        "{script} did not finish:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_iotda_sdk_runs_package_and_batch_task_flow() {
    let sim = start().await;
    run_script(&sim, "huawei_iotda.py").await;
    let calls = sim.state.calls.total(Some(sim::Vendor::Iotda), None, None);
    assert!(
        calls >= 15,
        "the SDK calls went through the simulator ({calls} IoTDA calls)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_obs_sdk_uploads_and_reads_objects() {
    let sim = start().await;
    run_script(&sim, "huawei_obs.py").await;
    assert!(sim.state.obs.object("fw-bucket", "fw/big.bin").is_some());
}
