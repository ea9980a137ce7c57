//! CEL `x-kubernetes-validations`: the environment (the cel crate's standard
//! library plus the Kubernetes libraries CRD authors use), compiling rules,
//! binding `self`/`oldSelf` and turning results into field errors.

use crate::error::{ErrorType, FieldError, SchemaError};
use crate::library;
use crate::schema::Schema;
use cel::objects::{Map as CelMap, OptionalValue};
use cel::{Context, Env, ExecutionError, Program, Value as CelValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One step of a rule's `fieldPath`, resolved against the schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathStep {
    /// A property: `.name`.
    Child(String),
    /// A map key: `[key]`.
    Key(String),
}

/// A compiled `x-kubernetes-validations` entry.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub rule: String,
    pub program: Program,
    pub message: Option<String>,
    pub message_expression: Option<Program>,
    pub reason: Option<ErrorType>,
    /// `fieldPath` as written; resolved into `field_path` once the schema is complete.
    pub raw_field_path: Option<String>,
    pub field_path: Vec<PathStep>,
    pub optional_old_self: bool,
    /// The rule references `oldSelf`: it only runs on update (unless `optionalOldSelf`).
    pub is_transition: bool,
    /// Where the rule is declared, for errors about it.
    pub schema_path: String,
}

/// The CEL environment shared by every rule of a schema.
pub(crate) struct CelEnvironment {
    env: Arc<Env>,
}

impl CelEnvironment {
    pub fn new() -> Self {
        CelEnvironment {
            env: Arc::new(library::kubernetes_environment()),
        }
    }

    fn compile(&self, source: &str, path: &str) -> Result<Program, SchemaError> {
        self.env
            .compile(source)
            .map_err(|error| SchemaError::InvalidRule {
                path: path.to_owned(),
                rule: source.to_owned(),
                detail: format!("ERROR: {error}"),
            })
    }

    /// Compiles one `x-kubernetes-validations` entry found at `path`.
    pub fn compile_rule(
        &self,
        raw: &Value,
        path: &str,
        correlatable: bool,
    ) -> Result<CompiledRule, SchemaError> {
        let invalid = |detail: &str| SchemaError::InvalidKeyword {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let entry = raw
            .as_object()
            .ok_or_else(|| invalid("a validation rule must be an object"))?;
        let text = |name: &str| -> Result<Option<String>, SchemaError> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.{name}"),
                    detail: "must be a string".to_owned(),
                }),
            }
        };
        let rule = text("rule")?.ok_or_else(|| SchemaError::InvalidKeyword {
            path: format!("{path}.rule"),
            detail: "Required value".to_owned(),
        })?;
        if rule.trim().is_empty() {
            return Err(SchemaError::InvalidKeyword {
                path: format!("{path}.rule"),
                detail: "Required value".to_owned(),
            });
        }
        let rule_path = format!("{path}.rule");
        let program = self.compile(&rule, &rule_path)?;
        let message = text("message")?;
        if let Some(message) = &message {
            if message.trim().is_empty() {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.message"),
                    detail: format!(
                        "Invalid value: {message:?}: message must be non-empty if specified"
                    ),
                });
            }
            if message.contains('\n') {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.message"),
                    detail: format!(
                        "Invalid value: {message:?}: message must not contain line breaks"
                    ),
                });
            }
        }
        let message_expression = match text("messageExpression")? {
            Some(source) if !source.trim().is_empty() => {
                Some(self.compile(&source, &format!("{path}.messageExpression"))?)
            }
            Some(_) => {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.messageExpression"),
                    detail: "Required value: messageExpression must be non-empty if specified"
                        .to_owned(),
                });
            }
            None => None,
        };
        let reason = match text("reason")?.as_deref() {
            None => None,
            Some("FieldValueInvalid") => Some(ErrorType::Invalid),
            Some("FieldValueForbidden") => Some(ErrorType::Forbidden),
            Some("FieldValueRequired") => Some(ErrorType::Required),
            Some("FieldValueDuplicate") => Some(ErrorType::Duplicate),
            Some(other) => {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.reason"),
                    detail: format!(
                        "Unsupported value: {other:?}: supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                    ),
                });
            }
        };
        let optional_old_self = match entry.get("optionalOldSelf") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{path}.optionalOldSelf"),
                    detail: "must be a boolean".to_owned(),
                });
            }
        };
        let is_transition = program.references().has_variable("oldSelf")
            || message_expression
                .as_ref()
                .is_some_and(|expression| expression.references().has_variable("oldSelf"));
        if is_transition && !correlatable {
            return Err(SchemaError::InvalidRule {
                path: rule_path,
                rule,
                detail: "oldSelf cannot be used on the uncorrelatable portion of the schema within a list that is not x-kubernetes-list-type: map".to_owned(),
            });
        }
        if optional_old_self && !is_transition {
            return Err(SchemaError::InvalidKeyword {
                path: format!("{path}.optionalOldSelf"),
                detail: "Forbidden: may not be set if oldSelf is not used in rule".to_owned(),
            });
        }
        Ok(CompiledRule {
            rule,
            program,
            message,
            message_expression,
            reason,
            raw_field_path: text("fieldPath")?,
            field_path: Vec::new(),
            optional_old_self,
            is_transition,
            schema_path: path.to_owned(),
        })
    }

    /// Runs the rules of `schema` on `value` (at CEL field path `path`), with
    /// `old` the correlated old value on update: transition rules need it,
    /// and failures on values equal to it are ratcheted away.
    pub fn run_rules(
        &self,
        schema: &Schema,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) {
        if schema.rules.is_empty() || value.is_null() {
            return;
        }
        let self_value = to_cel(value, Some(schema));
        let old_value = old
            .filter(|old| !old.is_null())
            .map(|old| to_cel(old, Some(schema)));
        // Validation ratcheting: a rule without oldSelf that fails on a value
        // the update did not change is not an error (the apiserver warns).
        let unchanged = old.is_some_and(|old| crate::validate::json_equal(old, value));
        // `self` is converted once per node; each rule gets its own scope for `oldSelf`.
        let mut base = Context::with_env(Arc::clone(&self.env));
        base.add_variable_from_value("self", self_value);
        for rule in &schema.rules {
            let old_binding = match (rule.is_transition, rule.optional_old_self, &old_value) {
                (false, _, _) => None,
                (true, false, Some(old)) => Some(old.clone()),
                (true, false, None) => continue,
                (true, true, old) => Some(CelValue::Opaque(Arc::new(match old {
                    Some(old) => OptionalValue::of(old.clone()),
                    None => OptionalValue::none(),
                }))),
            };
            let mut context = base.new_inner_scope();
            if let Some(old) = old_binding {
                context.add_variable_from_value("oldSelf", old);
            }
            let field = apply_field_path(path, &rule.field_path);
            let bad_value = Some(Value::String(schema.type_label().to_owned()));
            match rule.program.execute(&context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(_) if unchanged && !rule.is_transition => {}
                Ok(_) => {
                    let detail = failure_message(rule, &context);
                    errors.push(error_for_reason(field, rule.reason, bad_value, detail));
                }
                Err(error) => errors.push(FieldError::new(
                    path,
                    ErrorType::Invalid,
                    bad_value,
                    evaluation_error(&error, rule),
                )),
            }
        }
    }
}

