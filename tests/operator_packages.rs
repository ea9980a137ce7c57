//! The operator end to end: kube-lite + the vendor simulator + `otaplane::controller` running
//! in-process. Providers authenticate, packages are registered exactly once (also across
//! crashes), adopted, re-created after drift, and deleted or orphaned.

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use otaplane::api::{FirmwarePackage, OtaProvider};
use otaplane::vendor::iotda::SigningChoice;
use otaplane::vendor::{PackageSpec, PackageVendorSpec, VendorClient};
use support::operator::{FIRMWARE_SIZE, NAMESPACE, Stage, condition, firmware, reason, sha256};

const WAIT: Duration = Duration::from_secs(60);

fn thingspace_client(stage: &Stage) -> VendorClient {
    VendorClient::ThingSpace(support::thingspace(&stage.sim, "demo-password"))
}

fn iotda_client(stage: &Stage) -> VendorClient {
    VendorClient::Iotda(Box::new(support::iotda(
        &stage.sim,
        SigningChoice::Automatic,
        16 << 20,
        "otaplane/",
    )))
}

/// Vendor packages with `version`, as the vendor lists them.
async fn vendor_packages(client: &VendorClient, version: &str) -> Vec<String> {
    client
        .list_packages()
        .await
        .expect("vendor list")
        .into_iter()
        .filter(|p| p.version == version)
        .map(|p| p.external_id)
        .collect()
}

fn uploads(stage: &Stage) -> u64 {
    stage.calls("POST", |route| route.contains("/fota/v2/files/"))
        + stage.calls("PUT", |route| {
            route.contains("fw-bucket") || route.starts_with("/otaplane/")
        })
        + stage.calls("POST", |route| route.contains("uploads"))
}

fn iotda_creates(stage: &Stage) -> u64 {
    stage.calls("POST", |route| route.ends_with("/ota-upgrades/packages"))
}

fn packages_api(stage: &Stage) -> Api<FirmwarePackage> {
    Api::namespaced(stage.client.clone(), NAMESPACE)
}

async fn delete_package(stage: &Stage, name: &str) {
    packages_api(stage)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete");
}

