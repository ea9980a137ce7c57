//! The IoTaaP client against the simulator over loopback: per-device deploys that a restart does
//! not repeat, unknown devices, progress from what IoTaaP exposes, and a rejected login.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use otaplane::{
    sim::{self, SimConfig},
    vendor::{CallObserver, VendorError, iotaap::IotaapClient},
};

mod support;

const DEVICES: [&str; 3] = [
    "5e1a5ecbe2ac3a3bdb45fc01",
    "5e1a5ecbe2ac3a3bdb45fc02",
    "5e1a5ecbe2ac3a3bdb45fc03",
];

#[derive(Default)]
struct Calls(Mutex<BTreeMap<&'static str, usize>>);

impl CallObserver for Calls {
    fn on_attempt(&self, _: &'static str, endpoint: &'static str, _: Option<u16>) {
        *self.0.lock().unwrap().entry(endpoint).or_default() += 1;
    }
}

impl Calls {
    fn count(&self, endpoint: &str) -> usize {
        self.0.lock().unwrap().get(endpoint).copied().unwrap_or(0)
    }
}

fn client(sim: &sim::SimHandle, password: &str, calls: &Arc<Calls>) -> IotaapClient {
    support::iotaap(sim, password).with_observer(calls.clone())
}

#[tokio::test]
async fn deploys_reach_each_device_once_and_devices_take_the_version() {
    let sim = sim::start(SimConfig {
        time_scale: 24.0 * 3600.0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let calls = Arc::new(Calls::default());
    let client = client(&sim, "demo-password", &calls);
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), vec![0xe5; 64 * 1024]).unwrap();

    let mut wave: Vec<String> = DEVICES.iter().map(|id| id.to_string()).collect();
    wave.push("5e1a5ecbe2ac3a3bdb45ffff".into());
    let unknown = client.deploy(&wave, "1.2.7", image.path()).await.unwrap();
    assert_eq!(unknown, ["5e1a5ecbe2ac3a3bdb45ffff"]);
    assert_eq!(calls.count("deploy"), 3);
    assert_eq!(
        client.offered_version(DEVICES[0]).await.unwrap().as_deref(),
        Some("1.2.7")
    );

    // A restart deploys again: nothing is uploaded twice.
    client.deploy(&wave, "1.2.7", image.path()).await.unwrap();
    assert_eq!(calls.count("deploy"), 3);
    assert_eq!(calls.count("login"), 1, "the JWT is reused");

    let mut progress = client.rollout_progress(&wave, "1.2.7").await.unwrap();
    for _ in 0..100 {
        if progress.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress = client.rollout_progress(&wave, "1.2.7").await.unwrap();
    }
    assert!(progress.is_finished(), "{progress:?}");
    assert_eq!(progress.tally.succeeded, 3, "{progress:?}");
    assert_eq!(
        progress.tally.skipped, 1,
        "the unknown device is skipped: {progress:?}"
    );
}

#[tokio::test]
async fn a_new_version_supersedes_an_earlier_deploy() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let client = client(&sim, "demo-password", &Arc::new(Calls::default()));
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), b"fw").unwrap();
    let device = vec![DEVICES[1].to_string()];
    client.deploy(&device, "2.0.0", image.path()).await.unwrap();
    client.deploy(&device, "2.0.1", image.path()).await.unwrap();
    let progress = client.rollout_progress(&device, "2.0.0").await.unwrap();
    assert_eq!(progress.tally.cancelled, 1, "{progress:?}");
}

#[tokio::test]
async fn a_rejected_login_is_an_authentication_error_without_the_password() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let err = client(&sim, "wrong-password", &calls)
        .authenticate()
        .await
        .unwrap_err();
    assert!(matches!(err, VendorError::Authentication { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("Login or password is wrong"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("wrong-password"));
    assert_eq!(calls.count("login"), 1, "a 401 is not retried");
}