/// The message of a failed rule: `message`, else the result of
/// `messageExpression`, else `failed rule: <rule>`.
fn failure_message(rule: &CompiledRule, context: &Context) -> String {
    if let Some(expression) = &rule.message_expression
        && let Ok(CelValue::String(text)) = expression.execute(context)
        && !text.trim().is_empty()
        && !text.contains('\n')
    {
        return text.trim().to_owned();
    }
    match &rule.message {
        Some(message) => message.trim().to_owned(),
        None => format!("failed rule: {}", rule.rule.trim()),
    }
}

/// `fieldErrorForReason` of the apiserver.
fn error_for_reason(
    field: String,
    reason: Option<ErrorType>,
    bad_value: Option<Value>,
    detail: String,
) -> FieldError {
    match reason {
        Some(ErrorType::Forbidden) => FieldError::new(field, ErrorType::Forbidden, None, detail),
        Some(ErrorType::Required) => FieldError::new(field, ErrorType::Required, None, detail),
        Some(ErrorType::Duplicate) => FieldError::new(field, ErrorType::Duplicate, bad_value, ""),
        _ => FieldError::new(field, ErrorType::Invalid, bad_value, detail),
    }
}

/// The apiserver's message for a rule whose evaluation failed.
fn evaluation_error(error: &ExecutionError, rule: &CompiledRule) -> String {
    let rule_text = match &rule.message {
        Some(message) => message.trim(),
        None => rule.rule.trim(),
    };
    match error {
        ExecutionError::NoSuchOverload(_) | ExecutionError::UnsupportedBinaryOperator(..) => {
            format!(
                "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {rule_text}"
            )
        }
        ExecutionError::NoSuchKey(key) => {
            format!("no such key: {key} evaluating rule: {rule_text}")
        }
        ExecutionError::DivisionByZero(_) => {
            format!("division by zero evaluating rule: {rule_text}")
        }
        ExecutionError::RemainderByZero(_) => {
            format!("modulus by zero evaluating rule: {rule_text}")
        }
        ExecutionError::IndexOutOfBounds(index) => {
            let index = CelValueDisplay(index);
            format!("index out of bounds: {index} evaluating rule: {rule_text}")
        }
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            let lowered = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
                None => text,
            };
            format!("{lowered} evaluating rule: {rule_text}")
        }
    }
}

struct CelValueDisplay<'a>(&'a CelValue);

