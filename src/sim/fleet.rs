//! The simulated device fleet shared by every vendor simulator.
//!
//! # Model
//!
//! A device is identified by a [`DeviceKey`]: vendor, vendor account (ThingSpace account name,
//! IoTDA project id, IoTaaP user id) and the vendor's device id. Each device has a current
//! firmware version and a [`Behaviour`] (succeeds, fails, stays offline, is slow, rejects).
//! Devices come from the configuration (`fleet.devices`), from the admin API, or are created
//! on first mention ([`Fleet::ensure_device`]) with `fleet.default_version` and a behaviour
//! chosen by the first matching rule in `fleet.rules` (device-id glob and/or a seeded
//! probability), falling back to `fleet.default_behaviour`. Because probability rules hash the
//! seed with the device key, the same device always gets the same behaviour for a given seed,
//! whatever order devices are mentioned in.
//!
//! # Upgrades
//!
//! A vendor's campaign logic calls [`Fleet::start_upgrade`] with the device, the target
//! version, the virtual time the device starts working on it and an optional deadline (the
//! campaign's end). The outcome and its timing are decided right then, from the behaviour and
//! the seed, so [`Fleet::progress`] is a pure function of the virtual time:
//!
//! ```text
//! Queued ──(queue wait)──> Downloading{percent} ──> Installing ──> Succeeded | Failed
//! ```
//!
//! with these shortcuts: a device already on the target version is `Succeeded {
//! already_current: true }` at the start time; a rejecting device is `Rejected` at the start
//! time; an offline device stays `Offline`; a slow device takes `factor` times longer. An
//! upgrade that has not finished by its deadline is `TimedOut`, and one cancelled with
//! [`Fleet::cancel_upgrade`] before it finished is `Cancelled`. The device's version
//! ([`Fleet::version_at`]) is the target of its latest upgrade that succeeded by then, so
//! later campaigns see the new version.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::Vendor;

/// What a device does when asked to upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// Downloads, installs and reports success.
    #[default]
    Succeeds,
    /// Downloads and installs, then reports a failure. `code`/`reason` are the vendor's result
    /// code and reason text; when absent each vendor uses its usual "install failed" values.
    Fails {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Never reports anything.
    Offline,
    /// Succeeds, but every phase takes `factor` times longer.
    Slow { factor: f64 },
    /// Refuses the upgrade at once with `reason` (the vendor's default when absent).
    Rejects {
        #[serde(default)]
        reason: Option<String>,
    },
}

/// One device's identity: vendor, account and device id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceKey {
    pub vendor: Vendor,
    pub account: String,
    pub device_id: String,
}

impl DeviceKey {
    /// Builds a key.
    pub fn new(vendor: Vendor, account: impl Into<String>, device_id: impl Into<String>) -> Self {
        Self {
            vendor,
            account: account.into(),
            device_id: device_id.into(),
        }
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.vendor, self.account, self.device_id)
    }
}

/// A rule choosing the behaviour of devices created on first mention. Every given condition
/// must hold; the first matching rule wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourRule {
    /// Only devices of this vendor.
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// Only devices of this account (exact match).
    #[serde(default)]
    pub account: Option<String>,
    /// Device-id glob: `*` matches any run of characters, `?` one character (`"99001*"`).
    #[serde(default)]
    pub device: Option<String>,
    /// Matches this fraction of devices (0.0..=1.0), chosen by a hash of the seed and the key.
    #[serde(default)]
    pub probability: Option<f64>,
    /// The behaviour of matching devices.
    pub behaviour: Behaviour,
}

/// A device declared up front (configuration `fleet.devices` or `POST /_sim/devices`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub vendor: Vendor,
    pub account: String,
    pub id: String,
    /// Current version; the fleet default when absent (or unchanged when modifying).
    #[serde(default)]
    pub version: Option<String>,
    /// Behaviour; chosen by the rules when absent (or unchanged when modifying).
    #[serde(default)]
    pub behaviour: Option<Behaviour>,
    /// IoTaaP device token (12 characters); generated from the seed when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// Display name (IoTaaP `name`).
    #[serde(default)]
    pub name: Option<String>,
    /// IoTaaP device `type`.
    #[serde(default, rename = "type")]
    pub device_type: Option<String>,
}

