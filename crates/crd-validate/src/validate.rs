//! Schema validation as kube-openapi does it for custom resources (converted
//! to field errors as apiextensions-apiserver does), the list-type
//! invariants, and embedded resources' apiVersion/kind.

use crate::error::{ErrorType, FieldError, go_float, go_number};
use crate::format;
use crate::schema::{AdditionalProperties, ListType, Schema};
use serde_json::{Number, Value};
use std::collections::HashMap;

/// kube-openapi's name of a property of `path`.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The JSON type of a value as kube-openapi names it in type errors.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(number: &Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|x| x.fract() == 0.0)
}

/// The bad value the apiserver reports: the value itself.
fn bad(value: &Value) -> Option<Value> {
    Some(value.clone())
}

fn count(n: usize) -> Option<Value> {
    Some(Value::from(n as u64))
}

/// Prints a schema bound as Go's `%v` of the float64 kube-openapi holds.
fn bound(x: f64) -> String {
    go_float(x)
}

/// Validates `value` against `schema` at kube-openapi path `path`, appending
/// field errors in kube-openapi's order (type, junctions, string, format,
/// number, list, enum, object).
pub(crate) fn validate_value(
    schema: &Schema,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let name = if path.is_empty() { "." } else { path };
    if value.is_null() {
        if (schema.type_name.is_some() || schema.int_or_string) && !schema.nullable {
            errors.push(type_error(schema, value, path, name));
        }
        return;
    }
    if !type_matches(schema, value) {
        errors.push(type_error(schema, value, path, name));
        return;
    }
    validate_junctions(schema, value, path, name, errors);

    match value {
        Value::String(text) => validate_string(schema, value, text, path, name, errors),
        Value::Number(number) => validate_number(schema, value, number, path, name, errors),
        _ => {}
    }
    if let Value::Array(items) = value {
        if let Some(min) = schema.min_items
            && (items.len() as u64) < min
        {
            errors.push(FieldError::new(
                path,
                ErrorType::Invalid,
                count(items.len()),
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = schema.max_items
            && items.len() as u64 > max
        {
            errors.push(too_many(path, items.len(), max));
        }
        if let Some(item_schema) = &schema.items {
            for (index, item) in items.iter().enumerate() {
                validate_value(item_schema, item, &format!("{path}[{index}]"), errors);
            }
        }
    }
    if let Some(allowed) = &schema.enum_values
        && !allowed.iter().any(|candidate| json_equal(candidate, value))
    {
        let supported: Vec<String> = allowed
            .iter()
            .map(|candidate| match candidate {
                Value::String(s) => crate::error::go_quote(s),
                other => crate::error::go_quote(&canonical_json(other)),
            })
            .collect();
        errors.push(FieldError::new(
            path,
            ErrorType::NotSupported,
            bad(value),
            format!("supported values: {}", supported.join(", ")),
        ));
    }
    if let Value::Object(object) = value {
        // kube-openapi stops at a property count violation.
        if let Some(min) = schema.min_properties
            && (object.len() as u64) < min
        {
            errors.push(FieldError::new(
                path,
                ErrorType::Invalid,
                count(object.len()),
                format!("{name} in body should have at least {min} properties"),
            ));
            return;
        }
        if let Some(max) = schema.max_properties
            && object.len() as u64 > max
        {
            errors.push(too_many(path, object.len(), max));
            return;
        }
        for required in &schema.required {
            if !object.contains_key(required) {
                errors.push(FieldError::new(
                    child(path, required),
                    ErrorType::Required,
                    None,
                    "",
                ));
            }
        }
        let mut keys: Vec<&String> = object.keys().collect();
        keys.sort();
        for key in keys {
            let item = &object[key];
            if let Some(property) = schema.properties.get(key) {
                validate_value(property, item, &child(path, key), errors);
                continue;
            }
            match &schema.additional_properties {
                Some(AdditionalProperties::Schema(values)) => {
                    validate_value(values, item, &child(path, key), errors);
                }
                Some(AdditionalProperties::Forbidden) => errors.push(FieldError::new(
                    path,
                    ErrorType::Invalid,
                    Some(Value::String(key.clone())),
                    format!("{name}.{key} in body is a forbidden property"),
                )),
                None => {}
            }
        }
        if schema.embedded_resource {
            for required in ["apiVersion", "kind"] {
                let present = object
                    .get(required)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if !present {
                    errors.push(FieldError::new(
                        child(path, required),
                        ErrorType::Required,
                        None,
                        "must not be empty",
                    ));
                }
            }
        }
    }
}

fn too_many(path: &str, actual: usize, max: u64) -> FieldError {
    let noun = if max == 1 { "item" } else { "items" };
    FieldError::new(
        path,
        ErrorType::TooMany,
        count(actual),
        format!("must have at most {max} {noun}"),
    )
}

fn type_matches(schema: &Schema, value: &Value) -> bool {
    if schema.int_or_string {
        return matches!(value, Value::String(_))
            || matches!(value, Value::Number(n) if is_integer(n));
    }
    match schema.type_name.as_deref() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("number") => value.is_number(),
        Some("integer") => matches!(value, Value::Number(n) if is_integer(n)),
        Some(_) => false,
    }
}

fn type_error(schema: &Schema, value: &Value, path: &str, name: &str) -> FieldError {
    let expected = if schema.int_or_string {
        "integer,string"
    } else {
        schema.type_label()
    };
    let actual = json_type(value);
    FieldError::new(
        path,
        ErrorType::TypeInvalid,
        Some(Value::String(actual.to_owned())),
        format!("{name} in body must be of type {expected}: \"{actual}\""),
    )
}

fn validate_junctions(
    schema: &Schema,
    value: &Value,
    path: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) {
    let run = |sub: &Schema| {
        let mut found = Vec::new();
        validate_value(sub, value, path, &mut found);
        found
    };
    let summary = |detail: String| FieldError::new(path, ErrorType::Invalid, bad(value), detail);
    if !schema.all_of.is_empty() {
        let failures: Vec<FieldError> = schema.all_of.iter().flat_map(run).collect();
        if !failures.is_empty() {
            errors.push(summary(format!(
                "{name} in body must validate all the schemas (allOf)"
            )));
            errors.extend(failures);
        }
    }
    if !schema.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = schema.any_of.iter().map(run).collect();
        if !results.iter().any(Vec::is_empty) {
            errors.push(summary(format!(
                "{name} in body must validate at least one schema (anyOf)"
            )));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                errors.extend(best);
            }
        }
    }
    if !schema.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = schema.one_of.iter().map(run).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            errors.push(summary(format!(
                "{name} in body must validate one and only one schema (oneOf)"
            )));
            if valid == 0
                && let Some(best) = results.into_iter().min_by_key(Vec::len)
            {
                errors.extend(best);
            }
        }
    }
    if let Some(not) = &schema.not
        && run(not).is_empty()
    {
        errors.push(summary(format!(
            "{name} in body must not validate the schema (not)"
        )));
    }
}

