//! Pruning and defaulting, as the apiserver does before validating a custom
//! resource: unknown fields dropped (unless preserved), nulls of
//! non-nullable fields replaced by their default or dropped, absent fields
//! with a `default` set.

use crate::schema::Schema;
use serde_json::Value;

/// The fields of a resource (the root, or an embedded resource) that the
/// schema never prunes.
const RESOURCE_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prunes and defaults `value` in place. `is_resource` is true for the root
/// object and embedded resources, whose apiVersion, kind and metadata are
/// kept whatever the schema says.
pub(crate) fn prune_and_default(schema: &Schema, value: &mut Value, is_resource: bool) {
    match value {
        Value::Object(object) => {
            let is_resource = is_resource || schema.embedded_resource;
            let map_values = schema.map_values();
            object.retain(|key, item| {
                if is_resource && RESOURCE_FIELDS.contains(&key.as_str()) {
                    return true;
                }
                let declared = schema.properties.get(key).or(map_values);
                match declared {
                    Some(property) if item.is_null() && !property.nullable => {
                        // Nulls of non-nullable fields go; a default takes their place below.
                        false
                    }
                    Some(_) => true,
                    None => schema.keeps_unknown_fields(),
                }
            });
            for (name, property) in &schema.properties {
                if let Some(default) = &property.default
                    && !object.contains_key(name)
                    && !(is_resource && name == "metadata")
                {
                    object.insert(name.clone(), default.clone());
                }
            }
            for (key, item) in object.iter_mut() {
                if is_resource && key == "metadata" {
                    continue;
                }
                if let Some(property) = schema.properties.get(key).or(map_values) {
                    prune_and_default(property, item, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for item in items.iter_mut() {
                    if item.is_null()
                        && !item_schema.nullable
                        && let Some(default) = &item_schema.default
                    {
                        *item = default.clone();
                    }
                    prune_and_default(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}
