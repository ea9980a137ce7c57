//! Field errors as k8s.io/apimachinery's `field.Error` prints them, and the
//! errors found while compiling a schema.

use serde_json::Value;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// The kind of a field error, as `field.ErrorType` in k8s.io/apimachinery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `FieldValueInvalid`: the value does not satisfy a constraint.
    Invalid,
    /// `FieldValueRequired`: a required value is missing.
    Required,
    /// `FieldValueNotSupported`: the value is not one of an enumeration.
    NotSupported,
    /// `FieldValueTooLong`: a string is longer than `maxLength`.
    TooLong,
    /// `FieldValueTooMany`: a list or map has more than `maxItems`/`maxProperties`.
    TooMany,
    /// `FieldValueDuplicate`: an entry of a set or map list repeats.
    Duplicate,
    /// `FieldValueForbidden`: the value may not be set (CEL `reason: FieldValueForbidden`).
    Forbidden,
    /// `FieldValueTypeInvalid`: the value is of the wrong JSON type or format.
    TypeInvalid,
}

impl ErrorType {
    /// The machine-readable reason, as it appears in a Status cause's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable prefix of the message, e.g. `Invalid value`.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::Required => "Required value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
        }
    }
}

/// One validation failure, as `field.Error`: the field path, the error type,
/// the offending value (absent where the apiserver omits it) and the detail.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The field path, e.g. `spec.artifact.sha256` or `spec.devices[3]`; `<nil>` for the root.
    pub field: String,
    /// What kind of failure this is.
    pub error_type: ErrorType,
    /// The offending value as the apiserver reports it (for CEL rules: the schema type).
    pub bad_value: Option<Value>,
    /// The explanation, e.g. `spec.x in body should match '^a$'`.
    pub detail: String,
}

impl FieldError {
    /// A field error; an empty `field` (the root) is written `<nil>`, as the
    /// apiserver prints a nil field path.
    pub fn new(
        field: impl Into<String>,
        error_type: ErrorType,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        let field = field.into();
        FieldError {
            field: if field.is_empty() {
                "<nil>".to_owned()
            } else {
                field
            },
            error_type,
            bad_value,
            detail: detail.into(),
        }
    }

