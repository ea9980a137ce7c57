//! `OtaProvider`: one vendor account that packages and campaigns are registered with.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectReference, conditions_schema};

/// Default ThingSpace API root; the OAuth, M2M and FOTA paths hang below it.
pub const THINGSPACE_DEFAULT_BASE_URL: &str = "https://thingspace.verizon.com/api";
/// Default IoTaaP management API root.
pub const IOTAAP_DEFAULT_BASE_URL: &str = "https://api.iotaap.io/v1";
/// Default IoTaaP device-facing API root (latest version and download).
pub const IOTAAP_DEFAULT_DEVICE_URL: &str = "https://ota.iotaap.io/v1";
/// Default number of IoTaaP per-device deploys in flight at once.
pub const IOTAAP_DEFAULT_DEPLOY_CONCURRENCY: i32 = 4;

const URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s?#]*)?$";

/// A vendor account: where the vendor's API is, who we are there, and how hard we may call it.
///
/// Exactly one of `thingspace`, `iotda` and `iotaap` is set. Credentials live in a Secret in the
/// same namespace; its keys are listed on each vendor's `credentialsRef`.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "otaplane.io",
    version = "v1alpha1",
    kind = "OtaProvider",
    namespaced,
    status = "OtaProviderStatus",
    shortname = "otaprov",
    category = "ota",
    doc = "OtaProvider is one account with an OTA vendor (Verizon ThingSpace, Huawei Cloud IoTDA or IoTaaP).",
    printcolumn(
        name = "Vendor",
        type_ = "string",
        json_path = ".status.vendor",
        description = "The vendor of this account"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the credentials were accepted by the vendor"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("(has(self.thingspace) ? 1 : 0) + (has(self.iotda) ? 1 : 0) + (has(self.iotaap) ? 1 : 0) == 1")
        .message("exactly one of thingspace, iotda and iotaap must be set"),
    validation = kube::core::Rule::new("has(self.thingspace) == has(oldSelf.thingspace) && has(self.iotda) == has(oldSelf.iotda) && has(self.iotaap) == has(oldSelf.iotaap)")
        .message("the vendor of an OtaProvider cannot change: create a new OtaProvider for another vendor"),
)]
#[serde(rename_all = "camelCase")]
pub struct OtaProviderSpec {
    /// A Verizon ThingSpace Software Management (FOTA v2) account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thingspace: Option<ThingSpaceProvider>,
    /// A Huawei Cloud IoTDA instance, with the OBS bucket its packages are stored in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iotda: Option<IotdaProvider>,
    /// An IoTaaP account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iotaap: Option<IotaapProvider>,
    /// Client-side limit on the calls otaplane makes to this account, shared by every package and
    /// campaign that uses it. Unset: no client-side limit (vendor throttling is still honoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Which vendor an [`OtaProvider`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Vendor {
    /// Verizon ThingSpace Software Management.
    ThingSpace,
    /// Huawei Cloud IoT Device Access.
    #[serde(rename = "IoTDA")]
    Iotda,
    /// IoTaaP.
    #[serde(rename = "IoTaaP")]
    Iotaap,
}

impl Vendor {
    /// The vendor's name as it spells it (`ThingSpace`, `IoTDA`, `IoTaaP`), for messages and
    /// metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::ThingSpace => "ThingSpace",
            Vendor::Iotda => "IoTDA",
            Vendor::Iotaap => "IoTaaP",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OtaProviderSpec {
    /// The vendor this spec configures, or `None` when no vendor block (or more than one) is set.
    pub fn vendor(&self) -> Option<Vendor> {
        match (&self.thingspace, &self.iotda, &self.iotaap) {
            (Some(_), None, None) => Some(Vendor::ThingSpace),
            (None, Some(_), None) => Some(Vendor::Iotda),
            (None, None, Some(_)) => Some(Vendor::Iotaap),
            _ => None,
        }
    }
}

/// A Verizon ThingSpace account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThingSpaceProvider {
    /// Billing account name, exactly as ThingSpace shows it, leading zeros included
    /// (for example `0000123456-00001`).
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub account_name: String,
    /// Root of the ThingSpace API; the OAuth (`/ts/v1`), session (`/m2m/v1`) and FOTA
    /// (`/fota/v2`) paths are appended to it. Unset: `https://thingspace.verizon.com/api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub base_url: Option<String>,
    /// Secret in this namespace with the keys `appKey` and `appSecret` (OAuth client credentials)
    /// and `username` and `password` (the UWS user that opens the M2M session). After 5 wrong
    /// passwords ThingSpace locks the user, so otaplane never retries a rejected login in a loop.
    pub credentials_ref: LocalObjectReference,
}

impl ThingSpaceProvider {
    /// The API root to use.
    pub fn base_url(&self) -> &str {
        self.base_url
            .as_deref()
            .unwrap_or(THINGSPACE_DEFAULT_BASE_URL)
    }
}

