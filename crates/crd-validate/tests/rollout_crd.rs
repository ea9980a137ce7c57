//! End-to-end: the sample Rollout CRD under tests/fixtures, valid and invalid
//! objects, and the exact messages the apiserver would return.

use crd_validate::{CrdValidator, ErrorType, FieldError, invalid_message};
use serde_json::{Value, json};

fn crd() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rollout-crd.yaml"
    ))
    .expect("fixture is readable");
    serde_saphyr::from_str(&text).expect("fixture is valid YAML")
}

fn validator() -> CrdValidator {
    CrdValidator::from_crd(&crd(), "v1alpha1").expect("the sample CRD compiles")
}

fn valid_rollout() -> Value {
    json!({
        "apiVersion": "test.otaplane.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r1", "namespace": "default", "labels": {"app": "x"}},
        "spec": {
            "version": "1.2.3",
            "artifact": {
                "url": "https://files.example.com/fw-1.2.3.bin",
                "sha256": "a".repeat(64),
                "size": 1024,
                "checksumBase64": "aGVsbG8="
            },
            "devices": ["dev-1", "dev-2"],
            "thingspace": {"make": "acme", "model": "m1"},
            "schedule": {
                "startAt": "2026-01-01T00:00:00Z",
                "endAt": "2026-01-02T00:00:00Z",
                "rolloutDate": "2026-01-01"
            },
            "strategy": {
                "wavePercentages": [10, 50, 100],
                "failureThreshold": 0.2,
                "waveSize": 20,
                "soakTime": "1h30m",
                "maxUnavailable": "10%"
            },
            "labels": {"team": "firmware"},
            "targets": [{"region": "eu", "weight": 2}, {"region": "us", "weight": 1}],
            "template": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}},
            "extra": {"anything": {"goes": [1, 2]}},
            "notes": null,
            "retries": 3,
            "priority": 5,
            "window": {"days": 2}
        }
    })
}

