//! Benchmark: a random artifact (1 GiB by default; `OTAPLANE_BENCH_MIB` to change) served over
//! loopback, fetched and hashed to a spool file, then uploaded to the simulator through OBS
//! multipart (IoTDA) and ThingSpace multipart, then both again in one pass (uploading while
//! downloading). Prints wall times, the ratio to `openssl dgst -sha256` of the same file, and
//! the peak RSS of this process (which also runs the simulator and the artifact server;
//! `artifact_upload_external` runs them in their own processes).
//!
//! Run: `cargo bench --bench artifact_upload`

use std::{net::SocketAddr, path::PathBuf, time::Instant};

use axum::{Router, body::Body, http::header, response::IntoResponse, routing::get};
use otaplane::{
    artifact::{ArtifactFetcher, ArtifactPolicy, ArtifactRequest},
    pipeline::{fetch_and_register_iotda, fetch_and_register_thingspace},
    sim::{self, SimConfig},
    vendor::{PackageSpec, PackageVendorSpec, iotda::SigningChoice, obs::DEFAULT_PART_SIZE},
};

mod common;

use common::{openssl_seconds, write_random_file};
#[path = "../tests/support/mod.rs"]
mod support;

async fn serve_file(path: PathBuf) -> SocketAddr {
    let app = Router::new().route(
        "/artifact.bin",
        get(move || {
            let path = path.clone();
            async move {
                let file = tokio::fs::File::open(&path).await.unwrap();
                let length = file.metadata().await.unwrap().len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                (
                    [(header::CONTENT_LENGTH, length.to_string())],
                    Body::from_stream(stream),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::var("OTAPLANE_BENCH_MIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().unwrap();
    let source = write_random_file(work.path(), mib);
    let size = (mib as u64) << 20;
    let openssl = openssl_seconds(&source);

    let sim = sim::start(SimConfig::default()).await.unwrap();
    let server = serve_file(source.clone()).await;
    let spool = tempfile::tempdir().unwrap();
    let fetcher = ArtifactFetcher::new(ArtifactPolicy {
        spool_dir: Some(spool.path().to_path_buf()),
        ..ArtifactPolicy::default()
    });
    let request = ArtifactRequest {
        url: format!("http://{server}/artifact.bin"),
        expected_sha256: openssl.as_ref().map(|(_, digest)| digest.clone()),
        headers: Vec::new(),
        max_size_bytes: size,
    };

    let started = Instant::now();
    let artifact = fetcher.fetch(&request).await.unwrap();
    let fetch = started.elapsed().as_secs_f64();

    let iotda = support::iotda(&sim, SigningChoice::Automatic, DEFAULT_PART_SIZE, "");
    let iotda_spec = PackageSpec {
        namespace: "bench".into(),
        name: "big".into(),
        version: "V1.0".into(),
        description: None,
        vendor: PackageVendorSpec::Iotda {
            product_id: "prod1".into(),
            app_id: Some("61f7e74d036aca5be29e1ed4".into()),
            package_type: "firmwarePackage".into(),
            module_name: None,
            support_source_versions: Vec::new(),
            custom_info: None,
        },
    };
    let started = Instant::now();
    iotda
        .register_package(
            &iotda_spec,
            artifact.path(),
            artifact.sha256(),
            artifact.size(),
            "big.bin",
        )
        .await
        .unwrap();
    let obs_upload = started.elapsed().as_secs_f64();

    let thingspace = support::thingspace(&sim, "demo-password");
    let thingspace_spec = PackageSpec {
        namespace: "bench".into(),
        name: "big".into(),
        version: "1.0".into(),
        description: None,
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "X1".into(),
            local_target_path: "/VZWFOTA/big.bin".into(),
        },
    };
    let started = Instant::now();
    thingspace
        .register_package(&thingspace_spec, artifact.path(), artifact.size())
        .await
        .unwrap();
    let thingspace_upload = started.elapsed().as_secs_f64();

    let one_pass_spec = PackageSpec {
        version: "1.1".into(),
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "X1".into(),
            local_target_path: "/VZWFOTA/big-one-pass.bin".into(),
        },
        ..thingspace_spec.clone()
    };
    let started = Instant::now();
    let (one_pass_artifact, _) =
        fetch_and_register_thingspace(&fetcher, &request, &thingspace, &one_pass_spec)
            .await
            .unwrap();
    let one_pass = started.elapsed().as_secs_f64();
    drop(one_pass_artifact);

    let iotda_one_pass_spec = PackageSpec {
        version: "V1.1".into(),
        ..iotda_spec.clone()
    };
    let started = Instant::now();
    let (one_pass_artifact, _) =
        fetch_and_register_iotda(&fetcher, &request, &iotda, &iotda_one_pass_spec, "big.bin")
            .await
            .unwrap();
    let iotda_one_pass = started.elapsed().as_secs_f64();
    drop(one_pass_artifact);

    let mib_f = mib as f64;
    println!("artifact: {mib} MiB of random bytes, served over loopback");
    match &openssl {
        Some((seconds, _)) => println!(
            "openssl dgst -sha256 (floor): {seconds:.2} s ({:.0} MiB/s)",
            mib_f / seconds
        ),
        None => println!("openssl dgst -sha256: not available"),
    }
    let ratio = |wall: f64| {
        openssl.as_ref().map_or("n/a".to_string(), |(floor, _)| {
            format!("{:.2}x", wall / floor)
        })
    };
    println!(
        "fetch + SHA-256 + spool: {fetch:.2} s ({:.0} MiB/s), {} of openssl",
        mib_f / fetch,
        ratio(fetch)
    );
    println!(
        "IoTDA: OBS multipart upload ({} MiB parts) + create package: {obs_upload:.2} s ({:.0} MiB/s)",
        DEFAULT_PART_SIZE >> 20,
        mib_f / obs_upload
    );
    println!(
        "ThingSpace: streamed multipart upload: {thingspace_upload:.2} s ({:.0} MiB/s)",
        mib_f / thingspace_upload
    );
    println!(
        "end to end, fetch then upload: IoTDA {:.2} s ({} of openssl), ThingSpace {:.2} s ({} of openssl)",
        fetch + obs_upload,
        ratio(fetch + obs_upload),
        fetch + thingspace_upload,
        ratio(fetch + thingspace_upload)
    );
    println!(
        "ThingSpace one pass (upload while downloading, checksum gate on the last chunk): {one_pass:.2} s ({} of openssl)",
        ratio(one_pass)
    );
    println!(
        "IoTDA one pass (OBS parts sent while downloading, completed after the checksum matched): {iotda_one_pass:.2} s ({} of openssl)",
        ratio(iotda_one_pass)
    );
    println!(
        "peak RSS (operator code + simulator + artifact server in one process): {:.1} MiB",
        common::peak_rss_mib().unwrap_or(f64::NAN)
    );
}
