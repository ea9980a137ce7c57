//! Campaign benchmark: 10 UpgradeCampaigns of 10,000 devices each, running at once, on
//! kube-lite, the vendor simulator and the operator, all in this process. Once for ThingSpace
//! and once for IoTDA, each campaign in waves of 10%, 50% and 100%. Prints the wall time until
//! every campaign Succeeded at a fixed simulator time scale, vendor calls per campaign (by
//! route), the size of the largest campaign status, and the peak RSS of the whole process
//! (operator, kube-lite and simulator together: an upper bound for the operator).
//!
//! `cargo bench --bench campaigns` (campaigns: `OTAPLANE_BENCH_CAMPAIGNS`, default 10; devices
//! each: `OTAPLANE_BENCH_DEVICES`, default 10000; vendors: `OTAPLANE_BENCH_VENDORS`, default
//! `thingspace,iotda`; the peak RSS is the process's, so run one vendor for its own figure).

#[path = "../tests/support/mod.rs"]
mod support;

mod campaign_scenario;

mod common;

use campaign_scenario::{TIME_SCALE, create_and_wait, env_or, print_run, sim_config};

use kube::Api;
use otaplane::api::UpgradeCampaign;
use support::operator::{NAMESPACE, Stage};

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn run(vendor: &str, campaigns: usize, devices: usize) {
    let stage = Stage::start_with(sim_config()).await;
    let operator = stage.operator().await;
    match vendor {
        "thingspace" => stage.thingspace_provider("acct", "demo-password").await,
        _ => stage.iotda_provider("acct").await,
    }
    stage.provider_ready("acct").await;
    stage.package("fw", "acct", vendor, "2.0.0", 7).await;
    stage.package_ready("fw").await;
    stage.sim.state.calls.reset();
    let rss_before = rss_mib().unwrap_or_default();

    let api: Api<UpgradeCampaign> = Api::namespaced(stage.client.clone(), NAMESPACE);
    let run = create_and_wait(&api, campaigns, devices, || {}).await;

    print_run(
        &format!(
            "campaigns/{vendor}: {campaigns} campaigns x {devices} devices, waves 10%/50%/100%, sim time scale x{TIME_SCALE}"
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
        "  RSS before the campaigns {:.0} MiB, now {:.0} MiB; process peak RSS {:.0} MiB",
        rss_before,
        rss_mib().unwrap_or_default(),
        common::peak_rss_mib().unwrap_or_default()
    );
    operator.shutdown().await.expect("operator stops");
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
