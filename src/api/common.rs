//! Types shared by the three custom resources: references, conditions, durations.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// API group of every otaplane resource.
pub const GROUP: &str = "otaplane.io";
/// API version of every otaplane resource.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get ota` lists all three kinds.
pub const CATEGORY: &str = "ota";

/// Pattern of a Kubernetes object name (DNS-1123 subdomain).
pub(crate) const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Pattern of a Go-style duration as `kubectl` and Kubernetes APIs write it: `90s`, `10m`, `1h30m`.
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A reference to another object in the same namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object, in the same namespace as this resource.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

impl LocalObjectReference {
    /// A reference to the object called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// Condition types used across otaplane resources, with the kstatus / Crossplane meanings.
pub mod condition_types {
    /// The resource is fully reconciled and usable.
    pub const READY: &str = "Ready";
    /// The last reconcile of the vendor side succeeded (Crossplane's Synced).
    pub const SYNCED: &str = "Synced";
    /// The operator is working towards the desired state (kstatus Reconciling).
    pub const RECONCILING: &str = "Reconciling";
    /// Progress is blocked by something retrying cannot fix, such as an invalid spec (kstatus Stalled).
    pub const STALLED: &str = "Stalled";
    /// A campaign is moving devices (UpgradeCampaign only).
    pub const PROGRESSING: &str = "Progressing";
}

/// A Go-style duration string (`30s`, `10m`, `1h30m`), parsed with [`kube::core::Duration`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    /// The duration as a [`std::time::Duration`], or why it cannot be read.
    pub fn to_std(&self) -> Result<std::time::Duration, String> {
        let parsed: kube::core::Duration = self.0.parse().map_err(|err| {
            format!(
                "{:?} is not a duration like 90s, 10m or 1h30m: {err}",
                self.0
            )
        })?;
        if parsed.is_negative() {
            return Err(format!("{:?} is negative", self.0));
        }
        Ok(parsed.into())
    }
}

impl JsonSchema for GoDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
        })
    }
}

/// Schema for a list of conditions: a list map keyed by `type`, so server-side apply merges by type.
pub(crate) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "maxItems": 16,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Returns the condition of type `type_` in `conditions`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}
