//! What the apiserver checks about CEL rules when a CRD is created, after the
//! rules compile: `fieldPath` must name a field of the schema, fields used on
//! typed objects must exist, and the estimated worst-case cost must fit the
//! budgets (10,000,000 per expression, times how many times the schema node
//! can occur; 100,000,000 for the whole schema).
//!
//! The estimate follows cel-go's cost model in outline: sizes come from
//! `maxLength`/`maxItems`/`maxProperties`, or, where those are missing, from
//! the largest request the apiserver accepts (3 MiB); comprehensions cost
//! their body times the size of the iterated list or map; string functions
//! cost a tenth of a unit per character.

use crate::error::SchemaError;
use crate::rules::{CompiledRule, PathStep, escape_property};
use crate::schema::{ListType, Schema};
use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use std::collections::HashMap;

/// The largest per-expression estimated cost (`StaticEstimatedCostLimit`).
const RULE_COST_LIMIT: f64 = 10_000_000.0;
/// The largest estimated cost of all rules of a schema (`StaticEstimatedCRDCostLimit`).
const SCHEMA_COST_LIMIT: f64 = 100_000_000.0;
/// The apiserver's largest request, which bounds unbounded strings and lists.
const MAX_REQUEST_BYTES: f64 = 3.0 * 1024.0 * 1024.0;
/// cel-go's cost of traversing one character of a string.
const STRING_TRAVERSAL: f64 = 0.1;
/// cel-go's factor for the length of a regular expression.
const REGEX_LENGTH: f64 = 0.25;

/// Resolves `fieldPath`s, checks field references and costs of every rule
/// below `root`.
pub(crate) fn check(root: &mut Schema, schema_path: &str) -> Result<(), SchemaError> {
    let mut total = 0.0;
    let mut most_expensive: Option<(f64, String)> = None;
    visit(root, schema_path, 1.0, &mut total, &mut most_expensive)?;
    if total > SCHEMA_COST_LIMIT {
        let culprit = most_expensive.map(|(_, path)| path).unwrap_or_default();
        return Err(SchemaError::TotalCostTooHigh {
            detail: format!(
                "{} (the most expensive rule is {culprit})",
                exceeds_message(
                    "x-kubernetes-validations estimated rule & messageExpression cost total for entire OpenAPIv3 schema",
                    total,
                    SCHEMA_COST_LIMIT
                )
            ),
        });
    }
    Ok(())
}

fn visit(
    schema: &mut Schema,
    path: &str,
    cardinality: f64,
    total: &mut f64,
    most_expensive: &mut Option<(f64, String)>,
) -> Result<(), SchemaError> {
    if !schema.subtree_has_rules {
        return Ok(());
    }
    let mut resolved = Vec::with_capacity(schema.rules.len());
    for rule in &schema.rules {
        let steps = match &rule.raw_field_path {
            Some(raw) => {
                resolve_field_path(schema, raw).map_err(|detail| SchemaError::InvalidKeyword {
                    path: rule.schema_path.replace(".rule", "") + ".fieldPath",
                    detail: format!("Invalid value: {raw:?}: {detail}"),
                })?
            }
            None => Vec::new(),
        };
        let cost = rule_cost(schema, rule)?;
        let rule_path = format!("{}.rule", rule.schema_path);
        if cost > RULE_COST_LIMIT {
            return Err(SchemaError::RuleTooExpensive {
                path: rule_path,
                detail: exceeds_message("estimated rule cost", cost, RULE_COST_LIMIT),
            });
        }
        let expression_cost = cost * cardinality;
        if expression_cost > RULE_COST_LIMIT {
            return Err(SchemaError::RuleTooExpensive {
                path: rule_path,
                detail: exceeds_message("estimated rule cost", expression_cost, RULE_COST_LIMIT),
            });
        }
        *total += expression_cost;
        if most_expensive
            .as_ref()
            .is_none_or(|(worst, _)| expression_cost > *worst)
        {
            *most_expensive = Some((expression_cost, rule_path));
        }
        resolved.push(steps);
    }
    for (rule, steps) in schema.rules.iter_mut().zip(resolved) {
        rule.field_path = steps;
    }
    let element_cardinality = cardinality * max_elements(schema);
    for (name, property) in schema.properties.iter_mut() {
        visit(
            property,
            &format!("{path}.properties[{name}]"),
            cardinality,
            total,
            most_expensive,
        )?;
    }
    if let Some(items) = schema.items.as_deref_mut() {
        visit(
            items,
            &format!("{path}.items"),
            element_cardinality,
            total,
            most_expensive,
        )?;
    }
    if let Some(crate::schema::AdditionalProperties::Schema(values)) =
        schema.additional_properties.as_mut()
    {
        visit(
            values,
            &format!("{path}.additionalProperties"),
            element_cardinality,
            total,
            most_expensive,
        )?;
    }
    Ok(())
}

