//! `UpgradeCampaign`: a staged rollout of one FirmwarePackage to a set of devices.

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{Condition, Time},
    util::intstr::IntOrString,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GoDuration, LocalObjectReference, conditions_schema};

/// Most devices one campaign may target.
pub const MAX_DEVICES: usize = 100_000;
/// Most waves one campaign may have.
pub const MAX_WAVES: usize = 100;
/// Most failed devices listed in status; the counts stay exact.
pub const MAX_FAILED_DEVICES_LISTED: usize = 50;
/// Failures tolerated per wave when `strategy.maxFailures` is unset.
pub const DEFAULT_MAX_FAILURES: &str = "10%";

/// Pattern of a device ID on any vendor (IMEI, IoTDA device ID, IoTaaP ObjectId).
const DEVICE_ID_PATTERN: &str = r"^[A-Za-z0-9_.:-]+$";

/// Moves `devices` to the FirmwarePackage in `packageRef`, wave by wave.
///
/// Each wave is one vendor rollout (a ThingSpace file campaign, an IoTDA batch task, or a batch of
/// IoTaaP deploys). A wave starts when the previous one finished within its failure threshold and
/// its soak time passed.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "otaplane.io",
    version = "v1alpha1",
    kind = "UpgradeCampaign",
    namespaced,
    status = "UpgradeCampaignStatus",
    shortname = "otacampaign",
    category = "ota",
    doc = "UpgradeCampaign rolls a FirmwarePackage out to a set of devices in waves, with failure thresholds.",
    printcolumn(name = "Package", type_ = "string", json_path = ".spec.packageRef.name", description = "The FirmwarePackage being rolled out"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Where the campaign is in its lifecycle"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress", description = "Succeeded devices / all devices"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.counts.failed", description = "Devices that failed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || (self.spec.packageRef == oldSelf.spec.packageRef)")
        .message("packageRef cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec.packageRef"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || (self.spec.devices == oldSelf.spec.devices)")
        .message("devices cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec.devices"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || ((has(self.spec.strategy) && has(self.spec.strategy.waves)) == (has(oldSelf.spec.strategy) && has(oldSelf.spec.strategy.waves)) && (!has(self.spec.strategy) || !has(self.spec.strategy.waves) || self.spec.strategy.waves == oldSelf.spec.strategy.waves))")
        .message("strategy.waves cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec.strategy.waves"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || ((has(self.spec.strategy) && has(self.spec.strategy.deviceTimeout)) == (has(oldSelf.spec.strategy) && has(oldSelf.spec.strategy.deviceTimeout)) && (!has(self.spec.strategy) || !has(self.spec.strategy.deviceTimeout) || self.spec.strategy.deviceTimeout == oldSelf.spec.strategy.deviceTimeout))")
        .message("strategy.deviceTimeout cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec.strategy.deviceTimeout"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || ((has(self.spec.schedule) && has(self.spec.schedule.startAt)) == (has(oldSelf.spec.schedule) && has(oldSelf.spec.schedule.startAt)) && (!has(self.spec.schedule) || !has(self.spec.schedule.startAt) || self.spec.schedule.startAt == oldSelf.spec.schedule.startAt))")
        .message("schedule.startAt cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec.schedule.startAt"),
    validation = kube::core::Rule::new("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || (has(self.spec.thingspace) == has(oldSelf.spec.thingspace) && (!has(self.spec.thingspace) || self.spec.thingspace == oldSelf.spec.thingspace) && has(self.spec.iotda) == has(oldSelf.spec.iotda) && (!has(self.spec.iotda) || self.spec.iotda == oldSelf.spec.iotda))")
        .message("vendor options cannot change once the campaign started: create a new UpgradeCampaign")
        .field_path(".spec"),
)]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.strategy) || !has(self.strategy.waves) || !has(self.strategy.waves.size) || self.devices.size() <= self.strategy.waves.size * 100")
        .message("a campaign has at most 100 waves: raise strategy.waves.size")
        .field_path(".strategy.waves.size"),
)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeCampaignSpec {
    /// The FirmwarePackage to install. It must be Ready; its provider decides the vendor.
    pub package_ref: LocalObjectReference,
    /// Vendor device IDs to upgrade (IMEIs on ThingSpace, device IDs on IoTDA and IoTaaP); each
    /// at most once, between 1 and 100,000. Waves take devices in this order.
    #[schemars(length(min = 1, max = 100000), inner(length(min = 1, max = 128), regex(pattern = DEVICE_ID_PATTERN)))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub devices: Vec<String>,
    /// When the campaign may run. Unset: start now, no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// How devices are split into waves and how many failures a wave tolerates.
    /// Unset: one wave with all devices, 10% failures tolerated, pause when crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Pause the campaign: no new wave starts, and the running wave is stopped where the vendor
    /// allows it. Set back to false to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// ThingSpace campaign options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thingspace: Option<ThingSpaceCampaignOptions>,
    /// IoTDA batch task options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iotda: Option<IotdaCampaignOptions>,
}

impl UpgradeCampaignSpec {
    /// Whether the user asked for the campaign to pause.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }
}

/// The window a campaign runs in.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = kube::core::Rule::new("!has(self.startAt) || !has(self.endAt) || self.endAt > self.startAt")
        .message("endAt must be after startAt")
        .field_path(".endAt"),
)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Do nothing before this time (phase Scheduled). RFC 3339, for example `2026-12-01T02:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Time>,
    /// Start no wave after this time and cancel what is still running (phase Cancelled, reason
    /// `DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Time>,
}

