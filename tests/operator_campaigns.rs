//! UpgradeCampaigns end to end: kube-lite + the vendor simulator + `otaplane::controller`
//! in-process. Waves run to success on every vendor, failure thresholds pause or abort, suspend
//! stops and resume goes on, silent devices time out, a future schedule waits, deletion cancels
//! vendor-side, a refused wave stalls, a rollout the vendor forgot counts as missing, crashes
//! never start a wave twice, and 10,000 devices cost paged calls only.

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use otaplane::api::{CampaignPhase, UpgradeCampaign, WavePhase};
use otaplane::sim::config::DEMO_IOTAAP_USER_ID;
use otaplane::sim::faults::{FaultAction, FaultRule};
use otaplane::sim::fleet::{Behaviour, BehaviourRule, DeviceSpec};
use otaplane::sim::{SimConfig, Vendor as SimVendor, VendorAdmin};
use serde_json::{Value, json};
use support::operator::{NAMESPACE, Stage, campaign_sim_config, condition, reason};

const WAIT: Duration = Duration::from_secs(60);
/// Virtual seconds per real second: an upgrade (8 virtual seconds) takes about 13 ms.
const TIME_SCALE: f64 = 600.0;

/// The three vendors, as the harness names them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vendor {
    ThingSpace,
    Iotda,
    Iotaap,
}

impl Vendor {
    fn name(self) -> &'static str {
        match self {
            Vendor::ThingSpace => "thingspace",
            Vendor::Iotda => "iotda",
            Vendor::Iotaap => "iotaap",
        }
    }
}

/// A fast simulator ([`campaign_sim_config`]) whose devices behave by ID prefix: `fail-*`
/// fail, `off-*` never report, `slow-*` (and IoTaaP devices of seed 0xff) take a thousand times
/// longer, everyone else succeeds.
fn sim_config(iotaap_devices: &[String]) -> SimConfig {
    let mut config = campaign_sim_config(TIME_SCALE);
    let rule = |device: &str, behaviour: Behaviour| BehaviourRule {
        vendor: None,
        account: None,
        device: Some(device.into()),
        probability: None,
        behaviour,
    };
    config.fleet.rules = vec![
        rule(
            "fail-*",
            Behaviour::Fails {
                code: None,
                reason: None,
            },
        ),
        rule("off-*", Behaviour::Offline),
        rule("slow-*", Behaviour::Slow { factor: 1000.0 }),
        rule("6aff*", Behaviour::Slow { factor: 1000.0 }),
    ];
    config
        .fleet
        .devices
        .extend(iotaap_devices.iter().map(|id| DeviceSpec {
            vendor: SimVendor::Iotaap,
            account: DEMO_IOTAAP_USER_ID.into(),
            id: id.clone(),
            version: None,
            behaviour: None,
            token: None,
            name: None,
            device_type: None,
        }));
    // Tokens and sessions live in virtual time: keep them from expiring every few seconds.
    config.thingspace.token_lifetime_secs = 30 * 24 * 3600;
    config.thingspace.session_idle_secs = 30 * 24 * 3600;
    config.thingspace.validation_delay_secs = 1;
    config.iotda.initializing_secs = 1;
    config
}

/// `count` device IDs starting with `prefix`, valid on ThingSpace and IoTDA.
fn devices(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// `count` IoTaaP device IDs (24-hex ObjectIds), distinct per `seed`.
fn iotaap_devices(seed: u8, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("6a{seed:02x}000000000000{i:08x}"))
        .collect()
}

/// A stage with the operator running, a Ready provider and a Ready package `fw` of `vendor`.
async fn stage(vendor: Vendor, config: SimConfig) -> (Stage, otaplane::controller::OperatorHandle) {
    let stage = Stage::start_with(config).await;
    let operator = stage.operator().await;
    match vendor {
        Vendor::ThingSpace => stage.thingspace_provider("acct", "demo-password").await,
        Vendor::Iotda => stage.iotda_provider("acct").await,
        Vendor::Iotaap => stage.iotaap_provider("acct").await,
    }
    stage.provider_ready("acct").await;
    stage.package("fw", "acct", vendor.name(), "2.0.0", 7).await;
    stage.package_ready("fw").await;
    (stage, operator)
}

/// Applies campaign `name` of package `fw` over `devices`, with `spec` appended (YAML lines
/// indented by two spaces).
async fn campaign(stage: &Stage, name: &str, devices: &[String], spec: &str) {
    let devices = serde_json::to_string(devices).unwrap();
    stage
        .apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: UpgradeCampaign
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  packageRef: {{name: fw}}
  devices: {devices}
{spec}
"#
        ))
        .await;
}

