//! `FirmwarePackage`: one firmware artifact registered with one vendor account.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectReference, conditions_schema};

/// Largest artifact otaplane fetches when `artifact.maxSizeBytes` is unset: 1 GiB, IoTDA's limit.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Annotation that adopts an existing vendor package instead of registering a new one: the
/// ThingSpace file name or the IoTDA package ID.
pub const EXTERNAL_NAME_ANNOTATION: &str = "otaplane.io/external-name";

/// Characters IoTDA allows in versions and source versions.
const IOTDA_VERSION_PATTERN: &str = r"^[A-Za-z0-9_.-]+$";

/// A firmware artifact, fetched once, verified, and registered with the vendor of `providerRef`.
///
/// The identity (provider, version, artifact URL and checksum, description and vendor block)
/// cannot change once created, because vendors cannot change a registered package: to ship
/// something else, create a new FirmwarePackage.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "otaplane.io",
    version = "v1alpha1",
    kind = "FirmwarePackage",
    namespaced,
    status = "FirmwarePackageStatus",
    shortname = "fwpkg",
    category = "ota",
    doc = "FirmwarePackage is a firmware artifact registered with the vendor of an OtaProvider.",
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.providerRef.name",
        description = "The OtaProvider the package is registered with"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "Firmware version"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the vendor has the package"
    ),
    printcolumn(
        name = "External ID",
        type_ = "string",
        json_path = ".status.atProvider.externalId",
        description = "The vendor's identifier of the package"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("(has(self.thingspace) ? 1 : 0) + (has(self.iotda) ? 1 : 0) + (has(self.iotaap) ? 1 : 0) == 1")
        .message("exactly one of thingspace, iotda and iotaap must be set, matching the provider's vendor"),
    validation = kube::core::Rule::new("!has(self.iotda) || self.version.matches('^[A-Za-z0-9_.-]+$')")
        .message("IoTDA versions may contain only letters, digits, '_', '.' and '-'")
        .field_path(".version"),
    validation = kube::core::Rule::new("!has(self.iotda) || !has(self.artifact.maxSizeBytes) || self.artifact.maxSizeBytes <= 1073741824")
        .message("IoTDA accepts packages of at most 1 GiB (1073741824 bytes)")
        .field_path(".artifact.maxSizeBytes"),
    validation = kube::core::Rule::new("self.providerRef == oldSelf.providerRef")
        .message("providerRef is immutable: create a new FirmwarePackage to register with another provider")
        .field_path(".providerRef"),
    validation = kube::core::Rule::new("self.version == oldSelf.version")
        .message("version is immutable: create a new FirmwarePackage for another version")
        .field_path(".version"),
    validation = kube::core::Rule::new("self.artifact.url == oldSelf.artifact.url && has(self.artifact.sha256) == has(oldSelf.artifact.sha256) && (!has(self.artifact.sha256) || self.artifact.sha256 == oldSelf.artifact.sha256)")
        .message("artifact.url and artifact.sha256 are immutable: create a new FirmwarePackage for another artifact")
        .field_path(".artifact"),
    validation = kube::core::Rule::new("has(self.description) == has(oldSelf.description) && (!has(self.description) || self.description == oldSelf.description)")
        .message("description is immutable: vendors cannot change a registered package")
        .field_path(".description"),
    validation = kube::core::Rule::new("has(self.thingspace) == has(oldSelf.thingspace) && (!has(self.thingspace) || self.thingspace == oldSelf.thingspace) && has(self.iotda) == has(oldSelf.iotda) && (!has(self.iotda) || self.iotda == oldSelf.iotda) && has(self.iotaap) == has(oldSelf.iotaap)")
        .message("the vendor block is immutable: vendors cannot change a registered package, create a new FirmwarePackage"),
)]
#[serde(rename_all = "camelCase")]
pub struct FirmwarePackageSpec {
    /// The OtaProvider (vendor account) to register the package with.
    pub provider_ref: LocalObjectReference,
    /// Firmware version the package installs. IoTDA allows only letters, digits, `_`, `.` and `-`.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    )]
    pub version: String,
    /// Where to fetch the firmware image, and how to check it.
    pub artifact: Artifact,
    /// Release note shown by the vendor (ThingSpace release note, IoTDA description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// ThingSpace: the device make and model the file is for, and where it goes on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thingspace: Option<ThingSpacePackage>,
    /// IoTDA: the product, resource space and package type to register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iotda: Option<IotdaPackage>,
    /// IoTaaP: nothing to register ahead of time; the image is uploaded per device when a
    /// campaign deploys it. Set it to `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iotaap: Option<IotaapPackage>,
    /// What happens vendor-side when this resource is deleted: `Delete` (the default) removes the
    /// vendor package, `Orphan` leaves it. ThingSpace has no delete API: its files always stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

impl FirmwarePackageSpec {
    /// The deletion policy in force.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
}

/// Where the firmware image is, and how it is checked before anything reaches the vendor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `http` or `https` URL of the image. It is streamed once through a SHA-256 hash to a spool file.
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Expected SHA-256 of the image, 64 lowercase hex characters. A mismatch stops the package
    /// (`Stalled=True`, reason `ChecksumMismatch`) before anything is uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// Secret in this namespace whose keys are sent as HTTP headers when fetching the image
    /// (for example `Authorization`), for private artifact servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_ref: Option<LocalObjectReference>,
    /// Largest image accepted, in bytes; the fetch stops as soon as it is exceeded.
    /// Unset: 1 GiB (IoTDA's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_size_bytes: Option<i64>,
}

