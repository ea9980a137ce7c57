//! Behaviour of the campaign decision, step by step as a user would watch it.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::{prop_assert_eq, proptest};

use super::*;
use crate::api::{
    GoDuration, LocalObjectReference, Schedule, Strategy, ThingSpaceCampaignOptions, Waves,
};
use crate::reconcile::conditions::is_condition_true;

const UID: &str = "5c6e1f0a-1234-4bcd-9ef0-0123456789ab";
const BASE: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(BASE + seconds).unwrap()
}

fn time(seconds: i64) -> Time {
    Time(at(seconds))
}

fn device_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{:015}", 990_000_000_000_000u64 + i as u64))
        .collect()
}

fn spec(count: usize, strategy: Strategy) -> UpgradeCampaignSpec {
    UpgradeCampaignSpec {
        package_ref: LocalObjectReference::new("fw-2"),
        devices: device_ids(count),
        strategy: Some(strategy),
        ..UpgradeCampaignSpec::default()
    }
}

fn percentages(values: &[i32]) -> Option<Waves> {
    Some(Waves {
        percentages: Some(values.to_vec()),
        size: None,
    })
}

fn wave_size(size: i32) -> Option<Waves> {
    Some(Waves {
        percentages: None,
        size: Some(size),
    })
}

fn duration(text: &str) -> Option<GoDuration> {
    Some(GoDuration(text.to_owned()))
}

fn ready_package() -> PackageReadiness {
    PackageReadiness::Ready {
        vendor: Vendor::Iotda,
        version: "2.0.0".to_owned(),
    }
}

/// What the vendor reports for wave `index`: (pending, in progress, succeeded, failed).
fn seen(
    index: usize,
    pending: u64,
    in_progress: u64,
    succeeded: u64,
    failed: u64,
) -> WaveObservation {
    WaveObservation {
        index,
        exists: true,
        vendor_id: Some(vendor_id(index)),
        counts: ObservedCounts {
            pending,
            in_progress,
            succeeded,
            failed,
            ..ObservedCounts::default()
        },
        ..WaveObservation::default()
    }
}

fn with_failures(
    mut observation: WaveObservation,
    devices: &[String],
    reason: &str,
) -> WaveObservation {
    observation.failed_devices = devices
        .iter()
        .map(|device| ObservedFailure {
            device: device.clone(),
            reason: reason.to_owned(),
        })
        .collect();
    observation
}

fn vendor_id(index: usize) -> String {
    format!("task-{index}")
}

/// The controller around [`decide`]: records vendor IDs, keeps the status, and checks at every
/// step that deciding again on its own output changes nothing (a restart is harmless).
struct Campaign {
    spec: UpgradeCampaignSpec,
    generation: i64,
    status: Option<UpgradeCampaignStatus>,
    package: PackageReadiness,
    deleting: bool,
    polling: PollIntervals,
}

impl Campaign {
    fn new(spec: UpgradeCampaignSpec) -> Self {
        Self {
            spec,
            generation: 1,
            status: None,
            package: ready_package(),
            deleting: false,
            polling: PollIntervals::default(),
        }
    }

    fn edit(&mut self, change: impl FnOnce(&mut UpgradeCampaignSpec)) {
        change(&mut self.spec);
        self.generation += 1;
    }

    fn decide_raw(&self, seconds: i64, observations: &[WaveObservation]) -> Decision {
        decide(&CampaignInput {
            spec: &self.spec,
            generation: Some(self.generation),
            uid: UID,
            deleting: self.deleting,
            status: self.status.as_ref(),
            now: at(seconds),
            package: self.package.clone(),
            observations,
            polling: self.polling,
        })
    }

    fn step(&mut self, seconds: i64, observations: &[WaveObservation]) -> Decision {
        let mut decision = self.decide_raw(seconds, observations);
        for action in decision.actions.clone() {
            if let Action::StartWave { index, .. } = action {
                decision.record_vendor_id(index, vendor_id(index));
            }
        }
        assert_counts_add_up(&decision.status);
        assert_eq!(decision.status.observed_generation, Some(self.generation));
        self.status = Some(decision.status.clone());

        let again = self.decide_raw(seconds, observations);
        assert!(
            again.actions.is_empty(),
            "a replay acted again: {:?}",
            again.actions
        );
        assert!(
            again.events.is_empty(),
            "a replay told again: {:?}",
            again.events
        );
        assert_eq!(
            Some(&again.status),
            self.status.as_ref(),
            "a replay changed the status"
        );
        decision
    }

    fn status(&self) -> &UpgradeCampaignStatus {
        self.status.as_ref().unwrap()
    }

    fn phase(&self) -> CampaignPhase {
        self.status().phase.unwrap()
    }

    fn reason(&self) -> &str {
        condition_reason(&self.status().conditions, PROGRESSING).unwrap()
    }

    fn counts(&self) -> DeviceCounts {
        self.status().counts.clone().unwrap()
    }
}