async fn edit(stage: &Stage, name: &str, spec: Value) {
    Api::<UpgradeCampaign>::namespaced(stage.client.clone(), NAMESPACE)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("campaign edit");
}

fn phase(campaign: &UpgradeCampaign) -> Option<CampaignPhase> {
    campaign.status.as_ref().and_then(|status| status.phase)
}

fn progressing_reason(campaign: &UpgradeCampaign) -> Option<&str> {
    reason(
        campaign.status.as_ref().map(|s| &s.conditions[..]),
        "Progressing",
    )
}

async fn wait_campaign(
    stage: &Stage,
    name: &str,
    done: impl Fn(&UpgradeCampaign) -> bool,
) -> UpgradeCampaign {
    stage.wait_for::<UpgradeCampaign>(name, WAIT, done).await
}

async fn wait_phase(stage: &Stage, name: &str, wanted: CampaignPhase) -> UpgradeCampaign {
    wait_campaign(stage, name, |c| phase(c) == Some(wanted)).await
}

/// Vendor calls that create a rollout (IoTaaP: one upload per device).
fn rollout_creations(stage: &Stage, vendor: Vendor) -> u64 {
    match vendor {
        Vendor::ThingSpace => stage.calls("POST", |r| r.contains("/fota/v2/campaigns/files/")),
        Vendor::Iotda => stage.calls("POST", |r| r.ends_with("/batchtasks")),
        Vendor::Iotaap => stage.calls("POST", |r| r == "/v1/ota/device"),
    }
}

/// Vendor calls about rollouts (not the provider's credential and package checks).
fn rollout_calls(stage: &Stage, vendor: Vendor) -> u64 {
    stage
        .sim
        .state
        .calls
        .snapshot()
        .iter()
        .filter(|call| match vendor {
            Vendor::ThingSpace => call.route.contains("/campaigns"),
            Vendor::Iotda => call.route.contains("/batchtasks"),
            Vendor::Iotaap => {
                call.route.starts_with("/v1/ota/") || call.route.starts_with("/v1/devices")
            }
        })
        .map(|call| call.count)
        .sum()
}

/// Vendor calls that stop or cancel a rollout.
fn rollout_cancels(stage: &Stage, vendor: Vendor) -> u64 {
    match vendor {
        Vendor::ThingSpace => stage.calls("DELETE", |r| r.contains("/fota/v2/campaigns/")),
        Vendor::Iotda => stage.calls("POST", |r| r.ends_with("/stop")),
        Vendor::Iotaap => 0,
    }
}

/// The simulator's rollouts as (name, vendor ID, status word).
fn vendor_rollouts(stage: &Stage, vendor: Vendor) -> Vec<(String, String, String)> {
    let state = &stage.sim.state;
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    match vendor {
        Vendor::ThingSpace => state.thingspace.snapshot(state)["campaigns"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| (text(&c["campaignName"]), text(&c["id"]), text(&c["status"])))
            .collect(),
        Vendor::Iotda => state.iotda.snapshot(state)["projects"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|p| p["tasks"].as_array().cloned().unwrap_or_default())
            .map(|t| {
                (
                    text(&t["task_name"]),
                    text(&t["task_id"]),
                    text(&t["status"]),
                )
            })
            .collect(),
        Vendor::Iotaap => Vec::new(),
    }
}

/// How often each event reason was reported on campaign `name` (identical repeats are kept as
/// one Event with a series count, as kube-rs's recorder folds them).
async fn events(stage: &Stage, name: &str) -> Vec<(String, i32)> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(stage.client.clone(), NAMESPACE)
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|event| {
            let count = event.series.as_ref().map_or(1, |series| series.count);
            (event.reason.unwrap_or_default(), count)
        })
        .collect()
}

fn event_count(events: &[(String, i32)], reason: &str) -> i32 {
    events
        .iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, count)| count)
        .sum()
}

fn assert_counts_add_up(campaign: &UpgradeCampaign) {
    let counts = campaign.status.as_ref().unwrap().counts.clone().unwrap();
    assert_eq!(
        counts.pending + counts.in_progress + counts.succeeded + counts.failed + counts.skipped,
        counts.total,
        "{counts:?}"
    );
}