/// How long the upgrade phases take, in virtual seconds, before jitter and slowness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeTiming {
    /// Time from the upgrade's start until the device checks in and starts downloading.
    pub queue_secs: f64,
    /// Download time.
    pub download_secs: f64,
    /// Install and reboot time.
    pub install_secs: f64,
    /// Each upgrade's phases are scaled by a factor drawn from `1 ± jitter` (0.0..1.0).
    pub jitter: f64,
}

impl Default for UpgradeTiming {
    fn default() -> Self {
        Self {
            queue_secs: 10.0,
            download_secs: 30.0,
            install_secs: 20.0,
            jitter: 0.5,
        }
    }
}

/// The fleet section of the simulator configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Version of devices created on first mention.
    pub default_version: String,
    /// Behaviour when no rule matches.
    pub default_behaviour: Behaviour,
    /// Behaviour rules, first match wins.
    pub rules: Vec<BehaviourRule>,
    /// Devices that exist from the start (default: the demo IoTaaP user's three devices).
    pub devices: Vec<DeviceSpec>,
    /// Phase durations.
    pub timing: UpgradeTiming,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            default_version: "1.0.0".to_owned(),
            default_behaviour: Behaviour::Succeeds,
            rules: Vec::new(),
            devices: super::config::demo_iotaap_devices(),
            timing: UpgradeTiming::default(),
        }
    }
}

/// Identifies one upgrade started with [`Fleet::start_upgrade`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UpgradeId(pub u64);

/// A request to move one device to a version.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeRequest {
    pub key: DeviceKey,
    pub target_version: String,
    /// Virtual time the device starts working on it (may be in the future).
    pub starts_at: Timestamp,
    /// The upgrade is `TimedOut` if it has not finished by then.
    pub deadline: Option<Timestamp>,
}

/// Where one upgrade stands at a given virtual time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceProgress {
    /// Waiting for its start time or for the device to check in.
    Queued,
    /// Downloading the package.
    Downloading { percent: u8 },
    /// Installing / rebooting.
    Installing,
    /// Done; `already_current` when the device was already on the target version.
    Succeeded { already_current: bool },
    /// The device reported a failure (`None`: use the vendor's default code/reason).
    Failed {
        code: Option<String>,
        reason: Option<String>,
    },
    /// The device never reports (no deadline set).
    Offline,
    /// The device refused the upgrade (`None`: use the vendor's default reason).
    Rejected { reason: Option<String> },
    /// The deadline passed before the device finished.
    TimedOut,
    /// [`Fleet::cancel_upgrade`] was called before the device finished.
    Cancelled,
}

impl DeviceProgress {
    /// True for states that never change again.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Self::Queued | Self::Downloading { .. } | Self::Installing | Self::Offline
        )
    }
}

/// The outcome an upgrade was given when it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PlannedOutcome {
    Succeed,
    AlreadyCurrent,
    Fail {
        code: Option<String>,
        reason: Option<String>,
    },
    Offline,
    Reject {
        reason: Option<String>,
    },
}

/// Everything known about one upgrade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradeInfo {
    pub id: UpgradeId,
    pub key: DeviceKey,
    pub target_version: String,
    /// The device's version when the upgrade was started.
    pub from_version: String,
    pub starts_at: Timestamp,
    pub planned: PlannedOutcome,
    /// When the download starts (`None` for outcomes without a download).
    pub download_starts_at: Option<Timestamp>,
    /// When installing starts.
    pub install_starts_at: Option<Timestamp>,
    /// When the device would report its final result, ignoring deadline and cancellation.
    pub finishes_at: Option<Timestamp>,
    pub deadline: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
}

