//! Simulator configuration, read from YAML (`otaplane sim --config FILE`).
//!
//! Every field has a default, so an empty file (or no file) gives a working simulator with
//! public demo credentials:
//!
//! | vendor | demo identity | demo secret |
//! |---|---|---|
//! | ThingSpace | account `0000123456-00001`, OAuth client id `demo-client-id`, UWS user `demo-user` | client secret `demo-client-secret`, password `demo-password` |
//! | IoTaaP | user `demo@iotaap.local` (id `5e10fc5e77ba18070312e171`) with three devices | password `demo-password` |
//! | IoTDA / OBS | see `iotda::IotdaConfig` / `obs::ObsConfig` | |
//!
//! A complete example lives in `examples/sim/sim.yaml`. Top-level keys:
//!
//! ```yaml
//! listen: 127.0.0.1:8080        # ThingSpace (/api), IoTDA (/v5, /v3), IoTaaP (/v1), admin (/_sim)
//! obs_listen: 127.0.0.1:9000    # OBS (path-style and virtual-host style)
//! time_scale: 60                # virtual seconds per real second
//! start_time: 2024-06-01T00:00:00Z   # virtual start (default: the real time at start-up)
//! seed: 42                      # makes behaviour rules and fault rates repeatable
//! max_upload_bytes: 1074790400  # multipart uploads above this get 413
//! fleet: {...}                  # see fleet::FleetConfig
//! faults: [...]                 # see faults::FaultRule
//! thingspace: {...}
//! iotaap: {...}
//! iotda: {...}
//! obs: {...}
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Vendor;
use super::faults::FaultRule;
use super::fleet::{DeviceSpec, FleetConfig};
use super::{SimError, iotda, obs};

/// A secret string: deserializes from a plain string, never shows in `Debug` output, and
/// serializes as `"***"`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for comparisons and signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// The whole simulator configuration (see the module docs for the YAML layout).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Main listener address; `127.0.0.1:0` (a free port) when absent, `127.0.0.1:8080` for
    /// `otaplane sim`.
    pub listen: Option<SocketAddr>,
    /// OBS listener address; `127.0.0.1:0` when absent, `127.0.0.1:9000` for `otaplane sim`.
    pub obs_listen: Option<SocketAddr>,
    /// Virtual seconds per real second.
    pub time_scale: f64,
    /// Virtual time at start-up; the real time when absent.
    pub start_time: Option<Timestamp>,
    /// Seed for behaviour rules, fault rates and generated tokens.
    pub seed: u64,
    /// Largest accepted multipart upload, in bytes (default 1 GiB + 1 MiB).
    pub max_upload_bytes: u64,
    /// The device fleet.
    pub fleet: FleetConfig,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    pub thingspace: ThingSpaceConfig,
    pub iotaap: IotaapConfig,
    pub iotda: iotda::IotdaConfig,
    pub obs: obs::ObsConfig,
}

/// Default upload limit: 1 GiB (IoTDA's package limit) plus 1 MiB of multipart overhead.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = (1 << 30) + (1 << 20);

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: None,
            obs_listen: None,
            time_scale: 1.0,
            start_time: None,
            seed: 42,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            fleet: FleetConfig::default(),
            faults: Vec::new(),
            thingspace: ThingSpaceConfig::default(),
            iotaap: IotaapConfig::default(),
            iotda: iotda::IotdaConfig::default(),
            obs: obs::ObsConfig::default(),
        }
    }
}

impl SimConfig {
    /// Parses a YAML document; unknown keys are errors.
    pub fn from_yaml(text: &str) -> Result<Self, SimError> {
        serde_saphyr::from_str(text).map_err(|e| SimError::Config(e.to_string()))
    }

    /// Reads and parses a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_yaml(&text)
    }
}

/// ThingSpace settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThingSpaceConfig {
    pub accounts: Vec<ThingSpaceAccount>,
    /// Shape of `GET /files/{acc}`: `wrapped` (`{"AvailableFilesResponse":[...]}`, what the
    /// SDK expects) or `bare` (a JSON array, as the documentation page shows).
    pub file_list_shape: FileListShape,
    /// Virtual seconds a new campaign stays `CampaignRequestPending` before validation.
    pub validation_delay_secs: u64,
    /// OAuth token lifetime (the same token is returned until it runs out).
    pub token_lifetime_secs: u64,
    /// An M2M session expires after this much virtual idle time.
    pub session_idle_secs: u64,
    /// Consecutive wrong passwords that lock a user.
    pub max_failed_logins: u32,
    /// Status spelling for a validated campaign: `CampaignQueued` (documentation) or
    /// `CampaignRequestQueued` (SDK enum).
    pub queued_status: String,
    /// Firmware that software campaigns can target, per account.
    pub software: Vec<ThingSpaceSoftware>,
}

impl Default for ThingSpaceConfig {
    fn default() -> Self {
        Self {
            accounts: vec![ThingSpaceAccount::default()],
            file_list_shape: FileListShape::Wrapped,
            validation_delay_secs: 5,
            token_lifetime_secs: 3600,
            session_idle_secs: 20 * 60,
            max_failed_logins: 5,
            queued_status: "CampaignQueued".into(),
            software: vec![ThingSpaceSoftware::default()],
        }
    }
}

/// The two documented shapes of the ThingSpace file list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileListShape {
    Wrapped,
    Bare,
}

/// One ThingSpace billing account with its API credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThingSpaceAccount {
    /// Billing account name, e.g. `0000123456-00001`.
    pub name: String,
    /// OAuth application key.
    pub client_id: String,
    /// OAuth application secret.
    pub client_secret: Secret,
    /// UWS user for the M2M session.
    pub username: String,
    pub password: Secret,
}