/// The apiserver's `getCostErrorMessage`.
fn exceeds_message(what: &str, cost: f64, limit: f64) -> String {
    let factor = cost / limit;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// The smallest JSON encoding of a value of this schema, in bytes.
fn min_size(schema: &Schema) -> f64 {
    if schema.int_or_string {
        return 1.0;
    }
    match schema.type_name.as_deref() {
        Some("string") => 2.0 + schema.min_length.unwrap_or(0) as f64,
        Some("boolean") => 4.0,
        Some("integer") | Some("number") => 1.0,
        _ => 2.0,
    }
}

/// The largest number of elements of a list or map, or characters of a string.
fn max_elements(schema: &Schema) -> f64 {
    if let Some(items) = &schema.items {
        return match schema.max_items {
            Some(max) => max as f64,
            None => ((MAX_REQUEST_BYTES - 2.0) / (min_size(items) + 1.0)).floor(),
        };
    }
    if let Some(values) = schema.map_values() {
        return match schema.max_properties {
            Some(max) => max as f64,
            // Each entry is at least `"":` plus its value and a comma.
            None => ((MAX_REQUEST_BYTES - 2.0) / (min_size(values) + 4.0)).floor(),
        };
    }
    if schema.type_name.as_deref() == Some("string") || schema.int_or_string {
        return match schema.max_length {
            Some(max) => max as f64,
            None => match schema.format.as_deref() {
                Some("date-time") | Some("date") | Some("duration") => 64.0,
                _ => MAX_REQUEST_BYTES - 2.0,
            },
        };
    }
    if schema.type_name.as_deref() == Some("object") || schema.preserve_unknown_fields {
        return match schema.max_properties {
            Some(max) => max as f64,
            None => schema.properties.len().max(1) as f64,
        };
    }
    1.0
}

fn rule_cost(schema: &Schema, rule: &CompiledRule) -> Result<f64, SchemaError> {
    let mut scope = HashMap::new();
    let self_estimate = Estimate::of_schema(schema);
    scope.insert("self".to_owned(), self_estimate.clone());
    scope.insert("oldSelf".to_owned(), self_estimate);
    let mut estimator = Estimator { scope };
    let rule_error = |detail: String| SchemaError::InvalidRule {
        path: format!("{}.rule", rule.schema_path),
        rule: rule.rule.clone(),
        detail,
    };
    let mut cost = estimator
        .estimate(rule.program.expression())
        .map_err(rule_error)?
        .cost;
    if let Some(message) = &rule.message_expression {
        cost += estimator
            .estimate(message.expression())
            .map_err(|detail| SchemaError::InvalidRule {
                path: format!("{}.messageExpression", rule.schema_path),
                rule: rule.rule.clone(),
                detail,
            })?
            .cost;
    }
    Ok(cost)
}

/// What the estimator knows of an expression: its worst-case cost so far,
/// its largest size (characters, elements), and its schema if it is a value
/// of the object.
#[derive(Clone)]
struct Estimate<'s> {
    cost: f64,
    size: f64,
    schema: Option<&'s Schema>,
}

impl<'s> Estimate<'s> {
    fn of_schema(schema: &'s Schema) -> Self {
        Estimate {
            cost: 0.0,
            size: max_elements(schema),
            schema: Some(schema),
        }
    }

    fn scalar(cost: f64) -> Self {
        Estimate {
            cost,
            size: 1.0,
            schema: None,
        }
    }
}

struct Estimator<'s> {
    scope: HashMap<String, Estimate<'s>>,
}

