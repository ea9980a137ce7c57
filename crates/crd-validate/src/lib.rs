//! Validate custom resources against a CustomResourceDefinition's
//! `openAPIV3Schema` and its CEL `x-kubernetes-validations` rules the way
//! kube-apiserver (1.34) does, with the apiserver's error messages.
//!
//! Schema keywords: `type`, `nullable`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `pattern`, `minLength`/`maxLength`
//! (characters), `minItems`/`maxItems`, `minProperties`/`maxProperties`,
//! `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`, `multipleOf`,
//! `format` (date-time, date, byte, duration, uuid, uuid3/4/5, ipv4, ipv6,
//! cidr, mac, hostname, email; others pass as in the apiserver),
//! `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-embedded-resource`, `x-kubernetes-list-type` (set, map with
//! `x-kubernetes-list-map-keys`), `allOf`/`anyOf`/`oneOf`/`not`, `default`.
//!
//! CEL rules (`rule`, `message`, `messageExpression`, `reason`, `fieldPath`,
//! `optionalOldSelf`) run with the cel crate's standard library and its
//! strings, lists, math and encoders extensions, plus the Kubernetes list
//! (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`), regex (`find`,
//! `findAll`) and sets (`sets.contains`, `sets.equivalent`, `sets.intersects`)
//! libraries. Compiling a schema also does the apiserver's CRD-creation
//! checks: structural types, valid defaults, rule syntax, fields used on typed
//! objects, `fieldPath`s, and the estimated cost budgets.
//!
//! ```
//! use crd_validate::CrdValidator;
//! use serde_json::json;
//!
//! let validator = CrdValidator::from_schema(&json!({
//!     "type": "object",
//!     "properties": {"spec": {"type": "object", "required": ["version"],
//!         "properties": {"version": {"type": "string"}}}}
//! })).unwrap();
//! let errors = validator.validate(&json!({"spec": {}}), None);
//! assert_eq!(errors[0].to_string(), "spec.version: Required value");
//! ```

mod cost;
mod error;
mod format;
mod library;
mod prune;
mod rules;
mod schema;
mod validate;

pub use error::{ErrorType, FieldError, SchemaError, invalid_message};

use rules::CelEnvironment;
use schema::{Location, Schema};
use serde_json::Value;

/// A validator compiled from one version's `openAPIV3Schema`: patterns and
/// CEL programs are compiled once, then reused for every object.
pub struct CrdValidator {
    root: Schema,
    cel: CelEnvironment,
}

impl std::fmt::Debug for CrdValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdValidator").finish_non_exhaustive()
    }
}

impl CrdValidator {
    /// From a full CRD object (apiextensions.k8s.io/v1) and a version name.
    pub fn from_crd(crd: &Value, version: &str) -> Result<Self, SchemaError> {
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (index, entry) = versions
            .iter()
            .enumerate()
            .find(|(_, v)| v.get("name").and_then(Value::as_str) == Some(version))
            .ok_or_else(|| SchemaError::NoSuchVersion {
                version: version.to_owned(),
            })?;
        let schema =
            entry
                .pointer("/schema/openAPIV3Schema")
                .ok_or_else(|| SchemaError::MissingSchema {
                    version: version.to_owned(),
                })?;
        Self::compile(
            schema,
            &format!("spec.versions[{index}].schema.openAPIV3Schema"),
        )
    }

    /// From a bare openAPIV3Schema.
    pub fn from_schema(schema: &Value) -> Result<Self, SchemaError> {
        Self::compile(schema, "openAPIV3Schema")
    }

    fn compile(raw: &Value, schema_path: &str) -> Result<Self, SchemaError> {
        let cel = CelEnvironment::new();
        let location = Location {
            schema_path: schema_path.to_owned(),
            correlatable: true,
            in_junction: false,
        };
        let mut root = schema::parse(raw, &location, &cel)?;
        cost::check(&mut root, schema_path)?;
        Ok(CrdValidator { root, cel })
    }

