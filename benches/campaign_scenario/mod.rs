//! The campaign scenario both campaign benchmarks run: the simulator's configuration and the
//! campaigns (waves of 10%, 50% and 100%).

use crate::support::operator::campaign_sim_config;
use otaplane::api::{
    CampaignPhase, LocalObjectReference, Strategy, UpgradeCampaign, UpgradeCampaignSpec, Waves,
};
use otaplane::sim::SimConfig;

/// Virtual seconds per real second.
pub const TIME_SCALE: f64 = 600.0;

/// The environment variable `name` as a number, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The simulator ([`campaign_sim_config`]) with tokens and sessions that outlive the run.
pub fn sim_config() -> SimConfig {
    let mut config = campaign_sim_config(TIME_SCALE);
    config.thingspace.token_lifetime_secs = 30 * 24 * 3600;
    config.thingspace.session_idle_secs = 30 * 24 * 3600;
    config.thingspace.validation_delay_secs = 1;
    config.iotda.initializing_secs = 1;
    config
}

/// Campaign `campaign-{index}` of package `fw` to `devices` devices, in three waves.
pub fn campaign(index: usize, devices: usize) -> UpgradeCampaign {
    UpgradeCampaign::new(
        &format!("campaign-{index}"),
        UpgradeCampaignSpec {
            package_ref: LocalObjectReference::new("fw"),
            devices: (0..devices)
                .map(|i| format!("c{index}-dev-{i:06}"))
                .collect(),
            strategy: Some(Strategy {
                waves: Some(Waves {
                    percentages: Some(vec![10, 50, 100]),
                    size: None,
                }),
                ..Strategy::default()
            }),
            ..UpgradeCampaignSpec::default()
        },
    )
}

/// How a batch of campaigns ran.
pub struct CampaignRun {
    /// Time to create them all.
    pub created: std::time::Duration,
    /// Time until every one Succeeded.
    pub finished: std::time::Duration,
    /// The campaigns at the end.
    pub items: Vec<UpgradeCampaign>,
}

/// Creates `campaigns` campaigns of `devices` devices each and waits until all Succeeded (at
/// most 15 minutes); `still_running` is called on every poll, to fail early when something
/// the run depends on has stopped.
pub async fn create_and_wait(
    api: &kube::Api<UpgradeCampaign>,
    campaigns: usize,
    devices: usize,
    mut still_running: impl FnMut(),
) -> CampaignRun {
    use std::time::{Duration, Instant};
    let start = Instant::now();
    for index in 0..campaigns {
        api.create(&kube::api::PostParams::default(), &campaign(index, devices))
            .await
            .expect("create");
    }
    let created = start.elapsed();
    let items = loop {
        let items = api
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items;
        let done = items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(CampaignPhase::Succeeded))
            .count();
        if done == campaigns {
            break items;
        }
        still_running();
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "only {done}/{campaigns} campaigns Succeeded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    CampaignRun {
        created,
        finished: start.elapsed(),
        items,
    }
}

/// Prints the run: `title`, the times, vendor calls per campaign by `(method, route, count)`,
/// and the largest status.
pub fn print_run(
    title: &str,
    run: &CampaignRun,
    calls: impl IntoIterator<Item = (String, String, u64)>,
) {
    let campaigns = run.items.len().max(1) as f64;
    let mut by_route: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for (method, route, count) in calls {
        *by_route.entry((method, route)).or_default() += count;
    }
    let total: u64 = by_route.values().sum();
    let largest_status = run
        .items
        .iter()
        .map(|c| serde_json::to_vec(&c.status).unwrap().len())
        .max()
        .unwrap_or(0);
    let succeeded: i64 = run
        .items
        .iter()
        .filter_map(|c| c.status.as_ref()?.counts.as_ref().map(|n| n.succeeded))
        .sum();
    println!("{title}");
    println!(
        "  created in {:.2} s; all Succeeded after {:.2} s wall time ({succeeded} devices upgraded)",
        run.created.as_secs_f64(),
        run.finished.as_secs_f64()
    );
    println!(
        "  vendor calls: {total} ({:.1} per campaign)",
        total as f64 / campaigns
    );
    for ((method, route), count) in &by_route {
        println!(
            "    {method:6} {route}: {count} ({:.1} per campaign)",
            *count as f64 / campaigns
        );
    }
    println!("  largest status: {largest_status} bytes");
}
