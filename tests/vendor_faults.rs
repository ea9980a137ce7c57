//! The vendor clients under the simulator's fault injection: throttling storms, 5xx bursts,
//! IoTDA flow control and connections reset in the middle of an upload. Each test checks that
//! the client converges and that the number of calls stays bounded.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use otaplane::{
    sim::{
        self, SimConfig, Vendor,
        faults::{FaultAction, FaultRule},
    },
    vendor::{
        CallObserver, PackageSpec, PackageVendorSpec,
        iotda::{IotdaClient, SigningChoice},
        thingspace::ThingSpaceClient,
    },
};
use sha2::{Digest, Sha256};

mod support;

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

fn rule(vendor: Vendor, method: &str, path: &str, count: u64, action: FaultAction) -> FaultRule {
    FaultRule {
        id: 0,
        vendor: Some(vendor),
        method: Some(method.into()),
        path: Some(path.into()),
        after: 0,
        count: Some(count),
        rate: None,
        action,
    }
}

fn thingspace(sim: &sim::SimHandle, calls: &Arc<Calls>) -> ThingSpaceClient {
    support::thingspace(sim, "demo-password").with_observer(calls.clone())
}

fn iotda(sim: &sim::SimHandle, calls: &Arc<Calls>, part_size: u64) -> IotdaClient {
    support::iotda(sim, SigningChoice::Automatic, part_size, "").with_observer(calls.clone())
}

fn iotda_package(version: &str) -> PackageSpec {
    PackageSpec {
        namespace: "default".into(),
        name: "meter".into(),
        version: version.into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "prod1".into(),
            app_id: Some("61f7e74d036aca5be29e1ed4".into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    }
}

fn image(size: usize) -> (tempfile::NamedTempFile, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(file.path(), &data).unwrap();
    (file, hex::encode(Sha256::digest(&data)))
}

#[tokio::test]
async fn a_throttling_storm_is_waited_out() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![rule(
        Vendor::ThingSpace,
        "GET",
        "/api/fota/v2/files/*",
        3,
        FaultAction::Throttle {
            retry_after_secs: 0,
        },
    )]);
    let calls = Arc::new(Calls::default());
    thingspace(&sim, &calls).list_packages().await.unwrap();
    assert_eq!(calls.count("list_files"), 4, "three 429s, then the answer");
}

#[tokio::test]
async fn iotda_flow_control_and_a_5xx_burst_are_retried() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![
        rule(
            Vendor::Iotda,
            "POST",
            "/v5/iot/*/ota-upgrades/packages",
            2,
            FaultAction::FlowControl,
        ),
        rule(
            Vendor::Iotda,
            "GET",
            "/v5/iot/*/ota-upgrades/packages/*",
            3,
            FaultAction::Error {
                status: 503,
                code: None,
                message: None,
            },
        ),
    ]);
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls, 16 << 20);
    let (file, sha256) = image(4096);
    let registered = client
        .register_package(&iotda_package("V1.0"), file.path(), &sha256, 4096, "fw.bin")
        .await
        .unwrap();
    assert_eq!(
        calls.count("create_ota_package"),
        3,
        "two 403 IOTDA.021101, then 201"
    );
    let shown = client.get_package(&registered.external_id).await.unwrap();
    assert_eq!(shown, Some(registered));
    assert_eq!(calls.count("show_ota_package"), 4, "three 503s, then 200");
}

#[tokio::test]
async fn a_storm_longer_than_the_retries_fails_retryably_after_bounded_calls() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![rule(
        Vendor::Iotda,
        "GET",
        "/v5/iot/*/ota-upgrades/packages",
        100,
        FaultAction::Error {
            status: 500,
            code: Some("IOTDA.000020".into()),
            message: None,
        },
    )]);
    let calls = Arc::new(Calls::default());
    let err = iotda(&sim, &calls, 16 << 20)
        .list_packages("firmwarePackage", None, None, None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        calls.count("list_ota_packages"),
        5,
        "max_attempts bounds the storm"
    );
}

#[tokio::test]
async fn a_reset_during_a_multipart_part_resends_only_that_part() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![rule(
        Vendor::Obs,
        "PUT",
        "/fw-bucket/*",
        1,
        FaultAction::Reset {
            after_bytes: 50_000,
        },
    )]);
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls, 128 * 1024);
    // 512 KiB in 128 KiB parts: four parts, one of which is cut off once.
    let (file, sha256) = image(512 * 1024);
    let registered = client
        .register_package(
            &iotda_package("V2.0"),
            file.path(),
            &sha256,
            512 * 1024,
            "fw.bin",
        )
        .await
        .unwrap();
    assert_eq!(calls.count("upload_part"), 5, "4 parts + 1 resend");
    assert_eq!(calls.count("initiate_multipart_upload"), 1);
    assert_eq!(calls.count("complete_multipart_upload"), 1);
    // The simulator verified `sign` against the object it assembled: the parts are intact.
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
}

#[tokio::test]
async fn a_reset_during_a_thingspace_upload_still_registers_one_file() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![rule(
        Vendor::ThingSpace,
        "POST",
        "/api/fota/v2/files/*",
        1,
        FaultAction::Reset {
            after_bytes: 20_000,
        },
    )]);
    let calls = Arc::new(Calls::default());
    let client = thingspace(&sim, &calls);
    let (file, _) = image(200 * 1024);
    let spec = PackageSpec {
        namespace: "default".into(),
        name: "tracker".into(),
        version: "3.0.0".into(),
        description: None,
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "X1".into(),
            local_target_path: "/VZWFOTA/fw.bin".into(),
        },
    };
    client
        .register_package(&spec, file.path(), 200 * 1024)
        .await
        .unwrap();
    assert_eq!(
        calls.count("upload_file"),
        2,
        "the cut upload is sent again"
    );
    assert_eq!(client.list_packages().await.unwrap().len(), 1);
}