/// A Huawei Cloud IoTDA instance and the OBS bucket that holds its packages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IotdaProvider {
    /// Application-side API endpoint: `https://iotda.{region}.myhuaweicloud.com` for the basic
    /// edition, or the instance's own host (`https://{id}.st1.iotda-app.{region}.myhuaweicloud.com`).
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub endpoint: String,
    /// Project ID of the region (console: My Credentials, API Credentials).
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub project_id: String,
    /// Instance ID, sent as the `Instance-Id` header; needed for standard and enterprise editions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub instance_id: Option<String>,
    /// Region ID, for example `cn-north-4`; used for derived signing and as the OBS region default.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z]+(-[a-z]+)+-[0-9]+$")
    )]
    pub region: String,
    /// Resource space (application) that packages go to when a FirmwarePackage names none.
    /// Required by IoTDA when the account has more than one resource space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 36), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub default_app_id: Option<String>,
    /// AK/SK signing algorithm. Unset: chosen by host as the official SDKs do (`SDK-HMAC-SHA256`
    /// for the shared `iotda.{region}.myhuaweicloud.com` host, `V11-HMAC-SHA256` for instance hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithm: Option<IotdaSigningAlgorithm>,
    /// Secret in this namespace with the keys `accessKeyId` and `secretAccessKey` (AK/SK), or, when
    /// `iam` is set, `username` and `password` of the IAM user.
    pub credentials_ref: LocalObjectReference,
    /// Authenticate with an IAM user token (`X-Auth-Token`) instead of signing each call with AK/SK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<IotdaIam>,
    /// The OBS bucket that FirmwarePackages are uploaded to before IoTDA registers them.
    pub obs: ObsBucket,
}

/// IoTDA's AK/SK signing algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IotdaSigningAlgorithm {
    /// The common algorithm, for the basic edition's shared host.
    #[serde(rename = "SDK-HMAC-SHA256")]
    SdkHmacSha256,
    /// The derived-key algorithm, required by standard and enterprise instance hosts.
    #[serde(rename = "V11-HMAC-SHA256")]
    V11HmacSha256,
}

/// IAM password authentication for IoTDA.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IotdaIam {
    /// IAM endpoint. Unset: `https://iam.{region}.myhuaweicloud.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub endpoint: Option<String>,
    /// Account (domain) name the IAM user belongs to.
    #[schemars(length(min = 1, max = 64))]
    pub domain_name: String,
}

/// An OBS bucket and where in it packages go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObsBucket {
    /// OBS endpoint, for example `https://obs.cn-north-4.myhuaweicloud.com`.
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub endpoint: String,
    /// OBS region. Unset: the IoTDA region (IoTDA reads packages from a bucket in its own region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z]+(-[a-z]+)+-[0-9]+$")
    )]
    pub region: Option<String>,
    /// Bucket name.
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// Prefix for object keys; the key is `{keyPrefix}{namespace}/{name}/{version}/{file}` so a retry
    /// overwrites rather than duplicates. Unset: no prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^[^\s\\]*$"))]
    pub key_prefix: Option<String>,
    /// Address the bucket as `{endpoint}/{bucket}/{key}` instead of `{bucket}.{endpoint host}/{key}`.
    /// Unset: path style only when the endpoint is an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Secret with `accessKeyId` and `secretAccessKey` for OBS. Unset: the IoTDA AK/SK Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<LocalObjectReference>,
    /// Size of one multipart-upload part, in MiB. Images up to this size go up in one PUT;
    /// larger ones in parts of this size, each retried on its own, while memory holds about
    /// two parts. Unset: 8.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "partSizeMiB"
    )]
    #[schemars(range(min = 1, max = 5120))]
    pub part_size_mib: Option<i32>,
}

/// An IoTaaP account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IotaapProvider {
    /// Management API root. Unset: `https://api.iotaap.io/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub base_url: Option<String>,
    /// Device-facing API root, used to observe which version devices are offered.
    /// Unset: `https://ota.iotaap.io/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub device_url: Option<String>,
    /// Secret in this namespace with the keys `email` and `password` of the IoTaaP user.
    pub credentials_ref: LocalObjectReference,
    /// How many per-device deploys (each a firmware upload) may run at once. Unset: 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub deploy_concurrency: Option<i32>,
}

impl IotaapProvider {
    /// The management API root to use.
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(IOTAAP_DEFAULT_BASE_URL)
    }

    /// The device-facing API root to use.
    pub fn device_url(&self) -> &str {
        self.device_url
            .as_deref()
            .unwrap_or(IOTAAP_DEFAULT_DEVICE_URL)
    }

    /// How many deploys may run at once.
    pub fn deploy_concurrency(&self) -> i32 {
        self.deploy_concurrency
            .unwrap_or(IOTAAP_DEFAULT_DEPLOY_CONCURRENCY)
    }
}

/// A token-bucket limit on calls to one vendor account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained calls per second.
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: i32,
    /// Calls that may be made at once after a quiet period. Unset: equal to `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub burst: Option<i32>,
}

/// What otaplane last observed about an [`OtaProvider`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtaProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True once the vendor accepted the credentials; False carries the vendor's
    /// reason (never a secret). `Stalled` is True for a spec or Secret that must be fixed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The vendor this account belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<Vendor>,
    /// When the vendor last accepted the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated_at: Option<Time>,
}
