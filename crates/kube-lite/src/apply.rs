//! Field ownership (`metadata.managedFields`, fieldsV1) and server-side apply.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path as object keys from the root, e.g. `["spec", "replicas"]`. Lists are atomic leaves.
pub type FieldPath = Vec<String>;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is excluded when the type has a status subresource.
    Main {
        /// Whether `status` belongs to a separate subresource.
        status_separate: bool,
    },
    /// The `/status` subresource.
    Status,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were written at.
    pub api_version: String,
    /// `status` for writes to the status subresource.
    pub subresource: Option<String>,
    /// Owned leaf paths.
    pub fields: BTreeSet<FieldPath>,
    /// RFC 3339 time of the last write.
    pub time: String,
}

/// An apply that would take a field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The contested path.
    pub path: FieldPath,
}

/// `.spec.replicas` form.
pub fn display_path(path: &FieldPath) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

fn in_scope(path: &[String], scope: Scope) -> bool {
    match (path.first().map(String::as_str), scope) {
        (Some("apiVersion" | "kind") | None, _) => false,
        (Some("status"), Scope::Status) => true,
        (_, Scope::Status) => false,
        (Some("status"), Scope::Main { status_separate }) => !status_separate,
        (Some("metadata"), _) => matches!(
            path.get(1).map(String::as_str),
            Some("labels" | "annotations" | "finalizers" | "ownerReferences") | None
        ),
        _ => true,
    }
}

fn collect_leaves(
    value: &Value,
    prefix: &mut FieldPath,
    scope: Scope,
    out: &mut BTreeSet<FieldPath>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(key.clone());
                if in_scope(prefix, scope) {
                    collect_leaves(child, prefix, scope, out);
                }
                prefix.pop();
            }
        }
        _ if prefix.len() > 1 || prefix.first().is_some_and(|k| k != "metadata") => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

/// Leaf paths set in `value` within `scope`.
pub fn leaf_paths(value: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    collect_leaves(value, &mut Vec::new(), scope, &mut out);
    out
}

fn value_at<'a>(value: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn to_fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            node = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let children: Vec<(&str, &Value)> = value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("f:")?, v)))
                .collect()
        })
        .unwrap_or_default();
    let has_other = value
        .as_object()
        .is_some_and(|m| m.keys().any(|k| !k.starts_with("f:") && k != "."));
    if (children.is_empty() || has_other) && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (key, child) in children {
        prefix.push(key.to_string());
        from_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

/// Reads `metadata.managedFields`.
pub fn read_entries(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let mut fields = BTreeSet::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            ManagedEntry {
                manager: e["manager"].as_str().unwrap_or_default().into(),
                operation: e["operation"].as_str().unwrap_or("Update").into(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                subresource: e["subresource"].as_str().map(String::from),
                fields,
                time: e["time"].as_str().unwrap_or_default().into(),
            }
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                entry["subresource"] = json!(sub);
            }
            entry
        })
        .collect();
    if list.is_empty() {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn entry_mut<'a>(
    entries: &'a mut Vec<ManagedEntry>,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    api_version: &str,
) -> &'a mut ManagedEntry {
    let index = entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.subresource.as_deref() == subresource
    });
    let index = index.unwrap_or_else(|| {
        entries.push(ManagedEntry {
            manager: manager.into(),
            operation: operation.into(),
            api_version: api_version.into(),
            subresource: subresource.map(String::from),
            fields: BTreeSet::new(),
            time: String::new(),
        });
        entries.len() - 1
    });
    &mut entries[index]
}

fn subresource_of(scope: Scope) -> Option<&'static str> {
    (scope == Scope::Status).then_some("status")
}

/// Records the fields a non-apply write changed: `manager` takes them, other managers lose them.
pub fn record_update(
    old: &Value,
    new: &Value,
    manager: &str,
    entries: &mut Vec<ManagedEntry>,
    scope: Scope,
    api_version: &str,
    now: &str,
) {
    let old_paths = leaf_paths(old, scope);
    let new_paths = leaf_paths(new, scope);
    let changed: BTreeSet<FieldPath> = new_paths
        .iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .chain(old_paths.difference(&new_paths))
        .cloned()
        .collect();
    if changed.is_empty() {
        return;
    }
    for entry in entries.iter_mut() {
        entry
            .fields
            .retain(|p| !changed.iter().any(|c| overlaps(c, p)));
    }
    let entry = entry_mut(
        entries,
        manager,
        "Update",
        subresource_of(scope),
        api_version,
    );
    entry
        .fields
        .extend(changed.into_iter().filter(|p| new_paths.contains(p)));
    entry.time = now.into();
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(parent) = parents.iter().try_fold(&mut *value, |v, k| v.get_mut(k)) {
        if let Some(map) = parent.as_object_mut() {
            map.remove(last);
        }
        if parent.as_object().is_some_and(Map::is_empty) && !parents.is_empty() {
            remove_path(value, parents);
        }
    }
}

fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    deep_merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live`. Returns the merged object, or the conflicts
/// when another manager owns a field with a different value and `force` is false.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    entries: &mut Vec<ManagedEntry>,
    scope: Scope,
    api_version: &str,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let subresource = subresource_of(scope);
    let applied_paths = leaf_paths(applied, scope);
    let is_own = |e: &ManagedEntry| {
        e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == subresource
    };
    let mut conflicts = Vec::new();
    for entry in entries.iter().filter(|e| e.manager != manager) {
        for path in &applied_paths {
            let contested = entry.fields.iter().any(|owned| {
                overlaps(owned, path) && value_at(live, owned) != value_at(applied, owned)
            });
            if contested {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for entry in entries.iter_mut().filter(|e| e.manager != manager) {
            entry.fields.retain(|owned| {
                !conflicts
                    .iter()
                    .any(|c| c.manager == entry.manager && overlaps(owned, &c.path))
            });
        }
    }
    let previous = entries
        .iter()
        .find(|e| is_own(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = live.clone();
    for dropped in previous.difference(&applied_paths) {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !is_own(e) && e.fields.iter().any(|p| overlaps(p, dropped)));
        if !owned_elsewhere {
            remove_path(&mut result, dropped);
        }
    }
    let mut scoped = Map::new();
    for (key, value) in applied.as_object().into_iter().flatten() {
        if in_scope(std::slice::from_ref(key), scope) {
            scoped.insert(key.clone(), value.clone());
        }
    }
    deep_merge(&mut result, &Value::Object(scoped));
    let entry = entry_mut(entries, manager, "Apply", subresource, api_version);
    entry.fields = applied_paths;
    entry.api_version = api_version.into();
    entry.time = now.into();
    Ok(result)
}

/// The apiserver's message for apply conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    let body = if let [only] = conflicts {
        format!(
            "conflict with \"{}\": {}",
            only.manager,
            display_path(&only.path)
        )
    } else {
        let managers: BTreeSet<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with \"{manager}\":"));
            for c in conflicts.iter().filter(|c| c.manager == manager) {
                lines.push(format!("- {}", display_path(&c.path)));
            }
        }
        lines.join("\n")
    };
    format!(
        "Apply failed with {} conflict{plural}: {body}",
        conflicts.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main {
        status_separate: true,
    };

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "1"}},
                         "spec": {"replicas": 2, "ports": [1, 2]}, "status": {"ready": true}});
        let paths = leaf_paths(&obj, MAIN);
        assert_eq!(paths.len(), 3);
        let mut back = BTreeSet::new();
        from_fields_v1(&to_fields_v1(&paths), &mut Vec::new(), &mut back);
        assert_eq!(back, paths);
    }

    #[test]
    fn apply_conflicts_then_force_takes_ownership() {
        let mut entries = Vec::new();
        let live = json!({"metadata": {"name": "x"}});
        let first = json!({"spec": {"size": 1, "color": "red"}});
        let live = apply(&live, &first, "a", false, &mut entries, MAIN, "v1", "t").unwrap();
        let second = json!({"spec": {"size": 2}});
        let conflicts =
            apply(&live, &second, "b", false, &mut entries, MAIN, "v1", "t").unwrap_err();
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.size"
        );
        let live = apply(&live, &second, "b", true, &mut entries, MAIN, "v1", "t").unwrap();
        assert_eq!(live["spec"], json!({"size": 2, "color": "red"}));
        // "a" no longer owns size, so re-applying without it leaves it alone but drops color.
        let live = apply(
            &live,
            &json!({"spec": {}}),
            "a",
            false,
            &mut entries,
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(live["spec"], json!({"size": 2}));
    }

    #[test]
    fn same_value_is_shared_not_conflicting() {
        let mut entries = Vec::new();
        let obj = json!({"spec": {"size": 1}});
        let live = apply(&json!({}), &obj, "a", false, &mut entries, MAIN, "v1", "t").unwrap();
        assert!(apply(&live, &obj, "b", false, &mut entries, MAIN, "v1", "t").is_ok());
    }

    #[test]
    fn update_takes_fields_from_appliers() {
        let mut entries = Vec::new();
        let live = apply(
            &json!({}),
            &json!({"spec": {"size": 1}}),
            "a",
            false,
            &mut entries,
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        let updated = json!({"spec": {"size": 3}});
        record_update(&live, &updated, "editor", &mut entries, MAIN, "v1", "t");
        let conflicts = apply(
            &updated,
            &json!({"spec": {"size": 1}}),
            "a",
            false,
            &mut entries,
            MAIN,
            "v1",
            "t",
        );
        assert_eq!(conflicts.unwrap_err()[0].manager, "editor");
    }
}
