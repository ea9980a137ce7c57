//! The CEL environment of CRD validation rules: the cel crate's standard
//! library and its strings, lists, math and encoders extensions, plus the
//! Kubernetes libraries the cel crate lacks (list: `isSorted`, `sum`, `min`,
//! `max`, `indexOf`, `lastIndexOf`; regex: `find`, `findAll`; sets:
//! `sets.contains`, `sets.equivalent`, `sets.intersects`).

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError, Value};
use regex::Regex;
use std::cmp::Ordering;
use std::sync::Arc;

type CelResult<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// A member overload on lists: name, overload id, argument types, implementation.
type ListMember = (
    &'static str,
    &'static str,
    Vec<cel::common::types::Type>,
    cel::common::functions::Function,
);

/// Builds the environment every rule is compiled and run in.
pub(crate) fn kubernetes_environment() -> Env {
    let mut env = Env::stdlib();
    // The extensions and overloads below are declared once on a fresh
    // environment: a failure would be a programming error caught by every test.
    env.add_extension(cel::extensions::strings)
        .expect("strings extension registers once");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension registers once");
    env.add_extension(cel::extensions::math)
        .expect("math extension registers once");
    env.add_extension(cel::extensions::encoders)
        .expect("encoders extension registers once");
    let list_members: [ListMember; 6] = [
        ("isSorted", "list_is_sorted", vec![], is_sorted),
        ("sum", "list_sum", vec![], sum),
        ("min", "list_min", vec![], min),
        ("max", "list_max", vec![], max),
        ("indexOf", "list_index_of", vec![DYN_TYPE], index_of),
        (
            "lastIndexOf",
            "list_last_index_of",
            vec![DYN_TYPE],
            last_index_of,
        ),
    ];
    for (name, id, args, function) in list_members {
        env.add_member_overload(name, id, LIST_TYPE, args, function)
            .expect("list overloads are declared once");
    }
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)
        .expect("find is declared once");
    env.add_member_overload(
        "findAll",
        "string_find_all",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )
    .expect("findAll is declared once");
    env.add_member_overload(
        "findAll",
        "string_find_all_n",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_limited,
    )
    .expect("findAll is declared once");
    for (name, id, function) in [
        (
            "sets.contains",
            "sets_contains",
            sets_contains as cel::common::functions::Function,
        ),
        ("sets.equivalent", "sets_equivalent", sets_equivalent),
        ("sets.intersects", "sets_intersects", sets_intersects),
    ] {
        env.add_overload(name, id, vec![LIST_TYPE, LIST_TYPE], function)
            .expect("sets functions are declared once");
    }
    env
}

fn value_of(argument: &CowVal<'_, '_>) -> Result<Value, ExecutionError> {
    Value::try_from(argument.as_ref() as &dyn Val)
}

fn list_of(argument: &CowVal<'_, '_>, function: &str) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match value_of(argument)? {
        Value::List(items) => Ok(items),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a list, got {}", other.type_of()),
        )),
    }
}

fn string_of(argument: &CowVal<'_, '_>, function: &str) -> Result<Arc<String>, ExecutionError> {
    match value_of(argument)? {
        Value::String(text) => Ok(text),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a string, got {}", other.type_of()),
        )),
    }
}

fn owned<'b, 'v>(value: Value) -> CelResult<'b, 'v> {
    let boxed: Box<dyn Val> = value.try_into()?;
    Ok(CowVal::Owned(boxed))
}

fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::no_such_overload(
            function,
            vec![a.type_of().to_string(), b.type_of().to_string()],
        )
    })
}

/// `list.isSorted()`: whether every element is less than or equal to the next.
fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let items = list_of(&args[0], "isSorted")?;
    for pair in items.windows(2) {
        if compare("isSorted", &pair[0], &pair[1])? == Ordering::Greater {
            return owned(Value::Bool(false));
        }
    }
    owned(Value::Bool(true))
}

/// `list.sum()`: the sum of ints, uints, doubles or durations; 0 for an empty list.
fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let items = list_of(&args[0], "sum")?;
    let mut total = match items.first() {
        None => return owned(Value::Int(0)),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(Value::Duration(_)) => Value::Duration(chrono::Duration::zero()),
        Some(_) => Value::Int(0),
    };
    for item in items.iter() {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => {
                Value::Int(a.checked_add(*b).ok_or_else(|| {
                    ExecutionError::Overflow("sum", Value::Int(*a), Value::Int(*b))
                })?)
            }
            (Value::UInt(a), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or_else(|| {
                    ExecutionError::Overflow("sum", Value::UInt(*a), Value::UInt(*b))
                })?)
            }
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Duration(a), Value::Duration(b)) => Value::Duration(*a + *b),
            (a, b) => {
                return Err(ExecutionError::no_such_overload(
                    "sum",
                    vec![a.type_of().to_string(), b.type_of().to_string()],
                ));
            }
        };
    }
    owned(total)
}