/// Validates `object` (create) and returns the error strings.
fn create_errors(object: &Value) -> Vec<String> {
    validator()
        .validate(object, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The valid rollout with `edit` applied to its spec.
fn with_spec(edit: impl FnOnce(&mut Value)) -> Value {
    let mut object = valid_rollout();
    edit(&mut object["spec"]);
    object
}

/// Removes field `name` of an object value.
fn remove(object: &mut Value, name: &str) {
    object
        .as_object_mut()
        .expect("an object")
        .remove(name)
        .expect("the field was set");
}

const NOT_CHECKED: &str = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

#[test]
fn valid_rollout_is_accepted_on_create_and_update() {
    let validator = validator();
    let object = valid_rollout();
    assert_eq!(validator.validate(&object, None), Vec::<FieldError>::new());
    assert_eq!(
        validator.validate(&object, Some(&object)),
        Vec::<FieldError>::new()
    );
}

#[test]
fn pruning_and_defaulting_the_sample() {
    let validator = validator();
    let mut object = valid_rollout();
    object["spec"]["unknownField"] = json!("dropped");
    object["spec"]["artifact"]["mirror"] = json!("dropped");
    object["status"] = json!({"phase": "Running", "free": {"form": true}});
    object["metadata"]["annotations"] = json!({"kept": "yes"});
    object["topLevelJunk"] = json!(1);
    remove(&mut object["spec"]["targets"][1], "weight");
    validator.prune_and_default(&mut object);
    let spec = &object["spec"];
    assert_eq!(spec.get("unknownField"), None);
    assert_eq!(spec["artifact"].get("mirror"), None);
    assert_eq!(object.get("topLevelJunk"), None);
    assert_eq!(spec["deletionPolicy"], "Delete");
    assert_eq!(spec["strategy"]["onFailure"], "Pause");
    assert_eq!(spec["targets"][1], json!({"region": "us", "weight": 1}));
    assert_eq!(spec["template"]["data"], json!({"a": "b"}));
    assert_eq!(spec["extra"], json!({"anything": {"goes": [1, 2]}}));
    assert_eq!(spec["notes"], Value::Null);
    assert_eq!(object["status"]["free"], json!({"form": true}));
    assert_eq!(object["metadata"]["annotations"]["kept"], "yes");
    assert_eq!(validator.validate(&object, None), Vec::<FieldError>::new());
}

#[test]
fn schema_violations_name_the_field() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            with_spec(|s| s["artifact"]["sha256"] = json!("abc")),
            vec![
                "spec.artifact.sha256: Invalid value: \"abc\": spec.artifact.sha256 in body should match '^[0-9a-f]{64}$'",
            ],
        ),
        (
            with_spec(|s| s["devices"] = json!([])),
            vec![
                "spec.devices: Invalid value: 0: spec.devices in body should have at least 1 items",
            ],
        ),
        (
            with_spec(|s| s["version"] = json!("")),
            vec![
                "spec.version: Invalid value: \"\": spec.version in body should be at least 1 chars long",
                "spec.version: Invalid value: \"\": spec.version in body should match '^[0-9A-Za-z.+-]+$'",
            ],
        ),
        (
            with_spec(|s| s["version"] = json!("1.0 beta")),
            vec![
                "spec.version: Invalid value: \"1.0 beta\": spec.version in body should match '^[0-9A-Za-z.+-]+$'",
            ],
        ),
        (
            with_spec(|s| s["artifact"]["size"] = json!(0)),
            vec![
                "spec.artifact.size: Invalid value: 0: spec.artifact.size in body should be greater than or equal to 1",
            ],
        ),
        (
            with_spec(|s| s["artifact"]["size"] = json!(2_000_000_000_i64)),
            vec![
                "spec.artifact.size: Invalid value: 2000000000: spec.artifact.size in body should be less than or equal to 1073741824",
            ],
        ),
        (
            with_spec(|s| s["strategy"]["failureThreshold"] = json!(0)),
            vec![
                "spec.strategy.failureThreshold: Invalid value: 0: spec.strategy.failureThreshold in body should be greater than 0",
            ],
        ),
        (
            with_spec(|s| s["strategy"]["failureThreshold"] = json!(1.5)),
            vec![
                "spec.strategy.failureThreshold: Invalid value: 1.5: spec.strategy.failureThreshold in body should be less than or equal to 1",
            ],
        ),
        (
            with_spec(|s| s["strategy"]["waveSize"] = json!(25)),
            vec![
                "spec.strategy.waveSize: Invalid value: 25: spec.strategy.waveSize in body should be a multiple of 10",
            ],
        ),
        (
            with_spec(|s| s["strategy"]["maxUnavailable"] = json!("ten")),
            vec![
                "spec.strategy.maxUnavailable: Invalid value: \"ten\": spec.strategy.maxUnavailable in body should match '^[0-9]+%$'",
            ],
        ),
        (
            with_spec(|s| s["retries"] = json!(13)),
            vec![
                "spec.retries: Invalid value: 13: spec.retries in body must not validate the schema (not)",
            ],
        ),
        (
            with_spec(|s| s["priority"] = json!(11)),
            vec![
                "spec.priority: Invalid value: 11: spec.priority in body must validate all the schemas (allOf)",
                "spec.priority: Invalid value: 11: spec.priority in body should be less than or equal to 10",
            ],
        ),
        (
            with_spec(|s| s["window"] = json!({"days": 1, "hours": 2})),
            vec![
                "spec.window: Invalid value: map[string]interface {}{\"days\":1, \"hours\":2}: spec.window in body must validate one and only one schema (oneOf)",
            ],
        ),
        (
            with_spec(|s| s["labels"] = json!({})),
            vec![
                "spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties",
            ],
        ),
        (
            with_spec(|s| s["devices"] = json!(["a", "b", "a"])),
            vec!["spec.devices[2]: Duplicate value: \"a\""],
        ),
        (
            with_spec(|s| s["strategy"]["wavePercentages"] = json!([10, 10, 100])),
            vec!["spec.strategy.wavePercentages[1]: Duplicate value: 10"],
        ),
        (
            with_spec(|s| s["targets"] = json!([{"region": "eu"}, {"region": "eu", "weight": 3}])),
            vec!["spec.targets[1]: Duplicate value: map[string]interface {}{\"region\":\"eu\"}"],
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(
            create_errors(&object),
            expected,
            "for spec {}",
            object["spec"]
        );
    }
}

