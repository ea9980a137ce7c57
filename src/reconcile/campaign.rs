//! The UpgradeCampaign state machine: one pure function, [`decide`].
//!
//! Phases: `Pending` (package not Ready) -> `Scheduled` (before `startAt`) -> `Running` ->
//! `Succeeded` | `Failed` | `Cancelled`, with `Paused` (suspended, or a wave crossed its failure
//! threshold with `onFailure: Pause`) in between. One wave runs at a time.
//!
//! How the caller uses it:
//! 1. Load the spec, the last status and the package, and for every wave the last status shows
//!    as started and unfinished, observe the vendor rollout into a [`WaveObservation`]. A wave
//!    recorded without a vendor ID must be looked up by its deterministic name (its observation
//!    says whether it exists); a wave with no observation at all is taken to not exist.
//! 2. Call [`decide`].
//! 3. Apply [`Decision::actions`] in order. For [`Action::StartWave`], write the decision's
//!    status first (the wave started, no vendor ID: the intent), then start the rollout; record
//!    its vendor ID with [`Decision::record_vendor_id`] and write again. When the last status
//!    already shows the wave without a vendor ID, an earlier attempt may have reached the vendor:
//!    look the rollout up by name first and adopt it if found. If an action fails, write nothing
//!    more and reconcile again later: the decision is recomputed (a wave left with its intent
//!    only is looked up by the next observation, see step 1).
//! 4. Emit the events, write the status when it differs from the last one, and requeue after
//!    [`Decision::requeue_after`] plus jitter. When [`Decision::finalize`] is set (the campaign is
//!    being deleted) and every action succeeded, remove the finalizer.
//!
//! Choices worth knowing:
//! - A wave is finished when none of its devices is pending or in progress. Devices the vendor
//!   reports unknown, rejected, already on the version or cancelled are `skipped` and never block.
//! - `deviceTimeout` counts from the wave's start, so all its devices share one deadline: at the
//!   deadline every unfinished device counts as failed (reason `TimedOut`) and the wave's vendor
//!   rollout is cancelled.
//! - Failures are checked as they come in: a wave that exceeds `maxFailures` applies `onFailure`
//!   at once (an abort does not wait for the rest of the wave to fail).
//! - `suspend: true` stops the running wave where the vendor allows ([`Action::StopWave`]). No
//!   vendor can pause a rollout and resume it later, so stopped devices end as cancelled (counted
//!   in `skipped`) and the wave finishes as `Cancelled`. Resuming goes on with the next wave; the
//!   stopped devices are not retried (they are visible in the counts; a new campaign can take
//!   them). Where the vendor cannot stop, the wave keeps running while the campaign is Paused.
//! - After a failure pause, the campaign goes on when the latest wave is within a raised
//!   `maxFailures`, or when the user sets `suspend: true` (status reason `Suspended`) and then
//!   back to false. Lowering `maxFailures` never re-judges a wave that already finished.
//! - A vendor rollout that disappears vendor-side is not recreated (devices could be upgraded
//!   twice): its unfinished devices count as cancelled and a Warning event says so.
//! - Finished and terminal states are sticky: a Succeeded, Failed or Cancelled campaign does
//!   nothing more, whatever the spec says.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::SpecError;
use super::conditions::{ConditionStatus, DesiredCondition, condition_reason, set_condition};
use super::waves::{FailureThreshold, plan_waves, wave_name};
use crate::api::condition_types::{PROGRESSING, READY, RECONCILING, STALLED};
use crate::api::{
    CampaignPhase, DeviceCounts, FailedDevice, FailureAction, MAX_FAILED_DEVICES_LISTED,
    UpgradeCampaignSpec, UpgradeCampaignStatus, Vendor, WavePhase, WaveStatus,
};

/// Longest vendor failure reason kept in status, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 128;

/// Condition and event reasons used by [`decide`].
pub mod reasons {
    /// The FirmwarePackage does not exist.
    pub const PACKAGE_NOT_FOUND: &str = "PackageNotFound";
    /// The FirmwarePackage exists but is not Ready.
    pub const PACKAGE_NOT_READY: &str = "PackageNotReady";
    /// Waiting for `schedule.startAt`.
    pub const SCHEDULED: &str = "Scheduled";
    /// A wave is moving devices.
    pub const WAVE_RUNNING: &str = "WaveRunning";
    /// Waiting for the soak time after a wave.
    pub const SOAKING: &str = "Soaking";
    /// The next wave waits for the package to be Ready again.
    pub const WAITING_FOR_PACKAGE: &str = "WaitingForPackage";
    /// Paused by `spec.suspend`.
    pub const SUSPENDED: &str = "Suspended";
    /// A wave has more failures than `maxFailures`.
    pub const FAILURE_THRESHOLD_EXCEEDED: &str = "FailureThresholdExceeded";
    /// Every wave finished.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Ended by `onFailure: Abort`.
    pub const ABORTED: &str = "Aborted";
    /// Ended by `schedule.endAt`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Ended by deletion.
    pub const DELETED: &str = "Deleted";
    /// Failed-device reason of a device that hit `deviceTimeout`.
    pub const TIMED_OUT: &str = "TimedOut";
    /// Event: a wave's vendor rollout was requested.
    pub const WAVE_STARTED: &str = "WaveStarted";
    /// Event: a wave's vendor rollout, started by an attempt whose vendor ID was never recorded,
    /// was found by name and adopted.
    pub const WAVE_ADOPTED: &str = "WaveAdopted";
    /// Event: every device of a wave finished.
    pub const WAVE_FINISHED: &str = "WaveFinished";
    /// Event: devices of a wave hit `deviceTimeout`.
    pub const DEVICES_TIMED_OUT: &str = "DevicesTimedOut";
    /// Event: the campaign paused.
    pub const PAUSED: &str = "Paused";
    /// Event: the campaign resumed after a pause.
    pub const RESUMED: &str = "Resumed";
    /// Event: every wave finished; the campaign succeeded.
    pub const COMPLETED: &str = "Completed";
    /// Event: running waves are cancelled because the campaign is being deleted.
    pub const CANCELLING: &str = "Cancelling";
    /// Event: the spec cannot be acted on.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Event: a wave's vendor rollout no longer exists vendor-side.
    pub const VENDOR_ROLLOUT_MISSING: &str = "VendorRolloutMissing";
}