async fn three_waves_succeed(vendor: Vendor) {
    let ids = match vendor {
        Vendor::Iotaap => iotaap_devices(1, 6),
        _ => devices("dev", 6),
    };
    let (stage, operator) = stage(vendor, sim_config(&ids)).await;
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    waves: {percentages: [16, 50, 100]}\n    maxFailures: 0",
    )
    .await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    let counts = status.counts.clone().unwrap();
    assert_eq!(
        (counts.total, counts.succeeded, counts.failed),
        (6, 6, 0),
        "{vendor:?}"
    );
    assert_eq!(status.progress.as_deref(), Some("6/6"));
    assert_eq!(
        status.waves.iter().map(|w| w.devices).collect::<Vec<_>>(),
        [1, 2, 3],
        "{vendor:?}: waves of 16%, 50% and 100%"
    );
    assert!(status.waves.iter().all(|w| w.phase == WavePhase::Succeeded));
    let mut ids: Vec<&str> = status
        .waves
        .iter()
        .map(|w| {
            w.vendor_id
                .as_deref()
                .expect("every wave has its vendor ID")
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{vendor:?}: one vendor rollout per wave");
    assert_eq!(condition(Some(&status.conditions), "Ready"), Some("True"));
    assert_eq!(
        condition(Some(&status.conditions), "Progressing"),
        Some("False")
    );
    assert!(status.started_at.is_some() && status.completed_at.is_some());
    let expected_creations = match vendor {
        Vendor::Iotaap => 6,
        _ => 3,
    };
    assert_eq!(
        rollout_creations(&stage, vendor),
        expected_creations,
        "{vendor:?}"
    );
    if vendor != Vendor::Iotaap {
        let rollouts = vendor_rollouts(&stage, vendor);
        for wave in &status.waves {
            assert!(
                rollouts
                    .iter()
                    .any(|(_, id, _)| Some(id.as_str()) == wave.vendor_id.as_deref()),
                "{vendor:?}: wave {} is a vendor rollout",
                wave.index
            );
        }
    }
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "WaveStarted"), 3, "{events:?}");
    assert_eq!(event_count(&events, "WaveFinished"), 3, "{events:?}");
    assert_eq!(event_count(&events, "Completed"), 1, "{events:?}");
    assert_counts_add_up(&done);
    // Done is done: no more rollout calls and no more writes.
    let version = done.metadata.resource_version.clone();
    let calls = rollout_calls(&stage, vendor);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = stage.campaign("rollout").await.unwrap();
    assert_eq!(after.metadata.resource_version, version, "{vendor:?}");
    assert_eq!(rollout_calls(&stage, vendor), calls, "{vendor:?}");
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn three_waves_succeed_on_thingspace() {
    three_waves_succeed(Vendor::ThingSpace).await;
}

#[tokio::test]
async fn three_waves_succeed_on_iotda() {
    three_waves_succeed(Vendor::Iotda).await;
}

#[tokio::test]
async fn three_waves_succeed_on_iotaap() {
    three_waves_succeed(Vendor::Iotaap).await;
}