fn assert_counts_add_up(status: &UpgradeCampaignStatus) {
    let counts = status.counts.as_ref().expect("counts are always reported");
    assert_eq!(
        counts.pending + counts.in_progress + counts.succeeded + counts.failed + counts.skipped,
        counts.total,
        "every device is in exactly one bucket: {counts:?}"
    );
    for wave in &status.waves {
        let c = &wave.counts;
        assert_eq!(
            c.pending + c.in_progress + c.succeeded + c.failed + c.skipped,
            wave.devices
        );
    }
    assert_eq!(
        status.progress.as_deref(),
        Some(format!("{}/{}", counts.succeeded, counts.total).as_str())
    );
    assert!(status.failed_devices.len() <= MAX_FAILED_DEVICES_LISTED);
}

fn started(decision: &Decision) -> Vec<(usize, Range<usize>)> {
    decision
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::StartWave { index, devices, .. } => Some((*index, devices.clone())),
            _ => None,
        })
        .collect()
}

fn event_reasons(decision: &Decision) -> Vec<&'static str> {
    decision.events.iter().map(|event| event.reason).collect()
}

#[test]
fn three_wave_campaign_runs_to_success_with_soak_between_waves() {
    let mut campaign = Campaign::new(spec(
        30,
        Strategy {
            waves: percentages(&[10, 50, 100]),
            soak_time: duration("2m"),
            ..Strategy::default()
        },
    ));

    let first = campaign.step(0, &[]);
    assert_eq!(started(&first), vec![(0, 0..3)]);
    let Action::StartWave { name, .. } = &first.actions[0] else {
        unreachable!()
    };
    assert_eq!(name, &wave_name(UID, 0));
    assert_eq!(event_reasons(&first), [reasons::WAVE_STARTED]);
    assert_eq!(campaign.phase(), CampaignPhase::Running);
    assert_eq!(campaign.status().progress.as_deref(), Some("0/30"));
    assert_eq!(campaign.status().started_at, Some(time(0)));
    assert_eq!(
        campaign.status().waves[0].vendor_id.as_deref(),
        Some("task-0")
    );
    assert!(is_condition_true(
        &campaign.status().conditions,
        PROGRESSING
    ));
    assert!(is_condition_true(
        &campaign.status().conditions,
        RECONCILING
    ));
    assert!(!is_condition_true(&campaign.status().conditions, READY));
    assert_eq!(first.requeue_after, Some(Duration::from_secs(15)));

    let moving = campaign.step(15, &[seen(0, 0, 1, 2, 0)]);
    assert!(moving.actions.is_empty());
    assert_eq!(campaign.status().progress.as_deref(), Some("2/30"));
    assert_eq!(
        moving.requeue_after,
        Some(Duration::from_secs(15)),
        "devices moved: poll soon"
    );
    let still = campaign.step(30, &[seen(0, 0, 1, 2, 0)]);
    assert_eq!(
        still.requeue_after,
        Some(Duration::from_secs(60)),
        "nothing moved: poll slower"
    );

    let wave_done = campaign.step(45, &[seen(0, 0, 0, 3, 0)]);
    assert!(
        wave_done.actions.is_empty(),
        "the next wave waits for the soak time"
    );
    assert_eq!(event_reasons(&wave_done), [reasons::WAVE_FINISHED]);
    assert_eq!(campaign.reason(), reasons::SOAKING);
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Succeeded);
    assert_eq!(
        wave_done.requeue_after,
        Some(Duration::from_secs(120)),
        "wake at soak end"
    );
    assert_eq!(
        campaign.step(100, &[]).requeue_after,
        Some(Duration::from_secs(65))
    );

    let second = campaign.step(165, &[]);
    assert_eq!(started(&second), vec![(1, 3..15)]);
    assert_eq!(campaign.status().current_wave, Some(1));
    campaign.step(200, &[seen(1, 0, 0, 12, 0)]);
    let third = campaign.step(320, &[]);
    assert_eq!(started(&third), vec![(2, 15..30)]);

    let last = campaign.step(400, &[seen(2, 0, 0, 15, 0)]);
    assert_eq!(
        event_reasons(&last),
        [reasons::WAVE_FINISHED, reasons::COMPLETED]
    );
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
    assert_eq!(campaign.status().progress.as_deref(), Some("30/30"));
    assert_eq!(campaign.status().completed_at, Some(time(400)));
    assert!(is_condition_true(&campaign.status().conditions, READY));
    assert!(!is_condition_true(
        &campaign.status().conditions,
        RECONCILING
    ));
    assert!(!is_condition_true(&campaign.status().conditions, STALLED));
    assert_eq!(last.requeue_after, None);

    let later = campaign.step(10_000, &[]);
    assert!(later.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
}

