//! The structural schema, parsed once from `openAPIV3Schema`: keywords typed,
//! patterns compiled, CEL rules compiled (see [`crate::rules`]).

use crate::error::{FieldError, SchemaError};
use crate::rules::{CelEnvironment, CompiledRule};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `additionalProperties`: a boolean or a schema for every value.
#[derive(Debug)]
pub(crate) enum AdditionalProperties {
    /// `additionalProperties: false` (`true` keeps unknown fields, as
    /// `x-kubernetes-preserve-unknown-fields` does).
    Forbidden,
    /// A schema every value of the map must satisfy.
    Schema(Box<Schema>),
}

/// `x-kubernetes-list-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// One node of a compiled schema.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    pub type_name: Option<String>,
    pub nullable: bool,
    pub properties: BTreeMap<String, Schema>,
    pub required: Vec<String>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Schema>>,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<(String, Regex)>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub format: Option<String>,
    pub int_or_string: bool,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub list_type: Option<ListType>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub default: Option<Value>,
    pub rules: Vec<CompiledRule>,
    /// Whether this node or one below it (outside junctions) has CEL rules.
    pub subtree_has_rules: bool,
}

impl Schema {
    /// The schema type as CEL errors report it (`sts.Type`): empty for
    /// int-or-string and untyped nodes.
    pub fn type_label(&self) -> &str {
        self.type_name.as_deref().unwrap_or("")
    }

    /// The schema of the values of this node if it is a map (`additionalProperties`).
    pub fn map_values(&self) -> Option<&Schema> {
        match &self.additional_properties {
            Some(AdditionalProperties::Schema(schema)) => Some(schema),
            _ => None,
        }
    }

    /// Whether unknown fields below this node survive pruning.
    pub fn keeps_unknown_fields(&self) -> bool {
        self.preserve_unknown_fields
    }
}

/// Where a node sits, for compiling: its path in the schema (for errors) and
/// whether `oldSelf` can be correlated at it.
#[derive(Clone)]
pub(crate) struct Location {
    pub schema_path: String,
    pub correlatable: bool,
    /// Whether this node is a value validation (inside allOf/anyOf/oneOf/not).
    pub in_junction: bool,
}

impl Location {
    fn child(&self, segment: &str) -> Location {
        Location {
            schema_path: format!("{}.{segment}", self.schema_path),
            ..self.clone()
        }
    }
}