    /// The message without the field, as in a Status cause's `message`:
    /// `Invalid value: "abc": spec.x in body should match '^a$'`.
    pub fn body(&self) -> String {
        let mut body = self.error_type.label().to_owned();
        let shows_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong
        );
        if shows_value && let Some(value) = &self.bad_value {
            body.push_str(": ");
            body.push_str(&go_value(value));
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// The message of the apiserver's 422 Invalid status:
/// `FirmwarePackage.otaplane.io "fw1" is invalid: spec.x: ...`, with several
/// (deduplicated) errors as `[a, b]`.
pub fn invalid_message(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let mut seen = HashSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(ToString::to_string)
        .filter(|message| seen.insert(message.clone()))
        .collect();
    let name = go_quote(name);
    match messages.len() {
        0 => format!("{qualified} {name} is invalid"),
        1 => format!("{qualified} {name} is invalid: {}", messages[0]),
        _ => format!("{qualified} {name} is invalid: [{}]", messages.join(", ")),
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (the shortest representation, exponent form for
/// very large or small magnitudes).
pub(crate) fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        let formatted = format!("{value:e}");
        let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    format!("{value}")
}

/// A JSON number as Go prints the `int64` or `float64` it decodes to.
pub(crate) fn go_number(number: &serde_json::Number) -> String {
    if let Some(i) = number.as_i64() {
        i.to_string()
    } else if let Some(u) = number.as_u64() {
        u.to_string()
    } else {
        go_float(number.as_f64().unwrap_or(f64::NAN))
    }
}

/// A bad value as `field.Error.ErrorBody` prints it: simple types with `%v`,
/// strings with `%q`, null as `"null"`, maps and lists with `%#v`.
fn go_value(value: &Value) -> String {
    match value {
        Value::Null => go_quote("null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(_) | Value::Object(_) => go_sharp(value),
    }
}

/// Go's `%#v` of an unstructured value (`map[string]interface {}` / `[]interface {}`).
fn go_sharp(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_quote(k), go_sharp(&map[k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// Why a schema could not be compiled into a validator. None of these is
/// retryable: the CRD itself must change.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The CRD has no version of that name.
    #[error("the CustomResourceDefinition has no version {version:?}")]
    NoSuchVersion {
        /// The version asked for.
        version: String,
    },
    /// The version has no `schema.openAPIV3Schema`.
    #[error("version {version:?} has no schema.openAPIV3Schema")]
    MissingSchema {
        /// The version asked for.
        version: String,
    },
    /// A keyword has a value of the wrong shape, e.g. `minLength: "3"`.
    #[error("{path}: {detail}")]
    InvalidKeyword {
        /// Where in the schema, e.g. `openAPIV3Schema.properties[spec].minLength`.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A `pattern` is not a valid regular expression.
    #[error("{path}: invalid pattern {pattern:?}: {detail}")]
    InvalidPattern {
        /// Where in the schema.
        path: String,
        /// The pattern as written.
        pattern: String,
        /// The regex compiler's explanation.
        detail: String,
    },
    /// A CEL rule (or messageExpression) does not compile or is invalid for its place.
    #[error("{path}: Invalid value: {rule:?}: compilation failed: {detail}")]
    InvalidRule {
        /// Where in the schema, e.g. `openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`.
        path: String,
        /// The rule's expression.
        rule: String,
        /// What is wrong.
        detail: String,
    },
    /// A rule's estimated worst-case cost exceeds the apiserver's per-expression budget.
    #[error("{path}: Forbidden: {detail}")]
    RuleTooExpensive {
        /// Where in the schema.
        path: String,
        /// The apiserver's message, e.g. `estimated rule cost exceeds budget by factor of ...`.
        detail: String,
    },
    /// All rules together exceed the apiserver's per-CRD budget.
    #[error("openAPIV3Schema: Forbidden: {detail}")]
    TotalCostTooHigh {
        /// The apiserver's message.
        detail: String,
    },
}

impl SchemaError {
    /// Whether retrying could help: never, the CRD must be fixed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_like_apimachinery() {
        let pattern = FieldError::new(
            "spec.artifact.sha256",
            ErrorType::Invalid,
            Some(json!("abc")),
            "spec.artifact.sha256 in body should match '^[0-9a-f]{64}$'",
        );
        assert_eq!(
            pattern.to_string(),
            "spec.artifact.sha256: Invalid value: \"abc\": spec.artifact.sha256 in body should match '^[0-9a-f]{64}$'"
        );
        let required = FieldError::new("spec.version", ErrorType::Required, None, "");
        assert_eq!(required.to_string(), "spec.version: Required value");
        let too_long = FieldError::new(
            "spec.x",
            ErrorType::TooLong,
            Some(json!("abcdef")),
            "may not be more than 5 bytes",
        );
        assert_eq!(
            too_long.to_string(),
            "spec.x: Too long: may not be more than 5 bytes"
        );
        let root = FieldError::new(
            "",
            ErrorType::Invalid,
            Some(json!("null")),
            "some validation rules were not checked",
        );
        assert_eq!(
            root.to_string(),
            "<nil>: Invalid value: \"null\": some validation rules were not checked"
        );
        let duplicate = FieldError::new(
            "spec.ports[1]",
            ErrorType::Duplicate,
            Some(json!({"name": "a", "port": 1})),
            "",
        );
        assert_eq!(
            duplicate.to_string(),
            "spec.ports[1]: Duplicate value: map[string]interface {}{\"name\":\"a\", \"port\":1}"
        );
    }

    #[test]
    fn go_float_matches_percent_v() {
        assert_eq!(go_float(100.0), "100");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-07");
    }

    #[test]
    fn invalid_message_aggregates_and_deduplicates() {
        let a = FieldError::new("spec.a", ErrorType::Required, None, "");
        let b = FieldError::new("spec.b", ErrorType::Required, None, "");
        assert_eq!(
            invalid_message(
                "FirmwarePackage",
                "otaplane.io",
                "fw1",
                std::slice::from_ref(&a)
            ),
            "FirmwarePackage.otaplane.io \"fw1\" is invalid: spec.a: Required value"
        );
        assert_eq!(
            invalid_message("Widget", "", "w", &[a.clone(), b, a]),
            "Widget \"w\" is invalid: [spec.a: Required value, spec.b: Required value]"
        );
    }
}
