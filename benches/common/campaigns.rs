//! The campaign scenario both campaign benchmarks run: the simulator's configuration and the
//! campaigns (waves of 10%, 50% and 100%).

use otaplane::api::{LocalObjectReference, Strategy, UpgradeCampaign, UpgradeCampaignSpec, Waves};
use otaplane::sim::SimConfig;
use otaplane::sim::fleet::UpgradeTiming;

/// Virtual seconds per real second.
pub const TIME_SCALE: f64 = 600.0;

/// The environment variable `name` as a number, else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The simulator: an upgrade takes about 8 virtual seconds; the virtual clock starts at today's
/// midnight (UTC), so ThingSpace campaigns that start "today" are valid.
pub fn sim_config() -> SimConfig {
    let mut config = SimConfig {
        time_scale: TIME_SCALE,
        start_time: Some(
            jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .start_of_day()
                .expect("midnight exists")
                .timestamp(),
        ),
        ..SimConfig::default()
    };
    config.fleet.timing = UpgradeTiming {
        queue_secs: 2.0,
        download_secs: 4.0,
        install_secs: 2.0,
        jitter: 0.25,
    };
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