    /// What the apiserver does before validation: drop fields unknown to the
    /// schema (unless `x-kubernetes-preserve-unknown-fields`; apiVersion, kind
    /// and metadata of the object and of embedded resources are kept), drop
    /// nulls of non-nullable fields, and apply `default`s.
    pub fn prune_and_default(&self, obj: &mut Value) {
        prune::prune_and_default(&self.root, obj, true);
    }

    /// Validates a whole object; `old` is the previous object on update, so
    /// that transition rules (those referencing `oldSelf`) run wherever the
    /// old object has a value at the same path.
    ///
    /// The order is the apiserver's: schema errors, then list-type
    /// invariants, then CEL rules, which are skipped (with the apiserver's
    /// notice) when a schema error blocks them. On update, a rule without
    /// oldSelf that fails on a value the update left unchanged is ratcheted
    /// (not reported), as the apiserver has done since Kubernetes 1.30.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate::validate_value(&self.root, obj, "", &mut errors);
        validate::validate_list_types(&self.root, obj, "", &mut errors);
        let blocked = errors.iter().any(|e| {
            matches!(
                e.error_type,
                ErrorType::NotSupported
                    | ErrorType::Required
                    | ErrorType::TooLong
                    | ErrorType::TooMany
                    | ErrorType::TypeInvalid
            )
        });
        if blocked {
            if self.root.subtree_has_rules {
                errors.push(FieldError::new(
                    "",
                    ErrorType::Invalid,
                    Some(Value::String("null".to_owned())),
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            }
        } else {
            self.run_rules(&self.root, obj, old, "", &mut errors);
        }
        errors
    }

    fn run_rules(
        &self,
        schema: &Schema,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) {
        if !schema.subtree_has_rules {
            return;
        }
        self.cel.run_rules(schema, value, old, path, errors);
        match value {
            Value::Object(object) => {
                let mut keys: Vec<&String> = object.keys().collect();
                keys.sort();
                for key in keys {
                    let old_item = old.and_then(|o| o.get(key.as_str()));
                    if let Some(property) = schema.properties.get(key) {
                        let child = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        self.run_rules(property, &object[key], old_item, &child, errors);
                    } else if let Some(values) = schema.map_values() {
                        let child = format!("{path}[{key}]");
                        self.run_rules(values, &object[key], old_item, &child, errors);
                    }
                }
            }
            Value::Array(items) => {
                let Some(item_schema) = &schema.items else {
                    return;
                };
                let old_items = old.and_then(Value::as_array);
                for (index, item) in items.iter().enumerate() {
                    let old_item = match (&schema.list_type, old_items) {
                        (Some(schema::ListType::Map(keys)), Some(old_items)) => {
                            correlate_by_keys(item, old_items, keys)
                        }
                        // Set entries correlate by value, for ratcheting only:
                        // rules below a set cannot use oldSelf.
                        (Some(schema::ListType::Set), Some(old_items)) => {
                            old_items.iter().find(|old| validate::json_equal(old, item))
                        }
                        _ => None,
                    };
                    let child = format!("{path}[{index}]");
                    self.run_rules(item_schema, item, old_item, &child, errors);
                }
            }
            _ => {}
        }
    }
}

/// The old entry of a map list with the same key fields as `item`.
fn correlate_by_keys<'a>(
    item: &Value,
    old_items: &'a [Value],
    keys: &[String],
) -> Option<&'a Value> {
    old_items.iter().find(|old| {
        keys.iter()
            .all(|key| old.get(key.as_str()) == item.get(key.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator(schema: Value) -> CrdValidator {
        CrdValidator::from_schema(&schema).expect("schema compiles")
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn validators_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CrdValidator>();
        let validator = std::sync::Arc::new(validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0"}]}}
        })));
        let handles: Vec<_> = (0..2)
            .map(|n| {
                let validator = std::sync::Arc::clone(&validator);
                std::thread::spawn(move || validator.validate(&json!({"spec": n}), None).len())
            })
            .collect();
        let counts: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect();
        assert_eq!(counts, vec![1, 0]);
    }

    #[test]
    fn pruning_drops_unknown_fields_but_keeps_resource_fields_and_preserved_subtrees() {
        let validator = validator(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "known": {"type": "string"},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "map": {"type": "object", "additionalProperties": {
                        "type": "object", "properties": {"a": {"type": "integer"}}}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "string"}}}},
                    "embedded": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"spec": {"type": "object", "properties": {"c": {"type": "string"}}}}}
                }}
            }
        }));
        let mut object = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "anything": 1},
            "spec": {
                "known": "k", "unknown": 1,
                "free": {"deep": {"er": [1]}},
                "map": {"k1": {"a": 1, "z": 2}},
                "list": [{"b": "x", "y": 1}],
                "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"c": "d", "e": "f"}, "junk": 1}
            },
            "junk": true
        });
        validator.prune_and_default(&mut object);
        assert_eq!(
            object,
            json!({
                "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "anything": 1},
                "spec": {
                    "known": "k",
                    "free": {"deep": {"er": [1]}},
                    "map": {"k1": {"a": 1}},
                    "list": [{"b": "x"}],
                    "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"c": "d"}}
                }
            })
        );
    }

    #[test]
    fn defaulting_fills_absent_fields_nested_defaults_and_non_nullable_nulls() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "default": {}, "properties": {
                "policy": {"type": "string", "default": "Delete"},
                "limits": {"type": "object", "default": {}, "properties": {
                    "rate": {"type": "integer", "default": 10}}},
                "nullableNote": {"type": "string", "nullable": true, "default": "n"},
                "plain": {"type": "string"},
                "ports": {"type": "array", "items": {"type": "object", "properties": {
                    "protocol": {"type": "string", "default": "TCP"}}}}
            }}}
        }));
        let mut empty = json!({});
        validator.prune_and_default(&mut empty);
        assert_eq!(
            empty,
            json!({"spec": {"policy": "Delete", "limits": {"rate": 10}, "nullableNote": "n"}})
        );
        let mut with_nulls = json!({"spec": {"policy": null, "nullableNote": null, "plain": null,
            "ports": [{"port": 80}, {"protocol": "UDP"}]}});
        validator.prune_and_default(&mut with_nulls);
        assert_eq!(
            with_nulls,
            json!({"spec": {"policy": "Delete", "limits": {"rate": 10}, "nullableNote": null,
                "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}]}})
        );
    }

    #[test]
    fn accessing_an_absent_field_fails_the_rule_with_no_such_key() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object",
                "properties": {"mode": {"type": "string"}, "size": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.mode == 'big' ? self.size > 10 : true"}]}}
        }));
        assert_eq!(
            messages(&validator.validate(&json!({"spec": {"mode": "big"}}), None)),
            vec![
                "spec: Invalid value: \"object\": no such key: size evaluating rule: self.mode == 'big' ? self.size > 10 : true"
            ]
        );
        assert_eq!(
            messages(&validator.validate(&json!({"spec": {"mode": "big", "size": 3}}), None)),
            vec![
                "spec: Invalid value: \"object\": failed rule: self.mode == 'big' ? self.size > 10 : true"
            ]
        );
        assert!(
            validator
                .validate(&json!({"spec": {"mode": "small"}}), None)
                .is_empty()
        );
    }

    #[test]
    fn root_rules_report_the_nil_path_and_message_expression_falls_back() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "x-kubernetes-validations": [
                {"rule": "self.spec.n < 5", "messageExpression": "'n is ' + string(self.spec.n)"},
                {"rule": "self.spec.n < 3", "message": "n too big", "messageExpression": "''"}
            ]
        }));
        assert_eq!(
            messages(&validator.validate(&json!({"spec": {"n": 7}}), None)),
            vec![
                "<nil>: Invalid value: \"object\": n is 7",
                "<nil>: Invalid value: \"object\": n too big"
            ]
        );
    }

    #[test]
    fn kubernetes_cel_library_functions() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "list": {"type": "array", "maxItems": 10, "items": {"type": "integer"}},
                "words": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 20}},
                "name": {"type": "string", "maxLength": 40},
                "at": {"type": "string", "format": "date-time"},
                "ratio": {"type": "number"},
                "labels": {"type": "object", "maxProperties": 5, "additionalProperties": {"type": "string", "maxLength": 10}}
            },
            "x-kubernetes-validations": [
                {"rule": "self.list.isSorted() && self.list.sum() == 10 && self.list.min() == 1 && self.list.max() == 4"},
                {"rule": "self.list.indexOf(2) == 1 && self.list.lastIndexOf(9) == -1 && self.list[self.list.size() - 1] == 4"},
                {"rule": "self.list.all(x, x > 0) && self.list.exists(x, x == 3) && self.list.exists_one(x, x == 3)"},
                {"rule": "self.list.map(x, x * 2) == [2, 4, 6, 8] && self.list.filter(x, x > 1).size() == 3"},
                {"rule": "self.name.lowerAscii() == 'my-name' && self.name.upperAscii() == 'MY-NAME' && ' x '.trim() == 'x'"},
                {"rule": "self.name.split('-') == ['My', 'Name'] && self.words.join('+') == 'a+b' && self.name.indexOf('N') == 3"},
                {"rule": "self.name.replace('-', '_') == 'My_Name' && self.name.startsWith('My') && self.name.endsWith('me') && self.name.contains('y-N')"},
                {"rule": "self.name.matches('^[A-Za-z-]+$') && self.name.find('[A-Z][a-z]+$') == 'Name' && self.name.findAll('[A-Z]') == ['M', 'N']"},
                {"rule": "self.at < timestamp('2030-01-01T00:00:00Z') && timestamp(self.at) + duration('1h') > self.at && duration('90m') == duration('1h30m')"},
                {"rule": "int('42') == 42 && string(7) == '7' && double(self.list[0]) == 1.0 && int(self.ratio) == 0 && self.ratio == 0.5"},
                {"rule": "sets.contains(self.list, [1, 2]) && sets.intersects(self.list, [4, 9]) && !sets.equivalent(self.list, [1])"},
                {"rule": "self.labels.all(k, k.size() < 5) && has(self.labels.team) && !has(self.labels.other) && self.labels['team'] == 'fw'"},
                {"rule": "self.list.isSorted() == false", "message": "list is sorted"}
            ]}}
        }));
        let object = json!({"spec": {
            "list": [1, 2, 3, 4], "words": ["a", "b"], "name": "My-Name",
            "at": "2026-05-01T12:00:00Z", "ratio": 0.5, "labels": {"team": "fw"}
        }});
        assert_eq!(
            messages(&validator.validate(&object, None)),
            vec!["spec: Invalid value: \"object\": list is sorted"]
        );
    }

    #[test]
    fn extension_libraries_are_available() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 40},
                "list": {"type": "array", "maxItems": 10, "items": {"type": "integer"}},
                "at": {"type": "string", "format": "date-time"},
                "soak": {"type": "string", "format": "duration"},
                "data": {"type": "string", "format": "byte"}
            },
            "x-kubernetes-validations": [
                {"rule": "self.name.charAt(1) == 'b' && self.name.substring(1, 3) == 'bc' && self.name.lastIndexOf('c') == 2"},
                {"rule": "'%s-%d'.format([self.name, 7]) == 'abc-7' && math.greatest(self.list) == 3 && math.least(1, 2) == 1"},
                {"rule": "self.list.slice(0, 2) == [3, 1] && self.list.sort() == [1, 2, 3] && [1, 1, 2].distinct() == [1, 2]"},
                {"rule": "self.at.getFullYear() == 2026 && self.soak.getMinutes() == 90 && self.data == b'hello'"},
                {"rule": "base64.encode(b'hi') == 'aGk=' && 2 in self.list && 'name' in self && self.?missing.orValue(5) == 5"}
            ]}}
        }));
        let object = json!({"spec": {"name": "abc", "list": [3, 1, 2], "at": "2026-03-01T00:00:00Z",
            "soak": "1h30m", "data": "aGVsbG8="}});
        assert_eq!(
            messages(&validator.validate(&object, None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn field_path_and_reasons() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "labels": {"type": "object", "maxProperties": 3, "additionalProperties": {"type": "string", "maxLength": 10}},
                "replicas": {"type": "integer"}
            },
            "x-kubernetes-validations": [
                {"rule": "!has(self.replicas) || self.replicas > 0", "fieldPath": ".replicas", "reason": "FieldValueRequired", "message": "replicas must be positive"},
                {"rule": "!('app.kubernetes.io/name' in self.labels)", "fieldPath": ".labels['app.kubernetes.io/name']", "reason": "FieldValueForbidden", "message": "reserved label"},
                {"rule": "size(self.labels) < 2", "fieldPath": ".labels", "reason": "FieldValueDuplicate"}
            ]}}
        }));
        let object =
            json!({"spec": {"replicas": 0, "labels": {"app.kubernetes.io/name": "x", "b": "y"}}});
        assert_eq!(
            messages(&validator.validate(&object, None)),
            vec![
                "spec.replicas: Required value: replicas must be positive",
                "spec.labels[app.kubernetes.io/name]: Forbidden: reserved label",
                "spec.labels: Duplicate value: \"object\""
            ]
        );
    }

    #[test]
    fn failing_rules_on_unchanged_values_are_ratcheted_on_update() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 5"}]},
                "m": {"type": "integer"}
            }}}
        }));
        let old = json!({"spec": {"n": 7, "m": 1}});
        let other_field_changed = json!({"spec": {"n": 7, "m": 2}});
        assert!(
            validator
                .validate(&other_field_changed, Some(&old))
                .is_empty()
        );
        assert_eq!(
            messages(&validator.validate(&json!({"spec": {"n": 8, "m": 1}}), Some(&old))),
            vec!["spec.n: Invalid value: \"integer\": failed rule: self < 5"]
        );
        assert_eq!(validator.validate(&other_field_changed, None).len(), 1);
    }

    #[test]
    fn invalid_defaults_are_schema_errors() {
        let error = CrdValidator::from_schema(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "policy": {"type": "string", "enum": ["Delete", "Orphan"], "default": "Keep"}
            }}}
        }))
        .expect_err("default outside the enum");
        assert_eq!(
            error.to_string(),
            "openAPIV3Schema.properties[spec].properties[policy].default: Unsupported value: \"Keep\": supported values: \"Delete\", \"Orphan\""
        );
        CrdValidator::from_schema(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "default": {}, "required": ["policy"], "properties": {
                "policy": {"type": "string", "default": "Delete"}
            }}}
        }))
        .expect("nested defaults complete the default");
    }

    #[test]
    fn escaped_property_names_are_reachable_from_cel() {
        let validator = validator(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "max-size": {"type": "integer"},
                "namespace": {"type": "string"}
            },
            "x-kubernetes-validations": [
                {"rule": "self.max__dash__size < 10 && self.__namespace__ == 'ns'"}
            ]}}
        }));
        assert!(
            validator
                .validate(&json!({"spec": {"max-size": 3, "namespace": "ns"}}), None)
                .is_empty()
        );
        assert_eq!(
            validator
                .validate(&json!({"spec": {"max-size": 30, "namespace": "ns"}}), None)
                .len(),
            1
        );
    }
}
