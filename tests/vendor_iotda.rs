//! The IoTDA client (with its OBS uploader) against the simulator over loopback: both signing
//! algorithms, single and multipart uploads, package lookup, a batch task to its end, stop and
//! delete.

use std::time::Duration;

use otaplane::{
    sim::{self, SimConfig},
    vendor::{
        DeleteOutcome, PackageSpec, PackageVendorSpec, RolloutSpec,
        iotda::{IotdaClient, SigningChoice},
    },
};
use sha2::{Digest, Sha256};

mod support;

fn client(sim: &sim::SimHandle, signing: SigningChoice, part_size: u64) -> IotdaClient {
    support::iotda(sim, signing, part_size, "otaplane/")
}

fn package(version: &str) -> PackageSpec {
    PackageSpec {
        namespace: "default".into(),
        name: "meter-fw".into(),
        version: version.into(),
        description: Some("meter firmware".into()),
        vendor: PackageVendorSpec::Iotda {
            product_id: "5ba24f5ebbe8f56f5a14f605".into(),
            app_id: Some("61f7e74d036aca5be29e1ed4".into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: vec!["V1.0".into()],
            custom_info: None,
        },
    }
}

fn image(size: usize) -> (tempfile::NamedTempFile, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(file.path(), &data).unwrap();
    (file, hex::encode(Sha256::digest(&data)))
}

async fn start_sim() -> sim::SimHandle {
    sim::start(SimConfig {
        time_scale: 3600.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_host_decides_the_algorithm_and_both_are_accepted() {
    let sim = start_sim().await;
    let derived = client(&sim, SigningChoice::Automatic, 16 << 20);
    assert_eq!(
        derived.algorithm(),
        "V11-HMAC-SHA256",
        "an IP host is not the shared endpoint"
    );
    derived.authenticate().await.unwrap();
    let standard = client(&sim, SigningChoice::Standard, 16 << 20);
    assert_eq!(standard.algorithm(), "SDK-HMAC-SHA256");
    standard.authenticate().await.unwrap();
}

#[tokio::test]
async fn a_package_is_uploaded_registered_found_and_deleted() {
    let sim = start_sim().await;
    let client = client(&sim, SigningChoice::Automatic, 128 * 1024);
    let spec = package("V2.0");
    assert_eq!(client.find_package(&spec).await.unwrap(), None);

    // 400 KiB in 128 KiB parts: a multipart upload of four parts.
    let (file, sha256) = image(400 * 1024);
    let registered = client
        .register_package(&spec, file.path(), &sha256, 400 * 1024, "meter.bin")
        .await
        .unwrap();
    assert_eq!(registered.version, "V2.0");
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
    assert_eq!(
        registered.obs_object_key.as_deref(),
        Some("otaplane/default/meter-fw/V2.0/meter.bin")
    );
    assert_eq!(
        client.find_package(&spec).await.unwrap(),
        Some(registered.clone())
    );

    assert_eq!(
        client
            .delete_package(&registered.external_id)
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        client
            .delete_package(&registered.external_id)
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert_eq!(
        client.get_package(&registered.external_id).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_batch_task_runs_to_its_end_and_is_found_by_name() {
    let sim = start_sim().await;
    let client = client(&sim, SigningChoice::Automatic, 16 << 20);
    let spec = package("V3.0");
    let (file, sha256) = image(10 * 1024);
    let registered = client
        .register_package(&spec, file.path(), &sha256, 10 * 1024, "meter.bin")
        .await
        .unwrap();
    let devices: Vec<String> = (1..=4).map(|i| format!("meter-000{i}")).collect();
    let rollout = RolloutSpec {
        name: "otaplane-0123456789ab-w0".into(),
        devices: devices.clone(),
        end_date: None,
        download_windows: Vec::new(),
        install_windows: Vec::new(),
        retry: None,
        gateway_mode: false,
    };
    let task = client
        .start_rollout(
            &registered,
            "firmwareUpgrade",
            Some("61f7e74d036aca5be29e1ed4"),
            &rollout,
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .find_rollout("firmwareUpgrade", &rollout.name)
            .await
            .unwrap(),
        Some(task.clone())
    );
    let mut progress = client.rollout_progress(&task).await.unwrap();
    for _ in 0..100 {
        if progress.is_finished() && progress.tally.total() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress = client.rollout_progress(&task).await.unwrap();
    }
    assert_eq!(progress.tally.total(), 4, "{progress:?}");
    assert!(progress.is_finished(), "{progress:?}");
    assert_eq!(progress.tally.succeeded, 4, "{progress:?}");
    assert_eq!(progress.vendor_status, "Success");
    // Stopping a finished task is refused by IoTDA; the client counts it as stopped.
    client.cancel_rollout(&task).await.unwrap();
}

#[tokio::test]
async fn a_running_task_is_stopped() {
    let sim = start_sim().await;
    let client = client(&sim, SigningChoice::Automatic, 16 << 20);
    let spec = package("V4.0");
    let (file, sha256) = image(1024);
    let registered = client
        .register_package(&spec, file.path(), &sha256, 1024, "meter.bin")
        .await
        .unwrap();
    let rollout = RolloutSpec {
        name: "otaplane-stop-w0".into(),
        devices: vec!["meter-0100".into(), "meter-0101".into()],
        end_date: None,
        download_windows: Vec::new(),
        install_windows: Vec::new(),
        retry: None,
        gateway_mode: false,
    };
    let task = client
        .start_rollout(&registered, "firmwareUpgrade", None, &rollout)
        .await
        .unwrap();
    client.cancel_rollout(&task).await.unwrap();
    let progress = client.rollout_progress(&task).await.unwrap();
    assert!(
        matches!(progress.vendor_status.as_str(), "Stopping" | "Stopped"),
        "{progress:?}"
    );
}

#[tokio::test]
async fn an_iam_password_token_replaces_signing_and_is_reused() {
    let sim = start_sim().await;
    let client = support::iotda_with_iam(&sim, "demo-password");
    client.authenticate().await.unwrap();
    assert_eq!(client.find_package(&package("V9.0")).await.unwrap(), None);
    let calls = sim.state.calls.snapshot();
    let logins: u64 = calls
        .iter()
        .filter(|call| call.route == "/v3/auth/tokens")
        .map(|call| call.count)
        .sum();
    assert_eq!(logins, 1, "the token is cached: {calls:?}");

    let err = support::iotda_with_iam(&sim, "not-the-password")
        .authenticate()
        .await
        .unwrap_err();
    assert!(
        matches!(err, otaplane::vendor::VendorError::Authentication { .. }),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-password"));
}

#[tokio::test]
async fn a_drift_check_lists_every_package_type_in_one_call_each() {
    let sim = start_sim().await;
    let client = client(&sim, SigningChoice::Automatic, 16 << 20);
    let (file, sha256) = image(2048);
    let firmware = client
        .register_package(&package("V5.0"), file.path(), &sha256, 2048, "meter.bin")
        .await
        .unwrap();
    let mut software = package("V5.0-sw");
    if let PackageVendorSpec::Iotda { package_type, .. } = &mut software.vendor {
        *package_type = "softwarePackage".into();
    }
    let software = client
        .register_package(&software, file.path(), &sha256, 2048, "meter.bin")
        .await
        .unwrap();
    let vendor = otaplane::vendor::VendorClient::Iotda(Box::new(client));
    let before: u64 = list_calls(&sim);
    let mut listed: Vec<String> = vendor
        .list_packages()
        .await
        .unwrap()
        .into_iter()
        .map(|package| package.external_id)
        .collect();
    listed.sort();
    let mut expected = vec![firmware.external_id, software.external_id];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(list_calls(&sim) - before, 3, "one list per package type");
}

fn list_calls(sim: &sim::SimHandle) -> u64 {
    sim.state
        .calls
        .snapshot()
        .iter()
        .filter(|call| call.method == "GET" && call.route.ends_with("/ota-upgrades/packages"))
        .map(|call| call.count)
        .sum()
}