#[test]
fn percentages_1_10_50_100_over_7_devices_run_three_waves() {
    let mut campaign = Campaign::new(spec(
        7,
        Strategy {
            waves: percentages(&[1, 10, 50, 100]),
            ..Strategy::default()
        },
    ));
    assert_eq!(started(&campaign.step(0, &[])), vec![(0, 0..1)]);
    assert_eq!(
        started(&campaign.step(10, &[seen(0, 0, 0, 1, 0)])),
        vec![(1, 1..4)]
    );
    assert_eq!(
        started(&campaign.step(20, &[seen(1, 0, 0, 3, 0)])),
        vec![(2, 4..7)]
    );
    campaign.step(30, &[seen(2, 0, 0, 3, 0)]);
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
    assert_eq!(campaign.status().waves.len(), 3);
}

fn two_waves_of_ten(max_failures: IntOrString, on_failure: FailureAction) -> Campaign {
    Campaign::new(spec(
        20,
        Strategy {
            waves: wave_size(10),
            max_failures: Some(max_failures),
            on_failure: Some(on_failure),
            ..Strategy::default()
        },
    ))
}

#[test]
fn crossed_threshold_pauses_then_raising_the_threshold_resumes() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(1), FailureAction::Pause);
    let devices = campaign.spec.devices.clone();
    campaign.step(0, &[]);
    let failed = with_failures(
        seen(0, 0, 0, 8, 2),
        &devices[3..5],
        "RovaClientDownloadFailed",
    );

    let paused = campaign.step(60, std::slice::from_ref(&failed));
    assert!(
        paused.actions.is_empty(),
        "the wave already finished: nothing to stop"
    );
    assert_eq!(
        event_reasons(&paused),
        [reasons::WAVE_FINISHED, reasons::PAUSED]
    );
    assert_eq!(paused.events[1].type_, EventType::Warning);
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.reason(), reasons::FAILURE_THRESHOLD_EXCEEDED);
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Failed);
    assert_eq!(campaign.counts().failed, 2);
    assert_eq!(
        campaign.status().failed_devices,
        vec![
            FailedDevice {
                device: devices[3].clone(),
                wave: 0,
                reason: "RovaClientDownloadFailed".into()
            },
            FailedDevice {
                device: devices[4].clone(),
                wave: 0,
                reason: "RovaClientDownloadFailed".into()
            },
        ]
    );
    assert!(!is_condition_true(&campaign.status().conditions, STALLED));
    assert_eq!(
        paused.requeue_after, None,
        "nothing to wait for but the user"
    );

    assert!(campaign.step(3600, &[]).actions.is_empty(), "stays paused");
    assert_eq!(campaign.phase(), CampaignPhase::Paused);

    campaign.edit(|spec| {
        spec.strategy.as_mut().unwrap().max_failures = Some(IntOrString::String("20%".into()))
    });
    let resumed = campaign.step(3700, &[]);
    assert_eq!(started(&resumed), vec![(1, 10..20)]);
    assert_eq!(
        event_reasons(&resumed),
        [reasons::RESUMED, reasons::WAVE_STARTED]
    );
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Succeeded);
    campaign.step(3800, &[seen(1, 0, 0, 10, 0)]);
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
    assert_eq!(campaign.status().progress.as_deref(), Some("18/20"));
}

#[test]
fn crossed_threshold_mid_wave_pauses_and_stops_the_running_wave() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(2), FailureAction::Pause);
    campaign.step(0, &[]);
    let paused = campaign.step(60, &[seen(0, 5, 0, 2, 3)]);
    assert_eq!(
        paused.actions,
        vec![Action::StopWave {
            index: 0,
            name: wave_name(UID, 0),
            vendor_id: vendor_id(0)
        }]
    );
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Failed);
    assert!(campaign.status().waves[0].completed_at.is_none());
    assert!(
        paused.requeue_after.is_some(),
        "the stopped wave is still watched"
    );
}

#[test]
fn crossed_threshold_with_abort_cancels_the_wave_and_fails() {
    let mut campaign = two_waves_of_ten(IntOrString::String("10%".into()), FailureAction::Abort);
    campaign.step(0, &[]);
    let aborted = campaign.step(60, &[seen(0, 4, 2, 2, 2)]);
    assert_eq!(
        aborted.actions,
        vec![Action::CancelWave {
            index: 0,
            name: wave_name(UID, 0),
            vendor_id: Some(vendor_id(0)),
            reason: CancelReason::FailureThresholdExceeded,
        }]
    );
    assert_eq!(event_reasons(&aborted), [reasons::ABORTED]);
    assert_eq!(campaign.phase(), CampaignPhase::Failed);
    assert_eq!(campaign.status().completed_at, Some(time(60)));
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Failed);
    let counts = campaign.counts();
    assert_eq!(
        (
            counts.succeeded,
            counts.failed,
            counts.skipped,
            counts.pending
        ),
        (2, 2, 6, 10)
    );
    let conditions = &campaign.status().conditions;
    assert!(is_condition_true(conditions, STALLED));
    assert_eq!(
        condition_reason(conditions, STALLED),
        Some(reasons::FAILURE_THRESHOLD_EXCEEDED)
    );
    assert!(!is_condition_true(conditions, READY));
    assert_eq!(aborted.requeue_after, None);

    campaign.edit(|spec| spec.suspend = Some(true));
    campaign.edit(|spec| spec.suspend = Some(false));
    assert!(
        campaign.step(600, &[]).actions.is_empty(),
        "a failed campaign stays failed"
    );
    assert_eq!(campaign.phase(), CampaignPhase::Failed);
}

