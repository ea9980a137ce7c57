//! One-pass fetch and upload to the ThingSpace and IoTDA (OBS) simulators: the file is
//! registered once, a checksum mismatch registers nothing, and a broken streamed upload is
//! retried (OBS parts) or redone from the spool.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, http::header, response::IntoResponse, routing::get};
use bytes::Bytes;
use futures::StreamExt;
use otaplane::{
    artifact::{ArtifactError, ArtifactFetcher, ArtifactPolicy, ArtifactRequest},
    pipeline::{PipelineError, fetch_and_register_iotda, fetch_and_register_thingspace},
    sim::{
        self, SimConfig, SimState, Vendor, VendorAdmin,
        faults::{FaultAction, FaultRule},
    },
    vendor::{
        CallObserver, PackageSpec, PackageVendorSpec,
        iotda::{IotdaClient, SigningChoice},
        obs::StagedUpload,
    },
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

/// OBS parts in the IoTDA tests: 1 MiB, ten times OBS's minimum part size (100 KB; OBS is not
/// S3, whose minimum is 5 MiB), small enough for several parts in a few MiB.
const PART: u64 = 1 << 20;

/// 4.5 MiB: four full parts and a half one.
const LARGE: usize = 9 << 19;

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

fn image(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

/// Serves `data` in 64 KiB chunks. With `gate`, the bytes from `gate.0` on are held back until
/// OBS holds a part of an open multipart upload (or 60 s passed, so a failing implementation
/// fails instead of hanging); `gate.1` records whether a part arrived first.
async fn iotda_artifact_server(
    data: Vec<u8>,
    gate: Option<(usize, Arc<SimState>, Arc<AtomicBool>)>,
) -> String {
    let data = Bytes::from(data);
    let app = Router::new().route(
        "/fw.bin",
        get(move || {
            let data = data.clone();
            let gate = gate.clone();
            async move {
                let length = data.len();
                let stream = futures::stream::unfold(0usize, move |sent| {
                    let data = data.clone();
                    let gate = gate.clone();
                    async move {
                        if sent >= data.len() {
                            return None;
                        }
                        if let Some((at, sim, part_seen)) = &gate
                            && sent == *at
                        {
                            part_seen.store(wait_for_a_part(sim).await, Ordering::SeqCst);
                        }
                        let mut end = (sent + (64 << 10)).min(data.len());
                        if let Some((at, ..)) = &gate
                            && sent < *at
                        {
                            end = end.min(*at);
                        }
                        Some((Ok::<_, std::io::Error>(data.slice(sent..end)), end))
                    }
                });
                (
                    [(header::CONTENT_LENGTH, length.to_string())],
                    Body::from_stream(stream),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/fw.bin", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Whether OBS received a part of an open multipart upload within 60 s.
/// What an IoTDA one-pass registration returned.
type OnePass = Result<
    (
        otaplane::artifact::SpooledArtifact,
        otaplane::vendor::RegisteredPackage,
    ),
    PipelineError,
>;

/// Serves `data` ([`iotda_artifact_server`], with `gate`) and registers it with `client` in one
/// pass as `fw.bin`, expecting `expected_sha256` (the image's own SHA-256 when `None`, which is
/// returned either way).
async fn register_one_pass(
    client: &IotdaClient,
    data: Vec<u8>,
    expected_sha256: Option<String>,
    gate: Option<(usize, Arc<SimState>, Arc<AtomicBool>)>,
) -> (OnePass, String) {
    let sha256 = hex::encode(Sha256::digest(&data));
    let url = iotda_artifact_server(data, gate).await;
    let result = fetch_and_register_iotda(
        &ArtifactFetcher::new(ArtifactPolicy::default()),
        &request(url, expected_sha256.unwrap_or_else(|| sha256.clone())),
        client,
        &iotda_spec(),
        "fw.bin",
    )
    .await;
    (result, sha256)
}

async fn wait_for_a_part(sim: &SimState) -> bool {
    for _ in 0..6000 {
        let parts_received = sim.obs.snapshot(sim)["uploads"]
            .as_array()
            .is_some_and(|uploads| {
                uploads
                    .iter()
                    .any(|upload| upload["parts"].as_array().is_some_and(|p| !p.is_empty()))
            });
        if parts_received {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn iotda_spec() -> PackageSpec {
    PackageSpec {
        namespace: "default".into(),
        name: "meter".into(),
        version: "V5.0".into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "prod1".into(),
            app_id: Some(support::IOTDA_APP_ID.into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    }
}

fn iotda(sim: &sim::SimHandle, calls: &Arc<Calls>) -> IotdaClient {
    support::iotda(sim, SigningChoice::Automatic, PART, "ota/").with_observer(calls.clone())
}

fn obs_reset(count: u64) -> FaultRule {
    FaultRule {
        id: 0,
        vendor: Some(Vendor::Obs),
        method: Some("PUT".into()),
        path: Some("/fw-bucket/*".into()),
        after: 0,
        count: Some(count),
        rate: None,
        action: FaultAction::Reset {
            after_bytes: 100_000,
        },
    }
}

/// Multipart uploads OBS still holds open.
fn open_uploads(sim: &sim::SimHandle) -> usize {
    sim.state.obs.snapshot(&sim.state)["uploads"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn an_iotda_image_goes_up_in_parts_while_it_downloads() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let part_seen = Arc::new(AtomicBool::new(false));
    let gate = (2 * PART as usize, sim.state.clone(), part_seen.clone());
    let (registration, sha256) = register_one_pass(&client, image(LARGE), None, Some(gate)).await;
    let (artifact, registered) = registration.unwrap();
    assert!(
        part_seen.load(Ordering::SeqCst),
        "a part reached OBS before the artifact server sent the rest"
    );
    assert_eq!(artifact.sha256(), sha256);
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
    let key = client.object_key(&iotda_spec(), "fw.bin");
    assert_eq!(key, "ota/default/meter/V5.0/fw.bin");
    assert_eq!(registered.obs_object_key.as_deref(), Some(key.as_str()));
    let object = sim.state.obs.object("fw-bucket", &key).unwrap();
    assert_eq!(
        (object.size, object.sha256.as_str()),
        (LARGE as u64, sha256.as_str())
    );
    assert_eq!(calls.count("initiate_multipart_upload"), 1);
    assert_eq!(calls.count("upload_part"), 5, "4.5 MiB in 1 MiB parts");
    assert_eq!(calls.count("complete_multipart_upload"), 1);
    assert_eq!(calls.count("put_object"), 0, "nothing re-uploaded");
    assert_eq!(calls.count("abort_multipart_upload"), 0);
    assert_eq!(calls.count("create_ota_package"), 1);
    assert_eq!(
        client.find_package(&iotda_spec()).await.unwrap(),
        Some(registered)
    );
    assert_eq!(open_uploads(&sim), 0);
}

#[tokio::test]
async fn an_iotda_checksum_mismatch_aborts_the_upload_and_creates_nothing() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let (registration, _) =
        register_one_pass(&client, image(LARGE), Some("0".repeat(64)), None).await;
    let err = registration.unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::Artifact(ArtifactError::ChecksumMismatch { .. })
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        calls.count("initiate_multipart_upload"),
        1,
        "parts went up during the download"
    );
    assert_eq!(calls.count("abort_multipart_upload"), 1);
    assert_eq!(calls.count("complete_multipart_upload"), 0);
    assert_eq!(calls.count("create_ota_package"), 0);
    let key = client.object_key(&iotda_spec(), "fw.bin");
    assert_eq!(client.obs().head_object(&key).await.unwrap(), None);
    assert!(sim.state.obs.objects().is_empty());
    assert_eq!(open_uploads(&sim), 0, "the parts were discarded");
    assert_eq!(client.find_package(&iotda_spec()).await.unwrap(), None);
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_part_resends_only_that_part() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    sim.state.faults.add(vec![obs_reset(1)]);
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let (registration, sha256) = register_one_pass(&client, image(LARGE), None, None).await;
    let (_, registered) = registration.unwrap();
    assert_eq!(calls.count("upload_part"), 6, "5 parts + 1 resend");
    assert_eq!(calls.count("initiate_multipart_upload"), 1, "not redone");
    assert_eq!(calls.count("complete_multipart_upload"), 1);
    assert_eq!(calls.count("create_ota_package"), 1);
    // The simulator checked `sign` against the object it assembled: the parts are intact.
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
    let packages = client
        .list_packages("firmwarePackage", None, None, None)
        .await
        .unwrap();
    assert_eq!(packages.len(), 1);
}

#[tokio::test]
async fn a_part_that_keeps_breaking_is_redone_from_the_spool() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let attempts = support::quick_policy().max_attempts as u64;
    sim.state.faults.add(vec![obs_reset(attempts)]);
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let (registration, sha256) = register_one_pass(&client, image(LARGE), None, None).await;
    let (_, registered) = registration.unwrap();
    assert_eq!(
        calls.count("initiate_multipart_upload"),
        2,
        "the streamed upload, then the one from the spool file"
    );
    assert_eq!(calls.count("abort_multipart_upload"), 1, "the streamed one");
    assert_eq!(
        calls.count("upload_part"),
        attempts as usize + 5,
        "part 1 given up after every attempt, then 5 parts from the spool"
    );
    assert_eq!(calls.count("complete_multipart_upload"), 1);
    assert_eq!(calls.count("create_ota_package"), 1);
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
    let packages = client
        .list_packages("firmwarePackage", None, None, None)
        .await
        .unwrap();
    assert_eq!(packages.len(), 1);
    assert_eq!(open_uploads(&sim), 0);
}

#[tokio::test]
async fn an_iotda_image_within_one_part_goes_up_in_one_put_after_the_fetch() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let (registration, sha256) = register_one_pass(&client, image(PART as usize), None, None).await;
    let (_, registered) = registration.unwrap();
    assert_eq!(calls.count("put_object"), 1);
    assert_eq!(calls.count("initiate_multipart_upload"), 0);
    assert_eq!(calls.count("create_ota_package"), 1);
    assert_eq!(registered.sha256.as_deref(), Some(sha256.as_str()));
}

#[tokio::test]
async fn parts_staged_several_at_once_assemble_in_order() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let data = image(LARGE);
    let sha256 = hex::encode(Sha256::digest(&data));
    let chunks: Vec<Result<Bytes, std::io::Error>> = Bytes::from(data)
        .chunks(100_000)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let staged = client
        .obs()
        .stage_stream("staged/fw.bin", futures::stream::iter(chunks), 3)
        .await
        .unwrap();
    let StagedUpload::Multipart(pending) = staged else {
        panic!("4.5 MiB in 1 MiB parts is a multipart upload: {staged:?}");
    };
    assert_eq!((pending.parts(), pending.size()), (5, LARGE as u64));
    assert!(
        sim.state.obs.object("fw-bucket", "staged/fw.bin").is_none(),
        "nothing before completion"
    );
    pending.complete().await.unwrap();
    let object = sim.state.obs.object("fw-bucket", "staged/fw.bin").unwrap();
    assert_eq!(object.sha256, sha256);
    assert_eq!(calls.count("upload_part"), 5);
}

#[tokio::test]
async fn a_failing_image_stream_aborts_the_staged_upload() {
    let sim = sim::start(SimConfig::default()).await.unwrap();
    let calls = Arc::new(Calls::default());
    let client = iotda(&sim, &calls);
    let data = image(3 * PART as usize);
    let chunks = futures::stream::iter(
        data.chunks(100_000)
            .map(|chunk| Ok::<_, std::io::Error>(Bytes::copy_from_slice(chunk))),
    )
    .chain(futures::stream::once(async {
        Err(std::io::Error::other("checksum mismatch"))
    }));
    let err = client
        .obs()
        .stage_stream("staged/fw.bin", chunks, 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(calls.count("initiate_multipart_upload"), 1);
    assert_eq!(calls.count("abort_multipart_upload"), 1);
    assert_eq!(open_uploads(&sim), 0);
    assert!(sim.state.obs.objects().is_empty());
}