impl UpgradeInfo {
    /// The upgrade's state at `at`.
    pub fn progress_at(&self, at: Timestamp) -> DeviceProgress {
        if let Some(cut) = self.cut_off_at()
            && at >= cut
            && self.finishes_at.is_none_or(|f| f > cut)
        {
            return if self.cancelled_at == Some(cut) {
                DeviceProgress::Cancelled
            } else {
                DeviceProgress::TimedOut
            };
        }
        if at < self.starts_at {
            return DeviceProgress::Queued;
        }
        match &self.planned {
            PlannedOutcome::AlreadyCurrent => DeviceProgress::Succeeded {
                already_current: true,
            },
            PlannedOutcome::Reject { reason } => DeviceProgress::Rejected {
                reason: reason.clone(),
            },
            PlannedOutcome::Offline => DeviceProgress::Offline,
            PlannedOutcome::Succeed | PlannedOutcome::Fail { .. } => {
                let (Some(download), Some(install), Some(finish)) = (
                    self.download_starts_at,
                    self.install_starts_at,
                    self.finishes_at,
                ) else {
                    return DeviceProgress::Queued;
                };
                if at < download {
                    DeviceProgress::Queued
                } else if at < install {
                    let total = install.duration_since(download).as_secs_f64();
                    let done = at.duration_since(download).as_secs_f64();
                    let percent = if total > 0.0 {
                        ((done / total) * 100.0).clamp(0.0, 99.0) as u8
                    } else {
                        99
                    };
                    DeviceProgress::Downloading { percent }
                } else if at < finish {
                    DeviceProgress::Installing
                } else if let PlannedOutcome::Fail { code, reason } = &self.planned {
                    DeviceProgress::Failed {
                        code: code.clone(),
                        reason: reason.clone(),
                    }
                } else {
                    DeviceProgress::Succeeded {
                        already_current: false,
                    }
                }
            }
        }
    }

    /// The virtual time from which [`UpgradeInfo::progress_at`] no longer changes, or `None`
    /// if it never settles (an offline device without deadline).
    pub fn settles_at(&self) -> Option<Timestamp> {
        let natural = match self.planned {
            PlannedOutcome::AlreadyCurrent | PlannedOutcome::Reject { .. } => Some(self.starts_at),
            PlannedOutcome::Offline => None,
            PlannedOutcome::Succeed | PlannedOutcome::Fail { .. } => self.finishes_at,
        };
        match (natural, self.cut_off_at()) {
            (Some(n), Some(c)) => Some(n.min(c)),
            (n, c) => n.or(c),
        }
    }

    /// When the device's version becomes the target, if it ever does.
    pub fn version_changes_at(&self) -> Option<Timestamp> {
        if self.planned != PlannedOutcome::Succeed {
            return None;
        }
        let finish = self.finishes_at?;
        match self.cut_off_at() {
            Some(cut) if cut < finish => None,
            _ => Some(finish),
        }
    }

    fn cut_off_at(&self) -> Option<Timestamp> {
        match (self.cancelled_at, self.deadline) {
            (Some(c), Some(d)) => Some(c.min(d)),
            (c, d) => c.or(d),
        }
    }
}

/// A device as seen at one virtual time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    pub vendor: Vendor,
    pub account: String,
    pub id: String,
    /// Current version at the time asked.
    pub version: String,
    pub behaviour: Behaviour,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    pub created_at: Timestamp,
    /// The last time the device reported an upgrade result (success, failure or "already
    /// current"), if ever.
    pub last_report_at: Option<Timestamp>,
    /// Number of upgrades ever started on this device.
    pub upgrades: usize,
}

impl DeviceView {
    /// The device's key.
    pub fn key(&self) -> DeviceKey {
        DeviceKey::new(self.vendor, self.account.clone(), self.id.clone())
    }
}