impl Default for ThingSpaceAccount {
    fn default() -> Self {
        Self {
            name: "0000123456-00001".into(),
            client_id: "demo-client-id".into(),
            client_secret: Secret::new("demo-client-secret"),
            username: "demo-user".into(),
            password: Secret::new("demo-password"),
        }
    }
}

/// A software (firmware) image known to ThingSpace, for software campaigns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThingSpaceSoftware {
    /// Account that sees it.
    pub account: String,
    #[serde(rename = "softwareName")]
    pub software_name: String,
    pub make: String,
    pub model: String,
    #[serde(rename = "launchDate")]
    pub launch_date: String,
    #[serde(rename = "releaseNote")]
    pub release_note: String,
    #[serde(rename = "distributionType")]
    pub distribution_type: String,
}

impl Default for ThingSpaceSoftware {
    fn default() -> Self {
        Self {
            account: "0000123456-00001".into(),
            software_name: "FOTA_Verizon_Model-A_01To02_HF".into(),
            make: "Verizon".into(),
            model: "Model-A".into(),
            launch_date: "2024-01-01".into(),
            release_note: "Demo firmware".into(),
            distribution_type: "HTTP".into(),
        }
    }
}

/// IoTaaP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IotaapConfig {
    pub users: Vec<IotaapUser>,
    /// HS256 key for login JWTs; a random one per start when absent.
    pub jwt_secret: Option<Secret>,
    /// JWT lifetime (30 days).
    pub token_lifetime_secs: u64,
    /// Adds the device's running version as `fw_version` to device objects (IoTaaP reports
    /// it only over MQTT; off by default to stay faithful to the REST API).
    pub report_fw_version: bool,
}

impl Default for IotaapConfig {
    fn default() -> Self {
        Self {
            users: vec![IotaapUser::default()],
            jwt_secret: None,
            token_lifetime_secs: 30 * 24 * 3600,
            report_fw_version: false,
        }
    }
}

/// An IoTaaP user. Its devices are fleet devices with `vendor: iotaap` and `account` = `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IotaapUser {
    /// 24-hex ObjectId.
    pub id: String,
    pub email: String,
    pub password: Secret,
    /// `user` or `admin`.
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "user".into()
}

/// The demo IoTaaP user's id.
pub const DEMO_IOTAAP_USER_ID: &str = "5e10fc5e77ba18070312e171";

impl Default for IotaapUser {
    fn default() -> Self {
        Self {
            id: DEMO_IOTAAP_USER_ID.into(),
            email: "demo@iotaap.local".into(),
            password: Secret::new("demo-password"),
            role: default_role(),
        }
    }
}

/// The three devices of the demo IoTaaP user (the default `fleet.devices`).
pub fn demo_iotaap_devices() -> Vec<DeviceSpec> {
    [
        ("5e1a5ecbe2ac3a3bdb45fc01", "HlQeS1oKcVYx", "warp-machine"),
        ("5e1a5ecbe2ac3a3bdb45fc02", "FSouSAJRiJ3v", "flux-capacitor"),
        (
            "5e1a5ecbe2ac3a3bdb45fc03",
            "Qm7TzXw2LpNa",
            "sonic-screwdriver",
        ),
    ]
    .into_iter()
    .map(|(id, token, name)| DeviceSpec {
        vendor: Vendor::Iotaap,
        account: DEMO_IOTAAP_USER_ID.into(),
        id: id.into(),
        version: None,
        behaviour: None,
        token: Some(token.into()),
        name: Some(name.into()),
        device_type: Some("Magnolia".into()),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fleet::Behaviour;

    #[test]
    fn empty_document_gives_defaults() {
        let config = SimConfig::from_yaml("{}").unwrap();
        assert_eq!(config.thingspace.accounts[0].name, "0000123456-00001");
        assert_eq!(config.fleet.devices.len(), 3);
        assert_eq!(config.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
    }

    #[test]
    fn yaml_with_rules_faults_and_accounts_parses() {
        let text = r#"
time_scale: 100
seed: 7
fleet:
  default_version: "0.9"
  rules:
    - device: "99*"
      behaviour: offline
    - probability: 0.1
      behaviour:
        fails: {reason: RovaClientDownloadFailed}
    - vendor: thingspace
      behaviour:
        slow: {factor: 3}
faults:
  - vendor: thingspace
    path: /api/fota/v2/files/*
    count: 2
    action: {throttle: {retry_after_secs: 3}}
  - action: flow_control
thingspace:
  file_list_shape: bare
  accounts:
    - name: "0000999999-00001"
      client_id: id
      client_secret: s3cret
      username: u
      password: p4ss
"#;
        let config = SimConfig::from_yaml(text).unwrap();
        assert_eq!(config.time_scale, 100.0);
        assert_eq!(config.fleet.rules[0].behaviour, Behaviour::Offline);
        assert_eq!(
            config.fleet.rules[1].behaviour,
            Behaviour::Fails {
                code: None,
                reason: Some("RovaClientDownloadFailed".into())
            }
        );
        assert_eq!(config.faults.len(), 2);
        assert_eq!(config.thingspace.file_list_shape, FileListShape::Bare);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("p4ss"),
            "{debug}"
        );
    }

    #[test]
    fn the_sample_configuration_parses() {
        let config = SimConfig::from_yaml(include_str!("../../examples/sim/sim.yaml")).unwrap();
        assert_eq!(config.time_scale, 60.0);
        assert_eq!(config.fleet.rules.len(), 4);
        assert_eq!(config.fleet.devices.len(), 3);
        assert_eq!(config.faults.len(), 2);
        assert_eq!(config.iotaap.users[0].email, "demo@iotaap.local");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(SimConfig::from_yaml("listen_port: 1").is_err());
    }
}