#[test]
fn suspend_toggle_after_a_failure_pause_goes_on_with_the_next_wave() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(0), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.step(60, &[seen(0, 0, 0, 9, 1)]);
    assert_eq!(campaign.reason(), reasons::FAILURE_THRESHOLD_EXCEEDED);

    campaign.edit(|spec| spec.suspend = Some(true));
    let suspended = campaign.step(120, &[]);
    assert!(suspended.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.reason(), reasons::SUSPENDED);
    campaign.step(180, &[]);
    assert_eq!(campaign.reason(), reasons::SUSPENDED, "stays suspended");

    campaign.edit(|spec| spec.suspend = Some(false));
    let resumed = campaign.step(240, &[]);
    assert_eq!(started(&resumed), vec![(1, 10..20)]);
    assert_eq!(campaign.phase(), CampaignPhase::Running);
    assert_eq!(
        campaign.status().waves[0].phase,
        WavePhase::Failed,
        "the wave's outcome stays"
    );
    campaign.step(300, &[seen(1, 0, 3, 7, 0)]);
    assert_eq!(
        campaign.phase(),
        CampaignPhase::Running,
        "the acknowledged failure does not pause again"
    );
    campaign.step(360, &[seen(1, 0, 0, 10, 0)]);
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
}

#[test]
fn unsuspending_does_not_acknowledge_a_failure_that_happened_while_suspended() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(0), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.edit(|spec| spec.suspend = Some(true));
    campaign.step(30, &[seen(0, 5, 0, 5, 0)]);
    assert_eq!(campaign.reason(), reasons::SUSPENDED);

    let mut stopped = seen(0, 0, 0, 5, 1);
    stopped.counts.cancelled = 4;
    campaign.step(60, &[stopped]);
    assert_eq!(campaign.reason(), reasons::FAILURE_THRESHOLD_EXCEEDED);
    campaign.step(90, &[]);
    assert_eq!(
        campaign.reason(),
        reasons::FAILURE_THRESHOLD_EXCEEDED,
        "no edit, no acknowledgement"
    );

    campaign.edit(|spec| spec.suspend = Some(false));
    assert!(campaign.step(120, &[]).actions.is_empty());
    assert_eq!(campaign.reason(), reasons::FAILURE_THRESHOLD_EXCEEDED);

    campaign.edit(|spec| spec.suspend = Some(true));
    campaign.step(150, &[]);
    assert_eq!(campaign.reason(), reasons::SUSPENDED);
    campaign.edit(|spec| spec.suspend = Some(false));
    assert_eq!(started(&campaign.step(180, &[])), vec![(1, 10..20)]);
}

#[test]
fn suspend_stops_the_running_wave_and_resume_starts_the_next() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.step(30, &[seen(0, 4, 3, 3, 0)]);

    campaign.edit(|spec| spec.suspend = Some(true));
    let paused = campaign.step(60, &[seen(0, 4, 3, 3, 0)]);
    assert_eq!(
        paused.actions,
        vec![Action::StopWave {
            index: 0,
            name: wave_name(UID, 0),
            vendor_id: vendor_id(0)
        }]
    );
    assert_eq!(event_reasons(&paused), [reasons::PAUSED]);
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.reason(), reasons::SUSPENDED);
    assert!(!is_condition_true(
        &campaign.status().conditions,
        PROGRESSING
    ));

    let mut stopped = seen(0, 0, 0, 4, 0);
    stopped.counts.cancelled = 6;
    let finished = campaign.step(90, &[stopped]);
    assert!(finished.actions.is_empty(), "suspended: no new wave");
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Cancelled);
    assert_eq!(
        campaign.counts().skipped,
        6,
        "stopped devices count as cancelled"
    );
    assert_eq!(campaign.phase(), CampaignPhase::Paused);

    campaign.edit(|spec| spec.suspend = Some(false));
    let resumed = campaign.step(120, &[]);
    assert_eq!(started(&resumed), vec![(1, 10..20)]);
    assert_eq!(
        event_reasons(&resumed),
        [reasons::RESUMED, reasons::WAVE_STARTED]
    );
    campaign.step(180, &[seen(1, 0, 0, 10, 0)]);
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
    assert_eq!(campaign.status().progress.as_deref(), Some("14/20"));
}

#[test]
fn suspend_where_the_vendor_cannot_stop_lets_the_wave_finish_while_paused() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.edit(|spec| spec.suspend = Some(true));
    campaign.step(30, &[seen(0, 5, 5, 0, 0)]);
    let finished = campaign.step(60, &[seen(0, 0, 0, 10, 0)]);
    assert!(finished.actions.is_empty());
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Succeeded);
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    campaign.edit(|spec| spec.suspend = Some(false));
    assert_eq!(started(&campaign.step(90, &[])), vec![(1, 10..20)]);
}

