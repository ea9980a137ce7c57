//! OpenAPI v3 documents: enough for kubectl's server-side field validation check, client-side apply,
//! and `kubectl explain` of custom resources.

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceType};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Path of a group-version document, e.g. `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The /openapi/v3 index.
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(String, String)> = registry
        .all()
        .flat_map(|rt| {
            rt.versions
                .iter()
                .map(move |v| (rt.group.clone(), v.clone()))
        })
        .collect();
    gvs.sort();
    gvs.dedup();
    for (group, version) in gvs {
        let path = gv_path(&group, &version);
        let url = format!("/openapi/v3/{path}?hash={:016X}", registry.generation);
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn schema_name(rt: &ResourceType, version: &str) -> String {
    let reversed: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), rt.kind)
}

fn gvk(rt: &ResourceType, version: &str) -> Value {
    json!({"group": rt.group, "version": version, "kind": rt.kind})
}

fn operation(rt: &ResourceType, version: &str, action: &str, write: bool) -> Value {
    let mut parameters =
        vec![json!({"name": "pretty", "in": "query", "schema": {"type": "string"}})];
    if write {
        for name in ["dryRun", "fieldManager", "fieldValidation"] {
            parameters.push(json!({"name": name, "in": "query", "schema": {"type": "string"}}));
        }
    }
    if action == "patch" {
        parameters.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean"}}));
    }
    let response = if rt.custom {
        json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(rt, version))}}}})
    } else {
        json!({"description": "OK"})
    };
    json!({
        "operationId": format!("{action}{}", rt.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt, version),
        "parameters": parameters,
        "responses": {"200": response},
    })
}

fn custom_schema(rt: &ResourceType, version: &str) -> Option<Value> {
    let mut schema = rt.schemas.get(version).filter(|s| s.is_object())?.clone();
    let properties = schema
        .as_object_mut()?
        .entry("properties")
        .or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        properties.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        properties.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata."}));
    }
    schema["x-kubernetes-group-version-kind"] = json!([gvk(rt, version)]);
    Some(schema)
}

fn object_meta() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string"}, "description": d});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": string("Name must be unique within a namespace."),
            "namespace": string("Namespace defines the space within which each name must be unique."),
            "generateName": string("Prefix used to generate a unique name when name is empty."),
            "labels": map("Map of string keys and values used to organize and select objects."),
            "annotations": map("Unstructured key value map stored with a resource."),
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "uid": string("UID is the unique in time and space value for this object."),
            "resourceVersion": string("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": string("The time this object was created."),
            "deletionTimestamp": string("The time at which this resource will be deleted."),
        }
    })
}

/// The document for one group-version, if it is served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = registry
        .all()
        .filter(|rt| rt.group == group && rt.versions.iter().any(|v| v == version))
        .collect();
    if types.is_empty() {
        return None;
    }
    let prefix = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta());
    for rt in types {
        let scope = if rt.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let collection = format!("{prefix}{scope}/{}", rt.plural);
        paths.insert(
            collection.clone(),
            json!({"get": operation(rt, version, "list", false), "post": operation(rt, version, "post", true)}),
        );
        let item = json!({
            "get": operation(rt, version, "get", false),
            "put": operation(rt, version, "put", true),
            "patch": operation(rt, version, "patch", true),
            "delete": operation(rt, version, "delete", true),
        });
        paths.insert(format!("{collection}/{{name}}"), item);
        if rt.status_subresource {
            let status = json!({
                "get": operation(rt, version, "get", false),
                "put": operation(rt, version, "put", true),
                "patch": operation(rt, version, "patch", true),
            });
            paths.insert(format!("{collection}/{{name}}/status"), status);
        }
        if let Some(schema) = custom_schema(rt, version) {
            schemas.insert(schema_name(rt, version), schema);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::type_from_crd;

    #[test]
    fn custom_resources_get_patch_paths_and_schemas() {
        let mut registry = Registry::with_builtins();
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}});
        registry.insert(type_from_crd(&crd).unwrap());
        assert!(root(&registry)["paths"]["apis/example.com/v1"]["serverRelativeURL"].is_string());
        let doc = group_version(&registry, "example.com", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let schema = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["group"],
            "example.com"
        );
        assert!(schema["properties"]["metadata"].is_object());
    }
}