async fn wait_gone(stage: &Stage, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while stage.get::<FirmwarePackage>(name).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_thingspace_package_is_uploaded_once_and_a_quiet_reconcile_writes_nothing() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.thingspace_provider("ts", "demo-password").await;
    let provider = stage.provider_ready("ts").await;
    assert_eq!(
        provider.status.as_ref().unwrap().vendor,
        Some(otaplane::api::Vendor::ThingSpace)
    );
    stage
        .package("tracker", "ts", "thingspace", "4.0.0", 1)
        .await;
    let package = stage.package_ready("tracker").await;
    let status = package.status.clone().unwrap();
    let at = status.at_provider.clone().unwrap();
    let file_name = at.file_name.clone().expect("ThingSpace file name recorded");
    assert_eq!(at.external_id.as_deref(), Some(file_name.as_str()));
    assert_eq!(at.adopted, Some(false));
    let artifact = status.artifact.clone().unwrap();
    assert_eq!(artifact.sha256, sha256(&firmware(1, FIRMWARE_SIZE)));
    assert_eq!(artifact.size, FIRMWARE_SIZE as i64);
    for type_ in ["Synced", "Ready"] {
        assert_eq!(condition(Some(&status.conditions), type_), Some("True"));
    }
    for type_ in ["Reconciling", "Stalled"] {
        assert_eq!(condition(Some(&status.conditions), type_), Some("False"));
    }
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == package.metadata.generation)
    );
    assert_eq!(
        vendor_packages(&thingspace_client(&stage), "4.0.0").await,
        std::slice::from_ref(&file_name)
    );
    assert_eq!(uploads(&stage), 1);
    let reasons: Vec<String> = stage
        .events("tracker")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(reasons.contains(&"Uploaded".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"Registered".to_string()), "{reasons:?}");

    // Several provider resyncs (3 s) later nothing was rewritten or re-uploaded.
    let package_version = package.resource_version();
    let provider_version = stage.provider_ready("ts").await.resource_version();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        stage
            .get::<FirmwarePackage>("tracker")
            .await
            .unwrap()
            .resource_version(),
        package_version
    );
    assert_eq!(
        stage
            .get::<OtaProvider>("ts")
            .await
            .unwrap()
            .resource_version(),
        provider_version
    );
    assert_eq!(uploads(&stage), 1);

    let metrics = reqwest::get(format!("http://{}/metrics", operator.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("otaplane_reconciles_total{kind=\"FirmwarePackage\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otaplane_vendor_calls_total{vendor=\"ThingSpace\""),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "otaplane_artifact_bytes_uploaded_total{{vendor=\"ThingSpace\"}} {FIRMWARE_SIZE}"
        )),
        "{metrics}"
    );
    for path in ["healthz", "readyz"] {
        let response = reqwest::get(format!("http://{}/{path}", operator.http_addr))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/{path}");
    }

    // ThingSpace has no delete API: the finalizer says so in an Event and lets go.
    delete_package(&stage, "tracker").await;
    wait_gone(&stage, "tracker").await;
    let reasons: Vec<String> = stage
        .events("tracker")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        reasons.contains(&"DeleteNotSupported".to_string()),
        "{reasons:?}"
    );
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rejected_login_is_reported_without_the_secret_and_not_retried_until_the_secret_changes()
{
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.thingspace_provider("ts", "wrong-password-4711").await;
    let provider = stage
        .wait_for::<OtaProvider>("ts", WAIT, |p| {
            reason(p.status.as_ref().map(|s| &s.conditions[..]), "Ready")
                == Some("AuthenticationFailed")
        })
        .await;
    let status = provider.status.clone().unwrap();
    assert_eq!(condition(Some(&status.conditions), "Ready"), Some("False"));
    assert_eq!(condition(Some(&status.conditions), "Stalled"), Some("True"));
    let rendered = serde_json::to_string(&provider).unwrap();
    assert!(!rendered.contains("wrong-password-4711"));
    for (_, note) in stage.events("ts").await {
        assert!(!note.contains("wrong-password-4711"), "{note}");
    }
    // Resyncs and backoff come and go; the rejected password is tried once.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let logins = stage.calls("POST", |route| route.ends_with("/session/login"));
    assert_eq!(
        logins, 1,
        "a rejected ThingSpace login is never retried in a loop"
    );

    // Fixing the Secret is picked up at once through the Secret watch.
    stage
        .secret(
            "ts-credentials",
            &[
                ("appKey", "demo-client-id"),
                ("appSecret", "demo-client-secret"),
                ("username", "demo-user"),
                ("password", "demo-password"),
            ],
        )
        .await;
    let provider = stage.provider_ready("ts").await;
    assert_eq!(
        condition(
            provider.status.as_ref().map(|s| &s.conditions[..]),
            "Stalled"
        ),
        Some("False")
    );
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_iotda_package_is_registered_deleted_vendor_side_and_orphaned_on_request() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    stage.package("meter", "hw", "iotda", "V3.0.1", 2).await;
    let package = stage.package_ready("meter").await;
    let at = package
        .status
        .as_ref()
        .unwrap()
        .at_provider
        .clone()
        .unwrap();
    let package_id = at.package_id.clone().expect("package id");
    assert_eq!(at.obs_bucket.as_deref(), Some("fw-bucket"));
    assert!(
        at.obs_object_key
            .as_deref()
            .unwrap()
            .starts_with("otaplane/default/meter/V3.0.1/"),
        "{at:?}"
    );
    let client = iotda_client(&stage);
    assert_eq!(
        vendor_packages(&client, "V3.0.1").await,
        std::slice::from_ref(&package_id)
    );

    delete_package(&stage, "meter").await;
    wait_gone(&stage, "meter").await;
    assert!(
        vendor_packages(&client, "V3.0.1").await.is_empty(),
        "deleted vendor-side"
    );

    stage.package("kept", "hw", "iotda", "V3.0.2", 3).await;
    packages_api(&stage)
        .patch(
            "kept",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"deletionPolicy": "Orphan"}})),
        )
        .await
        .unwrap();
    stage.package_ready("kept").await;
    delete_package(&stage, "kept").await;
    wait_gone(&stage, "kept").await;
    assert_eq!(
        vendor_packages(&client, "V3.0.2").await.len(),
        1,
        "orphaned"
    );
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_large_iotda_image_goes_up_in_parts_of_the_providers_part_size() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider_with_obs("hw", "partSizeMiB: 1").await;
    stage.provider_ready("hw").await;
    let size = (3 << 20) + 12_345;
    let image = firmware(9, size);
    stage
        .apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: FirmwarePackage