#[test]
fn devices_past_device_timeout_count_as_failed_and_are_cancelled() {
    let mut campaign = Campaign::new(spec(
        5,
        Strategy {
            device_timeout: duration("1h"),
            max_failures: Some(IntOrString::String("50%".into())),
            ..Strategy::default()
        },
    ));
    campaign.polling = PollIntervals {
        active: Duration::from_secs(7200),
        idle: Duration::from_secs(7200),
        waiting: Duration::from_secs(7200),
    };
    let devices = campaign.spec.devices.clone();
    campaign.step(0, &[]);
    let waiting = campaign.step(3000, &[seen(0, 1, 1, 3, 0)]);
    assert_eq!(
        waiting.requeue_after,
        Some(Duration::from_secs(600)),
        "wake at the device deadline"
    );

    let mut late = seen(0, 1, 1, 3, 0);
    late.unfinished_sample = devices[3..5].to_vec();
    let timed_out = campaign.step(3600, &[late]);
    assert_eq!(
        timed_out.actions,
        vec![Action::CancelWave {
            index: 0,
            name: wave_name(UID, 0),
            vendor_id: Some(vendor_id(0)),
            reason: CancelReason::DeviceTimeout,
        }]
    );
    assert_eq!(
        event_reasons(&timed_out),
        [
            reasons::DEVICES_TIMED_OUT,
            reasons::WAVE_FINISHED,
            reasons::COMPLETED
        ]
    );
    let listed: Vec<(&str, &str)> = campaign
        .status()
        .failed_devices
        .iter()
        .map(|f| (f.device.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (devices[3].as_str(), "TimedOut"),
            (devices[4].as_str(), "TimedOut")
        ]
    );
    assert_eq!(campaign.counts().failed, 2);
    assert_eq!(
        campaign.phase(),
        CampaignPhase::Succeeded,
        "2 failures are within 50% of 5"
    );
}

#[test]
fn timed_out_devices_beyond_the_threshold_pause_the_campaign() {
    let mut campaign = Campaign::new(spec(
        10,
        Strategy {
            waves: wave_size(5),
            device_timeout: duration("30m"),
            ..Strategy::default()
        },
    ));
    campaign.step(0, &[]);
    campaign.step(1800, &[seen(0, 0, 1, 4, 0)]);
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.reason(), reasons::FAILURE_THRESHOLD_EXCEEDED);
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Failed);
}

#[test]
fn a_campaign_scheduled_in_the_future_waits_for_start_at() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.spec.schedule = Some(Schedule {
        start_at: Some(time(3600)),
        end_at: None,
    });
    let scheduled = campaign.step(0, &[]);
    assert!(scheduled.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Scheduled);
    assert_eq!(campaign.counts().pending, 4);
    assert_eq!(scheduled.requeue_after, Some(Duration::from_secs(300)));
    assert_eq!(
        campaign.step(3500, &[]).requeue_after,
        Some(Duration::from_secs(100))
    );
    assert_eq!(started(&campaign.step(3600, &[])), vec![(0, 0..4)]);
    assert_eq!(campaign.status().started_at, Some(time(3600)));
}

#[test]
fn a_package_that_is_not_ready_keeps_the_campaign_pending() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.spec.schedule = Some(Schedule {
        start_at: Some(time(3600)),
        end_at: None,
    });
    campaign.package = PackageReadiness::Missing;
    assert!(campaign.step(0, &[]).actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Pending);
    assert_eq!(campaign.reason(), reasons::PACKAGE_NOT_FOUND);

    campaign.package = PackageReadiness::NotReady {
        reason: "ChecksumMismatch".into(),
    };
    campaign.step(10, &[]);
    assert_eq!(campaign.phase(), CampaignPhase::Pending);
    assert_eq!(campaign.reason(), reasons::PACKAGE_NOT_READY);
    let ready = campaign
        .status()
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .unwrap();
    assert!(ready.message.contains("ChecksumMismatch"));
    assert!(
        !is_condition_true(&campaign.status().conditions, STALLED),
        "it may become Ready"
    );

    campaign.package = ready_package();
    campaign.step(20, &[]);
    assert_eq!(campaign.phase(), CampaignPhase::Scheduled);
}

#[test]
fn a_package_that_stops_being_ready_holds_the_next_wave() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.package = PackageReadiness::NotReady {
        reason: "Reconciling".into(),
    };
    let held = campaign.step(60, &[seen(0, 0, 0, 10, 0)]);
    assert!(held.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Running);
    assert_eq!(campaign.reason(), reasons::WAITING_FOR_PACKAGE);
    campaign.package = ready_package();
    assert_eq!(started(&campaign.step(120, &[])), vec![(1, 10..20)]);
}

