//! Server-side printing: `meta.k8s.io/v1` Tables with printer columns evaluated by a small JSONPath engine.

use serde_json::{Value, json};

use crate::registry::{PrinterColumn, ResourceType};

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
    Filter(Vec<String>, bool, Value),
}

fn parse_path(path: &str) -> Vec<Step> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            let inner = &after[..end];
            rest = after.get(end + 1..).unwrap_or_default();
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(index) = inner.parse() {
                steps.push(Step::Index(index));
            } else if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                let (lhs, equal, rhs) = match filter.split_once("!=") {
                    Some((l, r)) => (l, false, r),
                    None => {
                        let (l, r) = filter.split_once("==").unwrap_or((filter, "true"));
                        (l, true, r)
                    }
                };
                let field = lhs
                    .trim()
                    .trim_start_matches('@')
                    .split('.')
                    .filter(|s| !s.is_empty())
                    .map(String::from);
                let rhs = rhs.trim();
                let literal = serde_json::from_str(rhs).unwrap_or_else(|_| {
                    Value::String(rhs.trim_matches(|c| c == '\'' || c == '"').to_string())
                });
                steps.push(Step::Filter(field.collect(), equal, literal));
            } else {
                steps.push(Step::Key(
                    inner.trim_matches(|c| c == '\'' || c == '"').to_string(),
                ));
            }
        } else {
            let body = rest.trim_start_matches('.');
            let end = body.find(['.', '[']).unwrap_or(body.len());
            if end > 0 {
                steps.push(Step::Key(body[..end].to_string()));
            }
            rest = &body[end..];
        }
    }
    steps
}

/// Evaluates a kubectl-style JSONPath (`.status.conditions[?(@.type=="Ready")].status`).
pub fn eval<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![object];
    for step in parse_path(path) {
        current = current
            .into_iter()
            .flat_map(|value| -> Vec<&Value> {
                match &step {
                    Step::Key(key) => value.get(key).into_iter().collect(),
                    Step::Index(i) => value.get(*i).into_iter().collect(),
                    Step::All => match value {
                        Value::Array(items) => items.iter().collect(),
                        Value::Object(map) => map.values().collect(),
                        _ => vec![],
                    },
                    Step::Filter(field, equal, literal) => value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|item| {
                            let found = field
                                .iter()
                                .try_fold(*item, |v, k| v.get(k))
                                .unwrap_or(&Value::Null);
                            (found == literal) == *equal
                        })
                        .collect(),
                }
            })
            .collect();
    }
    current
}

/// kubectl's short human duration ("45s", "3m12s", "5h", "12d").
pub fn human_age(seconds: i64) -> String {
    let (m, h, d) = (seconds / 60, seconds / 3600, seconds / 86400);
    match seconds {
        s if s < 0 => "0s".into(),
        s if s < 120 => format!("{s}s"),
        _ if m < 10 && seconds % 60 != 0 => format!("{m}m{}s", seconds % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y{}d", d / 365, d % 365),
    }
}

fn age_of(timestamp: &Value) -> Value {
    let parsed = timestamp
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match parsed {
        Some(ts) => Value::String(human_age(
            jiff::Timestamp::now().as_second() - ts.as_second(),
        )),
        None => Value::String("<unknown>".into()),
    }
}

fn column(name: &str, column_type: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        column_type: column_type.into(),
        format: if name == "Name" {
            "name".into()
        } else {
            String::new()
        },
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

fn builtin_columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => vec![column("Status", "string", ".status.phase", 0)],
        ("", "secrets") => vec![
            column("Type", "string", ".type", 0),
            column("Data", "integer", "#data", 0),
        ],
        ("", "configmaps") => vec![column("Data", "integer", "#data", 0)],
        ("", "services") => vec![
            column("Type", "string", ".spec.type", 0),
            column("Cluster-IP", "string", ".spec.clusterIP", 0),
        ],
        ("apps", "deployments") => vec![
            column("Up-to-date", "integer", ".status.updatedReplicas", 0),
            column("Available", "integer", ".status.availableReplicas", 0),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![column("Holder", "string", ".spec.holderIdentity", 0)]
        }
        ("", "events") | ("events.k8s.io", "events") => vec![
            column("Type", "string", ".type", 0),
            column("Reason", "string", ".reason", 0),
        ],
        _ => vec![],
    }
}

fn cell(object: &Value, col: &PrinterColumn) -> Value {
    if let Some(field) = col.json_path.strip_prefix('#') {
        return json!(object[field].as_object().map_or(0, |m| m.len()));
    }
    let found: Vec<&Value> = eval(object, &col.json_path);
    let value = match found.as_slice() {
        [] => return Value::Null,
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    };
    match col.column_type.as_str() {
        "date" => age_of(&value),
        "string" if !value.is_string() => Value::String(match &value {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or(i.to_string(), String::from))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }),
        _ => value,
    }
}

/// Column set for a resource: Name, printer columns (or built-in defaults), Age.
pub fn columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    let mut cols = vec![column("Name", "string", ".metadata.name", 0)];
    let extra = if rt.custom {
        rt.printer_columns.clone()
    } else {
        builtin_columns(rt)
    };
    let has_age = extra.iter().any(|c| c.name == "Age");
    cols.extend(extra);
    if !has_age {
        cols.push(column("Age", "date", ".metadata.creationTimestamp", 0));
    }
    cols
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// A Table of `objects`.
pub fn table(
    rt: &ResourceType,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let cols = columns(rt);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            let column_type = if c.column_type == "date" { "string" } else { c.column_type.as_str() };
            json!({"name": c.name, "type": column_type, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(object, c)).collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = (*object).clone(),
                IncludeObject::Metadata => {
                    let mut metadata = object["metadata"].clone();
                    if let Some(meta) = metadata.as_object_mut() {
                        meta.remove("managedFields");
                    }
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata});
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": definitions, "rows": rows})
}

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions() {
        let obj = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            eval(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![&json!("True")]
        );
        assert_eq!(
            eval(&obj, ".status.conditions[0].type"),
            vec![&json!("Synced")]
        );
        assert_eq!(eval(&obj, ".status.conditions[*].type").len(), 2);
        assert!(eval(&obj, ".spec.missing").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(185), "3m5s");
        assert_eq!(human_age(3600 * 3), "3h");
        assert_eq!(human_age(86400 * 3), "3d");
    }
}