metadata: {{name: big, namespace: {NAMESPACE}}}
spec:
  providerRef: {{name: hw}}
  version: "V4.0.0"
  artifact:
    url: {artifacts}/fw-9-{size}.bin
    sha256: {checksum}
  iotda: {{productId: 5ba24f5ebbe8f56f5a14f605, packageType: firmwarePackage}}
"#,
            artifacts = stage.artifacts,
            checksum = sha256(&image),
        ))
        .await;
    let package = stage.package_ready("big").await;
    let status = package.status.unwrap();
    assert_eq!(status.artifact.unwrap().size, size as i64);
    let key = status.at_provider.unwrap().obs_object_key.unwrap();
    let objects = stage.sim.state.obs.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].key, key);
    assert_eq!(objects[0].sha256, sha256(&image));
    assert!(
        objects[0].etag.ends_with("-4\""),
        "four parts of 1 MiB: {}",
        objects[0].etag
    );
    let pending_uploads = stage.sim.state.obs.pending_uploads();
    assert_eq!(pending_uploads, 0, "no multipart upload left open");
    assert_eq!(iotda_creates(&stage), 1);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_checksum_mismatch_stalls_and_reaches_no_vendor() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    stage
        .apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: FirmwarePackage
metadata: {{name: bad, namespace: default}}
spec:
  providerRef: {{name: hw}}
  version: V9.9.9
  artifact:
    url: {}/fw-5.bin
    sha256: "{}"
  iotda: {{productId: 5ba24f5ebbe8f56f5a14f605, packageType: firmwarePackage}}
"#,
            stage.artifacts,
            "0".repeat(64)
        ))
        .await;
    let package = stage
        .wait_for::<FirmwarePackage>("bad", WAIT, |p| {
            condition(p.status.as_ref().map(|s| &s.conditions[..]), "Stalled") == Some("True")
        })
        .await;
    let conditions = &package.status.as_ref().unwrap().conditions;
    assert_eq!(
        reason(Some(conditions), "Stalled"),
        Some("ChecksumMismatch")
    );
    assert_eq!(condition(Some(conditions), "Ready"), Some("False"));
    assert_eq!(uploads(&stage), 0);
    assert_eq!(iotda_creates(&stage), 0);
    let reasons: Vec<String> = stage.events("bad").await.into_iter().map(|e| e.0).collect();
    assert!(reasons.contains(&"Failed".to_string()), "{reasons:?}");
    operator.shutdown().await.unwrap();
}

fn iotda_spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec {
        namespace: NAMESPACE.into(),
        name: name.into(),
        version: version.into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "5ba24f5ebbe8f56f5a14f605".into(),
            app_id: Some(support::IOTDA_APP_ID.into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    }
}

/// Registers firmware `seed` vendor-side behind the operator's back.
async fn preregister(stage: &Stage, name: &str, version: &str, seed: u8) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fw.bin");
    let bytes = firmware(seed, FIRMWARE_SIZE);
    std::fs::write(&path, &bytes).unwrap();
    let checksum = sha256(&bytes);
    iotda_client(stage)
        .register_package(
            &iotda_spec(name, version),
            otaplane::vendor::ArtifactFile {
                path: &path,
                sha256: &checksum,
                size: bytes.len() as u64,
                file_name: "fw.bin",
            },
        )
        .await
        .expect("pre-registered")
        .external_id
}

#[tokio::test]
async fn existing_vendor_packages_are_adopted_or_reported_as_conflicts() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;

    let existing = preregister(&stage, "other", "V1.0.0", 7).await;
    let uploads_before = uploads(&stage);
    stage.package("adopt", "hw", "iotda", "V1.0.0", 7).await;
    let package = stage.package_ready("adopt").await;
    let at = package.status.unwrap().at_provider.unwrap();
    assert_eq!(at.package_id.as_deref(), Some(existing.as_str()));
    assert_eq!(at.adopted, Some(true));
    assert_eq!(uploads(&stage), uploads_before, "adoption uploads nothing");
    let reasons: Vec<String> = stage
        .events("adopt")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(reasons.contains(&"Adopted".to_string()), "{reasons:?}");

    // Same version vendor-side, different image: a conflict, not an adoption.
    preregister(&stage, "other2", "V2.0.0", 8).await;
    stage.package("clash", "hw", "iotda", "V2.0.0", 9).await;
    let package = stage
        .wait_for::<FirmwarePackage>("clash", WAIT, |p| {
            condition(p.status.as_ref().map(|s| &s.conditions[..]), "Stalled") == Some("True")
        })
        .await;
    let conditions = package.status.unwrap().conditions;
    assert_eq!(reason(Some(&conditions), "Stalled"), Some("Conflict"));
    assert_eq!(
        vendor_packages(&iotda_client(&stage), "V2.0.0").await.len(),
        1
    );

    // The external-name annotation adopts a package by its vendor ID.
    let named = preregister(&stage, "other3", "V3.0.0", 10).await;
    stage
        .apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: FirmwarePackage