#[test]
fn end_at_mid_run_cancels_the_running_wave_and_starts_nothing() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.spec.schedule = Some(Schedule {
        start_at: None,
        end_at: Some(time(3600)),
    });
    campaign.polling.waiting = Duration::from_secs(7200);
    campaign.step(0, &[]);
    campaign.step(1800, &[seen(0, 0, 0, 10, 0)]);
    assert_eq!(campaign.status().current_wave, Some(1));
    campaign.polling.idle = Duration::from_secs(7200);
    let before_end = campaign.step(3000, &[]);
    assert_eq!(
        before_end.requeue_after,
        Some(Duration::from_secs(600)),
        "wake at endAt"
    );

    let ended = campaign.step(3600, &[seen(1, 2, 3, 5, 0)]);
    assert_eq!(
        ended.actions,
        vec![Action::CancelWave {
            index: 1,
            name: wave_name(UID, 1),
            vendor_id: Some(vendor_id(1)),
            reason: CancelReason::DeadlineExceeded,
        }]
    );
    assert_eq!(event_reasons(&ended), [reasons::DEADLINE_EXCEEDED]);
    assert_eq!(ended.events[0].type_, EventType::Warning);
    assert_eq!(campaign.phase(), CampaignPhase::Cancelled);
    assert_eq!(
        condition_reason(&campaign.status().conditions, READY),
        Some(reasons::DEADLINE_EXCEEDED)
    );
    assert_eq!(campaign.status().waves[1].phase, WavePhase::Cancelled);
    let counts = campaign.counts();
    assert_eq!(
        (counts.succeeded, counts.skipped, counts.pending),
        (15, 5, 0)
    );
    assert_eq!(campaign.status().completed_at, Some(time(3600)));
    assert!(campaign.step(4000, &[]).actions.is_empty());
}

#[test]
fn end_at_before_the_package_is_ready_cancels_the_campaign() {
    let mut campaign = Campaign::new(spec(3, Strategy::default()));
    campaign.spec.schedule = Some(Schedule {
        start_at: None,
        end_at: Some(time(60)),
    });
    campaign.package = PackageReadiness::Missing;
    campaign.step(0, &[]);
    assert_eq!(campaign.phase(), CampaignPhase::Pending);
    let ended = campaign.step(60, &[]);
    assert!(ended.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Cancelled);
}

#[test]
fn deleting_mid_run_cancels_the_running_wave_then_releases() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.step(60, &[seen(0, 0, 0, 10, 0)]);
    campaign.deleting = true;
    let deleting = campaign.step(90, &[seen(1, 5, 5, 0, 0)]);
    assert_eq!(
        deleting.actions,
        vec![Action::CancelWave {
            index: 1,
            name: wave_name(UID, 1),
            vendor_id: Some(vendor_id(1)),
            reason: CancelReason::Deleted,
        }]
    );
    assert!(deleting.finalize);
    assert_eq!(event_reasons(&deleting), [reasons::CANCELLING]);
    assert_eq!(campaign.phase(), CampaignPhase::Cancelled);
    assert!(started(&deleting).is_empty());
}

#[test]
fn deleting_a_wave_whose_start_was_never_recorded_cancels_it_by_name() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    let first = campaign.decide_raw(0, &[]);
    campaign.status = Some(first.status);
    campaign.deleting = true;
    let deleting = campaign.step(10, &[]);
    assert_eq!(
        deleting.actions,
        vec![Action::CancelWave {
            index: 0,
            name: wave_name(UID, 0),
            vendor_id: None,
            reason: CancelReason::Deleted,
        }]
    );
    assert!(deleting.finalize);
}

#[test]
fn deleting_before_anything_started_releases_at_once() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.package = PackageReadiness::Missing;
    campaign.step(0, &[]);
    campaign.deleting = true;
    let deleting = campaign.step(10, &[]);
    assert!(deleting.actions.is_empty());
    assert!(deleting.finalize);
}

#[test]
fn a_start_lost_in_a_crash_is_retried_under_the_same_name_and_adopted_when_found() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    // The operator died after creating the rollout, before recording its vendor ID.
    let first = campaign.decide_raw(0, &[]);
    assert_eq!(started(&first), vec![(0, 0..4)]);
    campaign.status = Some(first.status.clone());

    let retried = campaign.decide_raw(30, &[]);
    assert_eq!(
        retried.actions, first.actions,
        "same wave, same name, same devices"
    );
    assert!(retried.events.is_empty(), "the wave was announced once");
    assert_eq!(retried.status.waves[0].started_at, Some(time(0)));

    let mut found = seen(0, 1, 1, 2, 0);
    found.vendor_id = Some("found-by-name".into());
    let adopted = campaign.step(30, &[found]);
    assert!(adopted.actions.is_empty());
    assert!(
        event_reasons(&adopted).contains(&reasons::WAVE_ADOPTED),
        "{:?}",
        adopted.events
    );
    assert_eq!(
        campaign.status().waves[0].vendor_id.as_deref(),
        Some("found-by-name")
    );
    assert_eq!(campaign.counts().succeeded, 2);
}

