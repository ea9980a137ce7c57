//! Operator benchmark: many FirmwarePackages on two providers (ThingSpace and IoTDA), with
//! kube-lite, the vendor simulator and the artifact server in this process and the operator as
//! a separate `otaplane run` process (the real binary, `OTAPLANE_BIN` or the one Cargo built),
//! so its own peak RSS and CPU time are known. Prints the time until every package is Ready,
//! vendor calls per package while creating, vendor calls over one resync in steady state
//! (drift checks list per provider), the largest package status, the operator's peak RSS and
//! CPU seconds, and this process's peak RSS for reference.
//!
//! `cargo bench --bench operator_packages`. Environment:
//! - `OTAPLANE_BENCH_PACKAGES`: packages (default 1000);
//! - `OTAPLANE_BENCH_OPERATOR=in-process`: run the operator inside this process instead (then
//!   only the whole process's peak RSS is known);
//! - `OTAPLANE_BENCH_OPERATOR_ENV`: extra environment for the operator process only, for
//!   example `MALLOC_ARENA_MAX=2`;
//! - `OTAPLANE_BENCH_LOG`: the operator's log filter (default `info`).

#[path = "../tests/support/mod.rs"]
mod support;

mod operator_process;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{ListParams, PostParams};
use operator_process::{OPERATOR_ENV, OperatorProcess, ProcessUsage, reconciles_by_kind};
use otaplane::api::{
    Artifact, FirmwarePackage, FirmwarePackageSpec, IotdaPackage, IotdaPackageType,
    LocalObjectReference, ThingSpacePackage,
};
use otaplane::controller::OperatorHandle;
use support::operator::{FIRMWARE_SIZE, NAMESPACE, Stage, condition, firmware, sha256};

/// Provider resync interval: the steady-state window covers one resync.
const RESYNC: Duration = Duration::from_secs(10);
/// Reconciles at once, per kind.
const CONCURRENCY: u16 = 16;

/// The operator under measurement.
enum Operator {
    /// `otaplane run` as a child process.
    Process(OperatorProcess),
    /// The operator library inside this process.
    InProcess(OperatorHandle),
}

impl Operator {
    async fn start(stage: &Stage) -> Self {
        let in_process = std::env::var("OTAPLANE_BENCH_OPERATOR").is_ok_and(|v| v == "in-process");
        if in_process {
            let mut settings = stage.settings();
            settings.resync_interval = RESYNC;
            settings.concurrency = CONCURRENCY;
            return Operator::InProcess(stage.operator_with(settings).await);
        }
        let log_level = std::env::var("OTAPLANE_BENCH_LOG").unwrap_or_else(|_| "info".into());
        let resync = format!("{}s", RESYNC.as_secs());
        let concurrency = CONCURRENCY.to_string();
        Operator::Process(OperatorProcess::start(
            &stage.kube.kubeconfig_yaml(),
            &log_level,
            &[
                "--resync-interval",
                &resync,
                "--concurrency",
                &concurrency,
                "--shutdown-grace",
                "5s",
            ],
        ))
    }

    /// Panics if the operator process has exited.
    fn assert_running(&mut self) {
        if let Operator::Process(process) = self {
            process.assert_running();
        }
    }

    /// The operator's health/metrics address.
    fn http_addr(&mut self) -> std::net::SocketAddr {
        match self {
            Operator::Process(process) => process.http_addr(),
            Operator::InProcess(handle) => handle.http_addr,
        }
    }

    /// The operator process's usage; `None` in process.
    fn usage(&self) -> Option<ProcessUsage> {
        match self {
            Operator::Process(process) => Some(process.usage()),
            Operator::InProcess(_) => None,
        }
    }
}

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

fn print_usage(label: &str, usage: Option<ProcessUsage>) {
    if let Some(usage) = usage {
        println!(
            "    {label}: RSS {:.0} MiB (peak so far {:.0} MiB), {} threads, {:.2} CPU s",
            usage.rss_mib, usage.peak_rss_mib, usage.threads, usage.cpu_seconds
        );
    }
}

