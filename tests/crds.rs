//! The committed CRD YAML matches the Rust types, and every field is documented.

use serde_json::Value;

const CRDS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/otaplane-crds.yaml");

#[test]
fn committed_crds_match_the_types() {
    let committed =
        std::fs::read_to_string(CRDS_FILE).expect("crds/otaplane-crds.yaml is readable");
    let generated = otaplane::api::crds_yaml();
    assert!(
        committed == generated,
        "crds/otaplane-crds.yaml differs from the Rust types in src/api.\n\
         Regenerate it with:\n\n    cargo run -- crds > crds/otaplane-crds.yaml\n"
    );
}

#[test]
fn the_cli_prints_the_committed_crds() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_otaplane"))
        .arg("crds")
        .output()
        .expect("otaplane crds runs");
    assert!(output.status.success());
    let committed = std::fs::read_to_string(CRDS_FILE).unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), committed);
}

/// `kubectl explain` shows each property's description: none may be missing.
#[test]
fn every_field_has_a_description() {
    let mut undocumented = Vec::new();
    for crd in otaplane::api::crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            collect_undocumented(schema, &kind, &mut undocumented);
        }
    }
    assert!(
        undocumented.is_empty(),
        "fields without a doc comment: {undocumented:#?}"
    );
}

fn collect_undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            // apiVersion, kind and metadata are documented by Kubernetes itself.
            let standard = path.matches('.').count() == 0
                && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            let described = property
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|text| !text.trim().is_empty());
            if !described && !standard {
                out.push(child.clone());
            }
            collect_undocumented(property, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        collect_undocumented(items, &format!("{path}[]"), out);
    }
}

/// The schema must not default user fields: defaults make GitOps tools report drift.
#[test]
fn spec_fields_have_no_schema_defaults() {
    for crd in otaplane::api::crds() {
        let text = serde_json::to_string(&crd.spec.versions[0].schema).unwrap();
        assert!(
            !text.contains("\"default\":"),
            "{} has a schema default",
            crd.spec.names.kind
        );
    }
}

/// What `kubectl get` shows for one kind.
#[derive(Debug, PartialEq)]
struct Listing {
    kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
    columns: Vec<String>,
}

fn listing(kind: &str, short_name: &str, columns: &[&str]) -> Listing {
    Listing {
        kind: kind.into(),
        short_names: vec![short_name.into()],
        categories: vec!["ota".into()],
        columns: columns.iter().map(|column| column.to_string()).collect(),
    }
}

#[test]
fn printer_columns_and_names_are_what_kubectl_users_type() {
    let crds = otaplane::api::crds();
    let listings: Vec<Listing> = crds
        .iter()
        .map(|crd| Listing {
            kind: crd.spec.names.kind.clone(),
            short_names: crd.spec.names.short_names.clone().unwrap_or_default(),
            categories: crd.spec.names.categories.clone().unwrap_or_default(),
            columns: crd.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|column| column.name.clone())
                .collect(),
        })
        .collect();
    assert_eq!(
        listings,
        [
            listing("OtaProvider", "otaprov", &["Vendor", "Ready", "Age"]),
            listing(
                "FirmwarePackage",
                "fwpkg",
                &["Provider", "Version", "Ready", "External ID", "Age"]
            ),
            listing(
                "UpgradeCampaign",
                "otacampaign",
                &["Package", "Phase", "Progress", "Failed", "Age"]
            ),
        ]
    );
    for crd in &crds {
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.group, "otaplane.io");
        assert_eq!(version.name, "v1alpha1");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has a status subresource",
            crd.spec.names.kind
        );
    }
}