/// Whether the campaign's FirmwarePackage can be rolled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageReadiness {
    /// No FirmwarePackage of that name exists.
    Missing,
    /// The package exists but is not Ready.
    NotReady {
        /// Why, from the package's Ready condition.
        reason: String,
    },
    /// The package is registered with the vendor.
    Ready {
        /// The vendor of the package's provider.
        vendor: Vendor,
        /// The version the package installs.
        version: String,
    },
}

/// Device counts of one wave as the vendor reports them, normalized by the vendor client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObservedCounts {
    /// Not picked up by the vendor or the device yet.
    pub pending: u64,
    /// Downloading or installing (IoTDA `FailWaitRetry` counts here too).
    pub in_progress: u64,
    /// Now on the package's version.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled or stopped vendor-side.
    pub cancelled: u64,
    /// Unknown to the vendor, rejected by it, or already on the version.
    pub skipped: u64,
}

/// One failed device with the vendor's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFailure {
    /// The device ID.
    pub device: String,
    /// The vendor's result code or message.
    pub reason: String,
}

/// What the vendor reports about one started wave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaveObservation {
    /// Index of the wave.
    pub index: usize,
    /// Whether the vendor rollout exists (looked up by vendor ID, or by name when the status has
    /// no vendor ID yet).
    pub exists: bool,
    /// The vendor's ID of the rollout, when it exists.
    pub vendor_id: Option<String>,
    /// Device counts of the wave.
    pub counts: ObservedCounts,
    /// The first failed devices (up to [`MAX_FAILED_DEVICES_LISTED`]), in the vendor's order.
    pub failed_devices: Vec<ObservedFailure>,
    /// Some devices still pending or in progress (a bounded sample), named when they time out.
    pub unfinished_sample: Vec<String>,
}

/// How often to look again; the caller adds jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollIntervals {
    /// While devices move: the last observation changed something.
    pub active: Duration,
    /// While a wave runs but nothing changed since the last observation.
    pub idle: Duration,
    /// While waiting on something that is not a device (package, schedule, soak, spec fix).
    pub waiting: Duration,
}

impl Default for PollIntervals {
    fn default() -> Self {
        Self {
            active: Duration::from_secs(15),
            idle: Duration::from_secs(60),
            waiting: Duration::from_secs(300),
        }
    }
}

/// Everything [`decide`] needs; the caller gathers it, the decision does no I/O.
#[derive(Clone, Debug)]
pub struct CampaignInput<'a> {
    /// The campaign's spec.
    pub spec: &'a UpgradeCampaignSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.uid`; wave names derive from it.
    pub uid: &'a str,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The status last written, if any.
    pub status: Option<&'a UpgradeCampaignStatus>,
    /// The current time.
    pub now: Timestamp,
    /// The package's readiness.
    pub package: PackageReadiness,
    /// The vendor's view of the started, unfinished waves.
    pub observations: &'a [WaveObservation],
    /// Requeue intervals.
    pub polling: PollIntervals,
}

/// Why a wave is cancelled vendor-side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// Its devices hit `deviceTimeout`.
    DeviceTimeout,
    /// It crossed `maxFailures` with `onFailure: Abort`.
    FailureThresholdExceeded,
    /// `schedule.endAt` passed.
    DeadlineExceeded,
    /// The campaign is being deleted.
    Deleted,
}

/// Something the caller does vendor-side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the vendor rollout of a wave (after looking it up by `name`: adopt it if it exists).
    StartWave {
        /// Wave index.
        index: usize,
        /// Deterministic rollout name.
        name: String,
        /// The wave's devices, as a range into `spec.devices`.
        devices: Range<usize>,
    },
    /// Stop the wave's unfinished devices where the vendor allows it; otherwise do nothing.
    StopWave {
        /// Wave index.
        index: usize,
        /// Deterministic rollout name.
        name: String,
        /// The vendor's ID of the rollout.
        vendor_id: String,
    },
    /// Cancel the wave's vendor rollout; a rollout already finished or gone counts as cancelled.
    CancelWave {
        /// Wave index.
        index: usize,
        /// Deterministic rollout name, to look it up when `vendor_id` is unknown.
        name: String,
        /// The vendor's ID of the rollout, when recorded.
        vendor_id: Option<String>,
        /// Why.
        reason: CancelReason,
    },
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An event to emit on the campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason, one of [`reasons`].
    pub reason: &'static str,
    /// A sentence for humans.
    pub message: String,
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Vendor-side actions, in the order to apply them. Empty: nothing to do.
    pub actions: Vec<Action>,
    /// Events to emit.
    pub events: Vec<Event>,
    /// The new status. Equal to the last status when nothing changed.
    pub status: UpgradeCampaignStatus,
    /// When to reconcile again; `None` waits for a change to the object.
    pub requeue_after: Option<Duration>,
    /// The campaign is being deleted: once every action succeeded, remove the finalizer.
    pub finalize: bool,
}