impl<'s> Estimator<'s> {
    fn estimate(&mut self, expression: &IdedExpr) -> Result<Estimate<'s>, String> {
        Ok(match &expression.expr {
            Expr::Literal(LiteralValue::String(text)) => Estimate {
                cost: 0.0,
                size: text.inner().chars().count() as f64,
                schema: None,
            },
            Expr::Literal(LiteralValue::Bytes(bytes)) => Estimate {
                cost: 0.0,
                size: bytes.inner().len() as f64,
                schema: None,
            },
            Expr::Literal(_) | Expr::Unspecified => Estimate::scalar(0.0),
            Expr::Ident(name) => match self.scope.get(name) {
                Some(bound) => Estimate {
                    cost: 1.0,
                    ..bound.clone()
                },
                None => Estimate::scalar(1.0),
            },
            Expr::Select(select) => {
                let operand = self.estimate(&select.operand)?;
                let field_schema = match operand.schema {
                    Some(schema) => field_of(schema, &select.field)?,
                    None => None,
                };
                let cost = operand.cost + 1.0;
                if select.test {
                    Estimate::scalar(cost)
                } else {
                    match field_schema {
                        Some(schema) => Estimate {
                            cost,
                            ..Estimate::of_schema(schema)
                        },
                        None => Estimate {
                            cost,
                            size: operand.size,
                            schema: None,
                        },
                    }
                }
            }
            Expr::List(list) => {
                let mut cost = 1.0;
                for element in &list.elements {
                    cost += self.estimate(element)?.cost;
                }
                Estimate {
                    cost,
                    size: list.elements.len() as f64,
                    schema: None,
                }
            }
            Expr::Map(map) => {
                let mut cost = 1.0;
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                        cost += self.estimate(&entry.key)?.cost + self.estimate(&entry.value)?.cost;
                    }
                }
                Estimate {
                    cost,
                    size: map.entries.len() as f64,
                    schema: None,
                }
            }
            Expr::Struct(structure) => {
                let mut cost = 1.0;
                for entry in &structure.entries {
                    if let cel::common::ast::EntryExpr::StructField(field) = &entry.expr {
                        cost += self.estimate(&field.value)?.cost;
                    }
                }
                Estimate::scalar(cost)
            }
            Expr::Call(call) => self.estimate_call(call)?,
            Expr::Comprehension(comprehension) => {
                let range = self.estimate(&comprehension.iter_range)?;
                let iterations = range.size.max(0.0);
                let element = match range.schema {
                    Some(schema) => match (&schema.items, schema.map_values()) {
                        (Some(items), _) => Estimate::of_schema(items),
                        // Iterating a map binds its keys: strings of unknown length.
                        (None, _) => Estimate {
                            cost: 0.0,
                            size: MAX_REQUEST_BYTES - 2.0,
                            schema: None,
                        },
                    },
                    None => Estimate {
                        cost: 0.0,
                        size: range.size,
                        schema: None,
                    },
                };
                let init = self.estimate(&comprehension.accu_init)?;
                let saved_iter = self.scope.insert(comprehension.iter_var.clone(), element);
                let saved_accu = self.scope.insert(
                    comprehension.accu_var.clone(),
                    Estimate {
                        cost: 0.0,
                        size: iterations,
                        schema: None,
                    },
                );
                let condition = self.estimate(&comprehension.loop_cond)?;
                let step = self.estimate(&comprehension.loop_step)?;
                let result = self.estimate(&comprehension.result)?;
                restore(&mut self.scope, &comprehension.iter_var, saved_iter);
                restore(&mut self.scope, &comprehension.accu_var, saved_accu);
                Estimate {
                    cost: range.cost
                        + init.cost
                        + iterations * (condition.cost + step.cost + 1.0)
                        + result.cost,
                    size: iterations,
                    schema: None,
                }
            }
        })
    }

    fn estimate_call(&mut self, call: &cel::common::ast::CallExpr) -> Result<Estimate<'s>, String> {
        let target = match &call.target {
            Some(target) => Some(self.estimate(target)?),
            None => None,
        };
        let mut arguments = Vec::with_capacity(call.args.len());
        for argument in &call.args {
            arguments.push(self.estimate(argument)?);
        }
        let argument_cost: f64 = target.iter().chain(&arguments).map(|a| a.cost).sum();
        // The receiver of a member call, or the first argument of a global one.
        let subject = target.as_ref().or(arguments.first());
        let subject_size = subject.map_or(1.0, |s| s.size);
        let last_size = arguments.last().map_or(1.0, |a| a.size);
        let name = call.func_name.as_str();
        let estimate = match name {
            "_&&_" | "_||_" | "!_" | "@not_strictly_false" => Estimate::scalar(argument_cost),
            "_?_:_" => {
                let (a, b) = (&arguments[1], &arguments[2]);
                let larger = if a.size >= b.size { a } else { b };
                Estimate {
                    cost: arguments[0].cost + a.cost.max(b.cost),
                    ..larger.clone()
                }
            }
            "_[_]" | "_[?_]" => {
                let container = &arguments[0];
                let element_schema = container
                    .schema
                    .and_then(|s| s.items.as_deref().or(s.map_values()));
                match element_schema {
                    Some(schema) => Estimate {
                        cost: argument_cost + 1.0,
                        ..Estimate::of_schema(schema)
                    },
                    None => Estimate {
                        cost: argument_cost + 1.0,
                        size: container.size,
                        schema: None,
                    },
                }
            }
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" => {
                let smaller = arguments.iter().map(|a| a.size).fold(f64::MAX, f64::min);
                Estimate::scalar(argument_cost + 1.0 + (STRING_TRAVERSAL * smaller).ceil())
            }
            "_+_" => {
                let size: f64 = arguments.iter().map(|a| a.size).sum();
                Estimate {
                    cost: argument_cost + 1.0 + (STRING_TRAVERSAL * size).ceil(),
                    size,
                    schema: None,
                }
            }
            "@in" => Estimate::scalar(argument_cost + 1.0 + last_size),
            "matches" => Estimate::scalar(
                argument_cost
                    + 1.0
                    + (STRING_TRAVERSAL * subject_size).ceil() * (REGEX_LENGTH * last_size).ceil(),
            ),
            "find" | "findAll" => Estimate {
                cost: argument_cost
                    + 1.0
                    + (STRING_TRAVERSAL * subject_size).ceil() * (REGEX_LENGTH * last_size).ceil(),
                size: subject_size,
                schema: None,
            },
            "size" | "hasValue" | "optional.none" | "optional.of" | "value" | "orValue"
            | "type" | "dyn" | "bool" | "uint" | "int" | "double" | "timestamp" | "duration" => {
                Estimate {
                    cost: argument_cost + 1.0,
                    size: 1.0,
                    schema: None,
                }
            }
            "isSorted" | "sum" | "min" | "max" | "distinct" | "sort" | "reverse" | "flatten"
            | "slice" | "sets.contains" | "sets.equivalent" | "sets.intersects" => Estimate {
                cost: argument_cost + 1.0 + subject_size * last_size.max(1.0),
                size: subject_size,
                schema: None,
            },
            "indexOf" | "lastIndexOf"
                if subject.is_some_and(|s| s.schema.is_some_and(|s| s.items.is_some())) =>
            {
                Estimate::scalar(argument_cost + 1.0 + subject_size)
            }
            _ => Estimate {
                // String functions and conversions traverse their input once.
                cost: argument_cost + 1.0 + (STRING_TRAVERSAL * subject_size).ceil(),
                size: subject_size,
                schema: None,
            },
        };
        Ok(estimate)
    }
}