#[test]
fn blocking_schema_errors_skip_the_rules_with_the_apiservers_notice() {
    let cases: Vec<(Value, &str)> = vec![
        (
            with_spec(|s| {
                remove(s, "version");
            }),
            "spec.version: Required value",
        ),
        (
            with_spec(|s| s["deletionPolicy"] = json!("Keep")),
            "spec.deletionPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Orphan\"",
        ),
        (
            with_spec(|s| s["devices"] = json!(["1", "2", "3", "4", "5", "6"])),
            "spec.devices: Too many: 6: must have at most 5 items",
        ),
        (
            with_spec(|s| s["version"] = json!("1".repeat(33))),
            "spec.version: Too long: may not be more than 32 bytes",
        ),
        (
            with_spec(|s| s["labels"] = json!({"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"})),
            "spec.labels: Too many: 5: must have at most 4 items",
        ),
        (
            with_spec(|s| s["labels"]["team"] = json!("x".repeat(64))),
            "spec.labels.team: Too long: may not be more than 63 bytes",
        ),
        (
            with_spec(|s| s["devices"] = json!("dev-1")),
            "spec.devices: Invalid value: \"string\": spec.devices in body must be of type array: \"string\"",
        ),
        (
            with_spec(|s| s["version"] = Value::Null),
            "spec.version: Invalid value: \"null\": spec.version in body must be of type string: \"null\"",
        ),
        (
            with_spec(|s| s["strategy"]["maxUnavailable"] = json!(true)),
            "spec.strategy.maxUnavailable: Invalid value: \"boolean\": spec.strategy.maxUnavailable in body must be of type integer,string: \"boolean\"",
        ),
        (
            with_spec(|s| s["schedule"]["startAt"] = json!("tomorrow")),
            "spec.schedule.startAt: Invalid value: \"tomorrow\": spec.schedule.startAt in body must be of type date-time: \"tomorrow\"",
        ),
        (
            with_spec(|s| s["artifact"]["checksumBase64"] = json!("not base64!")),
            "spec.artifact.checksumBase64: Invalid value: \"not base64!\": spec.artifact.checksumBase64 in body must be of type byte: \"not base64!\"",
        ),
        (
            with_spec(|s| s["schedule"]["rolloutDate"] = json!("2026-02-30")),
            "spec.schedule.rolloutDate: Invalid value: \"2026-02-30\": spec.schedule.rolloutDate in body must be of type date: \"2026-02-30\"",
        ),
        (
            with_spec(|s| s["template"] = json!({"apiVersion": "v1"})),
            "spec.template.kind: Required value: must not be empty",
        ),
        (
            with_spec(|s| s["thingspace"] = json!({"make": "acme"})),
            "spec.thingspace.model: Required value",
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(
            create_errors(&object),
            vec![expected, NOT_CHECKED],
            "for spec {}",
            object["spec"]
        );
    }
}

#[test]
fn cel_rules_report_their_messages() {
    let cases: Vec<(Value, &str)> = vec![
        (
            with_spec(|s| s["iotda"] = json!({"productId": "p"})),
            "spec: Invalid value: \"object\": exactly one of thingspace, iotda, iotaap must be set",
        ),
        (
            with_spec(|s| {
                remove(s, "thingspace");
            }),
            "spec: Invalid value: \"object\": exactly one of thingspace, iotda, iotaap must be set",
        ),
        (
            with_spec(|s| s["schedule"]["endAt"] = json!("2025-12-31T23:00:00Z")),
            "spec.schedule.endAt: Invalid value: \"object\": endAt must be after startAt",
        ),
        (
            with_spec(|s| s["strategy"]["wavePercentages"] = json!([10, 50, 30, 100])),
            "spec.strategy.wavePercentages: Invalid value: \"array\": wave percentages must be strictly increasing",
        ),
        (
            with_spec(|s| s["strategy"]["wavePercentages"] = json!([10, 50])),
            "spec.strategy.wavePercentages: Invalid value: \"array\": the last wave must reach 100%, not 50%",
        ),
        (
            with_spec(|s| s["artifact"]["url"] = json!("ftp://files.example.com/fw.bin")),
            "spec.artifact.url: Invalid value: \"string\": must be an http or https URL",
        ),
        (
            with_spec(|s| s["strategy"]["soakTime"] = json!("48h")),
            "spec.strategy.soakTime: Invalid value: \"string\": soak time must be at most 24h",
        ),
        (
            with_spec(|s| s["labels"] = json!({"Team": "fw"})),
            "spec.labels: Invalid value: \"object\": label keys must be lower case",
        ),
    ];
    for (object, expected) in cases {
        assert_eq!(
            create_errors(&object),
            vec![expected],
            "for spec {}",
            object["spec"]
        );
    }
}

#[test]
fn rules_on_absent_values_are_not_evaluated() {
    let object = with_spec(|s| {
        remove(s, "schedule");
        remove(s, "strategy");
        remove(s, "labels");
        remove(s, "targets");
    });
    assert_eq!(create_errors(&object), Vec::<String>::new());
}

#[test]
fn transition_rules_run_only_on_update() {
    let validator = validator();
    let old = valid_rollout();
    let changed_version = with_spec(|s| s["version"] = json!("2.0.0"));
    assert_eq!(
        validator.validate(&changed_version, None),
        Vec::<FieldError>::new()
    );
    let errors = validator.validate(&changed_version, Some(&old));
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "spec.version: Invalid value: \"string\": field is immutable"
    );
    assert_eq!(errors[0].error_type.reason(), "FieldValueInvalid");
    assert_eq!(
        invalid_message("Rollout", "test.otaplane.io", "r1", &errors),
        "Rollout.test.otaplane.io \"r1\" is invalid: spec.version: Invalid value: \"string\": field is immutable"
    );

    // The old object had no value there: the rule does not run.
    let mut old_without_version = old.clone();
    remove(&mut old_without_version["spec"], "version");
    assert_eq!(
        validator.validate(&changed_version, Some(&old_without_version)),
        Vec::<FieldError>::new()
    );
}

