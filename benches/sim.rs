//! Simulator throughput on loopback: requests per second for a ThingSpace per-device status
//! poll, and MiB/s for a 100 MiB ThingSpace file upload (streamed; the peak RSS shows it is
//! not buffered). Client and server share this process and the machine's cores, so the
//! figures are lower bounds for the simulator alone.
//!
//! Run: `cargo bench --bench sim` (optionally `-- <seconds>` for the poll phase, default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use otaplane::sim::{self, SimConfig};
use serde_json::{Value, json};

const ACC: &str = "0000123456-00001";
const UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
const CONCURRENCY: usize = 16;

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

async fn run(poll_secs: u64) {
    let config =
        SimConfig::from_yaml("time_scale: 0\nstart_time: 2024-06-01T10:00:00Z\n").expect("config");
    let handle = sim::start(config).await.expect("simulator starts");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let base = handle.thingspace_url();
    let token: Value = http
        .post(format!("{base}/ts/v1/oauth2/token"))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let session: Value = http
        .post(format!("{base}/m2m/v1/session/login"))
        .bearer_auth(&token)
        .json(&json!({"username": "demo-user", "password": "demo-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let session = session["sessionToken"]
        .as_str()
        .expect("sessionToken")
        .to_owned();

    let rss_before = peak_rss_mib();
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1024 * 1024]);
    let mut timings = Vec::new();
    for _ in 0..3 {
        let chunks = futures::stream::iter((0..UPLOAD_BYTES / (1024 * 1024)).map({
            let chunk = chunk.clone();
            move |_| Ok::<_, std::io::Error>(chunk.clone())
        }));
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(chunks),
            UPLOAD_BYTES,
        )
        .file_name("firmware.bin")
        .mime_str("application/octet-stream")
        .expect("mime");
        let form = reqwest::multipart::Form::new()
            .text("fileVersion", "1.0")
            .text("make", "Acme")
            .text("model", "X1")
            .text("localTargetPath", "/fw")
            .part("fileupload", part);
        let started = Instant::now();
        let response = http
            .post(format!("{base}/fota/v2/files/{ACC}"))
            .bearer_auth(&token)
            .header("VZ-M2M-Token", &session)
            .multipart(form)
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
    print_upload_runs("thingspace upload 100 MiB", UPLOAD_BYTES, &timings);
    if let (Some(before), Some(after)) = (rss_before, peak_rss_mib()) {
        println!("peak RSS before uploads {before:.0} MiB, after {after:.0} MiB");
    }

    let devices: Vec<String> = (0..100)
        .map(|i| format!("{}", 990_000_000_000_000u64 + i))
        .collect();
    let campaign: Value = http
        .post(format!("{base}/fota/v2/campaigns/files/{ACC}"))
        .bearer_auth(&token)
        .header("VZ-M2M-Token", &session)
        .json(&json!({"fileName": "configfile-Acme_X1_firmware.bin", "fileVersion": "1.0",
                      "distributionType": "HTTP", "startDate": "2024-06-01", "endDate": "2024-06-02",
                      "deviceList": devices}))
        .send()
        .await
        .expect("schedule")
        .json()
        .await
        .expect("schedule json");
    let id = campaign["id"].as_str().expect("campaign id").to_owned();
    let url = format!("{base}/fota/v2/reports/{ACC}/campaigns/{id}/devices?lastSeenDeviceId=0");

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(poll_secs);
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, url, token, session, done) = (
                http.clone(),
                url.clone(),
                token.clone(),
                session.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = http
                        .get(&url)
                        .bearer_auth(&token)
                        .header("VZ-M2M-Token", &session)
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
        "thingspace device-status poll (100-device campaign, {CONCURRENCY} keep-alive clients): {total} requests in {elapsed:.1} s = {:.0} req/s",
        total as f64 / elapsed
    );
    handle.shutdown().await;
}