#[tokio::test]
async fn a_wave_over_its_threshold_pauses_until_the_threshold_is_raised() {
    let (stage, operator) = stage(Vendor::ThingSpace, sim_config(&[])).await;
    let mut ids = vec!["fail-00001".to_string(), "fail-00002".to_string()];
    ids.extend(devices("dev", 8));
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    waves: {size: 5}\n    maxFailures: 1\n    onFailure: Pause",
    )
    .await;
    let paused = wait_phase(&stage, "rollout", CampaignPhase::Paused).await;
    assert_eq!(
        progressing_reason(&paused),
        Some("FailureThresholdExceeded")
    );
    let status = paused.status.clone().unwrap();
    assert_eq!(
        status.waves.len(),
        1,
        "no wave starts past a crossed threshold"
    );
    assert_eq!(status.waves[0].phase, WavePhase::Failed);
    let mut failed: Vec<&str> = status
        .failed_devices
        .iter()
        .map(|f| f.device.as_str())
        .collect();
    failed.sort();
    assert_eq!(failed, ["fail-00001", "fail-00002"]);
    assert!(
        status
            .failed_devices
            .iter()
            .all(|f| !f.reason.is_empty() && f.wave == 0)
    );
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 1);
    // Paused stays paused.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let still = stage.campaign("rollout").await.unwrap();
    assert_eq!(phase(&still), Some(CampaignPhase::Paused));
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 1);

    edit(&stage, "rollout", json!({"strategy": {"maxFailures": 2}})).await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.waves.len(), 2);
    assert_eq!(status.waves[1].phase, WavePhase::Succeeded);
    assert_eq!(status.waves[1].counts.succeeded, 5);
    assert_eq!(status.counts.as_ref().unwrap().failed, 2);
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 2);
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "Paused"), 1, "{events:?}");
    assert_eq!(event_count(&events, "Resumed"), 1, "{events:?}");
    assert_counts_add_up(&done);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wave_over_its_threshold_aborts_the_campaign() {
    let (stage, operator) = stage(Vendor::Iotda, sim_config(&[])).await;
    let mut ids = devices("fail", 3);
    ids.extend(devices("dev", 6));
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    waves: {size: 3}\n    maxFailures: 1\n    onFailure: Abort",
    )
    .await;
    let failed = wait_phase(&stage, "rollout", CampaignPhase::Failed).await;
    let status = failed.status.clone().unwrap();
    assert_eq!(condition(Some(&status.conditions), "Stalled"), Some("True"));
    assert_eq!(
        reason(Some(&status.conditions), "Stalled"),
        Some("FailureThresholdExceeded")
    );
    assert_eq!(condition(Some(&status.conditions), "Ready"), Some("False"));
    assert_eq!(status.waves.len(), 1);
    assert_eq!(status.waves[0].phase, WavePhase::Failed);
    assert!(status.completed_at.is_some());
    assert!(status.counts.as_ref().unwrap().failed >= 2);
    assert_eq!(rollout_creations(&stage, Vendor::Iotda), 1);
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "Aborted"), 1, "{events:?}");
    // Failed is terminal: nothing more starts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rollout_creations(&stage, Vendor::Iotda), 1);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn suspend_stops_the_running_wave_and_resume_goes_on_with_the_next() {
    let (stage, operator) = stage(Vendor::Iotda, sim_config(&[])).await;
    let mut ids = devices("slow", 2);
    ids.extend(devices("dev", 2));
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    waves: {size: 2}\n    maxFailures: 0",
    )
    .await;
    wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.len() == 1 && s.waves[0].vendor_id.is_some())
    })
    .await;
    edit(&stage, "rollout", json!({"suspend": true})).await;
    let paused = wait_campaign(&stage, "rollout", |c| {
        phase(c) == Some(CampaignPhase::Paused)
            && c.status
                .as_ref()
                .is_some_and(|s| s.waves[0].phase == WavePhase::Cancelled)
    })
    .await;
    assert_eq!(progressing_reason(&paused), Some("Suspended"));
    assert_eq!(
        rollout_cancels(&stage, Vendor::Iotda),
        1,
        "the running wave was stopped"
    );
    let wave = &paused.status.as_ref().unwrap().waves[0];
    assert_eq!(wave.counts.skipped, 2, "stopped devices count as skipped");
    assert_eq!(rollout_creations(&stage, Vendor::Iotda), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rollout_creations(&stage, Vendor::Iotda),
        1,
        "suspended: no new wave"
    );

    edit(&stage, "rollout", json!({"suspend": false})).await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.waves.len(), 2);
    assert_eq!(status.waves[1].phase, WavePhase::Succeeded);
    assert_eq!(status.counts.as_ref().unwrap().succeeded, 2);
    assert_eq!(rollout_creations(&stage, Vendor::Iotda), 2);
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "Resumed"), 1, "{events:?}");
    assert_counts_add_up(&done);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_campaign_created_suspended_waits_then_runs() {
    let (stage, operator) = stage(Vendor::ThingSpace, sim_config(&[])).await;
    campaign(&stage, "rollout", &devices("dev", 2), "  suspend: true").await;
    let paused = wait_phase(&stage, "rollout", CampaignPhase::Paused).await;
    assert_eq!(progressing_reason(&paused), Some("Suspended"));
    assert!(paused.status.as_ref().unwrap().waves.is_empty());
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 0);
    edit(&stage, "rollout", json!({"suspend": false})).await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    assert_eq!(
        done.status
            .as_ref()
            .unwrap()
            .counts
            .as_ref()
            .unwrap()
            .succeeded,
        2
    );
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 1);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn devices_that_never_report_time_out_and_their_rollout_is_cancelled() {
    let (stage, operator) = stage(Vendor::ThingSpace, sim_config(&[])).await;
    let mut ids = devices("off", 2);
    ids.extend(devices("dev", 2));
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    maxFailures: 2\n    deviceTimeout: 3s",
    )
    .await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    let counts = status.counts.clone().unwrap();
    assert_eq!((counts.succeeded, counts.failed), (2, 2), "{counts:?}");
    let mut timed_out: Vec<(&str, &str)> = status
        .failed_devices
        .iter()
        .map(|f| (f.device.as_str(), f.reason.as_str()))
        .collect();
    timed_out.sort();
    assert_eq!(
        timed_out,
        [("off-00000", "TimedOut"), ("off-00001", "TimedOut")]
    );
    assert_eq!(rollout_cancels(&stage, Vendor::ThingSpace), 1);
    let rollouts = vendor_rollouts(&stage, Vendor::ThingSpace);
    assert_eq!(rollouts.len(), 1);
    assert_eq!(rollouts[0].2, "CampaignAborted", "{rollouts:?}");
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "DevicesTimedOut"), 1, "{events:?}");
    assert_counts_add_up(&done);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_campaign_scheduled_in_the_future_stays_scheduled() {
    let (stage, operator) = stage(Vendor::Iotda, sim_config(&[])).await;
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let start = jiff::Timestamp::from_second(start.as_second()).unwrap();
    campaign(
        &stage,
        "rollout",
        &devices("dev", 3),
        &format!("  schedule: {{startAt: \"{start}\"}}"),
    )
    .await;
    let scheduled = wait_phase(&stage, "rollout", CampaignPhase::Scheduled).await;
    assert_eq!(progressing_reason(&scheduled), Some("Scheduled"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = stage.campaign("rollout").await.unwrap();
    assert_eq!(phase(&still), Some(CampaignPhase::Scheduled));
    let status = still.status.unwrap();
    assert!(status.waves.is_empty() && status.started_at.is_none());
    assert_eq!(status.counts.unwrap().pending, 3);
    assert_eq!(rollout_creations(&stage, Vendor::Iotda), 0);
    assert_eq!(stage.calls("GET", |r| r.contains("/batchtasks")), 0);
    operator.shutdown().await.unwrap();
}

async fn deleting_cancels_vendor_side(vendor: Vendor) {
    let (stage, operator) = stage(vendor, sim_config(&[])).await;
    campaign(&stage, "rollout", &devices("slow", 3), "").await;
    let running = wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.first().is_some_and(|w| w.vendor_id.is_some()))
    })
    .await;
    assert_eq!(phase(&running), Some(CampaignPhase::Running));
    assert!(
        running
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "otaplane.io/campaign-cleanup"))
    );
    let vendor_id = running.status.unwrap().waves[0].vendor_id.clone().unwrap();
    Api::<UpgradeCampaign>::namespaced(stage.client.clone(), NAMESPACE)
        .delete("rollout", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + WAIT;
    while stage.campaign("rollout").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rollout_cancels(&stage, vendor), 1, "{vendor:?}");
    let rollouts = vendor_rollouts(&stage, vendor);
    let (_, _, state) = rollouts
        .iter()
        .find(|(_, id, _)| *id == vendor_id)
        .expect("the wave's rollout");
    let stopped = match vendor {
        Vendor::ThingSpace => ["CampaignAborted", "CampaignCancelled"].contains(&state.as_str()),
        _ => ["Stopping", "Stopped"].contains(&state.as_str()),
    };
    assert!(stopped, "{vendor:?}: the rollout is {state}");
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "Cancelling"), 1, "{events:?}");
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn deleting_a_running_campaign_cancels_it_on_thingspace() {
    deleting_cancels_vendor_side(Vendor::ThingSpace).await;
}