fn validate_string(
    schema: &Schema,
    value: &Value,
    text: &str,
    path: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) {
    let length = text.chars().count() as u64;
    if let Some(max) = schema.max_length
        && length > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errors.push(FieldError::new(
            path,
            ErrorType::TooLong,
            bad(value),
            format!("may not be more than {max} {unit}"),
        ));
    }
    if let Some(min) = schema.min_length
        && length < min
    {
        errors.push(FieldError::new(
            path,
            ErrorType::Invalid,
            bad(value),
            format!("{name} in body should be at least {min} chars long"),
        ));
    }
    if let Some((pattern, regex)) = &schema.pattern
        && !regex.is_match(text)
    {
        errors.push(FieldError::new(
            path,
            ErrorType::Invalid,
            bad(value),
            format!("{name} in body should match '{pattern}'"),
        ));
    }
    if let Some(format_name) = &schema.format
        && !format::is_valid(format_name, text)
    {
        errors.push(FieldError::new(
            path,
            ErrorType::TypeInvalid,
            bad(value),
            format!(
                "{name} in body must be of type {format_name}: {}",
                crate::error::go_quote(text)
            ),
        ));
    }
}

fn validate_number(
    schema: &Schema,
    value: &Value,
    number: &Number,
    path: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) {
    let x = number.as_f64().unwrap_or(f64::NAN);
    let mut fail = |detail: String| {
        errors.push(FieldError::new(
            path,
            ErrorType::Invalid,
            bad(value),
            detail,
        ));
    };
    if let Some(factor) = schema.multiple_of {
        let quotient = x / factor;
        if (quotient - quotient.round()).abs() > 1e-9 * quotient.abs().max(1.0) {
            fail(format!(
                "{name} in body should be a multiple of {}",
                bound(factor)
            ));
        }
    }
    if let Some(max) = schema.maximum {
        if schema.exclusive_maximum && x >= max {
            fail(format!("{name} in body should be less than {}", bound(max)));
        } else if !schema.exclusive_maximum && x > max {
            fail(format!(
                "{name} in body should be less than or equal to {}",
                bound(max)
            ));
        }
    }
    if let Some(min) = schema.minimum {
        if schema.exclusive_minimum && x <= min {
            fail(format!(
                "{name} in body should be greater than {}",
                bound(min)
            ));
        } else if !schema.exclusive_minimum && x < min {
            fail(format!(
                "{name} in body should be greater than or equal to {}",
                bound(min)
            ));
        }
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| json_equal(v, other)))
        }
        _ => a == b,
    }
}

