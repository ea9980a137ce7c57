//! HTTP routing: discovery, OpenAPI, health, and the resource endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::faults::Faults;
use crate::openapi;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::store::{DeleteOpts, ObjKey, PatchKind, Store, WriteOpts};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchParams};

/// State shared by all request handlers and background tasks.
pub struct Shared {
    /// The object store.
    pub store: Mutex<Store>,
    /// Fault injection controls.
    pub faults: Faults,
    /// How often watches with allowWatchBookmarks get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Wakes the garbage collector.
    pub gc_wake: Arc<Notify>,
}

/// Largest request body accepted, the apiserver's limit.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The router serving every path.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, axum::Json(value)).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    dispatch(shared, method, uri, headers, body).unwrap_or_else(IntoResponse::into_response)
}

fn dispatch(
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let path = uri.path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let store = || {
        shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let ok = |value: Option<Value>| {
        value
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(|| ApiError::no_route(&path))
    };
    if method != Method::GET
        && !matches!(
            segments.as_slice(),
            ["api", _, _, ..] | ["apis", _, _, _, ..]
        )
    {
        return Err(ApiError::method_not_allowed());
    }
    match segments.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => Ok("ok".into_response()),
        ["version"] => ok(Some(discovery::version())),
        ["api"] => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            ok(Some(discovery::core_versions(host)))
        }
        ["apis"] => ok(Some(discovery::groups(&store().registry))),
        ["apis", group] => ok(discovery::group_doc(&store().registry, group)),
        ["api", version] => ok(discovery::resources(&store().registry, "", version)),
        ["apis", group, version] => ok(discovery::resources(&store().registry, group, version)),
        ["openapi", "v3"] => ok(Some(openapi::root(&store().registry))),
        ["openapi", "v3", "api", version] => {
            ok(openapi::group_version(&store().registry, "", version))
        }
        ["openapi", "v3", "apis", group, version] => {
            ok(openapi::group_version(&store().registry, group, version))
        }
        ["api", version, rest @ ..] => {
            resource(&shared, "", version, rest, method, &uri, &headers, &body)
        }
        ["apis", group, version, rest @ ..] => {
            resource(&shared, group, version, rest, method, &uri, &headers, &body)
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

/// A parsed resource request path.
struct Target<'a> {
    rt: Arc<ResourceType>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
    version: &'a str,
}

fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        crate::protobuf::decode(body).map_err(|e| {
            let mut error = ApiError::unsupported_media_type(content_type);
            error.message = e;
            error
        })
    } else if content_type.contains("yaml") {
        let text =
            std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding the request body as JSON: {e}"))
        })
    }
}

fn selectors(query: &HashMap<String, String>) -> ApiResult<Selectors> {
    Ok(Selectors {
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?,
    })
}

fn field_manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    query.get("fieldManager").cloned().unwrap_or_else(|| {
        let agent = headers
            .get("user-agent")
            .and_then(|u| u.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or(agent).to_string()
    })
}

fn encode_continue(key: &ObjKey) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

fn decode_continue(token: &str) -> ApiResult<ObjKey> {
    let invalid = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let (ns, name): (String, String) = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok((ns, name))
}