fn restore<'s>(scope: &mut HashMap<String, Estimate<'s>>, name: &str, saved: Option<Estimate<'s>>) {
    match saved {
        Some(previous) => {
            scope.insert(name.to_owned(), previous);
        }
        None => {
            scope.remove(name);
        }
    }
}

/// The schema of field `field` (as CEL spells it, escaped) of an object, or
/// an error if a typed object has no such field.
fn field_of<'s>(schema: &'s Schema, field: &str) -> Result<Option<&'s Schema>, String> {
    if let Some(values) = schema.map_values() {
        return Ok(Some(values));
    }
    if let Some((_, property)) = schema
        .properties
        .iter()
        .find(|(name, _)| escape_property(name).as_deref() == Some(field))
    {
        return Ok(Some(property));
    }
    // apiVersion, kind and metadata (whose schema rarely lists properties)
    // are always there for the resource root and embedded resources.
    let is_resource_field = matches!(field, "apiVersion" | "kind" | "metadata");
    let is_typed_object = schema.type_name.as_deref() == Some("object")
        && !schema.properties.is_empty()
        && !is_resource_field
        && !schema.preserve_unknown_fields
        && !schema.embedded_resource
        && schema.additional_properties.is_none();
    if is_typed_object {
        Err(format!("ERROR: <input>: undefined field '{field}'"))
    } else {
        Ok(None)
    }
}