#[tokio::test]
async fn deleting_a_running_campaign_cancels_it_on_iotda() {
    deleting_cancels_vendor_side(Vendor::Iotda).await;
}

#[tokio::test]
async fn deleting_a_running_iotaap_campaign_says_its_deploys_stay() {
    let ids = iotaap_devices(0xff, 2);
    let (stage, operator) = stage(Vendor::Iotaap, sim_config(&ids)).await;
    campaign(&stage, "rollout", &ids, "").await;
    wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.first().is_some_and(|w| w.vendor_id.is_some()))
    })
    .await;
    assert_eq!(rollout_creations(&stage, Vendor::Iotaap), 2);
    Api::<UpgradeCampaign>::namespaced(stage.client.clone(), NAMESPACE)
        .delete("rollout", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + WAIT;
    while stage.campaign("rollout").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "Cancelling"), 1, "{events:?}");
    assert_eq!(event_count(&events, "CancelNotSupported"), 1, "{events:?}");
    assert_eq!(rollout_creations(&stage, Vendor::Iotaap), 2);
    operator.shutdown().await.unwrap();
}

/// A wave the vendor refuses (a 4xx on creation): the campaign is Stalled with the vendor's code,
/// the refused wave is not recorded (its intent, written before the call, is withdrawn), and once
/// the vendor accepts, the wave starts once and the campaign succeeds.
async fn a_refused_wave_stalls_the_campaign_until_it_is_accepted(vendor: Vendor) {
    let (stage, operator) = stage(vendor, sim_config(&[])).await;
    let code = match vendor {
        Vendor::Iotda => "IOTDA.000006",
        _ => "INVALID_PARAMETER",
    };
    stage.sim.state.faults.add(vec![on_rollout_creation(
        vendor,
        FaultAction::Error {
            status: 400,
            code: Some(code.into()),
            message: Some("Invalid input data.".into()),
        },
    )]);
    campaign(&stage, "rollout", &devices("dev", 2), "").await;
    let stalled = wait_campaign(&stage, "rollout", |c| {
        condition(c.status.as_ref().map(|s| &s.conditions[..]), "Stalled") == Some("True")
    })
    .await;
    let status = stalled.status.unwrap();
    assert_eq!(
        reason(Some(&status.conditions), "Stalled"),
        Some("VendorRejected")
    );
    let message = &otaplane::api::find_condition(&status.conditions, "Stalled")
        .unwrap()
        .message;
    assert!(message.contains(code), "{message}");
    assert!(status.waves.is_empty(), "a refused wave is not recorded");
    assert_eq!(status.phase, Some(CampaignPhase::Pending));
    let events = events(&stage, "rollout").await;
    assert!(event_count(&events, "VendorRejected") >= 1, "{events:?}");
    assert_eq!(event_count(&events, "WaveStarted"), 0, "{events:?}");

    stage.sim.state.faults.clear();
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.unwrap();
    assert_eq!(
        condition(Some(&status.conditions), "Stalled"),
        Some("False")
    );
    assert_eq!(status.counts.unwrap().succeeded, 2);
    assert_eq!(vendor_rollouts(&stage, vendor).len(), 1);
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wave_the_vendor_refuses_stalls_the_campaign_until_it_is_accepted() {
    a_refused_wave_stalls_the_campaign_until_it_is_accepted(Vendor::Iotda).await;
}

#[tokio::test]
async fn a_wave_thingspace_refuses_stalls_the_campaign_until_it_is_accepted() {
    a_refused_wave_stalls_the_campaign_until_it_is_accepted(Vendor::ThingSpace).await;
}

/// ThingSpace answers 400 "Invalid upgradeId" (not 404) for a campaign it does not know: the
/// operator reads that as a rollout gone vendor-side, not as a refusal that stalls.
#[tokio::test]
async fn a_thingspace_campaign_the_vendor_no_longer_knows_counts_as_missing() {
    let (stage, operator) = stage(Vendor::ThingSpace, sim_config(&[])).await;
    campaign(&stage, "rollout", &devices("slow", 2), "").await;
    let running = wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.first().is_some_and(|w| w.vendor_id.is_some()))
    })
    .await;
    let vendor_id = running.status.unwrap().waves[0].vendor_id.clone().unwrap();
    stage.sim.state.faults.add(vec![FaultRule {
        id: 0,
        vendor: Some(SimVendor::ThingSpace),
        method: Some("GET".into()),
        path: Some(format!("*/fota/v2/campaigns/*/{vendor_id}")),
        after: 0,
        count: None,
        rate: None,
        action: FaultAction::Error {
            status: 400,
            code: Some("INVALID_PARAMETER".into()),
            message: Some("Invalid upgradeId".into()),
        },
    }]);
    let gone = wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.first().is_some_and(|w| w.completed_at.is_some()))
    })
    .await;
    let status = gone.status.unwrap();
    assert_eq!(status.waves[0].phase, WavePhase::Cancelled);
    assert_eq!(status.waves[0].counts.skipped, 2, "{:?}", status.waves[0]);
    assert_ne!(
        condition(Some(&status.conditions), "Stalled"),
        Some("True"),
        "{:?}",
        status.conditions
    );
    let events = events(&stage, "rollout").await;
    assert!(
        event_count(&events, "VendorRolloutMissing") >= 1,
        "{events:?}"
    );
    assert_eq!(event_count(&events, "VendorRejected"), 0, "{events:?}");
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_package_of_another_vendor_is_a_stalled_spec_error() {
    let (stage, operator) = stage(Vendor::ThingSpace, sim_config(&[])).await;
    campaign(
        &stage,
        "rollout",
        &devices("dev", 2),
        "  iotda: {gatewayMode: true}",
    )
    .await;
    let stalled = wait_campaign(&stage, "rollout", |c| {
        condition(c.status.as_ref().map(|s| &s.conditions[..]), "Stalled") == Some("True")
    })
    .await;
    let status = stalled.status.unwrap();
    assert_eq!(
        reason(Some(&status.conditions), "Stalled"),
        Some("VendorMismatch")
    );
    assert_eq!(status.phase, Some(CampaignPhase::Pending));
    assert_eq!(rollout_creations(&stage, Vendor::ThingSpace), 0);
    let events = events(&stage, "rollout").await;
    assert_eq!(event_count(&events, "InvalidSpec"), 1, "{events:?}");
    operator.shutdown().await.unwrap();
}