fn extreme<'b, 'v>(args: Vec<CowVal<'b, 'v>>, function: &str, keep: Ordering) -> CelResult<'b, 'v> {
    let items = list_of(&args[0], function)?;
    let mut best = items.first().cloned().ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function} called on empty list"))
    })?;
    for item in items.iter().skip(1) {
        if compare(function, item, &best)? == keep {
            best = item.clone();
        }
    }
    owned(best)
}

/// `list.min()`: the smallest element; an error for an empty list.
fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    extreme(args, "min", Ordering::Less)
}

/// `list.max()`: the largest element; an error for an empty list.
fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    extreme(args, "max", Ordering::Greater)
}

/// `list.indexOf(x)`: the first index of an element equal to `x`, or -1.
fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let items = list_of(&args[0], "indexOf")?;
    let wanted = value_of(&args[1])?;
    let index = items.iter().position(|item| *item == wanted);
    owned(Value::Int(index.map_or(-1, |i| i as i64)))
}

/// `list.lastIndexOf(x)`: the last index of an element equal to `x`, or -1.
fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let items = list_of(&args[0], "lastIndexOf")?;
    let wanted = value_of(&args[1])?;
    let index = items.iter().rposition(|item| *item == wanted);
    owned(Value::Int(index.map_or(-1, |i| i as i64)))
}

fn regex_of(pattern: &str, function: &str) -> Result<Regex, ExecutionError> {
    Regex::new(pattern).map_err(|error| ExecutionError::function_error(function, error))
}

/// `string.find(regex)`: the first match, or the empty string.
fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let text = string_of(&args[0], "find")?;
    let pattern = string_of(&args[1], "find")?;
    let found = regex_of(&pattern, "find")?
        .find(&text)
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    owned(Value::String(Arc::new(found)))
}

fn find_matches<'b, 'v>(text: &str, pattern: &str, limit: i64) -> CelResult<'b, 'v> {
    let regex = regex_of(pattern, "findAll")?;
    let limit = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let found: Vec<Value> = regex
        .find_iter(text)
        .take(limit)
        .map(|m| Value::String(Arc::new(m.as_str().to_owned())))
        .collect();
    owned(Value::List(Arc::new(found)))
}

/// `string.findAll(regex)`: every match.
fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let text = string_of(&args[0], "findAll")?;
    let pattern = string_of(&args[1], "findAll")?;
    find_matches(&text, &pattern, -1)
}

/// `string.findAll(regex, n)`: at most `n` matches (all if `n` is negative).
fn find_all_limited<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let text = string_of(&args[0], "findAll")?;
    let pattern = string_of(&args[1], "findAll")?;
    let limit = match value_of(&args[2])? {
        Value::Int(n) => n,
        other => {
            return Err(ExecutionError::no_such_overload(
                "findAll",
                vec![
                    "string".to_owned(),
                    "string".to_owned(),
                    other.type_of().to_string(),
                ],
            ));
        }
    };
    find_matches(&text, &pattern, limit)
}

fn contains_all(haystack: &[Value], needles: &[Value]) -> bool {
    needles.iter().all(|needle| haystack.contains(needle))
}

/// `sets.contains(a, b)`: every element of `b` is in `a`.
fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let a = list_of(&args[0], "sets.contains")?;
    let b = list_of(&args[1], "sets.contains")?;
    owned(Value::Bool(contains_all(&a, &b)))
}

/// `sets.equivalent(a, b)`: `a` and `b` hold the same elements.
fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let a = list_of(&args[0], "sets.equivalent")?;
    let b = list_of(&args[1], "sets.equivalent")?;
    owned(Value::Bool(contains_all(&a, &b) && contains_all(&b, &a)))
}

/// `sets.intersects(a, b)`: `a` and `b` share an element.
fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> CelResult<'b, 'v> {
    let a = list_of(&args[0], "sets.intersects")?;
    let b = list_of(&args[1], "sets.intersects")?;
    owned(Value::Bool(b.iter().any(|item| a.contains(item))))
}
