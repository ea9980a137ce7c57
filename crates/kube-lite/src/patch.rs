//! PATCH bodies: RFC 6902 JSON patch, RFC 7386 merge patch, and strategic merge patch.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchFailure {
    /// The body is not a valid patch document (400).
    Malformed(String),
    /// A `test` operation failed or a path was invalid (422).
    Unprocessable(String),
}

/// Applies an RFC 6902 patch. Like the apiserver, a `test` against a missing path compares with null.
pub fn json_patch(doc: &mut Value, body: &[u8]) -> Result<(), PatchFailure> {
    let ops: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| PatchFailure::Malformed(format!("invalid JSON patch: {e}")))?;
    for (index, op) in ops.into_iter().enumerate() {
        let path = op["path"].as_str().unwrap_or_default().to_string();
        if op["op"] == "test" && doc.pointer(&path).is_none() {
            if op["value"].is_null() {
                continue;
            }
            return Err(PatchFailure::Unprocessable(format!(
                "the server rejected our request due to an error in our request: testing value {path} failed: \
                 missing value (operation {index})"
            )));
        }
        let operation: json_patch::PatchOperation = serde_json::from_value(op)
            .map_err(|e| PatchFailure::Malformed(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(doc, &[operation]).map_err(|e| {
            let detail = match e.kind {
                json_patch::PatchErrorKind::TestFailed => format!("testing value {path} failed"),
                _ => format!("{path}: {}", e.kind),
            };
            PatchFailure::Unprocessable(format!(
                "the server rejected our request due to an error in our request: {detail}"
            ))
        })?;
    }
    Ok(())
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(doc: &mut Value, body: &[u8]) -> Result<(), PatchFailure> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| PatchFailure::Malformed(format!("invalid merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(PatchFailure::Malformed(
            "merge patch must be a JSON object".into(),
        ));
    }
    json_patch::merge(doc, &patch);
    Ok(())
}

/// The merge key the built-in kinds declare for a list field, when its items carry that key.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets"
        | "secrets"
        | "envFrom"
        | "volumeDevices" => "name",
        "conditions" => "type",
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    items.iter().all(|i| i.get(key).is_some()).then_some(key)
}

/// Applies a strategic merge patch: merge patch plus list merging by key for the lists built-ins declare,
/// `$patch: delete|replace` directives, and removal of `$setElementOrder`/`$retainKeys` hints.
pub fn strategic_merge_patch(doc: &mut Value, body: &[u8]) -> Result<(), PatchFailure> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| PatchFailure::Malformed(format!("invalid strategic merge patch: {e}")))?;
    let Value::Object(patch) = patch else {
        return Err(PatchFailure::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    strategic_merge_map(doc, patch);
    Ok(())
}

fn strategic_merge_map(doc: &mut Value, mut patch: Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        patch.remove("$patch");
        *doc = Value::Object(strip_directives(patch));
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let target = doc.as_object_mut().expect("object ensured above");
    let mut deletions: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            deletions.push((
                field.to_string(),
                value.as_array().cloned().unwrap_or_default(),
            ));
            continue;
        }
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(map) => {
                if map.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(&key);
                } else {
                    strategic_merge_map(target.entry(key).or_insert(Value::Null), map);
                }
            }
            Value::Array(items) => {
                let merged = match (target.get_mut(&key), merge_key(&key, &items)) {
                    (Some(Value::Array(live)), Some(merge_key)) => {
                        merge_list(live, items, merge_key);
                        None
                    }
                    _ => Some(Value::Array(items.into_iter().map(strip_value).collect())),
                };
                if let Some(value) = merged {
                    target.insert(key, value);
                }
            }
            scalar => {
                target.insert(key, scalar);
            }
        }
    }
    for (field, values) in deletions {
        if let Some(Value::Array(live)) = target.get_mut(&field) {
            live.retain(|v| !values.contains(v));
        }
    }
}

fn merge_list(live: &mut Vec<Value>, items: Vec<Value>, key: &str) {
    for item in items {
        let id = item.get(key).cloned();
        let position = live.iter().position(|l| l.get(key) == id.as_ref());
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete, item) {
            (Some(i), true, _) => {
                live.remove(i);
            }
            (None, true, _) => {}
            (Some(i), false, Value::Object(map)) => strategic_merge_map(&mut live[i], map),
            (None, false, item) => live.push(strip_value(item)),
            (Some(i), false, item) => live[i] = item,
        }
    }
}

fn strip_directives(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k, strip_value(v)))
        .collect()
}

fn strip_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directives(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_test_on_missing_path_compares_with_null() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                        {"op":"add","path":"/metadata/finalizers","value":["x"]}]"#;
        json_patch(&mut doc, body).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
        let failing = br#"[{"op":"test","path":"/metadata/finalizers/0","value":"y"}]"#;
        assert!(matches!(
            json_patch(&mut doc, failing),
            Err(PatchFailure::Unprocessable(_))
        ));
        let missing = br#"[{"op":"test","path":"/metadata/labels","value":{"a":"b"}}]"#;
        assert!(matches!(
            json_patch(&mut doc, missing),
            Err(PatchFailure::Unprocessable(_))
        ));
        assert!(matches!(
            json_patch(&mut doc, b"{}"),
            Err(PatchFailure::Malformed(_))
        ));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut doc = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                                      "args": ["x", "y"]}});
        let body = br#"{"spec": {"$setElementOrder/containers": [{"name":"a"},{"name":"b"}],
            "containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}], "args": ["z"]}}"#;
        strategic_merge_patch(&mut doc, body).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}], "args": ["z"]}})
        );
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut doc = json!({"a": 1, "b": {"c": 2}});
        merge_patch(&mut doc, br#"{"a": null, "b": {"d": 3}}"#).unwrap();
        assert_eq!(doc, json!({"b": {"c": 2, "d": 3}}));
    }
}