/// Waits until the campaign's latest wave is `waves` long, finished, and soaking.
async fn wait_soaking_after(stage: &Stage, waves: usize) {
    wait_campaign(stage, "rollout", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.waves.len() == waves && s.waves.iter().all(|w| w.completed_at.is_some())
        }) && progressing_reason(c) == Some("Soaking")
    })
    .await;
}

/// A fault on the vendor call that creates a wave's rollout.
fn on_rollout_creation(vendor: Vendor, action: FaultAction) -> FaultRule {
    let (sim_vendor, path) = match vendor {
        Vendor::ThingSpace => (SimVendor::ThingSpace, "*/fota/v2/campaigns/files/*"),
        Vendor::Iotda => (SimVendor::Iotda, "*/batchtasks"),
        Vendor::Iotaap => (SimVendor::Iotaap, "/v1/ota/device"),
    };
    FaultRule {
        id: 0,
        vendor: Some(sim_vendor),
        method: Some("POST".into()),
        path: Some(path.into()),
        after: 0,
        count: None,
        rate: None,
        action,
    }
}

/// Whether the campaign's status shows `waves` waves, the last one started without a vendor ID
/// (its intent written, the vendor's answer not recorded).
fn last_wave_intent_only(campaign: &UpgradeCampaign, waves: usize) -> bool {
    campaign.status.as_ref().is_some_and(|s| {
        s.waves.len() == waves && s.waves.last().is_some_and(|w| w.vendor_id.is_none())
    })
}