impl Decision {
    /// Records the vendor ID a [`Action::StartWave`] got, in the status to write.
    pub fn record_vendor_id(&mut self, index: usize, vendor_id: impl Into<String>) {
        if let Some(wave) = self
            .status
            .waves
            .iter_mut()
            .find(|wave| wave.index as usize == index)
        {
            wave.vendor_id = Some(vendor_id.into());
        }
    }

    /// Whether the status differs from `last` and must be written.
    pub fn status_changed(&self, last: Option<&UpgradeCampaignStatus>) -> bool {
        last != Some(&self.status)
    }
}

/// Decides the campaign's next step. Pure: same input, same decision.
pub fn decide(input: &CampaignInput<'_>) -> Decision {
    let last = input.status.cloned().unwrap_or_default();
    let mut decider = Decider::new(input, &last);
    if input.deleting {
        return decider.delete();
    }
    if let Some(phase) = last.phase.filter(|phase| phase.is_terminal()) {
        return decider.stay_terminal(phase);
    }
    let plan = match validate(input) {
        Ok(plan) => plan,
        Err(error) => return decider.stalled(&error),
    };
    decider.load_waves(&plan);
    decider.observe(&plan);
    decider.decide_phase(&plan)
}

/// The spec, checked and turned into numbers.
struct Plan {
    waves: Vec<Range<usize>>,
    threshold: FailureThreshold,
    on_failure: FailureAction,
    soak: Duration,
    device_timeout: Option<Duration>,
    start_at: Option<Timestamp>,
    end_at: Option<Timestamp>,
}

impl Plan {
    fn max_failures(&self, index: usize) -> u64 {
        self.threshold.for_wave(self.waves[index].len())
    }
}

fn validate(input: &CampaignInput<'_>) -> Result<Plan, SpecError> {
    let spec = input.spec;
    let strategy = spec.strategy.as_ref();
    let waves = plan_waves(spec.devices.len(), strategy.and_then(|s| s.waves.as_ref()))?;
    let threshold = FailureThreshold::parse(strategy.and_then(|s| s.max_failures.as_ref()))?;
    let duration = |value: Option<&crate::api::GoDuration>, field: &'static str| {
        value
            .map(|value| {
                value
                    .to_std()
                    .map_err(|message| SpecError::Duration { field, message })
            })
            .transpose()
    };
    let soak = duration(
        strategy.and_then(|s| s.soak_time.as_ref()),
        "strategy.soakTime",
    )?
    .unwrap_or_default();
    let device_timeout = duration(
        strategy.and_then(|s| s.device_timeout.as_ref()),
        "strategy.deviceTimeout",
    )?;
    check_vendor(spec, &input.package)?;
    let schedule = spec.schedule.as_ref();
    Ok(Plan {
        waves,
        threshold,
        on_failure: strategy.map(|s| s.on_failure()).unwrap_or_default(),
        soak,
        device_timeout,
        start_at: schedule.and_then(|s| s.start_at.as_ref()).map(|t| t.0),
        end_at: schedule.and_then(|s| s.end_at.as_ref()).map(|t| t.0),
    })
}

fn check_vendor(spec: &UpgradeCampaignSpec, package: &PackageReadiness) -> Result<(), SpecError> {
    if spec.thingspace.is_some() && spec.iotda.is_some() {
        return Err(SpecError::VendorMismatch(
            "both thingspace and iotda options are set; a campaign has one vendor".to_owned(),
        ));
    }
    let PackageReadiness::Ready { vendor, .. } = package else {
        return Ok(());
    };
    let options_vendor = match (&spec.thingspace, &spec.iotda) {
        (Some(_), _) => Vendor::ThingSpace,
        (_, Some(_)) => Vendor::Iotda,
        _ => return Ok(()),
    };
    if *vendor != options_vendor {
        return Err(SpecError::VendorMismatch(format!(
            "the package is registered with {vendor}, but the campaign sets {options_vendor} options"
        )));
    }
    Ok(())
}

/// The phase and why, before it is written into status.
struct Outcome {
    phase: CampaignPhase,
    reason: &'static str,
    message: String,
    stalled: Option<(&'static str, String)>,
    /// Base requeue interval before deadlines are taken into account.
    requeue: Option<Duration>,
}

struct Decider<'a> {
    input: &'a CampaignInput<'a>,
    last: &'a UpgradeCampaignStatus,
    now: Time,
    actions: Vec<Action>,
    events: Vec<Event>,
    waves: Vec<WaveStatus>,
    /// A wave recorded as started whose vendor rollout was never confirmed: it is started again.
    unconfirmed: Option<WaveStatus>,
    failed_devices: Vec<FailedDevice>,
    listed: HashSet<(i32, String)>,
    /// Whether any running wave's counts changed since the last status.
    moved: bool,
    /// Future instants that matter: start, soak end, device timeout, end.
    deadlines: Vec<Timestamp>,
}