/// JSON with object keys sorted, as Go's `json.Marshal` of unstructured data.
pub(crate) fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            let entries: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        canonical_json(&object[k])
                    )
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Number(n) => go_number(n),
        other => other.to_string(),
    }
}

/// The indices of the second appearance of each repeated entry, as the
/// apiserver's `validateListSet` reports them.
fn repeated_indices(entries: &[String]) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut repeated = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let times = seen.entry(entry.as_str()).or_insert(0);
        *times += 1;
        if *times == 2 {
            repeated.push(index);
        }
    }
    repeated
}

/// `x-kubernetes-list-type` set and map invariants, with field paths (map
/// keys as `[key]`).
pub(crate) fn validate_list_types(
    schema: &Schema,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            for key in keys {
                if let Some(property) = schema.properties.get(key) {
                    validate_list_types(property, &object[key], &child(path, key), errors);
                } else if let Some(values) = schema.map_values() {
                    validate_list_types(values, &object[key], &format!("{path}[{key}]"), errors);
                }
            }
        }
        Value::Array(items) => {
            match &schema.list_type {
                Some(ListType::Set) => {
                    let entries: Vec<String> = items.iter().map(canonical_json).collect();
                    for index in repeated_indices(&entries) {
                        errors.push(FieldError::new(
                            format!("{path}[{index}]"),
                            ErrorType::Duplicate,
                            bad(&items[index]),
                            "",
                        ));
                    }
                }
                Some(ListType::Map(key_fields)) => {
                    validate_list_map(key_fields, items, path, errors);
                }
                Some(ListType::Atomic) | None => {}
            }
            if let Some(item_schema) = &schema.items {
                for (index, item) in items.iter().enumerate() {
                    validate_list_types(item_schema, item, &format!("{path}[{index}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn validate_list_map(
    key_fields: &[String],
    items: &[Value],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    for (index, item) in items.iter().enumerate() {
        if !item.is_null() && !item.is_object() {
            errors.push(FieldError::new(
                format!("{path}[{index}]"),
                ErrorType::Invalid,
                bad(item),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let keys: Vec<serde_json::Map<String, Value>> = items
        .iter()
        .map(|item| {
            let mut key = serde_json::Map::new();
            if let Some(object) = item.as_object() {
                for field in key_fields {
                    if let Some(v) = object.get(field) {
                        key.insert(field.clone(), v.clone());
                    }
                }
            }
            key
        })
        .collect();
    let entries: Vec<String> = keys
        .iter()
        .map(|key| canonical_json(&Value::Object(key.clone())))
        .collect();
    for index in repeated_indices(&entries) {
        errors.push(FieldError::new(
            format!("{path}[{index}]"),
            ErrorType::Duplicate,
            Some(Value::Object(keys[index].clone())),
            "",
        ));
    }
}