metadata:
  name: named
  namespace: default
  annotations: {{otaplane.io/external-name: "{named}"}}
spec:
  providerRef: {{name: hw}}
  version: V3.0.0
  artifact: {{url: "{}/fw-10.bin"}}
  iotda: {{productId: 5ba24f5ebbe8f56f5a14f605, packageType: firmwarePackage}}
"#,
            stage.artifacts
        ))
        .await;
    let package = stage.package_ready("named").await;
    assert_eq!(
        package
            .status
            .unwrap()
            .at_provider
            .unwrap()
            .package_id
            .as_deref(),
        Some(named.as_str())
    );
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_vendor_package_deleted_behind_our_back_is_detected_by_one_list_and_recreated() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("hw").await;
    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        stage
            .package(
                name,
                "hw",
                "iotda",
                &format!("V1.0.{index}"),
                20 + index as u8,
            )
            .await;
    }
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let package = stage.package_ready(name).await;
        ids.push(
            package
                .status
                .unwrap()
                .at_provider
                .unwrap()
                .package_id
                .unwrap(),
        );
    }
    let client = iotda_client(&stage);
    client
        .delete_package(&otaplane::vendor::RegisteredPackage {
            external_id: ids[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gets_before = stage.calls("GET", |route| route.contains("/ota-upgrades/packages/"));
    let package = stage
        .wait_for::<FirmwarePackage>("b", WAIT, |p| {
            let id = p
                .status
                .as_ref()
                .and_then(|s| s.at_provider.as_ref())
                .and_then(|a| a.package_id.clone());
            id.is_some()
                && id.as_deref() != Some(ids[1].as_str())
                && condition(p.status.as_ref().map(|s| &s.conditions[..]), "Ready") == Some("True")
        })
        .await;
    let new_id = package
        .status
        .unwrap()
        .at_provider
        .unwrap()
        .package_id
        .unwrap();
    assert_eq!(vendor_packages(&client, "V1.0.1").await, [new_id]);
    let reasons: Vec<String> = stage.events("b").await.into_iter().map(|e| e.0).collect();
    assert!(
        reasons.contains(&"DriftDetected".to_string()),
        "{reasons:?}"
    );
    // Drift checks list per provider; the packages that did not drift are never fetched one by one.
    let gets = stage.calls("GET", |route| route.contains("/ota-upgrades/packages/")) - gets_before;
    assert!(
        gets <= 1,
        "only the drifted package is confirmed individually, got {gets} GETs"
    );
    for name in ["a", "c"] {
        assert!(
            !stage
                .events(name)
                .await
                .iter()
                .any(|e| e.0 == "DriftDetected")
        );
    }
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_package_for_a_missing_or_wrong_provider_says_why() {
    let stage = Stage::start().await;
    let operator = stage.operator().await;
    stage.package("orphan", "nope", "iotda", "V1.0.0", 1).await;
    let package = stage
        .wait_for::<FirmwarePackage>("orphan", WAIT, |p| {
            reason(p.status.as_ref().map(|s| &s.conditions[..]), "Ready")
                == Some("ProviderNotFound")
        })
        .await;
    assert_eq!(
        condition(
            package.status.as_ref().map(|s| &s.conditions[..]),
            "Stalled"
        ),
        Some("False")
    );
    // Creating the provider unblocks the package through the provider watch.
    stage.iotda_provider("nope").await;
    stage.package_ready("orphan").await;

    stage.thingspace_provider("ts", "demo-password").await;
    stage.provider_ready("ts").await;
    stage.package("mismatch", "ts", "iotda", "V1.0.1", 2).await;
    let package = stage
        .wait_for::<FirmwarePackage>("mismatch", WAIT, |p| {
            condition(p.status.as_ref().map(|s| &s.conditions[..]), "Stalled") == Some("True")
        })
        .await;
    let conditions = package.status.unwrap().conditions;
    assert_eq!(reason(Some(&conditions), "Stalled"), Some("VendorMismatch"));
    operator.shutdown().await.unwrap();
}