impl Artifact {
    /// The size limit in force, in bytes.
    pub fn max_size_bytes(&self) -> u64 {
        self.max_size_bytes
            .and_then(|limit| u64::try_from(limit).ok())
            .unwrap_or(DEFAULT_MAX_ARTIFACT_BYTES)
    }
}

/// ThingSpace file metadata (FOTA v2 file upload).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThingSpacePackage {
    /// Device make the file applies to, as ThingSpace knows it.
    #[schemars(length(min = 1, max = 64))]
    pub make: String,
    /// Device model the file applies to, as ThingSpace knows it.
    #[schemars(length(min = 1, max = 64))]
    pub model: String,
    /// Absolute path the file is written to on the device, for example `/VZWFOTA/firmware.bin`.
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub local_target_path: String,
}

/// IoTDA OTA package metadata.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.moduleName) == (self.packageType == 'modulePackage')")
        .message("moduleName is required for packageType modulePackage and not allowed otherwise")
        .field_path(".moduleName"),
)]
#[serde(rename_all = "camelCase")]
pub struct IotdaPackage {
    /// Product the package is for (IoTDA product ID).
    #[schemars(length(min = 1, max = 36), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub product_id: String,
    /// Resource space (application ID). Unset: the provider's `defaultAppId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 36), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub app_id: Option<String>,
    /// `firmwarePackage` (upgraded with firmwareUpgrade tasks), `softwarePackage`
    /// (softwareUpgrade) or `modulePackage` (moduleUpgrade, needs `moduleName`).
    pub package_type: IotdaPackageType,
    /// Module the package is for; only with `packageType: modulePackage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub module_name: Option<String>,
    /// Versions this package can upgrade from (delta packages); at most 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 256), regex(pattern = IOTDA_VERSION_PATTERN)))]
    pub support_source_versions: Option<Vec<String>>,
    /// Free text pushed to devices with the upgrade notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub custom_info: Option<String>,
}

/// IoTDA package types, spelled as IoTDA spells them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IotdaPackageType {
    /// Firmware package.
    #[default]
    #[serde(rename = "firmwarePackage")]
    FirmwarePackage,
    /// Software package.
    #[serde(rename = "softwarePackage")]
    SoftwarePackage,
    /// Module package.
    #[serde(rename = "modulePackage")]
    ModulePackage,
}

impl IotdaPackageType {
    /// IoTDA's wire name for the package type.
    pub fn as_str(self) -> &'static str {
        match self {
            IotdaPackageType::FirmwarePackage => "firmwarePackage",
            IotdaPackageType::SoftwarePackage => "softwarePackage",
            IotdaPackageType::ModulePackage => "modulePackage",
        }
    }

    /// The batch task type that upgrades devices to a package of this type.
    pub fn upgrade_task_type(self) -> &'static str {
        match self {
            IotdaPackageType::FirmwarePackage => "firmwareUpgrade",
            IotdaPackageType::SoftwarePackage => "softwareUpgrade",
            IotdaPackageType::ModulePackage => "moduleUpgrade",
        }
    }
}

/// IoTaaP has no package object: the image is uploaded per device at deploy time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IotaapPackage {}

/// What happens to the vendor's copy when the resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the vendor package (a package already gone counts as deleted).
    #[default]
    Delete,
    /// Leave the vendor package in place.
    Orphan,
}

/// What otaplane last observed about a [`FirmwarePackage`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirmwarePackageStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the vendor has the package), `Synced` (the last vendor reconcile succeeded),
    /// `Reconciling` (work in progress) and `Stalled` (blocked until the spec or vendor side is
    /// fixed, for example `ChecksumMismatch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// What the fetched artifact measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
    /// Identifiers and fields of the package on the vendor side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<PackageAtProvider>,
}

/// The measured artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// SHA-256 of the fetched image, 64 lowercase hex characters.
    pub sha256: String,
    /// Size of the fetched image in bytes.
    pub size: i64,
}

/// The package as the vendor knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageAtProvider {
    /// The vendor's identifier: the ThingSpace file name or the IoTDA package ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// ThingSpace: the file name ThingSpace generated at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// IoTDA: the package ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    /// IoTDA: the OBS bucket holding the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_bucket: Option<String>,
    /// IoTDA: the OBS object key of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_object_key: Option<String>,
    /// Whether the package was adopted (found already registered) rather than created by otaplane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// When the vendor registered the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Time>,
}