/// Waves, thresholds and timing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// How devices are split into waves. Unset: one wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Waves>,
    /// Failures tolerated in each wave: a count (`5`) or a percentage of the wave (`10%`).
    /// Crossing it applies `onFailure`. Unset: `10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_failures_schema")]
    pub max_failures: Option<IntOrString>,
    /// What to do when a wave crosses `maxFailures`: `Pause` (wait for the user; set `suspend`
    /// and back, or raise the threshold, to go on) or `Abort` (cancel the rest, phase Failed).
    /// Unset: `Pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailureAction>,
    /// Time to wait after a successful wave before starting the next, for example `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_time: Option<GoDuration>,
    /// A device that has not finished this long after its wave started counts as failed
    /// (reason `TimedOut`), for example `24h`. Unset: wait as long as the vendor does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_timeout: Option<GoDuration>,
}

impl Strategy {
    /// The action on a crossed threshold.
    pub fn on_failure(&self) -> FailureAction {
        self.on_failure.unwrap_or_default()
    }
}

/// Wave sizes, given one of two ways.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.percentages) != has(self.size)")
        .message("set exactly one of percentages and size"),
)]
#[serde(rename_all = "camelCase")]
pub struct Waves {
    /// Cumulative share of devices reached by the end of each wave, strictly increasing and
    /// ending at 100: `[1, 10, 50, 100]` upgrades 1%, then up to 10%, 50% and everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), inner(range(min = 1, max = 100)))]
    #[x_kube(
        merge_strategy = kube::core::ListMerge::Set,
        validation = kube::core::Rule::new("self.isSorted()").message("percentages must be strictly increasing"),
        validation = kube::core::Rule::new("self[self.size() - 1] == 100").message("the last percentage must be 100"),
    )]
    pub percentages: Option<Vec<i32>>,
    /// Devices per wave; the last wave takes what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub size: Option<i32>,
}

/// What happens when a wave crosses its failure threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureAction {
    /// Stop starting waves and wait for the user (phase Paused).
    #[default]
    Pause,
    /// Cancel what is left vendor-side and end the campaign (phase Failed).
    Abort,
}

/// ThingSpace file campaign options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThingSpaceCampaignOptions {
    /// UTC hours of the day in which devices may download. Unset: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    pub download_time_windows: Option<Vec<HourWindow>>,
    /// UTC hours of the day in which devices may install. Unset: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    pub install_time_windows: Option<Vec<HourWindow>>,
}

/// A span of hours in a day, UTC: matches when `startHour <= hour < endHour`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new("self.endHour > self.startHour").message("endHour must be after startHour"))]
#[serde(rename_all = "camelCase")]
pub struct HourWindow {
    /// First hour of the window, 0 to 23.
    #[schemars(range(min = 0, max = 23))]
    pub start_hour: i32,
    /// Hour the window ends at, 1 to 24.
    #[schemars(range(min = 1, max = 24))]
    pub end_hour: i32,
}