#[allow(clippy::too_many_arguments)]
fn resource(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let (namespace, plural, name, subresource) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && !matches!(rest[2], "status" | "finalize")
    {
        (
            Some(rest[1]),
            rest[2],
            rest.get(3).copied(),
            rest.get(4).copied(),
        )
    } else {
        (None, rest[0], rest.get(1).copied(), rest.get(2).copied())
    };
    let no_route = || ApiError::no_route(uri.path());
    let too_long = if namespace.is_some() {
        rest.len() > 5
    } else {
        rest.len() > 3
    };
    let rt = shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .registry
        .get(group, version, plural)
        .ok_or_else(no_route)?;
    if too_long
        || (namespace.is_some() && !rt.namespaced)
        || (rt.namespaced && namespace.is_none() && name.is_some())
    {
        return Err(no_route());
    }
    if subresource.is_some_and(|s| s != "status" || !rt.status_subresource) {
        return Err(no_route());
    }
    let query: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if let Some(error) = shared.faults.take(verb, &rt.plural) {
        return Err(error);
    }
    let target = Target {
        rt,
        namespace,
        name,
        subresource,
        version,
    };
    let accept = headers
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    let table = table::wants_table(accept)
        .then(|| IncludeObject::parse(query.get("includeObject").map(String::as_str)));
    let write = WriteOpts {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        manager: Some(field_manager(&query, headers)),
        version: version.to_string(),
        strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    match verb {
        "watch" => {
            let mut selectors = selectors(&query)?;
            if let Some(name) = target.name {
                let combined = format!("metadata.name={name}");
                selectors.fields = FieldSelector::parse(&combined)?;
            }
            let params = WatchParams {
                namespace: target.namespace.map(String::from),
                selectors,
                resource_version: query.get("resourceVersion").cloned(),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|b| b == "true"),
                send_initial: query.get("sendInitialEvents").is_some_and(|b| b == "true"),
                version: version.to_string(),
                table,
            };
            Ok(watch::start(shared.clone(), target.rt, params))
        }
        "get" => get(shared, &target, table),
        "list" => list(shared, &target, &query, table),
        "create" => {
            if target.subresource.is_some() || (target.rt.namespaced && target.namespace.is_none())
            {
                return Err(ApiError::method_not_allowed());
            }
            let obj = decode_body(headers, body)?;
            let created = shared
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .create(&target.rt, target.namespace.unwrap_or(""), obj, &write)?;
            Ok(json_response(
                StatusCode::CREATED,
                &Store::at_version(&target.rt, &created, version),
            ))
        }
        "update" => {
            let obj = decode_body(headers, body)?;
            let name = target.name.unwrap_or_default();
            if target.rt.custom
                && obj["metadata"]["resourceVersion"]
                    .as_str()
                    .is_none_or(str::is_empty)
            {
                return Err(ApiError::invalid_field(
                    &target.rt,
                    name,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
            let mut store = shared
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old = store.get(&target.rt, target.namespace.unwrap_or(""), name)?;
            let updated = store.update(&target.rt, old, obj, target.subresource, &write)?;
            Ok(json_response(
                StatusCode::OK,
                &Store::at_version(&target.rt, &updated, version),
            ))
        }
        "patch" => {
            let content_type = headers
                .get("content-type")
                .and_then(|c| c.to_str().ok())
                .unwrap_or("");
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" => PatchKind::Apply {
                    force: query.get("force").is_some_and(|f| f == "true"),
                },
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let write = if matches!(kind, PatchKind::Apply { .. }) {
                WriteOpts {
                    manager: query.get("fieldManager").cloned(),
                    ..write
                }
            } else {
                write
            };
            let (patched, created) = shared
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .patch(
                    &target.rt,
                    target.namespace.unwrap_or(""),
                    target.name.unwrap_or_default(),
                    target.subresource,
                    kind,
                    body,
                    &write,
                )?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(
                code,
                &Store::at_version(&target.rt, &patched, version),
            ))
        }
        _ => delete(shared, &target, &query, body, verb == "deletecollection"),
    }
}

fn get(shared: &Shared, target: &Target, table: Option<IncludeObject>) -> ApiResult<Response> {
    let store = shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let obj = store.get(
        &target.rt,
        target.namespace.unwrap_or(""),
        target.name.unwrap_or_default(),
    )?;
    let body = match table {
        Some(include) => table::table(
            &target.rt,
            &[&obj],
            json!({"resourceVersion": store.rv.to_string()}),
            include,
        ),
        None => Store::at_version(&target.rt, &obj, target.version),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn list(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
    table: Option<IncludeObject>,
) -> ApiResult<Response> {
    let selectors = selectors(query)?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| decode_continue(c))
        .transpose()?;
    let store = shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut matching = store.list(&target.rt, target.namespace, &selectors, after.as_ref());
    let page: Vec<(&ObjKey, &Arc<Value>)> = matching
        .by_ref()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if remaining > 0
        && let Some((key, _)) = page.last()
    {
        metadata["continue"] = json!(encode_continue(key));
        metadata["remainingItemCount"] = json!(remaining);
    }
    let body = match table {
        Some(include) => {
            let objects: Vec<&Value> = page.iter().map(|(_, o)| o.as_ref()).collect();
            table::table(&target.rt, &objects, metadata, include)
        }
        None => {
            let items: Vec<Value> = page
                .iter()
                .map(|(_, o)| Store::at_version(&target.rt, o, target.version))
                .collect();
            json!({"apiVersion": target.rt.api_version(target.version), "kind": format!("{}List", target.rt.kind), "metadata": metadata, "items": items})
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn delete(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
    collection: bool,
) -> ApiResult<Response> {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if body.starts_with(b"k8s\0") {
        crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
        || options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let policy = query
        .get("propagationPolicy")
        .map(String::as_str)
        .or(options["propagationPolicy"].as_str());
    let opts = DeleteOpts {
        dry_run,
        uid: options["preconditions"]["uid"].as_str().map(String::from),
        resource_version: options["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        orphan: policy == Some("Orphan") || options["orphanDependents"] == json!(true),
        foreground: policy == Some("Foreground"),
    };
    let ns = target.namespace.unwrap_or("");
    let mut store = shared
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !collection {
        let deleted = store.delete(&target.rt, ns, target.name.unwrap_or_default(), &opts)?;
        return Ok(json_response(
            StatusCode::OK,
            &Store::at_version(&target.rt, &deleted, target.version),
        ));
    }
    let selectors = selectors(query)?;
    let names: Vec<ObjKey> = store
        .list(&target.rt, target.namespace, &selectors, None)
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        items.push(store.delete(&target.rt, &ns, &name, &opts)?);
    }
    let list = json!({"apiVersion": target.rt.api_version(target.version), "kind": format!("{}List", target.rt.kind),
                      "metadata": {"resourceVersion": store.rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, &list))
}