#[derive(Debug, Clone)]
struct DeviceRecord {
    base_version: String,
    behaviour: Behaviour,
    token: Option<String>,
    name: Option<String>,
    device_type: Option<String>,
    created_at: Timestamp,
    upgrades: Vec<UpgradeId>,
}

#[derive(Debug, Default)]
struct FleetInner {
    devices: BTreeMap<DeviceKey, DeviceRecord>,
    upgrades: HashMap<UpgradeId, UpgradeInfo>,
    next_upgrade: u64,
}

/// The device fleet: devices of every vendor and their upgrades. Thread-safe.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    seed: u64,
    inner: Mutex<FleetInner>,
}

impl Fleet {
    /// A fleet holding the configured devices.
    pub fn new(config: FleetConfig, seed: u64, now: Timestamp) -> Self {
        let fleet = Self {
            config,
            seed,
            inner: Mutex::new(FleetInner::default()),
        };
        for spec in fleet.config.devices.clone() {
            fleet.upsert_device(spec, now);
        }
        fleet
    }

    /// The fleet configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FleetInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The device, created with the default version and a rule-chosen behaviour if it does
    /// not exist yet.
    pub fn ensure_device(&self, key: &DeviceKey, at: Timestamp) -> DeviceView {
        let mut inner = self.lock();
        self.ensure_record(&mut inner, key, at);
        view(&inner, key, at).expect("device was just ensured")
    }

    /// The device if it exists (never creates it).
    pub fn device(&self, key: &DeviceKey, at: Timestamp) -> Option<DeviceView> {
        view(&self.lock(), key, at)
    }

    /// Creates a device or changes the given fields of an existing one. Setting `version`
    /// makes it the device's current version from now on (in-flight upgrades still apply
    /// when they finish).
    pub fn upsert_device(&self, spec: DeviceSpec, at: Timestamp) -> DeviceView {
        let key = DeviceKey::new(spec.vendor, spec.account.clone(), spec.id.clone());
        let mut inner = self.lock();
        self.ensure_record(&mut inner, &key, at);
        let finished: Vec<UpgradeId> = if spec.version.is_some() {
            let record = &inner.devices[&key];
            record
                .upgrades
                .iter()
                .copied()
                .filter(|id| {
                    inner.upgrades[id]
                        .version_changes_at()
                        .is_some_and(|t| t <= at)
                })
                .collect()
        } else {
            Vec::new()
        };
        let record = inner
            .devices
            .get_mut(&key)
            .expect("device was just ensured");
        if let Some(version) = spec.version {
            record.base_version = version;
            record.upgrades.retain(|id| !finished.contains(id));
        }
        if let Some(behaviour) = spec.behaviour {
            record.behaviour = behaviour;
        }
        if spec.token.is_some() {
            record.token = spec.token;
        }
        if spec.name.is_some() {
            record.name = spec.name;
        }
        if spec.device_type.is_some() {
            record.device_type = spec.device_type;
        }
        view(&inner, &key, at).expect("device exists")
    }

    /// Removes a device; returns whether it existed. Its upgrades stay queryable.
    pub fn remove_device(&self, key: &DeviceKey) -> bool {
        self.lock().devices.remove(key).is_some()
    }

    /// All devices, optionally of one vendor and account, in key order.
    pub fn devices(
        &self,
        vendor: Option<Vendor>,
        account: Option<&str>,
        at: Timestamp,
    ) -> Vec<DeviceView> {
        let inner = self.lock();
        inner
            .devices
            .keys()
            .filter(|k| vendor.is_none_or(|v| k.vendor == v))
            .filter(|k| account.is_none_or(|a| k.account == a))
            .filter_map(|k| view(&inner, k, at))
            .collect()
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.lock().devices.len()
    }

    /// The device's version at `at` (creating the device if needed).
    pub fn version_at(&self, key: &DeviceKey, at: Timestamp) -> String {
        let mut inner = self.lock();
        self.ensure_record(&mut inner, key, at);
        current_version(&inner, key, at)
    }