async fn killed_at_each_step_starts_no_wave_twice(vendor: Vendor) {
    let ids = devices("dev", 8);
    let stage = Stage::start_with(sim_config(&[])).await;
    let operator = stage.operator().await;
    match vendor {
        Vendor::ThingSpace => stage.thingspace_provider("acct", "demo-password").await,
        _ => stage.iotda_provider("acct").await,
    }
    stage.provider_ready("acct").await;
    stage.package("fw", "acct", vendor.name(), "2.0.0", 7).await;
    stage.package_ready("fw").await;
    campaign(
        &stage,
        "rollout",
        &ids,
        "  strategy:\n    waves: {size: 2}\n    maxFailures: 0\n    soakTime: 2s",
    )
    .await;

    // 1. Right after the first wave's ID was recorded.
    wait_campaign(&stage, "rollout", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.waves.first().is_some_and(|w| w.vendor_id.is_some()))
    })
    .await;
    operator.kill().await;
    assert_eq!(rollout_creations(&stage, vendor), 1);

    // 2. After the second wave's intent was written, before the vendor created it (the vendor
    //    fails every creation until the operator is killed).
    let operator = stage.operator().await;
    wait_soaking_after(&stage, 1).await;
    stage.sim.state.faults.add(vec![on_rollout_creation(
        vendor,
        FaultAction::Error {
            status: 503,
            code: None,
            message: None,
        },
    )]);
    wait_campaign(&stage, "rollout", |c| last_wave_intent_only(c, 2)).await;
    operator.kill().await;
    stage.sim.state.faults.clear();
    assert_eq!(
        vendor_rollouts(&stage, vendor).len(),
        1,
        "wave 1 never reached the vendor"
    );

    // 3. After the vendor created the third wave, before its ID reached status (the creation is
    //    held until status writes fail).
    let operator = stage.operator().await;
    wait_soaking_after(&stage, 2).await;
    stage.sim.state.faults.add(vec![on_rollout_creation(
        vendor,
        FaultAction::Latency { ms: 1000 },
    )]);
    wait_campaign(&stage, "rollout", |c| last_wave_intent_only(c, 3)).await;
    stage
        .kube
        .faults()
        .fail_next("patch", "upgradecampaigns", 100_000, 500);
    let deadline = tokio::time::Instant::now() + WAIT;
    while vendor_rollouts(&stage, vendor).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "wave 2 never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    operator.kill().await;
    stage.kube.faults().clear();
    stage.sim.state.faults.clear();
    let lost = stage.campaign("rollout").await.unwrap();
    assert!(
        last_wave_intent_only(&lost, 3),
        "wave 2's start was recorded, its vendor ID was not: {:?}",
        lost.status
    );

    // 4. While soaking after the third wave.
    let operator = stage.operator().await;
    wait_soaking_after(&stage, 3).await;
    operator.kill().await;

    // 5. To the end.
    let operator = stage.operator().await;
    let done = wait_phase(&stage, "rollout", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.counts.as_ref().unwrap().succeeded, 8);
    let rollouts = vendor_rollouts(&stage, vendor);
    assert_eq!(
        rollouts.len(),
        4,
        "{vendor:?}: one vendor rollout per wave across four crashes: {rollouts:?}"
    );
    for wave in &status.waves {
        assert!(
            rollouts
                .iter()
                .any(|(_, id, _)| Some(id.as_str()) == wave.vendor_id.as_deref()),
            "{vendor:?}: wave {} recorded its vendor rollout",
            wave.index
        );
    }
    let events = events(&stage, "rollout").await;
    assert!(event_count(&events, "WaveAdopted") >= 1, "{events:?}");
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn thingspace_killed_at_each_step_starts_no_wave_twice() {
    killed_at_each_step_starts_no_wave_twice(Vendor::ThingSpace).await;
}