impl<'a> Decider<'a> {
    fn new(input: &'a CampaignInput<'a>, last: &'a UpgradeCampaignStatus) -> Self {
        // Kubernetes stores times to the second: truncate so a written status reads back equal.
        let now = Timestamp::from_second(input.now.as_second()).unwrap_or(input.now);
        let failed_devices: Vec<FailedDevice> = last
            .failed_devices
            .iter()
            .take(MAX_FAILED_DEVICES_LISTED)
            .cloned()
            .collect();
        let listed = failed_devices
            .iter()
            .map(|failure| (failure.wave, failure.device.clone()))
            .collect();
        Self {
            input,
            last,
            now: Time(now),
            actions: Vec::new(),
            events: Vec::new(),
            waves: Vec::new(),
            unconfirmed: None,
            failed_devices,
            listed,
            moved: false,
            deadlines: Vec::new(),
        }
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.events.push(Event {
            type_,
            reason,
            message,
        });
    }

    fn last_phase(&self) -> Option<CampaignPhase> {
        self.last.phase
    }

    fn last_reason(&self) -> Option<&'a str> {
        condition_reason(&self.last.conditions, PROGRESSING)
    }

    /// Deletion: cancel every unfinished wave, then let the caller release the finalizer.
    fn delete(mut self) -> Decision {
        let mut waves = self.last.waves.clone();
        let mut cancelled = 0;
        for wave in waves.iter_mut().filter(|wave| wave.completed_at.is_none()) {
            self.actions.push(Action::CancelWave {
                index: wave.index as usize,
                name: wave.name.clone(),
                vendor_id: wave.vendor_id.clone(),
                reason: CancelReason::Deleted,
            });
            cancel_unfinished(wave, &self.now);
            cancelled += 1;
        }
        if cancelled > 0 {
            self.event(
                EventType::Normal,
                reasons::CANCELLING,
                format!("cancelling {cancelled} running wave(s) vendor-side before deletion"),
            );
        }
        self.waves = waves;
        let outcome = match self.last_phase().filter(|phase| phase.is_terminal()) {
            Some(phase) => self.terminal_outcome(phase),
            None => Outcome {
                phase: CampaignPhase::Cancelled,
                reason: reasons::DELETED,
                message: "the campaign is being deleted".to_owned(),
                stalled: None,
                requeue: None,
            },
        };
        let mut decision = self.finish(outcome);
        decision.finalize = true;
        decision
    }

    /// A campaign that ended stays as it is; only `observedGeneration` follows the spec.
    fn stay_terminal(mut self, phase: CampaignPhase) -> Decision {
        self.waves = self.last.waves.clone();
        let outcome = self.terminal_outcome(phase);
        self.finish(outcome)
    }

    fn terminal_outcome(&self, phase: CampaignPhase) -> Outcome {
        let condition = |type_| {
            self.last
                .conditions
                .iter()
                .find(|condition: &&Condition| condition.type_ == type_)
        };
        let reason = match phase {
            CampaignPhase::Succeeded => reasons::SUCCEEDED,
            CampaignPhase::Failed => reasons::ABORTED,
            _ if self.last_reason() == Some(reasons::DEADLINE_EXCEEDED) => {
                reasons::DEADLINE_EXCEEDED
            }
            _ => reasons::DELETED,
        };
        let message = condition(READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let stalled = condition(STALLED)
            .filter(|c| c.status == ConditionStatus::True.as_str())
            .map(|c| {
                let reason = if c.reason == reasons::FAILURE_THRESHOLD_EXCEEDED {
                    reasons::FAILURE_THRESHOLD_EXCEEDED
                } else {
                    reasons::ABORTED
                };
                (reason, c.message.clone())
            });
        Outcome {
            phase,
            reason,
            message,
            stalled,
            requeue: None,
        }
    }

    /// A spec error: start nothing, say so in `Stalled`, keep what is known.
    fn stalled(mut self, error: &SpecError) -> Decision {
        self.waves = self.last.waves.clone();
        let already = self
            .last
            .conditions
            .iter()
            .any(|c| c.type_ == STALLED && c.status == "True" && c.reason == error.reason());
        if !already {
            self.event(EventType::Warning, reasons::INVALID_SPEC, error.to_string());
        }
        let phase = match self.last_phase() {
            Some(phase) if !self.waves.is_empty() => phase,
            _ => CampaignPhase::Pending,
        };
        let outcome = Outcome {
            phase,
            reason: error.reason(),
            message: error.to_string(),
            stalled: Some((error.reason(), error.to_string())),
            requeue: Some(self.input.polling.waiting),
        };
        self.finish(outcome)
    }

    /// Takes the started waves from the last status, as far as they match the plan.
    fn load_waves(&mut self, plan: &Plan) {
        self.waves = self
            .last
            .waves
            .iter()
            .enumerate()
            .take_while(|(position, wave)| {
                *position < plan.waves.len() && wave.index as usize == *position
            })
            .map(|(_, wave)| wave.clone())
            .collect();
    }

    /// Folds the vendor's observations into the unfinished waves.
    fn observe(&mut self, plan: &Plan) {
        for position in 0..self.waves.len() {
            if self.waves[position].completed_at.is_some() {
                continue;
            }
            let observation = self
                .input
                .observations
                .iter()
                .find(|observation| observation.index == position);
            if self.waves[position].vendor_id.is_none() {
                match observation {
                    Some(found) if found.exists && found.vendor_id.is_some() => {
                        let wave = &mut self.waves[position];
                        wave.vendor_id = found.vendor_id.clone();
                        let message = format!(
                            "adopted the existing vendor rollout {} named {} for wave {position}",
                            wave.vendor_id.as_deref().unwrap_or_default(),
                            wave.name
                        );
                        self.event(EventType::Normal, reasons::WAVE_ADOPTED, message);
                    }
                    _ => {
                        // Created vendor-side or not, the status never heard back: start it
                        // again by the same name (the caller adopts it if it exists).
                        self.unconfirmed = Some(self.waves.remove(position));
                        self.waves.truncate(position);
                        break;
                    }
                }
            }
            let size = plan.waves[position].len() as u64;
            let before = self.waves[position].counts.clone();
            let mut cancelled_seen = false;
            match observation {
                Some(observation) if !observation.exists => {
                    let wave = &mut self.waves[position];
                    cancel_unfinished(wave, &self.now);
                    let message = format!(
                        "the vendor rollout {} of wave {position} no longer exists; its unfinished devices count as cancelled",
                        wave.vendor_id.as_deref().unwrap_or_default()
                    );
                    self.event(EventType::Warning, reasons::VENDOR_ROLLOUT_MISSING, message);
                    cancelled_seen = true;
                }
                Some(observation) => {
                    self.waves[position].counts = normalize(&observation.counts, size);
                    cancelled_seen = observation.counts.cancelled > 0;
                    for failure in &observation.failed_devices {
                        self.list_failure(position, &failure.device, &failure.reason);
                    }
                }
                None => {}
            }
            self.apply_device_timeout(plan, position, observation);
            let wave = &mut self.waves[position];
            if wave.counts != before {
                self.moved = true;
            }
            let over = wave.counts.failed as u64 > plan.max_failures(position);
            if wave.completed_at.is_none() && wave.counts.pending + wave.counts.in_progress == 0 {
                wave.completed_at = Some(self.now.clone());
                wave.phase = if over {
                    WavePhase::Failed
                } else if cancelled_seen {
                    WavePhase::Cancelled
                } else {
                    WavePhase::Succeeded
                };
                let counts = &wave.counts;
                let message = format!(
                    "wave {position} finished: {} succeeded, {} failed, {} skipped of {}",
                    counts.succeeded, counts.failed, counts.skipped, counts.total
                );
                let type_ = if over {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                self.event(type_, reasons::WAVE_FINISHED, message);
            } else if wave.completed_at.is_none() {
                wave.phase = if over {
                    WavePhase::Failed
                } else {
                    WavePhase::Running
                };
            }
        }
        // A raised threshold clears the latest wave's failure.
        if let Some(position) = self.waves.len().checked_sub(1) {
            let wave = &mut self.waves[position];
            if wave.phase == WavePhase::Failed
                && wave.counts.failed as u64 <= plan.max_failures(position)
            {
                wave.phase = if wave.completed_at.is_some() {
                    WavePhase::Succeeded
                } else {
                    WavePhase::Running
                };
            }
        }
    }

    /// Counts the unfinished devices of a wave past its `deviceTimeout` as failed, and cancels it.
    fn apply_device_timeout(
        &mut self,
        plan: &Plan,
        position: usize,
        observation: Option<&WaveObservation>,
    ) {
        let wave = &self.waves[position];
        let (Some(timeout), Some(started_at), None) =
            (plan.device_timeout, &wave.started_at, &wave.completed_at)
        else {
            return;
        };
        let deadline = plus(started_at.0, timeout);
        if self.now.0 < deadline {
            self.deadlines.push(deadline);
            return;
        }
        let unfinished = wave.counts.pending + wave.counts.in_progress;
        if unfinished == 0 {
            return;
        }
        let wave = &mut self.waves[position];
        wave.counts.failed += unfinished;
        wave.counts.pending = 0;
        wave.counts.in_progress = 0;
        let (name, vendor_id) = (wave.name.clone(), wave.vendor_id.clone());
        for device in observation
            .map(|o| o.unfinished_sample.as_slice())
            .unwrap_or_default()
        {
            self.list_failure(position, device, reasons::TIMED_OUT);
        }
        self.actions.push(Action::CancelWave {
            index: position,
            name,
            vendor_id,
            reason: CancelReason::DeviceTimeout,
        });
        self.event(
            EventType::Warning,
            reasons::DEVICES_TIMED_OUT,
            format!(
                "{unfinished} device(s) of wave {position} did not finish within deviceTimeout {}; they count as failed",
                humanize(timeout)
            ),
        );
    }

    fn list_failure(&mut self, wave: usize, device: &str, reason: &str) {
        if self.failed_devices.len() >= MAX_FAILED_DEVICES_LISTED {
            return;
        }
        let key = (wave as i32, device.to_owned());
        if self.listed.contains(&key) {
            return;
        }
        self.listed.insert(key);
        self.failed_devices.push(FailedDevice {
            device: device.to_owned(),
            wave: wave as i32,
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        });
    }

    /// Whether the user already let the campaign go on past the latest wave's crossed threshold.
    fn failure_acknowledged(&self) -> bool {
        let Some(latest) = self.waves.last() else {
            return false;
        };
        let recorded_failed = self
            .last
            .waves
            .get(latest.index as usize)
            .is_some_and(|wave| wave.phase == WavePhase::Failed);
        if !recorded_failed {
            return false;
        }
        match self.last_phase() {
            Some(CampaignPhase::Running) => true,
            Some(CampaignPhase::Paused) => {
                self.last_reason() == Some(reasons::SUSPENDED) && !self.input.spec.suspended()
            }
            _ => false,
        }
    }

    fn spec_changed_since_last_status(&self) -> bool {
        match (self.input.generation, self.last.observed_generation) {
            (Some(now), Some(then)) => now > then,
            _ => false,
        }
    }

    fn decide_phase(mut self, plan: &Plan) -> Decision {
        let now = self.now.0;
        let suspended = self.input.spec.suspended();
        let latest_running = self
            .waves
            .last()
            .is_some_and(|wave| wave.completed_at.is_none());
        let blocked = self
            .waves
            .last()
            .is_some_and(|wave| wave.phase == WavePhase::Failed)
            && !self.failure_acknowledged();
        let all_done = self.waves.len() == plan.waves.len() && !latest_running && !blocked;
        let polling = self.input.polling;
        let wave_poll = if self.moved {
            polling.active
        } else {
            polling.idle
        };
        if let Some(end_at) = plan.end_at.filter(|_| !all_done) {
            if now >= end_at {
                let outcome = self.deadline_exceeded();
                return self.finish(outcome);
            }
            self.deadlines.push(end_at);
        }
        let outcome = if all_done {
            self.event(
                EventType::Normal,
                reasons::COMPLETED,
                format!("all {} wave(s) finished", plan.waves.len()),
            );
            Outcome {
                phase: CampaignPhase::Succeeded,
                reason: reasons::SUCCEEDED,
                message: format!("all {} wave(s) finished", plan.waves.len()),
                stalled: None,
                requeue: None,
            }
        } else if blocked {
            self.failure_threshold_crossed(plan, latest_running, wave_poll)
        } else if latest_running {
            let index = self.waves.len() - 1;
            if suspended {
                self.pause(reasons::SUSPENDED, "suspended by spec.suspend".to_owned());
                Outcome {
                    phase: CampaignPhase::Paused,
                    reason: reasons::SUSPENDED,
                    message: format!(
                        "suspended by spec.suspend; wave {index} was asked to stop where the vendor allows"
                    ),
                    stalled: None,
                    requeue: Some(wave_poll),
                }
            } else {
                self.resumed();
                Outcome {
                    phase: CampaignPhase::Running,
                    reason: reasons::WAVE_RUNNING,
                    message: format!("wave {index} of {} is running", plan.waves.len()),
                    stalled: None,
                    requeue: Some(wave_poll),
                }
            }
        } else {
            self.next_wave(plan)
        };
        self.finish(outcome)
    }

    /// Between waves (or before the first): decide whether the next one starts now.
    fn next_wave(&mut self, plan: &Plan) -> Outcome {
        let now = self.now.0;
        let next = self.waves.len();
        let waiting = self.input.polling.waiting;
        if self.input.spec.suspended() {
            self.pause(reasons::SUSPENDED, String::new());
            return Outcome {
                phase: CampaignPhase::Paused,
                reason: reasons::SUSPENDED,
                message: format!("suspended by spec.suspend before wave {next}"),
                stalled: None,
                requeue: None,
            };
        }
        let package_problem = match &self.input.package {
            PackageReadiness::Ready { .. } => None,
            PackageReadiness::Missing => Some((
                reasons::PACKAGE_NOT_FOUND,
                format!(
                    "FirmwarePackage {} does not exist",
                    self.input.spec.package_ref.name
                ),
            )),
            PackageReadiness::NotReady { reason } => Some((
                reasons::PACKAGE_NOT_READY,
                format!(
                    "FirmwarePackage {} is not Ready: {reason}",
                    self.input.spec.package_ref.name
                ),
            )),
        };
        if let Some((reason, message)) = package_problem {
            return if next == 0 {
                Outcome {
                    phase: CampaignPhase::Pending,
                    reason,
                    message,
                    stalled: None,
                    requeue: Some(waiting),
                }
            } else {
                Outcome {
                    phase: CampaignPhase::Running,
                    reason: reasons::WAITING_FOR_PACKAGE,
                    message: format!("wave {next} waits: {message}"),
                    stalled: None,
                    requeue: Some(waiting),
                }
            };
        }
        if next == 0
            && let Some(start_at) = plan.start_at.filter(|start_at| now < *start_at)
        {
            self.deadlines.push(start_at);
            return Outcome {
                phase: CampaignPhase::Scheduled,
                reason: reasons::SCHEDULED,
                message: format!("the first wave starts at {start_at}"),
                stalled: None,
                requeue: Some(waiting),
            };
        }
        if let Some(completed_at) = self
            .waves
            .last()
            .and_then(|wave| wave.completed_at.as_ref())
        {
            let soak_end = plus(completed_at.0, plan.soak);
            if now < soak_end {
                self.deadlines.push(soak_end);
                self.resumed();
                return Outcome {
                    phase: CampaignPhase::Running,
                    reason: reasons::SOAKING,
                    message: format!("wave {next} starts after the soak time, at {soak_end}"),
                    stalled: None,
                    requeue: Some(waiting),
                };
            }
        }
        self.resumed();
        self.start_wave(plan, next);
        Outcome {
            phase: CampaignPhase::Running,
            reason: reasons::WAVE_RUNNING,
            message: format!("wave {next} of {} is running", plan.waves.len()),
            stalled: None,
            requeue: Some(self.input.polling.active),
        }
    }

    fn start_wave(&mut self, plan: &Plan, index: usize) {
        let devices = plan.waves[index].clone();
        let name = wave_name(self.input.uid, index);
        let started_at = self
            .unconfirmed
            .take()
            .filter(|wave| wave.index as usize == index)
            .and_then(|wave| wave.started_at)
            .unwrap_or_else(|| self.now.clone());
        if let Some(timeout) = plan.device_timeout {
            self.deadlines.push(plus(started_at.0, timeout));
        }
        let size = devices.len() as i64;
        let version = match &self.input.package {
            PackageReadiness::Ready { version, .. } => version.as_str(),
            _ => "unknown",
        };
        if self.last.waves.len() <= index {
            self.event(
                EventType::Normal,
                reasons::WAVE_STARTED,
                format!("wave {index} started: {size} device(s) to version {version} as {name}"),
            );
        }
        self.waves.push(WaveStatus {
            index: index as i32,
            devices: size,
            name: name.clone(),
            vendor_id: None,
            phase: WavePhase::Running,
            counts: DeviceCounts {
                total: size,
                pending: size,
                ..DeviceCounts::default()
            },
            started_at: Some(started_at),
            completed_at: None,
        });
        self.actions.push(Action::StartWave {
            index,
            name,
            devices,
        });
    }

    fn failure_threshold_crossed(
        &mut self,
        plan: &Plan,
        latest_running: bool,
        wave_poll: Duration,
    ) -> Outcome {
        let index = self.waves.len() - 1;
        let failed = self.waves[index].counts.failed;
        let allowed = plan.max_failures(index);
        let message = format!(
            "wave {index} has {failed} failed device(s), more than maxFailures allows ({allowed})"
        );
        match plan.on_failure {
            FailureAction::Abort => {
                if latest_running {
                    let wave = &mut self.waves[index];
                    self.actions.push(Action::CancelWave {
                        index,
                        name: wave.name.clone(),
                        vendor_id: wave.vendor_id.clone(),
                        reason: CancelReason::FailureThresholdExceeded,
                    });
                    cancel_unfinished(wave, &self.now);
                    wave.phase = WavePhase::Failed;
                }
                self.event(
                    EventType::Warning,
                    reasons::ABORTED,
                    format!("{message}: aborting the campaign"),
                );
                Outcome {
                    phase: CampaignPhase::Failed,
                    reason: reasons::ABORTED,
                    message: format!("{message}; onFailure is Abort"),
                    stalled: Some((reasons::FAILURE_THRESHOLD_EXCEEDED, message)),
                    requeue: None,
                }
            }
            FailureAction::Pause => {
                let last_reason = self.last_reason();
                let recorded_failed = self
                    .last
                    .waves
                    .get(index)
                    .is_some_and(|wave| wave.phase == WavePhase::Failed);
                let was_paused = self.last_phase() == Some(CampaignPhase::Paused);
                // The user acknowledges the crossing by setting suspend after it was reported.
                let acknowledging = self.input.spec.suspended()
                    && recorded_failed
                    && was_paused
                    && (last_reason == Some(reasons::SUSPENDED)
                        || (last_reason == Some(reasons::FAILURE_THRESHOLD_EXCEEDED)
                            && self.spec_changed_since_last_status()));
                let (reason, text) = if acknowledging {
                    (
                        reasons::SUSPENDED,
                        format!(
                            "{message}; suspended: set spec.suspend to false to go on with the next wave"
                        ),
                    )
                } else {
                    (
                        reasons::FAILURE_THRESHOLD_EXCEEDED,
                        format!(
                            "{message}; paused: raise maxFailures, or set spec.suspend to true and back to false, to go on"
                        ),
                    )
                };
                self.pause(reason, message);
                Outcome {
                    phase: CampaignPhase::Paused,
                    reason,
                    message: text,
                    stalled: None,
                    requeue: latest_running.then_some(wave_poll),
                }
            }
        }
    }

    /// Enters Paused: stops the running wave once, and says so once.
    fn pause(&mut self, reason: &'static str, detail: String) {
        if self.last_phase() == Some(CampaignPhase::Paused) {
            return;
        }
        if let Some(wave) = self.waves.last().filter(|wave| wave.completed_at.is_none())
            && let Some(vendor_id) = &wave.vendor_id
        {
            self.actions.push(Action::StopWave {
                index: wave.index as usize,
                name: wave.name.clone(),
                vendor_id: vendor_id.clone(),
            });
        }
        let message = if detail.is_empty() {
            format!("campaign paused ({reason})")
        } else {
            format!("campaign paused ({reason}): {detail}")
        };
        self.event(EventType::Warning, reasons::PAUSED, message);
    }

    fn resumed(&mut self) {
        if self.last_phase() == Some(CampaignPhase::Paused) {
            self.event(
                EventType::Normal,
                reasons::RESUMED,
                "campaign resumed".to_owned(),
            );
        }
    }

    fn deadline_exceeded(&mut self) -> Outcome {
        let mut running = 0;
        for wave in self
            .waves
            .iter_mut()
            .filter(|wave| wave.completed_at.is_none())
        {
            self.actions.push(Action::CancelWave {
                index: wave.index as usize,
                name: wave.name.clone(),
                vendor_id: wave.vendor_id.clone(),
                reason: CancelReason::DeadlineExceeded,
            });
            cancel_unfinished(wave, &self.now);
            running += 1;
        }
        let message = if running > 0 {
            "schedule.endAt passed: the running wave was cancelled and no further wave starts"
        } else {
            "schedule.endAt passed: no further wave starts"
        };
        self.event(
            EventType::Warning,
            reasons::DEADLINE_EXCEEDED,
            message.to_owned(),
        );
        Outcome {
            phase: CampaignPhase::Cancelled,
            reason: reasons::DEADLINE_EXCEEDED,
            message: message.to_owned(),
            stalled: None,
            requeue: None,
        }
    }

    /// Builds the status and the requeue from the outcome.
    fn finish(self, outcome: Outcome) -> Decision {
        let now = self.now;
        let total_devices = self.input.spec.devices.len() as i64;
        let mut counts = DeviceCounts {
            total: total_devices,
            ..DeviceCounts::default()
        };
        let mut started_devices = 0;
        for wave in &self.waves {
            started_devices += wave.devices;
            counts.pending += wave.counts.pending;
            counts.in_progress += wave.counts.in_progress;
            counts.succeeded += wave.counts.succeeded;
            counts.failed += wave.counts.failed;
            counts.skipped += wave.counts.skipped;
        }
        counts.pending += (total_devices - started_devices).max(0);

        let mut conditions = self.last.conditions.clone();
        let generation = self.input.generation;
        let running = outcome.phase == CampaignPhase::Running;
        let succeeded = outcome.phase == CampaignPhase::Succeeded;
        for desired in [
            DesiredCondition::new(
                READY,
                ConditionStatus::from_bool(succeeded),
                outcome.reason,
                outcome.message.clone(),
            ),
            DesiredCondition::new(
                PROGRESSING,
                ConditionStatus::from_bool(running),
                outcome.reason,
                outcome.message.clone(),
            ),
            DesiredCondition::new(
                RECONCILING,
                ConditionStatus::from_bool(running),
                outcome.reason,
                outcome.message.clone(),
            ),
            match &outcome.stalled {
                Some((reason, message)) => {
                    DesiredCondition::new(STALLED, ConditionStatus::True, *reason, message.clone())
                }
                None => DesiredCondition::new(
                    STALLED,
                    ConditionStatus::False,
                    outcome.reason,
                    String::new(),
                ),
            },
        ] {
            set_condition(&mut conditions, desired, generation, &now);
        }

        let started_at = self
            .last
            .started_at
            .clone()
            .or_else(|| self.waves.first().and_then(|wave| wave.started_at.clone()));
        let completed_at = outcome.phase.is_terminal().then(|| {
            self.last
                .completed_at
                .clone()
                .unwrap_or_else(|| now.clone())
        });
        let requeue_after = if outcome.phase.is_terminal() {
            None
        } else {
            self.deadlines
                .iter()
                .filter_map(|deadline| until(now.0, *deadline))
                .chain(outcome.requeue)
                .min()
        };
        let status = UpgradeCampaignStatus {
            observed_generation: generation,
            conditions,
            phase: Some(outcome.phase),
            progress: Some(format!("{}/{}", counts.succeeded, counts.total)),
            counts: Some(counts),
            current_wave: self.waves.last().map(|wave| wave.index),
            waves: self.waves,
            failed_devices: self.failed_devices,
            started_at,
            completed_at,
        };
        Decision {
            actions: self.actions,
            events: self.events,
            status,
            requeue_after,
            finalize: false,
        }
    }
}

/// Ends a wave now: its unfinished devices count as cancelled (`skipped`).
fn cancel_unfinished(wave: &mut WaveStatus, now: &Time) {
    wave.counts.skipped += wave.counts.pending + wave.counts.in_progress;
    wave.counts.pending = 0;
    wave.counts.in_progress = 0;
    if wave.phase != WavePhase::Failed {
        wave.phase = WavePhase::Cancelled;
    }
    wave.completed_at = Some(now.clone());
}

/// The vendor's counts fitted to the wave: every device in exactly one bucket.
///
/// Devices the vendor does not mention yet are pending. If the vendor reports more devices than
/// the wave has, the excess is taken from pending, in progress, skipped and succeeded, in that
/// order, so failures are the last to be dropped.
pub fn normalize(observed: &ObservedCounts, wave_size: u64) -> DeviceCounts {
    let mut buckets = [
        observed.pending,
        observed.in_progress,
        observed.skipped.saturating_add(observed.cancelled),
        observed.succeeded,
        observed.failed,
    ];
    let sum = buckets
        .iter()
        .fold(0u64, |sum, bucket| sum.saturating_add(*bucket));
    if sum < wave_size {
        buckets[0] += wave_size - sum;
    } else {
        let mut excess = sum - wave_size;
        for bucket in buckets.iter_mut() {
            let taken = excess.min(*bucket);
            *bucket -= taken;
            excess -= taken;
        }
    }
    let [pending, in_progress, skipped, succeeded, failed] = buckets.map(|b| b as i64);
    DeviceCounts {
        total: wave_size as i64,
        pending,
        in_progress,
        succeeded,
        failed,
        skipped,
    }
}

fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    at.checked_add(duration).unwrap_or(Timestamp::MAX)
}

/// Time from `now` until `deadline`, if it is in the future.
fn until(now: Timestamp, deadline: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_until(deadline))
        .ok()
        .filter(|duration| !duration.is_zero())
}

fn humanize(duration: Duration) -> String {
    format!(
        "{:#}",
        jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX)
    )
}

#[cfg(test)]
mod tests;