#[test]
fn a_wave_with_a_vendor_id_is_never_started_again() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.step(0, &[]);
    for seconds in [10, 20, 3600, 86_400] {
        assert!(campaign.step(seconds, &[]).actions.is_empty());
        assert!(
            campaign
                .step(seconds, &[seen(0, 2, 2, 0, 0)])
                .actions
                .is_empty()
        );
    }
}

#[test]
fn a_rollout_deleted_vendor_side_is_not_recreated() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.step(30, &[seen(0, 2, 2, 6, 0)]);
    let gone = WaveObservation {
        index: 0,
        exists: false,
        ..WaveObservation::default()
    };
    let decision = campaign.step(60, &[gone]);
    assert_eq!(event_reasons(&decision)[0], reasons::VENDOR_ROLLOUT_MISSING);
    assert_eq!(campaign.status().waves[0].phase, WavePhase::Cancelled);
    assert_eq!(
        campaign.status().waves[0].vendor_id.as_deref(),
        Some("task-0")
    );
    assert_eq!(campaign.counts().skipped, 4);
    assert_eq!(
        started(&decision),
        vec![(1, 10..20)],
        "the campaign goes on with the next wave"
    );
}

#[test]
fn a_package_of_another_vendor_is_a_stalled_spec_error() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.spec.thingspace = Some(ThingSpaceCampaignOptions::default());
    let stalled = campaign.step(0, &[]);
    assert!(stalled.actions.is_empty());
    assert_eq!(event_reasons(&stalled), [reasons::INVALID_SPEC]);
    assert_eq!(campaign.phase(), CampaignPhase::Pending);
    let conditions = &campaign.status().conditions;
    assert!(is_condition_true(conditions, STALLED));
    assert_eq!(
        condition_reason(conditions, STALLED),
        Some("VendorMismatch")
    );
    let message = &conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .unwrap()
        .message;
    assert!(
        message.contains("IoTDA") && message.contains("ThingSpace"),
        "{message}"
    );
    assert!(campaign.step(60, &[]).events.is_empty(), "said once");

    campaign.edit(|spec| spec.thingspace = None);
    assert_eq!(started(&campaign.step(120, &[])), vec![(0, 0..4)]);
    assert!(!is_condition_true(&campaign.status().conditions, STALLED));
}

#[test]
fn an_unreadable_duration_is_a_stalled_spec_error() {
    let mut campaign = Campaign::new(spec(
        4,
        Strategy {
            soak_time: duration("soon"),
            ..Strategy::default()
        },
    ));
    campaign.step(0, &[]);
    assert_eq!(
        condition_reason(&campaign.status().conditions, STALLED),
        Some("InvalidDuration")
    );
    assert!(is_condition_true(&campaign.status().conditions, STALLED));
}

#[test]
fn an_unchanged_reconcile_writes_nothing_and_keeps_transition_times() {
    let mut campaign = two_waves_of_ten(IntOrString::Int(5), FailureAction::Pause);
    campaign.step(0, &[]);
    campaign.step(30, &[seen(0, 5, 5, 0, 0)]);
    let before = campaign.status().clone();
    let later = campaign.decide_raw(9000, &[seen(0, 5, 5, 0, 0)]);
    assert!(
        !later.status_changed(Some(&before)),
        "same observations, later: same status"
    );
    assert_eq!(
        serde_json::to_string(&later.status).unwrap(),
        serde_json::to_string(&before).unwrap()
    );

    campaign.edit(|spec| spec.strategy.as_mut().unwrap().soak_time = duration("5m"));
    campaign.step(9100, &[seen(0, 5, 5, 0, 0)]);
    for condition in &campaign.status().conditions {
        assert_eq!(condition.observed_generation, Some(2));
        assert_eq!(
            condition.last_transition_time,
            time(0),
            "{} did not transition",
            condition.type_
        );
    }
}

#[test]
fn the_failed_device_list_keeps_the_first_fifty_failures() {
    let mut campaign = Campaign::new(spec(
        200,
        Strategy {
            waves: wave_size(100),
            max_failures: Some(IntOrString::String("100%".into())),
            ..Strategy::default()
        },
    ));
    let devices = campaign.spec.devices.clone();
    campaign.step(0, &[]);
    let first = with_failures(seen(0, 0, 60, 0, 40), &devices[0..40], "UpgradeFailed");
    campaign.step(10, std::slice::from_ref(&first));
    assert_eq!(campaign.status().failed_devices.len(), 40);
    let more = with_failures(seen(0, 0, 0, 0, 100), &devices[0..50], "UpgradeFailed");
    campaign.step(20, &[more]);
    let second = with_failures(seen(1, 0, 0, 50, 50), &devices[100..150], "Other");
    campaign.step(30, &[second]);
    let listed = &campaign.status().failed_devices;
    assert_eq!(listed.len(), MAX_FAILED_DEVICES_LISTED);
    assert!(
        listed.iter().all(|f| f.wave == 0),
        "first failures are kept"
    );
    assert_eq!(listed[0].device, devices[0]);
    assert_eq!(listed[49].device, devices[49]);
    assert_eq!(campaign.counts().failed, 150, "the count stays exact");
}

