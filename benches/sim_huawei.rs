//! Huawei side of the simulator on loopback: MiB/s for a 100 MiB OBS object PUT (AWS V2
//! signed, streamed to disk; the peak RSS shows it is not buffered), the time to create a
//! 10,000-device IoTDA batch task, and requests per second for ShowBatchTask on that task
//! (SDK-HMAC-SHA256 signed, `limit=50`). Client and server share this process and its two
//! worker threads, so the figures are lower bounds for the simulator alone.
//!
//! Run: `cargo bench --bench sim_huawei` (optionally `-- <seconds>` for the poll phase, default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use otaplane::signing::huawei::{HuaweiCredentials, HuaweiSigner, Payload};
use otaplane::signing::obs::{Addressing, ObsScheme, ObsSigner};
use otaplane::sim::{self, SimConfig};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const PID: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "ExampleSecretKey0000000000000000000000000";
const UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
const CONCURRENCY: usize = 16;
const DEVICES: usize = 10_000;

mod common;

use common::{peak_rss_mib, print_upload_runs};

fn main() {
    let poll_secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(poll_secs));
}

/// A signed IoTDA request builder.
fn iotda_request(
    http: &Client,
    base: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let url = format!("{base}/v5/iot/{PID}{path}");
    let uri: http::Uri = url.parse().expect("url");
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let signer = HuaweiSigner::standard(HuaweiCredentials::new(AK, SK));
    let signed = signer
        .sign(
            &method,
            &uri,
            &headers,
            Payload::Bytes(&body),
            Timestamp::now(),
        )
        .expect("sign");
    for (name, value) in signed.into_header_pairs().expect("headers") {
        headers.insert(name, value);
    }
    http.request(method, url).headers(headers).body(body)
}

async fn run(poll_secs: u64) {
    let config = SimConfig::from_yaml(
        "time_scale: 0\nfleet: {rules: [{device: 'bad*', behaviour: {fails: {code: '7'}}}]}\n",
    )
    .expect("config");
    let handle = sim::start(config).await.expect("simulator starts");
    let http = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");

    let rss_before = peak_rss_mib();
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1024 * 1024]);
    let signer = ObsSigner::new(HuaweiCredentials::new(AK, SK), ObsScheme::AwsV2);
    let url = format!("{}/fw-bucket/fw/bench.bin", handle.obs_url);
    let uri: http::Uri = url.parse().expect("url");
    let mut timings = Vec::new();
    for _ in 0..3 {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(UPLOAD_BYTES));
        for (name, value) in signer
            .sign(
                &Method::PUT,
                &uri,
                &headers,
                Addressing::PathStyle,
                Timestamp::now(),
            )
            .expect("sign")
        {
            headers.insert(name, value);
        }
        let chunks = futures::stream::iter((0..UPLOAD_BYTES / (1024 * 1024)).map({
            let chunk = chunk.clone();
            move |_| Ok::<_, std::io::Error>(chunk.clone())
        }));
        let started = Instant::now();
        let response = http
            .put(&url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("upload");
        assert!(
            response.status().is_success(),
            "upload failed: {}",
            response.status()
        );
        timings.push(started.elapsed());
    }
    print_upload_runs("obs PUT 100 MiB (V2 signed)", UPLOAD_BYTES, &timings);
    if let (Some(before), Some(after)) = (rss_before, peak_rss_mib()) {
        println!("peak RSS before uploads {before:.0} MiB, after {after:.0} MiB");
    }

    let package = json!({"app_id": "app1", "package_type": "firmwarePackage", "product_id": "prod1",
        "version": "2.0.0", "file_location": {"obs_location": {"region_name": "cn-north-4",
        "bucket_name": "fw-bucket", "object_key": "fw/bench.bin"}}});
    let created: Value = iotda_request(
        &http,
        &handle.iotda_url(),
        Method::POST,
        "/ota-upgrades/packages",
        package.to_string().into_bytes(),
    )
    .send()
    .await
    .expect("create package")
    .json()
    .await
    .expect("package json");
    let package_id = created["package_id"]
        .as_str()
        .expect("package_id")
        .to_owned();
    let targets: Vec<String> = (0..DEVICES)
        .map(|i| {
            if i % 20 == 0 {
                format!("bad-{i:05}")
            } else {
                format!("dev-{i:05}")
            }
        })
        .collect();
    let task = json!({"task_name": "bench", "task_type": "firmwareUpgrade", "targets": targets,
        "document": {"package_ids": [package_id]}});
    let started = Instant::now();
    let created: Value = iotda_request(
        &http,
        &handle.iotda_url(),
        Method::POST,
        "/batchtasks",
        task.to_string().into_bytes(),
    )
    .send()
    .await
    .expect("create task")
    .json()
    .await
    .expect("task json");
    println!(
        "iotda CreateBatchTask with {DEVICES} targets: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let task_id = created["task_id"].as_str().expect("task_id").to_owned();

    for (phase, advance) in [("running", 30), ("finished", 3600)] {
        handle
            .state
            .clock
            .advance(SignedDuration::from_secs(advance));
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(poll_secs);
        let base = handle.iotda_url();
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (http, base, task_id, done) =
                    (http.clone(), base.clone(), task_id.clone(), done.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let response = iotda_request(
                            &http,
                            &base,
                            Method::GET,
                            &format!("/batchtasks/{task_id}?limit=50"),
                            Vec::new(),
                        )
                        .send()
                        .await
                        .expect("poll");
                        assert!(response.status().is_success());
                        response.bytes().await.expect("poll body");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        for worker in workers {
            worker.await.expect("worker");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let total = done.load(Ordering::Relaxed);
        println!(
            "iotda ShowBatchTask ({DEVICES}-device task, {phase}, {CONCURRENCY} keep-alive clients): {total} requests in {elapsed:.1} s = {:.0} req/s",
            total as f64 / elapsed
        );
    }
    handle.shutdown().await;
}
