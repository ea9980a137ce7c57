//! The operator can be killed at any point of a package's create path: a restart never creates
//! a second vendor package, never re-uploads an artifact that is already registered, and never
//! loses an external ID. Also: two replicas with leader election never act at once, and a
//! package in use by a running campaign is not deleted.

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use otaplane::api::FirmwarePackage;
use otaplane::controller::{LeaderElection, OperatorHandle};
use otaplane::sim::Vendor as SimVendor;
use otaplane::sim::faults::{FaultAction, FaultRule};
use otaplane::vendor::VendorClient;
use otaplane::vendor::iotda::SigningChoice;
use support::operator::{NAMESPACE, Stage, condition, reason};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kill {
    /// While the artifact is being uploaded (the upload is held by the simulator).
    DuringUpload,
    /// IoTDA: after the OBS upload, while the package is being created.
    DuringCreate,
    /// After the vendor registered the package, before its ID reached status.
    BeforeIdRecorded,
    /// Right after the package became Ready.
    AfterReady,
}

fn vendor_client(stage: &Stage, vendor: &str) -> VendorClient {
    match vendor {
        "thingspace" => VendorClient::ThingSpace(support::thingspace(&stage.sim, "demo-password")),
        _ => VendorClient::Iotda(Box::new(support::iotda(
            &stage.sim,
            SigningChoice::Automatic,
            16 << 20,
            "otaplane/",
        ))),
    }
}

async fn vendor_versions(stage: &Stage, vendor: &str, version: &str) -> usize {
    vendor_client(stage, vendor)
        .list_packages()
        .await
        .expect("list")
        .iter()
        .filter(|p| p.version == version)
        .count()
}

fn image_uploads(stage: &Stage, vendor: &str) -> u64 {
    match vendor {
        "thingspace" => stage.calls("POST", |r| r.contains("/fota/v2/files/")),
        _ => stage.calls("PUT", |_| true),
    }
}

fn hold(vendor: SimVendor, method: &str, path: &str) -> FaultRule {
    hold_for(vendor, method, path, 60_000)
}