impl std::fmt::Display for CelValueDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            CelValue::Int(i) => write!(f, "{i}"),
            CelValue::UInt(u) => write!(f, "{u}"),
            CelValue::Float(x) => write!(f, "{x}"),
            CelValue::String(s) => write!(f, "{s}"),
            other => write!(f, "{other:?}"),
        }
    }
}

fn apply_field_path(path: &str, steps: &[PathStep]) -> String {
    let mut field = path.to_owned();
    for step in steps {
        match step {
            PathStep::Child(name) => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(name);
            }
            PathStep::Key(key) => {
                field.push('[');
                field.push_str(key);
                field.push(']');
            }
        }
    }
    field
}

/// The CEL keywords a property name is escaped from (`__{keyword}__`).
const RESERVED: [&str; 18] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
];

/// A property name as Kubernetes exposes it to CEL, or `None` if it cannot be
/// accessed (it does not match `[a-zA-Z_.-/][a-zA-Z0-9_.-/]*`).
pub(crate) fn escape_property(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
    if !(first.is_ascii_alphabetic() || matches!(first, '_' | '.' | '-' | '/'))
        || !chars.all(allowed)
    {
        return None;
    }
    Some(
        name.replace("__", "__underscores__")
            .replace('.', "__dot__")
            .replace('-', "__dash__")
            .replace('/', "__slash__"),
    )
}

/// Converts a JSON value to CEL the way the apiserver types it from the
/// schema: `number` as double, `integer` as int, strings of format
/// date/date-time as timestamps, byte as bytes, duration as durations,
/// object properties under their escaped names.
pub(crate) fn to_cel(value: &Value, schema: Option<&Schema>) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let wants_double = schema.is_some_and(|s| s.type_name.as_deref() == Some("number"));
            if wants_double {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            } else if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let wants_int = schema
                    .is_some_and(|s| s.type_name.as_deref() == Some("integer") || s.int_or_string);
                if wants_int && x.fract() == 0.0 && x.abs() < 9.2e18 {
                    CelValue::Int(x as i64)
                } else {
                    CelValue::Float(x)
                }
            }
        }
        Value::String(s) => match schema.and_then(|s| s.format.as_deref()) {
            Some("date-time") => crate::format::parse_date_time(s)
                .map(CelValue::Timestamp)
                .unwrap_or_else(|| CelValue::String(Arc::new(s.clone()))),
            Some("date") => crate::format::parse_date(s)
                .map(CelValue::Timestamp)
                .unwrap_or_else(|| CelValue::String(Arc::new(s.clone()))),
            Some("byte") => crate::format::decode_base64(s)
                .map(|bytes| CelValue::Bytes(Arc::new(bytes)))
                .unwrap_or_else(|| CelValue::String(Arc::new(s.clone()))),
            Some("duration") => crate::format::parse_go_duration(s)
                .map(CelValue::Duration)
                .unwrap_or_else(|| CelValue::String(Arc::new(s.clone()))),
            _ => CelValue::String(Arc::new(s.clone())),
        },
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.items.as_deref());
            CelValue::List(Arc::new(
                items.iter().map(|item| to_cel(item, item_schema)).collect(),
            ))
        }
        Value::Object(object) => {
            let mut map: HashMap<String, CelValue> = HashMap::with_capacity(object.len());
            match schema {
                Some(schema) if schema.map_values().is_some() => {
                    let value_schema = schema.map_values();
                    for (key, item) in object {
                        map.insert(key.clone(), to_cel(item, value_schema));
                    }
                }
                Some(schema) => {
                    for (key, item) in object {
                        let Some(escaped) = escape_property(key) else {
                            continue;
                        };
                        map.insert(escaped, to_cel(item, schema.properties.get(key)));
                    }
                }
                None => {
                    for (key, item) in object {
                        map.insert(key.clone(), to_cel(item, None));
                    }
                }
            }
            CelValue::Map(CelMap::from(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_property_names_like_kubernetes() {
        assert_eq!(
            escape_property("namespace").as_deref(),
            Some("__namespace__")
        );
        assert_eq!(escape_property("x-y").as_deref(), Some("x__dash__y"));
        assert_eq!(
            escape_property("a.b/c").as_deref(),
            Some("a__dot__b__slash__c")
        );
        assert_eq!(
            escape_property("a__b").as_deref(),
            Some("a__underscores__b")
        );
        assert_eq!(escape_property("plain").as_deref(), Some("plain"));
        assert_eq!(escape_property("1abc"), None);
        assert_eq!(escape_property("a b"), None);
    }

    #[test]
    fn field_path_steps_extend_the_rule_location() {
        let steps = vec![
            PathStep::Child("labels".to_owned()),
            PathStep::Key("a.b".to_owned()),
        ];
        assert_eq!(apply_field_path("spec", &steps), "spec.labels[a.b]");
        assert_eq!(
            apply_field_path("", &[PathStep::Child("spec".to_owned())]),
            "spec"
        );
    }
}