/// Parses (and compiles) a schema node.
pub(crate) fn parse(
    raw: &Value,
    location: &Location,
    cel: &CelEnvironment,
) -> Result<Schema, SchemaError> {
    let object = raw.as_object().ok_or_else(|| SchemaError::InvalidKeyword {
        path: location.schema_path.clone(),
        detail: "a schema must be an object".to_owned(),
    })?;
    let keyword = Keywords {
        object,
        path: &location.schema_path,
    };
    let mut schema = Schema {
        type_name: keyword.string("type")?,
        nullable: keyword.boolean("nullable")?,
        required: keyword.strings("required")?,
        min_length: keyword.count("minLength")?,
        max_length: keyword.count("maxLength")?,
        min_items: keyword.count("minItems")?,
        max_items: keyword.count("maxItems")?,
        min_properties: keyword.count("minProperties")?,
        max_properties: keyword.count("maxProperties")?,
        minimum: keyword.number("minimum")?,
        maximum: keyword.number("maximum")?,
        exclusive_minimum: keyword.boolean("exclusiveMinimum")?,
        exclusive_maximum: keyword.boolean("exclusiveMaximum")?,
        multiple_of: keyword.number("multipleOf")?,
        format: keyword.string("format")?,
        int_or_string: keyword.boolean("x-kubernetes-int-or-string")?,
        preserve_unknown_fields: keyword.boolean("x-kubernetes-preserve-unknown-fields")?,
        embedded_resource: keyword.boolean("x-kubernetes-embedded-resource")?,
        default: object.get("default").cloned(),
        ..Schema::default()
    };
    if let Some(type_name) = &schema.type_name
        && !["object", "array", "string", "integer", "number", "boolean"]
            .contains(&type_name.as_str())
    {
        return Err(SchemaError::InvalidKeyword {
            path: format!("{}.type", location.schema_path),
            detail: format!(
                "Unsupported value: {type_name:?}: supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            ),
        });
    }
    // A structural schema: every node outside allOf/anyOf/oneOf/not says its type.
    if !location.in_junction
        && schema.type_name.is_none()
        && !schema.int_or_string
        && !schema.preserve_unknown_fields
    {
        return Err(SchemaError::InvalidKeyword {
            path: format!("{}.type", location.schema_path),
            detail: "Required value: must not be empty for specified object fields".to_owned(),
        });
    }
    if !location.in_junction
        && schema.type_name.as_deref() == Some("array")
        && !object.contains_key("items")
    {
        return Err(SchemaError::InvalidKeyword {
            path: format!("{}.items", location.schema_path),
            detail: "Required value: must be specified".to_owned(),
        });
    }
    if let Some(factor) = schema.multiple_of
        && factor <= 0.0
    {
        return Err(SchemaError::InvalidKeyword {
            path: format!("{}.multipleOf", location.schema_path),
            detail: "must be greater than zero".to_owned(),
        });
    }
    if let Some(values) = object.get("enum") {
        let values = values
            .as_array()
            .ok_or_else(|| SchemaError::InvalidKeyword {
                path: format!("{}.enum", location.schema_path),
                detail: "must be a list".to_owned(),
            })?;
        schema.enum_values = Some(values.clone());
    }
    if let Some(pattern) = keyword.string("pattern")? {
        let regex = Regex::new(&pattern).map_err(|error| SchemaError::InvalidPattern {
            path: format!("{}.pattern", location.schema_path),
            pattern: pattern.clone(),
            detail: error.to_string(),
        })?;
        schema.pattern = Some((pattern, regex));
    }
    schema.list_type = match keyword.string("x-kubernetes-list-type")?.as_deref() {
        None => None,
        Some("atomic") => Some(ListType::Atomic),
        Some("set") => Some(ListType::Set),
        Some("map") => {
            let keys = keyword.strings("x-kubernetes-list-map-keys")?;
            if keys.is_empty() {
                return Err(SchemaError::InvalidKeyword {
                    path: format!("{}.x-kubernetes-list-map-keys", location.schema_path),
                    detail: "Required value: must not be empty if x-kubernetes-list-type is map"
                        .to_owned(),
                });
            }
            Some(ListType::Map(keys))
        }
        Some(other) => {
            return Err(SchemaError::InvalidKeyword {
                path: format!("{}.x-kubernetes-list-type", location.schema_path),
                detail: format!(
                    "Unsupported value: {other:?}: supported values: \"atomic\", \"map\", \"set\""
                ),
            });
        }
    };

    if let Some(properties) = object.get("properties") {
        let properties = properties
            .as_object()
            .ok_or_else(|| SchemaError::InvalidKeyword {
                path: format!("{}.properties", location.schema_path),
                detail: "must be an object".to_owned(),
            })?;
        for (name, raw_property) in properties {
            let child = location.child(&format!("properties[{name}]"));
            schema
                .properties
                .insert(name.clone(), parse(raw_property, &child, cel)?);
        }
    }
    match object.get("additionalProperties") {
        None => {}
        // Any value allowed: unknown fields survive pruning.
        Some(Value::Bool(true)) => schema.preserve_unknown_fields = true,
        Some(Value::Bool(false)) => {
            schema.additional_properties = Some(AdditionalProperties::Forbidden);
        }
        Some(raw_values) => {
            let child = Location {
                correlatable: location.correlatable,
                ..location.child("additionalProperties")
            };
            schema.additional_properties = Some(AdditionalProperties::Schema(Box::new(parse(
                raw_values, &child, cel,
            )?)));
        }
    }
    if let Some(raw_items) = object.get("items") {
        // Items of a list are correlated with the old object only by the keys of a map list.
        let child = Location {
            correlatable: location.correlatable
                && matches!(schema.list_type, Some(ListType::Map(_))),
            ..location.child("items")
        };
        schema.items = Some(Box::new(parse(raw_items, &child, cel)?));
    }
    for (name, target) in [
        ("allOf", &mut schema.all_of),
        ("anyOf", &mut schema.any_of),
        ("oneOf", &mut schema.one_of),
    ] {
        if let Some(raw_list) = object.get(name) {
            let list = raw_list
                .as_array()
                .ok_or_else(|| SchemaError::InvalidKeyword {
                    path: format!("{}.{name}", location.schema_path),
                    detail: "must be a list".to_owned(),
                })?;
            for (index, raw_sub) in list.iter().enumerate() {
                let child = Location {
                    in_junction: true,
                    ..location.child(&format!("{name}[{index}]"))
                };
                target.push(parse(raw_sub, &child, cel)?);
            }
        }
    }
    if let Some(raw_not) = object.get("not") {
        let child = Location {
            in_junction: true,
            ..location.child("not")
        };
        schema.not = Some(Box::new(parse(raw_not, &child, cel)?));
    }

    if let Some(raw_rules) = object.get("x-kubernetes-validations") {
        let rules = raw_rules
            .as_array()
            .ok_or_else(|| SchemaError::InvalidKeyword {
                path: format!("{}.x-kubernetes-validations", location.schema_path),
                detail: "must be a list".to_owned(),
            })?;
        if location.in_junction && !rules.is_empty() {
            return Err(SchemaError::InvalidKeyword {
                path: format!("{}.x-kubernetes-validations", location.schema_path),
                detail: "Forbidden: must be empty inside allOf, anyOf, oneOf and not".to_owned(),
            });
        }
        for (index, raw_rule) in rules.iter().enumerate() {
            let rule_path = format!("{}.x-kubernetes-validations[{index}]", location.schema_path);
            schema
                .rules
                .push(cel.compile_rule(raw_rule, &rule_path, location.correlatable)?);
        }
    }
    if let Some(default) = &schema.default {
        // The apiserver validates a default, with its own nested defaults applied.
        let mut defaulted = default.clone();
        crate::prune::prune_and_default(&schema, &mut defaulted, false);
        let mut errors = Vec::new();
        crate::validate::validate_value(&schema, &defaulted, "", &mut errors);
        if !errors.is_empty() {
            let details: Vec<String> = errors.iter().map(FieldError::body).collect();
            return Err(SchemaError::InvalidKeyword {
                path: format!("{}.default", location.schema_path),
                detail: details.join(", "),
            });
        }
    }
    schema.subtree_has_rules = !schema.rules.is_empty()
        || schema.properties.values().any(|p| p.subtree_has_rules)
        || schema.items.as_ref().is_some_and(|i| i.subtree_has_rules)
        || schema.map_values().is_some_and(|v| v.subtree_has_rules);
    Ok(schema)
}

/// Typed access to the keywords of one schema object.
struct Keywords<'a> {
    object: &'a Map<String, Value>,
    path: &'a str,
}

impl Keywords<'_> {
    fn wrong(&self, name: &str, expected: &str) -> SchemaError {
        SchemaError::InvalidKeyword {
            path: format!("{}.{name}", self.path),
            detail: format!("must be {expected}"),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, SchemaError> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, SchemaError> {
        match self.object.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.wrong(name, "a boolean")),
        }
    }

    fn count(&self, name: &str) -> Result<Option<u64>, SchemaError> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a non-negative integer")),
            Some(_) => Err(self.wrong(name, "a non-negative integer")),
        }
    }

    fn number(&self, name: &str) -> Result<Option<f64>, SchemaError> {
        match self.object.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(self.wrong(name, "a number")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, SchemaError> {
        match self.object.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.wrong(name, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(self.wrong(name, "a list of strings")),
        }
    }
}