/// Delays the next matching call by `ms` milliseconds, then lets it through.
fn hold_for(vendor: SimVendor, method: &str, path: &str, ms: u64) -> FaultRule {
    FaultRule {
        id: 0,
        vendor: Some(vendor),
        method: Some(method.into()),
        path: Some(path.into()),
        after: 0,
        count: Some(1),
        rate: None,
        action: FaultAction::Latency { ms },
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_reason(stage: &Stage, name: &str, type_: &str) -> Option<String> {
    let package = stage.get::<FirmwarePackage>(name).await?;
    reason(package.status.as_ref().map(|s| &s.conditions[..]), type_).map(str::to_owned)
}

async fn crash_and_recover(vendor: &str, kill: Kill) {
    let stage = Stage::start().await;
    let first = stage.operator().await;
    let provider = format!("{vendor}-provider");
    match vendor {
        "thingspace" => stage.thingspace_provider(&provider, "demo-password").await,
        _ => stage.iotda_provider(&provider).await,
    }
    stage.provider_ready(&provider).await;
    match (vendor, kill) {
        ("thingspace", Kill::DuringUpload) => stage.sim.state.faults.add(vec![hold(
            SimVendor::ThingSpace,
            "POST",
            "/api/fota/v2/files/*",
        )]),
        (_, Kill::DuringUpload) => {
            stage
                .sim
                .state
                .faults
                .add(vec![hold(SimVendor::Obs, "PUT", "*")])
        }
        (_, Kill::DuringCreate) => stage.sim.state.faults.add(vec![hold(
            SimVendor::Iotda,
            "POST",
            "*/ota-upgrades/packages",
        )]),
        // The registering call is held for a moment, so the status fault below is in place
        // before the vendor answers.
        ("thingspace", Kill::BeforeIdRecorded) => stage.sim.state.faults.add(vec![hold_for(
            SimVendor::ThingSpace,
            "POST",
            "/api/fota/v2/files/*",
            2_000,
        )]),
        (_, Kill::BeforeIdRecorded) => stage.sim.state.faults.add(vec![hold_for(
            SimVendor::Iotda,
            "POST",
            "*/ota-upgrades/packages",
            2_000,
        )]),
        _ => Vec::new(),
    };
    stage.package("fw", &provider, vendor, "1.2.3", 42).await;
    match kill {
        Kill::DuringUpload => {
            wait_until("the upload to start", async || {
                status_reason(&stage, "fw", "Reconciling").await.as_deref() == Some("Uploading")
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Kill::DuringCreate => {
            wait_until("the OBS upload to finish", async || {
                image_uploads(&stage, vendor) >= 1
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Kill::BeforeIdRecorded => {
            wait_until("the upload to start", async || {
                status_reason(&stage, "fw", "Reconciling").await.as_deref() == Some("Uploading")
            })
            .await;
            // Every further write to FirmwarePackages fails, so the ID never reaches status.
            stage
                .kube
                .faults()
                .fail_next("patch", "firmwarepackages", 100_000, 500);
            wait_until("the vendor to register the package", async || {
                vendor_versions(&stage, vendor, "1.2.3").await == 1
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let package = stage.get::<FirmwarePackage>("fw").await.unwrap();
            assert!(
                package
                    .status
                    .as_ref()
                    .and_then(|s| s.at_provider.as_ref())
                    .is_none(),
                "the ID must not have been recorded yet"
            );
        }
        Kill::AfterReady => {
            stage.package_ready("fw").await;
        }
    }
    first.kill().await;
    stage.sim.state.faults.clear();
    stage.kube.faults().clear();
    let uploads_at_kill = image_uploads(&stage, vendor);

    let second = stage.operator().await;
    let package = stage.package_ready("fw").await;
    let at = package.status.clone().unwrap().at_provider.unwrap();
    assert!(at.external_id.is_some(), "{kill:?}: external ID recorded");
    assert_eq!(
        vendor_versions(&stage, vendor, "1.2.3").await,
        1,
        "{vendor} {kill:?}: exactly one vendor package"
    );
    let uploads = image_uploads(&stage, vendor);
    match kill {
        Kill::BeforeIdRecorded | Kill::AfterReady => {
            assert_eq!(
                uploads, uploads_at_kill,
                "{vendor} {kill:?}: a registered artifact is not uploaded again"
            );
            assert_eq!(at.adopted, Some(kill == Kill::BeforeIdRecorded), "{kill:?}");
        }
        Kill::DuringUpload | Kill::DuringCreate => {
            assert!(
                uploads <= uploads_at_kill + 1,
                "{vendor} {kill:?}: at most one more upload"
            );
        }
    }
    // Ready is stable: the restarted operator has nothing left to do.
    let version = package.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stage
            .get::<FirmwarePackage>("fw")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version
    );
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn thingspace_killed_at_each_step_registers_exactly_once() {
    for kill in [Kill::DuringUpload, Kill::BeforeIdRecorded, Kill::AfterReady] {
        crash_and_recover("thingspace", kill).await;
    }
}

#[tokio::test]
async fn iotda_killed_at_each_step_registers_exactly_once() {
    for kill in [
        Kill::DuringUpload,
        Kill::DuringCreate,
        Kill::BeforeIdRecorded,
        Kill::AfterReady,
    ] {
        crash_and_recover("iotda", kill).await;
    }
}

fn elected(stage: &Stage, identity: &str) -> otaplane::controller::Settings {
    otaplane::controller::Settings {
        leader_election: Some(LeaderElection {
            lease_name: "otaplane-leader".into(),
            lease_namespace: NAMESPACE.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(3),
            renew_grace: Duration::from_secs(1),
        }),
        instance: identity.into(),
        ..stage.settings()
    }
}

async fn is_leader(operator: &OperatorHandle) -> bool {
    let text = reqwest::get(format!("http://{}/metrics", operator.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().any(|line| line == "otaplane_leader 1")
}

#[tokio::test]
async fn two_replicas_never_act_at_once_and_a_standby_takes_over() {
    let stage = Stage::start().await;
    let a = stage.operator_with(elected(&stage, "replica-a")).await;
    let b = stage.operator_with(elected(&stage, "replica-b")).await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    stage.package("one", "hw", "iotda", "V1.0.0", 1).await;
    stage.package_ready("one").await;
    let leaders = [is_leader(&a).await, is_leader(&b).await];
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one leader: {leaders:?}"
    );
    let (leader, standby) = if leaders[0] { (a, b) } else { (b, a) };
    let leader_name = if leaders[0] { "replica-a" } else { "replica-b" };
    let reporters: std::collections::BTreeSet<String> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(stage.client.clone(), NAMESPACE)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reporting_instance)
            .collect();
    assert_eq!(
        reporters.into_iter().collect::<Vec<_>>(),
        [leader_name],
        "only the leader acted"
    );

    // The leader crashes without releasing the lease; the standby takes over once it expires.
    leader.kill().await;
    stage.package("two", "hw", "iotda", "V2.0.0", 2).await;
    stage.package_ready("two").await;
    assert!(is_leader(&standby).await);
    standby.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_package_used_by_a_running_campaign_is_kept_until_the_campaign_is_gone() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    stage.package("fw", "hw", "iotda", "V1.0.0", 1).await;
    stage.package_ready("fw").await;
    stage
        .apply(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: UpgradeCampaign
metadata: {name: rollout, namespace: default}
spec:
  packageRef: {name: fw}
  devices: [device-a, device-b]
  suspend: true
"#,
        )
        .await;
    let packages: Api<FirmwarePackage> = Api::namespaced(stage.client.clone(), NAMESPACE);
    packages
        .delete("fw", &DeleteParams::default())
        .await
        .unwrap();
    let package = stage
        .wait_for::<FirmwarePackage>("fw", WAIT, |p| {
            reason(p.status.as_ref().map(|s| &s.conditions[..]), "Synced")
                == Some("DeletionBlocked")
        })
        .await;
    let synced =
        otaplane::api::find_condition(&package.status.as_ref().unwrap().conditions, "Synced")
            .unwrap()
            .message
            .clone();
    assert!(synced.contains("UpgradeCampaign rollout"), "{synced}");
    assert!(synced.contains("otaplane.io/force-delete=true"), "{synced}");
    assert_eq!(
        condition(package.status.as_ref().map(|s| &s.conditions[..]), "Ready"),
        Some("True")
    );

    // The escape hatch: the annotation lets the deletion through.
    packages
        .patch(
            "fw",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"otaplane.io/force-delete": "true"}}})),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stage.get::<FirmwarePackage>("fw").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "force-delete did not release the package"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator.shutdown().await.unwrap();
}