async fn run(count: usize) {
    let stage = Stage::start().await;
    let mut operator = Operator::start(&stage).await;
    // Waits for the operator to announce its address (and fails early if it exits instead).
    let metrics = operator.http_addr();
    stage.thingspace_provider("ts", "demo-password").await;
    stage.iotda_provider("hw").await;
    stage.provider_ready("ts").await;
    stage.provider_ready("hw").await;
    operator.assert_running();
    let idle = operator.usage();
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
        operator.assert_running();
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "only {ready}/{count} Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_ready = start.elapsed();
    let create_calls = total_calls(&stage);
    let at_ready = operator.usage();

    let reconciles_before = reconciles_by_kind(metrics).await;
    stage.sim.state.calls.reset();
    // Three resync intervals, so the per-resync figure does not depend on where the window
    // starts relative to the providers' timers.
    let resyncs = 3;
    let quiet = RESYNC * resyncs;
    tokio::time::sleep(quiet).await;
    let steady_calls = stage.sim.state.calls.snapshot();
    let steady_total: u64 = steady_calls.iter().map(|c| c.count).sum();
    let reconciles_after = reconciles_by_kind(metrics).await;
    let steady_reconciles = |kind: &str| {
        reconciles_after.get(kind).copied().unwrap_or(0)
            - reconciles_before.get(kind).copied().unwrap_or(0)
    };
    let (provider_resyncs, package_reconciles) = (
        steady_reconciles("OtaProvider"),
        steady_reconciles("FirmwarePackage"),
    );
    operator.assert_running();
    let steady = operator.usage();
    let largest_status = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| serde_json::to_vec(&p.status).unwrap().len())
        .max()
        .unwrap_or(0);

    let in_process = matches!(operator, Operator::InProcess(_));
    let mode = if in_process {
        "operator in this process"
    } else {
        "operator as a process"
    };
    println!(
        "operator_packages: {count} FirmwarePackages (half ThingSpace, half IoTDA), {} KiB artifacts, {mode}, concurrency {CONCURRENCY}",
        FIRMWARE_SIZE >> 10
    );
    println!(
        "  created in {:.2} s; all Ready after {:.2} s ({:.0} packages/s)",
        created.as_secs_f64(),
        all_ready.as_secs_f64(),
        count as f64 / all_ready.as_secs_f64()
    );
    println!(
        "  vendor calls while creating: {create_calls} ({:.1} per package)",
        create_calls as f64 / count as f64
    );
    // Each provider reconcile in the window is one resync (drift check) of one provider; two
    // providers make one resync of the whole fleet.
    println!(
        "  steady state over {}s (resync {}s): {steady_total} vendor calls in {provider_resyncs} provider reconciles ({:.1} calls per resync of both providers); {package_reconciles} package reconciles",
        quiet.as_secs(),
        RESYNC.as_secs(),
        steady_total as f64 * 2.0 / provider_resyncs.max(1) as f64
    );
    for call in steady_calls.iter().filter(|c| c.count > 0) {
        println!(
            "    {:?} {} {} -> {}: {}",
            call.vendor, call.method, call.route, call.status, call.count
        );
    }
    println!("  largest package status: {largest_status} bytes");
    match operator {
        Operator::Process(process) => {
            let usage = process.usage();
            println!(
                "  operator process (pid {}, {}): peak RSS {:.1} MiB, CPU {:.2} s ({:.2} s until all Ready, {:.2} s over the steady window)",
                process.pid(),
                std::env::var(OPERATOR_ENV)
                    .ok()
                    .filter(|env| !env.is_empty())
                    .unwrap_or_else(|| "default environment".into()),
                usage.peak_rss_mib,
                usage.cpu_seconds,
                at_ready.map_or(0.0, |u| u.cpu_seconds) - idle.map_or(0.0, |u| u.cpu_seconds),
                steady.map_or(0.0, |u| u.cpu_seconds) - at_ready.map_or(0.0, |u| u.cpu_seconds),
            );
            print_usage("providers Ready, before the packages", idle);
            print_usage("all packages Ready", at_ready);
            print_usage("after the steady window", steady);
            let (lines, bytes) = process.log_size();
            println!("    log: {lines} lines, {} KiB", bytes >> 10);
            let (status, took) = process.stop();
            println!(
                "    stopped by SIGTERM in {:.2} s: {status}",
                took.as_secs_f64()
            );
        }
        Operator::InProcess(handle) => handle.shutdown().await.expect("operator stops"),
    }
    if let Some(bench) = ProcessUsage::current() {
        println!(
            "  this process (kube-lite, simulator, artifact server{}): peak RSS {:.0} MiB, CPU {:.2} s",
            if in_process { ", operator" } else { "" },
            bench.peak_rss_mib,
            bench.cpu_seconds
        );
    }
}

fn main() {
    let count: usize = std::env::var("OTAPLANE_BENCH_PACKAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run(count));
}