/// Resolves a rule's `fieldPath` (`.a.b`, `['key']`) against the node's schema.
fn resolve_field_path(schema: &Schema, raw: &str) -> Result<Vec<PathStep>, String> {
    let invalid = || "fieldPath must be a valid path: does not refer to a valid field".to_owned();
    let mut steps = Vec::new();
    let mut current = schema;
    let mut rest = raw;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let name: String;
        if let Some(after) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            let quote = if rest.starts_with("['") { "']" } else { "\"]" };
            let end = after.find(quote).ok_or_else(invalid)?;
            name = after[..end].to_owned();
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            name = after[..end].to_owned();
            rest = &after[end..];
        } else {
            return Err(invalid());
        }
        if name.is_empty() {
            return Err(invalid());
        }
        if let Some(property) = current.properties.get(&name) {
            steps.push(PathStep::Child(name));
            current = property;
        } else if let Some(values) = current.map_values() {
            steps.push(PathStep::Key(name));
            current = values;
        } else {
            return Err(invalid());
        }
        if matches!(
            current.list_type,
            Some(ListType::Map(_)) | Some(ListType::Set)
        ) && rest.starts_with('[')
            && !rest.starts_with("['")
        {
            return Err(invalid());
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use crate::{CrdValidator, SchemaError};
    use serde_json::{Value, json};

    fn spec_with(property: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"field": property}}}})
    }

    fn compile(schema: Value) -> Result<CrdValidator, SchemaError> {
        CrdValidator::from_schema(&schema)
    }

    #[test]
    fn iterating_unbounded_strings_in_an_unbounded_list_is_too_expensive() {
        let error = compile(spec_with(json!({
            "type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(d, d.startsWith('dev-'))"}]
        })))
        .expect_err("unbounded");
        assert_eq!(
            error.to_string(),
            "openAPIV3Schema.properties[spec].properties[field].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
        );
        compile(spec_with(json!({
            "type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 64},
            "x-kubernetes-validations": [{"rule": "self.all(d, d.startsWith('dev-'))"}]
        })))
        .expect("bounded list of bounded strings");
    }

    #[test]
    fn rules_repeated_by_unbounded_lists_count_once_per_element() {
        let error = compile(spec_with(json!({
            "type": "array",
            "items": {"type": "object", "properties": {
                "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 10}}},
                "x-kubernetes-validations": [{"rule": "self.tags.all(t, t.size() > 1)"}]}
        })))
        .expect_err("the rule runs for up to a million items");
        assert!(
            matches!(error, SchemaError::RuleTooExpensive { .. }),
            "{error}"
        );
        compile(spec_with(json!({
            "type": "array", "maxItems": 50,
            "items": {"type": "object", "properties": {
                "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 10}}},
                "x-kubernetes-validations": [{"rule": "self.tags.all(t, t.size() > 1)"}]}
        })))
        .expect("bounded");
    }

    #[test]
    fn the_whole_schema_has_a_budget_too() {
        let rules: Vec<Value> = (0..11)
            .map(|i| json!({"rule": format!("self.startsWith('{i}')")}))
            .collect();
        let error = compile(spec_with(json!({
            "type": "array", "maxItems": 999,
            "items": {"type": "string", "maxLength": 100000, "x-kubernetes-validations": rules}
        })))
        .expect_err("over the schema budget");
        assert!(
            matches!(error, SchemaError::TotalCostTooHigh { .. }),
            "{error}"
        );
    }

    #[test]
    fn invalid_rules_are_rejected_with_their_location() {
        let syntax = compile(spec_with(json!({"type": "string",
            "x-kubernetes-validations": [{"rule": "self ==" }]})))
        .expect_err("syntax error");
        assert!(
            syntax.to_string().starts_with("openAPIV3Schema.properties[spec].properties[field].x-kubernetes-validations[0].rule: Invalid value: \"self ==\": compilation failed: ERROR:"),
            "{syntax}"
        );

        let undefined = compile(spec_with(json!({"type": "object",
            "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.b == 'x'"}]})))
        .expect_err("undefined field");
        assert!(
            undefined.to_string().contains("undefined field 'b'"),
            "{undefined}"
        );

        let untyped = compile(spec_with(json!({"properties": {"a": {"type": "string"}}})))
            .expect_err("not structural");
        assert_eq!(
            untyped.to_string(),
            "openAPIV3Schema.properties[spec].properties[field].type: Required value: must not be empty for specified object fields"
        );

        let pattern = compile(spec_with(json!({"type": "string", "pattern": "(["})))
            .expect_err("bad pattern");
        assert!(
            matches!(pattern, SchemaError::InvalidPattern { .. }),
            "{pattern}"
        );

        let field_path = compile(spec_with(json!({"type": "object",
            "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".b"}]})))
        .expect_err("bad fieldPath");
        assert_eq!(
            field_path.to_string(),
            "openAPIV3Schema.properties[spec].properties[field].x-kubernetes-validations[0].fieldPath: Invalid value: \".b\": fieldPath must be a valid path: does not refer to a valid field"
        );

        let reason = compile(spec_with(json!({"type": "string",
            "x-kubernetes-validations": [{"rule": "true", "reason": "FieldValueBad"}]})))
        .expect_err("bad reason");
        assert!(reason.to_string().contains("supported values"), "{reason}");

        let uncorrelatable = compile(spec_with(json!({"type": "array", "maxItems": 3,
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": 3,
                "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}})))
        .expect_err("oldSelf in a set");
        assert!(
            uncorrelatable.to_string().contains("uncorrelatable"),
            "{uncorrelatable}"
        );
    }
}
