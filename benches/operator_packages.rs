//! Operator benchmark: many FirmwarePackages on two providers (ThingSpace and IoTDA), on
//! kube-lite and the simulator in this process. Prints the time until every package is Ready,
//! vendor calls per package while creating, vendor calls per resync in steady state (drift
//! checks list per provider), and peak RSS of the whole process (operator, kube-lite and
//! simulator together, so an upper bound for the operator).
//!
//! `cargo bench --bench operator_packages` (packages: `OTAPLANE_BENCH_PACKAGES`, default 1000).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{ListParams, PostParams};
use otaplane::api::{
    Artifact, FirmwarePackage, FirmwarePackageSpec, IotdaPackage, IotdaPackageType,
    LocalObjectReference, ThingSpacePackage,
};
use support::operator::{FIRMWARE_SIZE, NAMESPACE, Stage, condition, firmware, sha256};

fn package(stage: &Stage, index: usize) -> FirmwarePackage {
    let seed = (index % 200) as u8;
    let thingspace = index.is_multiple_of(2);
    let spec = FirmwarePackageSpec {
        provider_ref: LocalObjectReference::new(if thingspace { "ts" } else { "hw" }),
        version: format!("1.0.{index}"),
        artifact: Artifact {
            url: format!("{}/fw-{seed}.bin", stage.artifacts),
            sha256: Some(sha256(&firmware(seed, FIRMWARE_SIZE))),
            ..Artifact::default()
        },
        thingspace: thingspace.then(|| ThingSpacePackage {
            make: "Acme".into(),
            model: "Tracker-X1".into(),
            local_target_path: "/VZWFOTA/fw.bin".into(),
        }),
        iotda: (!thingspace).then(|| IotdaPackage {
            product_id: "5ba24f5ebbe8f56f5a14f605".into(),
            package_type: IotdaPackageType::FirmwarePackage,
            ..IotdaPackage::default()
        }),
        ..FirmwarePackageSpec::default()
    };
    FirmwarePackage::new(&format!("pkg-{index}"), spec)
}

fn total_calls(stage: &Stage) -> u64 {
    stage
        .sim
        .state
        .calls
        .snapshot()
        .iter()
        .map(|c| c.count)
        .sum()
}

fn main() {
    let count: usize = std::env::var("OTAPLANE_BENCH_PACKAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let stage = Stage::start().await;
        let mut settings = stage.settings();
        settings.resync_interval = Duration::from_secs(10);
        settings.concurrency = 16;
        let operator = stage.operator_with(settings).await;
        stage.thingspace_provider("ts", "demo-password").await;
        stage.iotda_provider("hw").await;
        stage.provider_ready("ts").await;
        stage.provider_ready("hw").await;
        stage.sim.state.calls.reset();

        let api: Api<FirmwarePackage> = Api::namespaced(stage.client.clone(), NAMESPACE);
        let start = Instant::now();
        for index in 0..count {
            api.create(&PostParams::default(), &package(&stage, index))
                .await
                .expect("create");
        }
        let created = start.elapsed();
        loop {
            let ready = api
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|p| {
                    condition(p.status.as_ref().map(|s| &s.conditions[..]), "Ready") == Some("True")
                })
                .count();
            if ready == count {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(1800), "only {ready}/{count} Ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let all_ready = start.elapsed();
        let create_calls = total_calls(&stage);

        stage.sim.state.calls.reset();
        let quiet = Duration::from_secs(25);
        tokio::time::sleep(quiet).await;
        let steady_calls = stage.sim.state.calls.snapshot();
        let steady_total: u64 = steady_calls.iter().map(|c| c.count).sum();
        let largest_status = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| serde_json::to_vec(&p.status).unwrap().len())
            .max()
            .unwrap_or(0);

        println!("operator_packages: {count} FirmwarePackages (half ThingSpace, half IoTDA), {} KiB artifacts", FIRMWARE_SIZE >> 10);
        println!("  created in {:.2} s; all Ready after {:.2} s ({:.0} packages/s)",
            created.as_secs_f64(), all_ready.as_secs_f64(), count as f64 / all_ready.as_secs_f64());
        println!("  vendor calls while creating: {create_calls} ({:.1} per package)", create_calls as f64 / count as f64);
        println!("  steady state over {}s (resync 10s): {steady_total} vendor calls", quiet.as_secs());
        for call in steady_calls.iter().filter(|c| c.count > 0) {
            println!("    {:?} {} {} -> {}: {}", call.vendor, call.method, call.route, call.status, call.count);
        }
        println!("  largest package status: {largest_status} bytes");
        if let Some(rss) = common::peak_rss_mib() {
            println!("  peak RSS (operator + kube-lite + simulator in one process): {rss:.0} MiB");
        }
        operator.shutdown().await.unwrap();
    });
}