    /// Starts an upgrade (creating the device if needed) and decides its outcome and timing.
    pub fn start_upgrade(&self, request: UpgradeRequest) -> UpgradeId {
        let mut inner = self.lock();
        self.ensure_record(&mut inner, &request.key, request.starts_at);
        let from_version = current_version(&inner, &request.key, request.starts_at);
        let behaviour = inner.devices[&request.key].behaviour.clone();
        let id = UpgradeId(inner.next_upgrade);
        inner.next_upgrade += 1;

        let planned = match &behaviour {
            Behaviour::Offline => PlannedOutcome::Offline,
            Behaviour::Rejects { reason } => PlannedOutcome::Reject {
                reason: reason.clone(),
            },
            _ if from_version == request.target_version => PlannedOutcome::AlreadyCurrent,
            Behaviour::Fails { code, reason } => PlannedOutcome::Fail {
                code: code.clone(),
                reason: reason.clone(),
            },
            Behaviour::Succeeds | Behaviour::Slow { .. } => PlannedOutcome::Succeed,
        };
        let (download_starts_at, install_starts_at, finishes_at) = match planned {
            PlannedOutcome::Succeed | PlannedOutcome::Fail { .. } => {
                let slowness = match behaviour {
                    Behaviour::Slow { factor } if factor.is_finite() && factor > 0.0 => factor,
                    _ => 1.0,
                };
                let timing = &self.config.timing;
                let jitter = timing.jitter.clamp(0.0, 0.99);
                let draw = |salt: &str| {
                    let u = unit_hash(
                        self.seed,
                        &[salt, &request.key.to_string(), &id.0.to_string()],
                    );
                    (1.0 - jitter + 2.0 * jitter * u) * slowness
                };
                let queue = secs(timing.queue_secs * draw("queue"));
                let download = secs(timing.download_secs * draw("download"));
                let install = secs(timing.install_secs * draw("install"));
                let d = request
                    .starts_at
                    .saturating_add(queue)
                    .unwrap_or(Timestamp::MAX);
                let i = d.saturating_add(download).unwrap_or(Timestamp::MAX);
                let f = i.saturating_add(install).unwrap_or(Timestamp::MAX);
                (Some(d), Some(i), Some(f))
            }
            _ => (None, None, None),
        };
        let info = UpgradeInfo {
            id,
            key: request.key.clone(),
            target_version: request.target_version,
            from_version,
            starts_at: request.starts_at,
            planned,
            download_starts_at,
            install_starts_at,
            finishes_at,
            deadline: request.deadline,
            cancelled_at: None,
        };
        inner.upgrades.insert(id, info);
        if let Some(record) = inner.devices.get_mut(&request.key) {
            record.upgrades.push(id);
        }
        id
    }

    /// Everything known about an upgrade.
    pub fn upgrade(&self, id: UpgradeId) -> Option<UpgradeInfo> {
        self.lock().upgrades.get(&id).cloned()
    }

    /// Several upgrades at once (one lock), in the order asked; unknown ids are skipped.
    pub fn upgrades(&self, ids: &[UpgradeId]) -> Vec<UpgradeInfo> {
        let inner = self.lock();
        ids.iter()
            .filter_map(|id| inner.upgrades.get(id).cloned())
            .collect()
    }

    /// The upgrade's state at `at` ([`DeviceProgress::Cancelled`] for an unknown id).
    pub fn progress(&self, id: UpgradeId, at: Timestamp) -> DeviceProgress {
        self.lock()
            .upgrades
            .get(&id)
            .map_or(DeviceProgress::Cancelled, |u| u.progress_at(at))
    }

    /// Stops an upgrade at `at` unless it already settled by then; returns its state at `at`
    /// after the cancellation. Cancelling twice keeps the earlier time.
    pub fn cancel_upgrade(&self, id: UpgradeId, at: Timestamp) -> DeviceProgress {
        let mut inner = self.lock();
        let Some(upgrade) = inner.upgrades.get_mut(&id) else {
            return DeviceProgress::Cancelled;
        };
        let settled = upgrade.settles_at().is_some_and(|s| s <= at);
        if !settled && upgrade.cancelled_at.is_none_or(|c| c > at) {
            upgrade.cancelled_at = Some(at);
        }
        upgrade.progress_at(at)
    }

