//! The set of resource types the server serves: built-in kinds plus those registered by CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub column_type: String,
    /// Optional format.
    pub format: String,
    /// Column description.
    pub description: String,
    /// 0 shows by default; higher only with `-o wide`.
    pub priority: i64,
    /// JSONPath into the object, e.g. `.status.phase`.
    pub json_path: String,
}

/// A served resource (one group, one plural) and everything needed to serve it.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Served versions; the first one is the storage version.
    pub versions: Vec<String>,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Lowercase plural, e.g. `configmaps`.
    pub plural: String,
    /// Lowercase singular.
    pub singular: String,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories such as `all`.
    pub categories: Vec<String>,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether `/status` is a separate subresource.
    pub status_subresource: bool,
    /// Extra printer columns for tables.
    pub printer_columns: Vec<PrinterColumn>,
    /// Per-version openAPIV3Schema for custom resources.
    pub schemas: BTreeMap<String, Value>,
    /// Whether this type comes from a CRD.
    pub custom: bool,
}

/// Built-in resources whose objects carry `metadata.generation` (like the real registry strategies).
const GENERATION_TRACKED: &[&str] = &[
    "deployments",
    "statefulsets",
    "poddisruptionbudgets",
    "networkpolicies",
    "customresourcedefinitions",
];

impl ResourceType {
    /// `plural` or `plural.group`, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `group/version` or `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Whether objects carry `metadata.generation` (custom resources and some built-ins).
    pub fn tracks_generation(&self) -> bool {
        self.custom || GENERATION_TRACKED.contains(&self.plural.as_str())
    }

    /// The version objects are stored at.
    pub fn storage_version(&self) -> &str {
        &self.versions[0]
    }

    /// Key identifying this resource in the store.
    pub fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }
}

/// (group, plural).
pub type ResKey = (String, String);

/// All served resource types.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<ResKey, Arc<ResourceType>>,
    /// Bumped whenever the set of types changes; used as the OpenAPI hash.
    pub generation: u64,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
    short: &'static [&'static str],
    all: bool,
}

const BUILTINS: &[Builtin] = &[
    b(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        true,
        &["ns"],
        false,
    ),
    b("", "v1", "Secret", "secrets", true, false, &[], false),
    b(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        false,
        &["cm"],
        false,
    ),
    b("", "v1", "Event", "events", true, false, &["ev"], false),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
        false,
    ),
    b("", "v1", "Service", "services", true, true, &["svc"], true),
    b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        false,
        &["ev"],
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        false,
        &[],
        false,
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        &["deploy"],
        true,
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        &["sts"],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        &[],
        false,
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        &["pdb"],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        &["netpol"],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        &["crd", "crds"],
        false,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
    short: &'static [&'static str],
    all: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        status,
        short,
        all,
    }
}

impl Registry {
    /// A registry holding only the built-in kinds.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::default();
        for builtin in BUILTINS {
            registry.insert(ResourceType {
                group: builtin.group.into(),
                versions: vec![builtin.version.into()],
                kind: builtin.kind.into(),
                plural: builtin.plural.into(),
                singular: builtin.kind.to_lowercase(),
                short_names: builtin.short.iter().map(|s| s.to_string()).collect(),
                categories: if builtin.all {
                    vec!["all".into()]
                } else {
                    vec![]
                },
                namespaced: builtin.namespaced,
                status_subresource: builtin.status,
                printer_columns: vec![],
                schemas: BTreeMap::new(),
                custom: false,
            });
        }
        registry
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, rt: ResourceType) {
        self.types.insert(rt.key(), Arc::new(rt));
        self.generation += 1;
    }

    /// Removes a type.
    pub fn remove(&mut self, key: &ResKey) {
        self.types.remove(key);
        self.generation += 1;
    }

    /// Looks up a type serving `version`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|rt| rt.versions.iter().any(|v| v == version))
            .cloned()
    }

    /// Looks up a type by key regardless of version.
    pub fn by_key(&self, key: &ResKey) -> Option<Arc<ResourceType>> {
        self.types.get(key).cloned()
    }

    /// Looks up the type for an object's apiVersion and kind.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = split_api_version(api_version);
        self.types
            .values()
            .find(|rt| {
                rt.group == group && rt.kind == kind && rt.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    /// All types.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// group -> versions, in a stable order with the core group omitted.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rt in self.types.values().filter(|rt| !rt.group.is_empty()) {
            let versions = groups.entry(rt.group.clone()).or_default();
            for version in &rt.versions {
                if !versions.contains(version) {
                    versions.push(version.clone());
                }
            }
        }
        groups
    }
}

/// Splits `group/version` (or `v1`) into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the resource type a CRD declares. Errors are (field, detail) pairs.
pub fn type_from_crd(crd: &Value) -> Result<ResourceType, (String, String)> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let field = |name: &str| (name.to_string(), "Required value".to_string());
    let group = spec["group"]
        .as_str()
        .filter(|g| !g.is_empty())
        .ok_or_else(|| field("spec.group"))?;
    let plural = names["plural"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| field("spec.names.plural"))?;
    let kind = names["kind"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| field("spec.names.kind"))?;
    let expected_name = format!("{plural}.{group}");
    if crd["metadata"]["name"].as_str() != Some(expected_name.as_str()) {
        return Err((
            "metadata.name".into(),
            format!(
                "Invalid value: {}: must be spec.names.plural+\".\"+spec.group",
                crd["metadata"]["name"]
            ),
        ));
    }
    let scope = spec["scope"].as_str().unwrap_or("Namespaced");
    let versions = spec["versions"]
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| field("spec.versions"))?;
    let mut served: Vec<&Value> = versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .collect();
    served.sort_by_key(|v| !v["storage"].as_bool().unwrap_or(false));
    if served.is_empty() {
        return Err((
            "spec.versions".into(),
            "Invalid value: must have at least one served version".into(),
        ));
    }
    let storage = served[0];
    let columns = storage["additionalPrinterColumns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    column_type: c["type"].as_str().unwrap_or("string").to_string(),
                    format: c["format"].as_str().unwrap_or_default().to_string(),
                    description: c["description"].as_str().unwrap_or_default().to_string(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceType {
        group: group.into(),
        versions: served
            .iter()
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect(),
        kind: kind.into(),
        plural: plural.into(),
        singular: names["singular"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        namespaced: scope == "Namespaced",
        status_subresource: storage["subresources"]["status"].is_object(),
        printer_columns: columns,
        schemas: served
            .iter()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?.to_string(),
                    v["schema"]["openAPIV3Schema"].clone(),
                ))
            })
            .collect(),
        custom: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_registers_names_scope_and_columns() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}]}
                ]}
        });
        let rt = type_from_crd(&crd).unwrap();
        assert_eq!(rt.versions, vec!["v1", "v1alpha1"]);
        assert!(!rt.namespaced && rt.status_subresource);
        assert_eq!(rt.singular, "widget");
        assert_eq!(rt.printer_columns[0].json_path, ".status.phase");
    }

    #[test]
    fn crd_name_must_match_plural_and_group() {
        let crd = json!({"metadata": {"name": "wrong"}, "spec": {"group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"}, "versions": [{"name": "v1", "served": true}]}});
        assert_eq!(type_from_crd(&crd).unwrap_err().0, "metadata.name");
    }
}