#[test]
fn status_for_100000_devices_in_10_waves_stays_under_16_kib() {
    let count = crate::api::MAX_DEVICES;
    let mut campaign = Campaign::new(spec(
        count,
        Strategy {
            waves: percentages(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
            max_failures: Some(IntOrString::String("5%".into())),
            soak_time: duration("30m"),
            device_timeout: duration("24h"),
            ..Strategy::default()
        },
    ));
    let devices = campaign.spec.devices.clone();
    let reason = "Current device software version does not meet software prerequisites. ".repeat(4);
    let mut largest = 0;
    let mut now = 0;
    campaign.step(now, &[]);
    for wave in 0..10 {
        let range = wave * 10_000..(wave + 1) * 10_000;
        let observed = with_failures(
            seen(wave, 0, 0, 9_500, 400),
            &devices[range.start..range.start + 50],
            &reason,
        );
        let mut observed = observed;
        observed.counts.skipped = 100;
        now += 600;
        campaign.step(now, &[observed]);
        largest = largest.max(serde_json::to_vec(campaign.status()).unwrap().len());
        now += 1800;
        campaign.step(now, &[]);
        largest = largest.max(serde_json::to_vec(campaign.status()).unwrap().len());
    }
    assert_eq!(campaign.phase(), CampaignPhase::Succeeded);
    assert_eq!(campaign.status().waves.len(), 10);
    assert_eq!(campaign.counts().failed, 4_000);
    assert_eq!(
        campaign.status().failed_devices[0].reason.chars().count(),
        MAX_REASON_CHARS
    );
    assert!(largest < 16 * 1024, "largest status is {largest} bytes");
}

proptest! {
    #[test]
    fn normalized_counts_put_every_device_in_one_bucket(
        size in 0u64..100_000,
        pending in 0u64..60_000,
        in_progress in 0u64..60_000,
        succeeded in 0u64..60_000,
        failed in 0u64..60_000,
        cancelled in 0u64..60_000,
        skipped in 0u64..60_000,
    ) {
        let observed = ObservedCounts { pending, in_progress, succeeded, failed, cancelled, skipped };
        let counts = normalize(&observed, size);
        prop_assert_eq!(
            counts.pending + counts.in_progress + counts.succeeded + counts.failed + counts.skipped,
            size as i64
        );
        prop_assert_eq!(counts.total, size as i64);
        let reported = pending + in_progress + succeeded + failed + cancelled + skipped;
        if reported <= size {
            prop_assert_eq!(counts.failed, failed as i64);
            prop_assert_eq!(counts.succeeded, succeeded as i64);
        }
    }

    #[test]
    fn campaign_counts_add_up_whatever_the_vendor_reports(
        devices in 1usize..500,
        wave in 1i32..200,
        reports in proptest::collection::vec((0u64..300, 0u64..300, 0u64..300, 0u64..300, 0u64..300), 1..8),
    ) {
        let mut campaign = Campaign::new(spec(devices, Strategy {
            waves: wave_size(wave.max(devices.div_ceil(100) as i32)),
            max_failures: Some(IntOrString::String("100%".into())),
            ..Strategy::default()
        }));
        campaign.step(0, &[]);
        for (step, (pending, in_progress, succeeded, failed, cancelled)) in reports.into_iter().enumerate() {
            let index = campaign.status().current_wave.unwrap_or(0) as usize;
            let mut observed = seen(index, pending, in_progress, succeeded, failed);
            observed.counts.cancelled = cancelled;
            campaign.step(10 * (step as i64 + 1), &[observed]);
            let counts = campaign.counts();
            prop_assert_eq!(counts.total, devices as i64);
        }
    }
}

#[test]
fn a_campaign_suspended_before_its_first_wave_waits_and_wakes_for_end_at() {
    let mut campaign = Campaign::new(spec(4, Strategy::default()));
    campaign.spec.suspend = Some(true);
    campaign.spec.schedule = Some(Schedule {
        start_at: None,
        end_at: Some(time(7200)),
    });
    let paused = campaign.step(0, &[]);
    assert!(paused.actions.is_empty());
    assert_eq!(campaign.phase(), CampaignPhase::Paused);
    assert_eq!(campaign.reason(), reasons::SUSPENDED);
    assert_eq!(
        paused.requeue_after,
        Some(Duration::from_secs(7200)),
        "only endAt can change things"
    );

    campaign.edit(|spec| spec.suspend = None);
    let resumed = campaign.step(60, &[]);
    assert_eq!(started(&resumed), vec![(0, 0..4)]);
    assert_eq!(
        event_reasons(&resumed),
        [reasons::RESUMED, reasons::WAVE_STARTED]
    );
}