/// IoTDA batch task options.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new("has(self.retryCount) == has(self.retryIntervalMinutes)")
    .message("retryCount and retryIntervalMinutes go together"))]
#[serde(rename_all = "camelCase")]
pub struct IotdaCampaignOptions {
    /// How often IoTDA itself retries a failed device, up to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub retry_count: Option<i32>,
    /// Minutes between IoTDA's retries, up to 1440.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1440))]
    pub retry_interval_minutes: Option<i32>,
    /// Upgrade a gateway's child devices through the gateway (IoTDA task mode `GATEWAY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_mode: Option<bool>,
}

/// Schema of `maxFailures`: a non-negative count or a percentage.
fn max_failures_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",
            "message": "maxFailures is a count like 5 or a percentage like 10%",
        }],
    })
}

/// Where a campaign is in its lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CampaignPhase {
    /// Waiting for the package to be Ready.
    #[default]
    Pending,
    /// Waiting for `schedule.startAt`.
    Scheduled,
    /// A wave is running or soaking.
    Running,
    /// Stopped by `suspend` or a crossed failure threshold; waits for the user.
    Paused,
    /// Every wave finished within its threshold.
    Succeeded,
    /// Aborted after a crossed failure threshold.
    Failed,
    /// Ended by `schedule.endAt` or deleted while running; what was running was cancelled.
    Cancelled,
}

impl CampaignPhase {
    /// Whether the campaign has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CampaignPhase::Succeeded | CampaignPhase::Failed | CampaignPhase::Cancelled
        )
    }
}

impl std::fmt::Display for CampaignPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Device counts. Every device is in exactly one of the buckets other than `total`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCounts {
    /// Devices in the campaign.
    pub total: i64,
    /// Devices whose wave has not started, or that the vendor has not picked up yet.
    pub pending: i64,
    /// Devices downloading or installing.
    pub in_progress: i64,
    /// Devices now running the package's version.
    pub succeeded: i64,
    /// Devices that failed or timed out.
    pub failed: i64,
    /// Devices unknown to the vendor, rejected by it, already on the version, or cancelled;
    /// they never block completion.
    pub skipped: i64,
}

/// One wave's summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    /// Position of the wave, from 0.
    pub index: i32,
    /// Devices in the wave.
    pub devices: i64,
    /// Deterministic name of the vendor rollout, derived from the campaign UID and the index.
    pub name: String,
    /// The vendor's ID of the rollout: ThingSpace campaign ID or IoTDA task ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Where the wave is.
    pub phase: WavePhase,
    /// Device counts of this wave.
    pub counts: DeviceCounts,
    /// When the wave started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the wave finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// Where a wave is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WavePhase {
    /// Not started.
    #[default]
    Pending,
    /// Devices are being upgraded.
    Running,
    /// Every device finished and failures stayed within the threshold.
    Succeeded,
    /// Failures crossed the threshold.
    Failed,
    /// Stopped vendor-side before finishing.
    Cancelled,
}

/// A device that failed, with the vendor's reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedDevice {
    /// The device ID.
    pub device: String,
    /// The wave it was in.
    pub wave: i32,
    /// The vendor's reason (result code or message), or `TimedOut`.
    pub reason: String,
}

/// What otaplane last observed about an [`UpgradeCampaign`]. Stays small for 100,000 devices:
/// counts and capped lists, never one entry per device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeCampaignStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (finished successfully), `Progressing` / `Reconciling` (waves running) and
    /// `Stalled` (a spec error such as a package of another vendor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Where the campaign is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CampaignPhase>,
    /// Succeeded devices over all devices, for example `120/1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Device counts over all waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<DeviceCounts>,
    /// Index of the wave running or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<i32>,
    /// Every wave started so far, with its vendor ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub waves: Vec<WaveStatus>,
    /// The first 50 failed devices with the vendor's reason; `counts.failed` has the total.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub failed_devices: Vec<FailedDevice>,
    /// When the first wave started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the campaign reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}