    /// Moves an upgrade's deadline (e.g. a campaign's end date changed). Has no effect on an
    /// upgrade that already settled at `now`.
    pub fn set_deadline(&self, id: UpgradeId, deadline: Option<Timestamp>, now: Timestamp) {
        if let Some(upgrade) = self.lock().upgrades.get_mut(&id)
            && upgrade.settles_at().is_none_or(|s| s > now)
        {
            upgrade.deadline = deadline;
        }
    }

    fn ensure_record(&self, inner: &mut FleetInner, key: &DeviceKey, at: Timestamp) {
        if inner.devices.contains_key(key) {
            return;
        }
        let behaviour = self.behaviour_for(key);
        let token = (key.vendor == Vendor::Iotaap).then(|| generated_token(self.seed, key));
        inner.devices.insert(
            key.clone(),
            DeviceRecord {
                base_version: self.config.default_version.clone(),
                behaviour,
                token,
                name: None,
                device_type: None,
                created_at: at,
                upgrades: Vec::new(),
            },
        );
    }

    /// The behaviour a new device with this key would get from the rules.
    pub fn behaviour_for(&self, key: &DeviceKey) -> Behaviour {
        for (index, rule) in self.config.rules.iter().enumerate() {
            if rule.vendor.is_some_and(|v| v != key.vendor) {
                continue;
            }
            if rule.account.as_deref().is_some_and(|a| a != key.account) {
                continue;
            }
            if rule
                .device
                .as_deref()
                .is_some_and(|p| !glob_match(p, &key.device_id))
            {
                continue;
            }
            if let Some(p) = rule.probability {
                let u = unit_hash(self.seed, &["rule", &index.to_string(), &key.to_string()]);
                if u >= p {
                    continue;
                }
            }
            return rule.behaviour.clone();
        }
        self.config.default_behaviour.clone()
    }
}

fn secs(value: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(value.max(0.0)).unwrap_or(SignedDuration::MAX)
}

fn current_version(inner: &FleetInner, key: &DeviceKey, at: Timestamp) -> String {
    let Some(record) = inner.devices.get(key) else {
        return String::new();
    };
    record
        .upgrades
        .iter()
        .filter_map(|id| inner.upgrades.get(id))
        .filter_map(|u| {
            u.version_changes_at()
                .filter(|t| *t <= at)
                .map(|t| (t, u.id, u))
        })
        .max_by_key(|(t, id, _)| (*t, *id))
        .map_or_else(
            || record.base_version.clone(),
            |(_, _, u)| u.target_version.clone(),
        )
}

fn view(inner: &FleetInner, key: &DeviceKey, at: Timestamp) -> Option<DeviceView> {
    let record = inner.devices.get(key)?;
    let last_report_at = record
        .upgrades
        .iter()
        .filter_map(|id| inner.upgrades.get(id))
        .filter(|u| {
            !matches!(
                u.planned,
                PlannedOutcome::Offline | PlannedOutcome::Reject { .. }
            )
        })
        .filter_map(|u| {
            let settled = u.settles_at()?;
            let progress = u.progress_at(settled);
            matches!(
                progress,
                DeviceProgress::Succeeded { .. } | DeviceProgress::Failed { .. }
            )
            .then_some(settled)
        })
        .filter(|t| *t <= at)
        .max();
    Some(DeviceView {
        vendor: key.vendor,
        account: key.account.clone(),
        id: key.device_id.clone(),
        version: current_version(inner, key, at),
        behaviour: record.behaviour.clone(),
        token: record.token.clone(),
        name: record.name.clone(),
        device_type: record.device_type.clone(),
        created_at: record.created_at,
        last_report_at,
        upgrades: record.upgrades.len(),
    })
}

