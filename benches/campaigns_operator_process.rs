//! Campaign benchmark with the operator as a separate `otaplane run` process (the real binary,
//! `OTAPLANE_BIN` or the one Cargo built), so its own peak RSS and CPU time are known:
//! UpgradeCampaigns of many devices each, running at once, with kube-lite, the vendor
//! simulator and the artifact server in this process. The scenario is the one of
//! `benches/campaigns.rs` (waves of 10%, 50% and 100%, the simulator at a fixed time scale),
//! but the binary runs with its default campaign polling intervals (no flag sets them), not
//! the short ones the in-process benchmark uses, so wall times differ between the two.
//!
//! `cargo bench --bench campaigns_operator_process`. Environment: `OTAPLANE_BENCH_CAMPAIGNS`
//! (default 10), `OTAPLANE_BENCH_DEVICES` (devices each, default 10000),
//! `OTAPLANE_BENCH_VENDORS` (default `thingspace,iotda`; one operator process per vendor),
//! `OTAPLANE_BENCH_OPERATOR_ENV` (extra environment for the operator only, for example
//! `MALLOC_ARENA_MAX=2`), `OTAPLANE_BENCH_LOG` (the operator's log filter, default `info`).

#[path = "../tests/support/mod.rs"]
mod support;

mod campaign_scenario;

mod operator_process;

use campaign_scenario::{TIME_SCALE, create_and_wait, env_or, print_run, sim_config};

use kube::Api;
use operator_process::{OPERATOR_ENV, OperatorProcess, ProcessUsage};
use otaplane::api::UpgradeCampaign;
use support::operator::{NAMESPACE, Stage};

fn print_usage(label: &str, usage: ProcessUsage) {
    println!(
        "    {label}: RSS {:.0} MiB (peak so far {:.0} MiB), {} threads, {:.2} CPU s",
        usage.rss_mib, usage.peak_rss_mib, usage.threads, usage.cpu_seconds
    );
}

async fn run(vendor: &str, campaigns: usize, devices: usize) {
    let stage = Stage::start_with(sim_config()).await;
    let log_level = std::env::var("OTAPLANE_BENCH_LOG").unwrap_or_else(|_| "info".into());
    let mut operator = OperatorProcess::start(
        &stage.kube.kubeconfig_yaml(),
        &log_level,
        &["--shutdown-grace", "5s"],
    );
    // Fails early, with the operator's log, if it exits instead of announcing its address.
    operator.http_addr();
    match vendor {
        "thingspace" => stage.thingspace_provider("acct", "demo-password").await,
        _ => stage.iotda_provider("acct").await,
    }
    stage.provider_ready("acct").await;
    stage.package("fw", "acct", vendor, "2.0.0", 7).await;
    stage.package_ready("fw").await;
    operator.assert_running();
    stage.sim.state.calls.reset();
    let before = operator.usage();

    let api: Api<UpgradeCampaign> = Api::namespaced(stage.client.clone(), NAMESPACE);
    let run = create_and_wait(&api, campaigns, devices, || operator.assert_running()).await;
    let after = operator.usage();

    print_run(
        &format!(
            "campaigns_operator_process/{vendor}: {campaigns} campaigns x {devices} devices, waves 10%/50%/100%, sim time scale x{TIME_SCALE}, operator as a process (default polling)"
        ),
        &run,
        stage
            .sim
            .state
            .calls
            .snapshot()
            .into_iter()
            .map(|call| (call.method, call.route, call.count)),
    );
    println!(
        "  operator process ({}): peak RSS {:.1} MiB, CPU {:.2} s ({:.2} s for the campaigns)",
        std::env::var(OPERATOR_ENV)
            .ok()
            .filter(|env| !env.is_empty())
            .unwrap_or_else(|| "default environment".into()),
        after.peak_rss_mib,
        after.cpu_seconds,
        after.cpu_seconds - before.cpu_seconds
    );
    print_usage("package Ready, before the campaigns", before);
    print_usage("all campaigns Succeeded", after);
    let (lines, bytes) = operator.log_size();
    println!("    log: {lines} lines, {} KiB", bytes >> 10);
    let (status, took) = operator.stop();
    println!(
        "    stopped by SIGTERM in {:.2} s: {status}",
        took.as_secs_f64()
    );
    if let Some(bench) = ProcessUsage::current() {
        println!(
            "  this process (kube-lite, simulator, artifact server): peak RSS {:.0} MiB, CPU {:.2} s",
            bench.peak_rss_mib, bench.cpu_seconds
        );
    }
}

fn main() {
    let campaigns = env_or("OTAPLANE_BENCH_CAMPAIGNS", 10);
    let devices = env_or("OTAPLANE_BENCH_DEVICES", 10_000);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let vendors = std::env::var("OTAPLANE_BENCH_VENDORS")
            .unwrap_or_else(|_| "thingspace,iotda".to_string());
        for vendor in vendors.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            run(vendor, campaigns, devices).await;
        }
    });
}
