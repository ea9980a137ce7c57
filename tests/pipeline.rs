//! One-pass fetch and upload to the ThingSpace simulator: the file is registered once, a
//! checksum mismatch registers nothing, and a broken streamed upload is redone from the spool.

use axum::{Router, routing::get};
use otaplane::{
    artifact::{ArtifactError, ArtifactFetcher, ArtifactPolicy, ArtifactRequest},
    pipeline::{PipelineError, fetch_and_register_thingspace},
    sim::{
        self, SimConfig, Vendor,
        faults::{FaultAction, FaultRule},
    },
    vendor::{PackageSpec, PackageVendorSpec},
};
use sha2::{Digest, Sha256};

mod support;

/// 3 MiB, so the stream spans many chunks.
fn firmware() -> Vec<u8> {
    (0..3 << 20).map(|i: u32| (i % 253) as u8).collect()
}

async fn artifact_server() -> String {
    let app = Router::new().route("/fw.bin", get(|| async { firmware() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/fw.bin", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn spec() -> PackageSpec {
    PackageSpec {
        namespace: "default".into(),
        name: "tracker".into(),
        version: "4.0.0".into(),
        description: None,
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "X1".into(),
            local_target_path: "/VZWFOTA/fw.bin".into(),
        },
    }
}

fn request(url: String, sha256: String) -> ArtifactRequest {
    ArtifactRequest {
        url,
        expected_sha256: Some(sha256),
        headers: Vec::new(),
        max_size_bytes: 16 << 20,
    }
}

fn upload_calls(sim: &sim::SimHandle) -> u64 {
    sim.state
        .calls
        .snapshot()
        .iter()
        .filter(|call| call.method == "POST" && call.route.contains("/fota/v2/files/"))
        .map(|call| call.count)
        .sum()
}

#[tokio::test]
async fn the_image_is_uploaded_while_it_downloads() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let client = support::thingspace(&sim, "demo-password");
    let sha256 = hex::encode(Sha256::digest(firmware()));
    let (artifact, registered) = fetch_and_register_thingspace(
        &ArtifactFetcher::new(ArtifactPolicy::default()),
        &request(artifact_server().await, sha256.clone()),
        &client,
        &spec(),
    )
    .await
    .unwrap();
    assert_eq!(artifact.sha256(), sha256);
    assert_eq!(registered.external_id, "configfile-Acme_X1_fw.bin");
    assert_eq!(upload_calls(&sim), 1, "one upload, streamed");
    assert_eq!(client.list_packages().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_checksum_mismatch_registers_nothing() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let client = support::thingspace(&sim, "demo-password");
    let err = fetch_and_register_thingspace(
        &ArtifactFetcher::new(ArtifactPolicy::default()),
        &request(artifact_server().await, "0".repeat(64)),
        &client,
        &spec(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Artifact(ArtifactError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(
        client.list_packages().await.unwrap().is_empty(),
        "the streamed upload never completed"
    );
}

#[tokio::test]
async fn a_broken_streamed_upload_is_redone_from_the_spool() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![FaultRule {
        id: 0,
        vendor: Some(Vendor::ThingSpace),
        method: Some("POST".into()),
        path: Some("/api/fota/v2/files/*".into()),
        after: 0,
        count: Some(1),
        rate: None,
        action: FaultAction::Reset {
            after_bytes: 100_000,
        },
    }]);
    let client = support::thingspace(&sim, "demo-password");
    let sha256 = hex::encode(Sha256::digest(firmware()));
    fetch_and_register_thingspace(
        &ArtifactFetcher::new(ArtifactPolicy::default()),
        &request(artifact_server().await, sha256),
        &client,
        &spec(),
    )
    .await
    .unwrap();
    assert_eq!(upload_calls(&sim), 2, "the cut stream, then the spool file");
    assert_eq!(client.list_packages().await.unwrap().len(), 1);
}