/// A deterministic 12-character alphanumeric token for an IoTaaP device.
fn generated_token(seed: u64, key: &DeviceKey) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = hash_parts(seed, &["token", &key.to_string()]);
    (0..12)
        .map(|_| {
            state = splitmix64(state);
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Matches `text` against a glob where `*` is any run of characters and `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// FNV-1a over the parts (with separators), mixed with the seed.
pub(crate) fn hash_parts(seed: u64, parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ splitmix64(seed);
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    splitmix64(hash)
}

/// A value in `[0, 1)` from the seed and the parts.
pub(crate) fn unit_hash(seed: u64, parts: &[&str]) -> f64 {
    (hash_parts(seed, parts) >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        "2024-06-01T00:00:00Z".parse().unwrap()
    }

    fn fleet(rules: Vec<BehaviourRule>) -> Fleet {
        let config = FleetConfig {
            rules,
            timing: UpgradeTiming {
                queue_secs: 10.0,
                download_secs: 10.0,
                install_secs: 10.0,
                jitter: 0.0,
            },
            ..FleetConfig::default()
        };
        Fleet::new(config, 7, t0())
    }

    fn key(id: &str) -> DeviceKey {
        DeviceKey::new(Vendor::ThingSpace, "acc", id)
    }

    fn start(fleet: &Fleet, id: &str, version: &str) -> UpgradeId {
        fleet.start_upgrade(UpgradeRequest {
            key: key(id),
            target_version: version.into(),
            starts_at: t0(),
            deadline: None,
        })
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    #[test]
    fn successful_upgrade_moves_through_phases_and_changes_version() {
        let fleet = fleet(vec![]);
        let id = start(&fleet, "d1", "2.0.0");
        assert_eq!(fleet.progress(id, at(5)), DeviceProgress::Queued);
        assert_eq!(
            fleet.progress(id, at(15)),
            DeviceProgress::Downloading { percent: 50 }
        );
        assert_eq!(fleet.progress(id, at(25)), DeviceProgress::Installing);
        assert_eq!(fleet.version_at(&key("d1"), at(25)), "1.0.0");
        assert_eq!(
            fleet.progress(id, at(30)),
            DeviceProgress::Succeeded {
                already_current: false
            }
        );
        assert_eq!(fleet.version_at(&key("d1"), at(30)), "2.0.0");
        let again = start(&fleet, "d1", "2.0.0");
        assert_eq!(
            fleet.progress(again, at(0)),
            DeviceProgress::Queued,
            "a future version check is not done before the start"
        );
        let later = fleet.start_upgrade(UpgradeRequest {
            key: key("d1"),
            target_version: "2.0.0".into(),
            starts_at: at(40),
            deadline: None,
        });
        assert_eq!(
            fleet.progress(later, at(40)),
            DeviceProgress::Succeeded {
                already_current: true
            }
        );
    }

    #[test]
    fn rules_pick_behaviours_by_glob_and_first_match() {
        let fleet = fleet(vec![
            BehaviourRule {
                vendor: None,
                account: None,
                device: Some("bad-*".into()),
                probability: None,
                behaviour: Behaviour::Fails {
                    code: Some("7".into()),
                    reason: None,
                },
            },
            BehaviourRule {
                vendor: Some(Vendor::ThingSpace),
                account: None,
                device: Some("off?".into()),
                probability: None,
                behaviour: Behaviour::Offline,
            },
        ]);
        let bad = start(&fleet, "bad-1", "2");
        assert_eq!(
            fleet.progress(bad, at(100)),
            DeviceProgress::Failed {
                code: Some("7".into()),
                reason: None
            }
        );
        assert_eq!(fleet.version_at(&key("bad-1"), at(100)), "1.0.0");
        let off = start(&fleet, "off1", "2");
        assert_eq!(fleet.progress(off, at(10_000)), DeviceProgress::Offline);
        let ok = start(&fleet, "off12", "2");
        assert_eq!(
            fleet.progress(ok, at(100)),
            DeviceProgress::Succeeded {
                already_current: false
            }
        );
    }

    #[test]
    fn probability_rules_are_deterministic_and_roughly_proportional() {
        let rule = BehaviourRule {
            vendor: None,
            account: None,
            device: None,
            probability: Some(0.25),
            behaviour: Behaviour::Offline,
        };
        let a = fleet(vec![rule.clone()]);
        let b = fleet(vec![rule]);
        let offline = (0..2000)
            .filter(|i| a.behaviour_for(&key(&format!("dev{i}"))) == Behaviour::Offline)
            .count();
        assert!((400..600).contains(&offline), "{offline} of 2000 offline");
        for i in (0..2000).rev() {
            let k = key(&format!("dev{i}"));
            assert_eq!(a.behaviour_for(&k), b.behaviour_for(&k));
        }
    }

    #[test]
    fn deadline_and_cancel_stop_unfinished_upgrades() {
        let fleet = fleet(vec![BehaviourRule {
            vendor: None,
            account: None,
            device: Some("slow".into()),
            probability: None,
            behaviour: Behaviour::Slow { factor: 10.0 },
        }]);
        let slow = fleet.start_upgrade(UpgradeRequest {
            key: key("slow"),
            target_version: "2".into(),
            starts_at: t0(),
            deadline: Some(at(150)),
        });
        assert_eq!(fleet.progress(slow, at(99)), DeviceProgress::Queued);
        assert_eq!(
            fleet.progress(slow, at(149)),
            DeviceProgress::Downloading { percent: 49 }
        );
        assert_eq!(fleet.progress(slow, at(150)), DeviceProgress::TimedOut);
        assert_eq!(fleet.version_at(&key("slow"), at(1000)), "1.0.0");

        let quick = start(&fleet, "quick", "2");
        assert_eq!(
            fleet.cancel_upgrade(quick, at(12)),
            DeviceProgress::Cancelled
        );
        assert_eq!(
            fleet.progress(quick, at(11)),
            DeviceProgress::Downloading { percent: 10 }
        );
        assert_eq!(fleet.progress(quick, at(1000)), DeviceProgress::Cancelled);

        let done = start(&fleet, "done", "2");
        assert_eq!(
            fleet.cancel_upgrade(done, at(31)),
            DeviceProgress::Succeeded {
                already_current: false
            },
            "a finished upgrade stays finished"
        );
    }

    #[test]
    fn rejecting_devices_refuse_before_the_version_check() {
        let fleet = fleet(vec![BehaviourRule {
            vendor: None,
            account: None,
            device: Some("r*".into()),
            probability: None,
            behaviour: Behaviour::Rejects {
                reason: Some("nope".into()),
            },
        }]);
        let id = start(&fleet, "r1", "1.0.0");
        assert_eq!(
            fleet.progress(id, at(0)),
            DeviceProgress::Rejected {
                reason: Some("nope".into())
            }
        );
        assert_eq!(fleet.upgrade(id).unwrap().settles_at(), Some(t0()));
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*", ""));
        assert!(glob_match("99*", "990013907835573"));
        assert!(glob_match("*573", "990013907835573"));
        assert!(glob_match("9?0*3", "990013907835573"));
        assert!(!glob_match("98*", "990013907835573"));
        assert!(glob_match("/api/*/files/*", "/api/fota/v2/files/acc"));
        assert!(!glob_match("abc", "abcd"));
    }

    #[test]
    fn iotaap_devices_get_stable_tokens() {
        let fleet = fleet(vec![]);
        let k = DeviceKey::new(Vendor::Iotaap, "user", "5e1a5ecbe2ac3a3bdb45fcc4");
        let view = fleet.ensure_device(&k, t0());
        let token = view.token.unwrap();
        assert_eq!(token.len(), 12);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(fleet.device(&k, t0()).unwrap().token.unwrap(), token);
    }
}
