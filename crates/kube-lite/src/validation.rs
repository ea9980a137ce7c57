//! Object validation: metadata names, and custom resources against their CRD schema and CEL rules
//! (through the `crd-validate` crate).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::{ResKey, ResourceType};

/// Finalizer the apiserver puts on a CRD while it deletes the CRD's objects.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Compiled validators per resource and version.
pub type Validators = HashMap<ResKey, BTreeMap<String, Arc<crd_validate::CrdValidator>>>;

/// Compiles a validator for every served version of a CRD; the error names the version and the problem.
pub fn compile(
    crd: &Value,
    rt: &ResourceType,
) -> Result<BTreeMap<String, Arc<crd_validate::CrdValidator>>, String> {
    rt.versions
        .iter()
        .map(|version| {
            crd_validate::CrdValidator::from_crd(crd, version)
                .map(|validator| (version.clone(), Arc::new(validator)))
                .map_err(|e| format!("Invalid value: version {version}: {e}"))
        })
        .collect()
}

/// Prunes and defaults a custom resource, then validates it (with transition rules against `old`).
pub fn validate(
    validator: &crd_validate::CrdValidator,
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
) -> ApiResult<()> {
    let before = strict.then(|| obj.clone());
    validator.prune_and_default(obj);
    if let Some(before) = before {
        let mut unknown = Vec::new();
        pruned_fields(&before, obj, "", &mut unknown);
        if !unknown.is_empty() {
            let fields: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                fields.join(", "),
                kind = rt.kind,
                version = rt.storage_version(),
            )));
        }
    }
    let errors = validator.validate(obj, old);
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let causes = errors
        .iter()
        .map(|e| json!({"reason": e.error_type.reason(), "message": e.body(), "field": e.field}))
        .collect();
    let message = crd_validate::invalid_message(&rt.kind, &rt.group, name, &errors);
    Err(ApiError::invalid(rt, name, message, causes))
}

/// Paths present in `before` but removed by pruning, as `spec.foo` / `spec.items[0].bar`.
fn pruned_fields(before: &Value, after: &Value, prefix: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in b {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match a.get(key) {
                    Some(kept) => pruned_fields(value, kept, &path, out),
                    None => out.push(path),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (value, kept)) in b.iter().zip(a).enumerate() {
                pruned_fields(value, kept, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Validates `metadata.name`: a DNS-1123 label for namespaces, a DNS-1123 subdomain otherwise.
pub fn check_name(rt: &ResourceType, name: &str) -> ApiResult<()> {
    let namespace = rt.group.is_empty() && rt.plural == "namespaces";
    let detail = if namespace {
        (!is_dns_label(name)).then_some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (name.len() > 253 || !name.split('.').all(is_dns_label)).then_some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
             start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    match detail {
        None => Ok(()),
        Some(detail) => Err(ApiError::invalid_field(
            rt,
            name,
            "metadata.name",
            &format!("Invalid value: \"{name}\": {detail}"),
        )),
    }
}

/// Five characters from the apiserver's generateName alphabet.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn names_follow_dns_rules() {
        let registry = Registry::with_builtins();
        let cm = registry.get("", "v1", "configmaps").unwrap();
        let ns = registry.get("", "v1", "namespaces").unwrap();
        assert!(check_name(&cm, "a.b-c").is_ok());
        let err = check_name(&cm, "Bad_Name").unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value")
        );
        assert!(check_name(&ns, "a.b").is_err());
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn pruned_fields_are_named_with_paths() {
        let before = json!({"spec": {"a": 1, "typo": 2, "items": [{"x": 1, "y": 2}]}});
        let after = json!({"spec": {"a": 1, "items": [{"x": 1}]}});
        let mut out = Vec::new();
        pruned_fields(&before, &after, "", &mut out);
        assert_eq!(out, ["spec.items[0].y", "spec.typo"]);
    }
}