#[test]
fn optional_old_self_rules_run_on_create_and_update() {
    let validator = validator();
    let old = valid_rollout();
    let new_model = with_spec(|s| s["thingspace"]["model"] = json!("m2"));
    assert_eq!(
        validator.validate(&new_model, None),
        Vec::<FieldError>::new()
    );
    let errors: Vec<String> = validator
        .validate(&new_model, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec!["spec.thingspace.model: Invalid value: \"object\": model is immutable"]
    );
}

#[test]
fn map_list_items_are_correlated_by_key_and_reason_sets_the_type() {
    let validator = validator();
    let old = valid_rollout();
    // Reordered, and eu's weight shrinks from 2 to 1.
    let shrunk = with_spec(|s| {
        s["targets"] = json!([{"region": "us", "weight": 1}, {"region": "eu", "weight": 1}]);
    });
    let errors = validator.validate(&shrunk, Some(&old));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].error_type, ErrorType::Forbidden);
    assert_eq!(
        errors[0].to_string(),
        "spec.targets[1]: Forbidden: weight may only grow"
    );
    // A new key has no old value: its rule does not run.
    let added = with_spec(|s| {
        s["targets"] = json!([{"region": "eu", "weight": 2}, {"region": "ap", "weight": 0}]);
    });
    assert_eq!(
        validator.validate(&added, Some(&old)),
        Vec::<FieldError>::new()
    );
}

#[test]
fn several_errors_make_one_aggregated_message() {
    let object = with_spec(|s| {
        s["artifact"]["sha256"] = json!("abc");
        s["strategy"]["waveSize"] = json!(25);
        s["iotaap"] = json!({});
    });
    let errors = validator().validate(&object, None);
    assert_eq!(
        invalid_message("Rollout", "test.otaplane.io", "r1", &errors),
        "Rollout.test.otaplane.io \"r1\" is invalid: [spec.artifact.sha256: Invalid value: \"abc\": spec.artifact.sha256 in body should match '^[0-9a-f]{64}$', spec.strategy.waveSize: Invalid value: 25: spec.strategy.waveSize in body should be a multiple of 10, spec: Invalid value: \"object\": exactly one of thingspace, iotda, iotaap must be set]"
    );
}

#[test]
fn unknown_version_is_a_schema_error() {
    let error = CrdValidator::from_crd(&crd(), "v9").expect_err("no such version");
    assert_eq!(
        error.to_string(),
        "the CustomResourceDefinition has no version \"v9\""
    );
    assert!(!error.is_retryable());
}
