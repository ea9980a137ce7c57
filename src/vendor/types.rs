//! Vendor-neutral values exchanged between the reconcile layer and the vendor clients.

/// What to register: the package's identity and vendor metadata, without any CRD type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    /// Namespace of the FirmwarePackage; part of the deterministic object key.
    pub namespace: String,
    /// Name of the FirmwarePackage; part of the deterministic object key.
    pub name: String,
    /// The firmware version.
    pub version: String,
    /// Release note / description.
    pub description: Option<String>,
    /// Vendor-specific metadata.
    pub vendor: PackageVendorSpec,
}

/// The vendor block of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageVendorSpec {
    /// ThingSpace file metadata.
    ThingSpace {
        /// Device make.
        make: String,
        /// Device model.
        model: String,
        /// Target path on the device.
        local_target_path: String,
    },
    /// IoTDA package metadata.
    Iotda {
        /// Product ID.
        product_id: String,
        /// Resource space, already defaulted from the provider.
        app_id: Option<String>,
        /// `firmwarePackage`, `softwarePackage` or `modulePackage`.
        package_type: String,
        /// Module name for module packages.
        module_name: Option<String>,
        /// Versions the package upgrades from.
        support_source_versions: Vec<String>,
        /// Free text pushed to devices.
        custom_info: Option<String>,
    },
    /// IoTaaP: nothing is registered ahead of a deploy.
    Iotaap,
}

/// A package as the vendor knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisteredPackage {
    /// The vendor's identifier (ThingSpace file name, IoTDA package ID).
    pub external_id: String,
    /// The version the vendor recorded.
    pub version: String,
    /// The checksum the vendor recorded, when it keeps one (IoTDA `sign`).
    pub sha256: Option<String>,
    /// IoTDA: the OBS bucket.
    pub obs_bucket: Option<String>,
    /// IoTDA: the OBS object key.
    pub obs_object_key: Option<String>,
}

/// What became of a delete request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The vendor deleted it.
    Deleted,
    /// It was already gone.
    AlreadyGone,
    /// The vendor has no delete API (ThingSpace files): it stays.
    NotSupported,
}

/// One wave to roll out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutSpec {
    /// Deterministic name derived from the campaign UID and the wave index.
    pub name: String,
    /// Devices in the wave.
    pub devices: Vec<String>,
    /// Last day the vendor may keep trying (ThingSpace end date), as `YYYY-MM-DD`.
    pub end_date: Option<String>,
    /// ThingSpace: UTC hour windows for download and install.
    pub download_windows: Vec<(u8, u8)>,
    /// ThingSpace: UTC hour windows for install.
    pub install_windows: Vec<(u8, u8)>,
    /// IoTDA: retry count and interval in minutes.
    pub retry: Option<(i32, i32)>,
    /// IoTDA: gateway task mode.
    pub gateway_mode: bool,
}

/// A device's state in a rollout, normalized across vendors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Not picked up yet.
    Pending,
    /// Downloading or installing.
    InProgress,
    /// Now on the target version.
    Succeeded,
    /// Failed, with the vendor's reason.
    Failed(String),
    /// Stopped before it finished.
    Cancelled,
    /// Not upgraded and never will be in this rollout: unknown to the vendor, rejected, or
    /// already on the version. The reason says which.
    Skipped(String),
}

impl DeviceState {
    /// Whether the device will not change state any more in this rollout.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, DeviceState::Pending | DeviceState::InProgress)
    }
}

/// Most failed devices (and unfinished samples) one progress report carries.
pub const PROGRESS_SAMPLE_LIMIT: usize = 50;

/// A rollout as one poll observed it: exact counts, and bounded samples of device IDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutProgress {
    /// How many devices are in each state.
    pub tally: Tally,
    /// The first failed devices with the vendor's reason, at most [`PROGRESS_SAMPLE_LIMIT`].
    pub failures: Vec<(String, String)>,
    /// Some devices that have not finished, at most [`PROGRESS_SAMPLE_LIMIT`].
    pub unfinished_sample: Vec<String>,
    /// The vendor's own status word for the rollout (`CampaignScheduled`, `Processing`, ...).
    pub vendor_status: String,
}

impl RolloutProgress {
    /// Counts one device, keeping the samples bounded.
    pub fn record(&mut self, device: &str, state: DeviceState) {
        let tally = &mut self.tally;
        match state {
            DeviceState::Pending => tally.pending += 1,
            DeviceState::InProgress => tally.in_progress += 1,
            DeviceState::Succeeded => tally.succeeded += 1,
            DeviceState::Failed(_) => tally.failed += 1,
            DeviceState::Cancelled => tally.cancelled += 1,
            DeviceState::Skipped(_) => tally.skipped += 1,
        }
        match state {
            DeviceState::Failed(reason) if self.failures.len() < PROGRESS_SAMPLE_LIMIT => {
                self.failures.push((device.to_string(), reason));
            }
            DeviceState::Pending | DeviceState::InProgress
                if self.unfinished_sample.len() < PROGRESS_SAMPLE_LIMIT =>
            {
                self.unfinished_sample.push(device.to_string());
            }
            _ => {}
        }
    }

    /// Whether every device reached a terminal state.
    pub fn is_finished(&self) -> bool {
        self.tally.pending == 0 && self.tally.in_progress == 0
    }
}

/// Device counts per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Not picked up yet.
    pub pending: u64,
    /// Downloading or installing.
    pub in_progress: u64,
    /// Done.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Stopped.
    pub cancelled: u64,
    /// Unknown, rejected or already on the version.
    pub skipped: u64,
}

impl Tally {
    /// All devices counted.
    pub fn total(&self) -> u64 {
        self.pending
            + self.in_progress
            + self.succeeded
            + self.failed
            + self.cancelled
            + self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_every_device_and_bounds_its_samples() {
        let mut progress = RolloutProgress::default();
        for index in 0..120 {
            let state = match index % 3 {
                0 => DeviceState::Failed("RovaClientDownloadFailed".into()),
                1 => DeviceState::InProgress,
                _ => DeviceState::Succeeded,
            };
            progress.record(&format!("dev-{index}"), state);
        }
        assert_eq!(progress.tally.total(), 120);
        assert_eq!(progress.tally.failed, 40);
        assert_eq!(progress.failures.len(), PROGRESS_SAMPLE_LIMIT.min(40));
        assert_eq!(
            progress.failures[0],
            ("dev-0".into(), "RovaClientDownloadFailed".into())
        );
        assert_eq!(progress.unfinished_sample.len(), 40);
        assert!(!progress.is_finished());
    }
}
