//! The examples are accepted by the CRD schemas (OpenAPI and CEL), and each manifest under
//! tests/manifests/invalid is rejected with a message that names the field, like the apiserver.

use std::path::{Path, PathBuf};

use crd_validate::{CrdValidator, invalid_message};
use otaplane::api::{FirmwarePackage, OtaProvider, UpgradeCampaign};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One validator per kind, built from the generated CRDs.
struct Schemas(Vec<(String, CrdValidator)>);

impl Schemas {
    fn load() -> Self {
        let validators = otaplane::api::crds()
            .into_iter()
            .map(|crd| {
                let json = serde_json::to_value(&crd).unwrap();
                let validator = CrdValidator::from_crd(&json, "v1alpha1")
                    .unwrap_or_else(|err| panic!("{} schema compiles: {err}", crd.spec.names.kind));
                (crd.spec.names.kind, validator)
            })
            .collect();
        Schemas(validators)
    }

    /// Validates `object` (as a create, or as an update of `old`) the way the apiserver does;
    /// `None` for built-in kinds, which these CRDs do not cover.
    fn check(&self, object: &Value, old: Option<&Value>) -> Option<Result<(), String>> {
        let kind = object["kind"].as_str()?;
        let (_, validator) = self.0.iter().find(|(known, _)| known == kind)?;
        let mut object = object.clone();
        validator.prune_and_default(&mut object);
        let errors = validator.validate(&object, old);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        Some(if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid_message(kind, "otaplane.io", name, &errors))
        })
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap_or_else(|err| panic!("{dir} is readable: {err}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|err| panic!("{} is YAML: {err}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

#[test]
fn every_example_is_accepted_and_reads_as_the_rust_types() {
    let schemas = Schemas::load();
    let mut checked = 0;
    for dir in ["examples"] {
        for path in yaml_files(dir) {
            for doc in documents(&path) {
                let Some(result) = schemas.check(&doc, None) else {
                    continue;
                };
                if let Err(message) = result {
                    panic!("{} is rejected: {message}", path.display());
                }
                let parsed = match doc["kind"].as_str().unwrap() {
                    "OtaProvider" => serde_json::from_value::<OtaProvider>(doc.clone()).map(drop),
                    "FirmwarePackage" => {
                        serde_json::from_value::<FirmwarePackage>(doc.clone()).map(drop)
                    }
                    "UpgradeCampaign" => {
                        serde_json::from_value::<UpgradeCampaign>(doc.clone()).map(drop)
                    }
                    other => panic!("unexpected kind {other}"),
                };
                parsed.unwrap_or_else(|err| panic!("{}: {err}", path.display()));
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 9,
        "each vendor has a provider, a package and a campaign; checked {checked}"
    );
}

#[test]
fn every_invalid_manifest_is_rejected_naming_the_field() {
    let schemas = Schemas::load();
    let files = yaml_files("tests/manifests/invalid");
    assert!(files.len() >= 15, "at least 15 invalid manifests");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let docs = documents(path);
        let (old, new) = match docs.as_slice() {
            [new] => (None, new),
            [old, new] => {
                // The stored object must itself be valid, or the test proves nothing.
                if let Some(Err(message)) = schemas.check(old, None) {
                    panic!(
                        "{}: the stored object is invalid: {message}",
                        path.display()
                    );
                }
                (Some(old), new)
            }
            _ => panic!("{}: one document, or two for an update", path.display()),
        };
        match schemas.check(new, old) {
            None => panic!("{}: not an otaplane kind", path.display()),
            Some(Ok(())) => failures.push(format!("{}: accepted", path.display())),
            Some(Err(message)) => {
                let missing: Vec<&&str> = expected
                    .iter()
                    .filter(|want| !message.contains(**want))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: message lacks {missing:?}:\n    {message}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn safe_updates_are_accepted() {
    let schemas = Schemas::load();
    let files = yaml_files("tests/manifests/valid-updates");
    assert!(!files.is_empty());
    for path in files {
        let docs = documents(&path);
        let [old, new] = docs.as_slice() else {
            panic!(
                "{}: two documents, the stored object and the update",
                path.display()
            );
        };
        for (object, previous) in [(old, None), (new, Some(old))] {
            if let Some(Err(message)) = schemas.check(object, previous) {
                panic!("{} is rejected: {message}", path.display());
            }
        }
    }
}