#[tokio::test]
async fn iotda_killed_at_each_step_starts_no_wave_twice() {
    killed_at_each_step_starts_no_wave_twice(Vendor::Iotda).await;
}

/// 10,000 devices in waves of 10%, 50% and 100%: each wave is one vendor rollout, and its
/// progress is read in pages, never per device.
async fn ten_thousand_devices(vendor: Vendor) {
    let (stage, operator) = stage(vendor, sim_config(&[])).await;
    let ids = devices("dev", 10_000);
    campaign(
        &stage,
        "big",
        &ids,
        "  strategy:\n    waves: {percentages: [10, 50, 100]}",
    )
    .await;
    let done = wait_phase(&stage, "big", CampaignPhase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.counts.as_ref().unwrap().succeeded, 10_000);
    assert_eq!(
        status.waves.iter().map(|w| w.devices).collect::<Vec<_>>(),
        [1000, 4000, 5000]
    );
    assert_eq!(rollout_creations(&stage, vendor), 3);
    let size = serde_json::to_vec(&status).unwrap().len();
    assert!(size < 16 * 1024, "status of {size} bytes");
    match vendor {
        Vendor::ThingSpace => {
            // Each poll reads the campaign once and its device report in pages of 1,000.
            let pages_per_poll: u64 = [1000u64, 4000, 5000].iter().map(|n| n.div_ceil(1000)).sum();
            let reports = stage.calls("GET", |r| {
                r.ends_with("/devices") && r.contains("/reports/")
            });
            assert!(
                (pages_per_poll..=2 * pages_per_poll).contains(&reports),
                "{reports} report pages for {pages_per_poll} pages of progress"
            );
            let polls = stage.calls("GET", |r| r.contains("/fota/v2/campaigns/{acc}/{campaign}"));
            assert!(
                (3..=6).contains(&polls),
                "{polls} campaign reads for 3 waves"
            );
        }
        _ => {
            // One call per poll, whatever the size of the task.
            let polls = stage.calls("GET", |r| r.ends_with("/batchtasks/{task_id}"));
            assert!((3..=6).contains(&polls), "{polls} task reads for 3 waves");
        }
    }
    operator.shutdown().await.unwrap();
}

#[tokio::test]
async fn ten_thousand_devices_on_thingspace_cost_paged_calls_only() {
    ten_thousand_devices(Vendor::ThingSpace).await;
}

#[tokio::test]
async fn ten_thousand_devices_on_iotda_cost_one_call_per_poll() {
    ten_thousand_devices(Vendor::Iotda).await;
}
