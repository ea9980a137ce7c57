//! The object store: every write goes through here so that resourceVersions, generations, managed fields,
//! finalizers, the watch history and garbage collection stay consistent.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};

use crate::apply::{self, Scope};
use crate::error::{ApiError, ApiResult};
use crate::patch::{self, PatchFailure};
use crate::registry::{Registry, ResKey, ResourceType, split_api_version, type_from_crd};
use crate::selectors::Selectors;
use crate::validation::{self, Validators};

/// (namespace, name); namespace is "" for cluster-scoped objects.
pub type ObjKey = (String, String);

/// Kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

/// One committed change, kept in the bounded history and broadcast to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource the object belongs to.
    pub res: ResKey,
    /// Change kind.
    pub kind: EventKind,
    /// Object after the change (for deletions: its last state).
    pub object: Arc<Value>,
    /// Object before the change.
    pub old: Option<Arc<Value>>,
}

/// Options shared by create, update and patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Field manager recorded in managedFields for non-apply writes.
    pub manager: Option<String>,
    /// API version of the request.
    pub version: String,
    /// `fieldValidation=Strict`: unknown fields of custom resources are rejected instead of pruned.
    pub strict: bool,
}

/// How a PATCH body is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// application/json-patch+json
    Json,
    /// application/merge-patch+json
    Merge,
    /// application/strategic-merge-patch+json
    Strategic,
    /// application/apply-patch+yaml
    Apply {
        /// `force=true`.
        force: bool,
    },
}

/// DeleteOptions that the server honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// preconditions.uid
    pub uid: Option<String>,
    /// preconditions.resourceVersion
    pub resource_version: Option<String>,
    /// propagationPolicy: Orphan keeps dependents.
    pub orphan: bool,
    /// propagationPolicy: Foreground deletes dependents before the owner.
    pub foreground: bool,
}

/// Finalizer that holds an owner until its dependents are gone (Foreground deletion).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// All server state.
pub struct Store {
    /// Served resource types.
    pub registry: Registry,
    /// The global resourceVersion counter (last committed change).
    pub rv: u64,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Events at or below this resourceVersion are no longer replayable.
    pub compacted_rv: u64,
    /// Broadcast of committed events.
    pub events: broadcast::Sender<Arc<Event>>,
    /// Whether state changed since the last save.
    pub dirty: bool,
    validators: Validators,
    gc_wake: Arc<Notify>,
}

/// Current time as the apiserver formats metav1.Time.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str().filter(|s| !s.is_empty())
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Whether two objects differ only in resourceVersion and managedFields timestamps.
fn same_content(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys: HashSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().all(|key| {
        if key != "metadata" {
            return a.get(key) == b.get(key);
        }
        let (ma, mb) = (&a[key], &b[key]);
        let mkeys: HashSet<&String> = ma
            .as_object()
            .into_iter()
            .chain(mb.as_object())
            .flat_map(|m| m.keys())
            .collect();
        mkeys
            .into_iter()
            .filter(|k| *k != "resourceVersion")
            .all(|k| {
                if k != "managedFields" {
                    return ma.get(k) == mb.get(k);
                }
                let strip = |v: Option<&Value>| -> Vec<Value> {
                    v.and_then(Value::as_array)
                        .map(|entries| {
                            entries
                                .iter()
                                .map(|e| {
                                    let mut e = e.clone();
                                    if let Some(m) = e.as_object_mut() {
                                        m.remove("time");
                                    }
                                    e
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                strip(ma.get(k)) == strip(mb.get(k))
            })
    })
}

/// Whether anything outside metadata (and outside status when it is a subresource) differs.
fn spec_changed(old: &Value, new: &Value, status_separate: bool) -> bool {
    let skip = |k: &str| k == "metadata" || (status_separate && k == "status");
    let keys: HashSet<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.into_iter()
        .filter(|k| !skip(k))
        .any(|k| old.get(k) != new.get(k))
}

impl Store {
    /// An empty store with the built-in kinds and the standard namespaces.
    pub fn new(history_limit: usize, gc_wake: Arc<Notify>) -> Self {
        let (events, _) = broadcast::channel(history_limit.clamp(1024, 65536));
        let mut store = Store {
            registry: Registry::with_builtins(),
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            events,
            dirty: false,
            validators: Validators::default(),
            gc_wake,
        };
        let namespaces = store
            .registry
            .get("", "v1", "namespaces")
            .expect("namespaces are built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store
                .create(
                    &namespaces,
                    "",
                    ns,
                    &WriteOpts {
                        version: "v1".into(),
                        ..Default::default()
                    },
                )
                .ok();
        }
        store
    }

    /// The events after `rv` still held in the history, or None when `rv` is too old.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted_rv {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.objects
            .get(&rt.key())
            .and_then(|objs| objs.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects of `rt` (in `ns` when given) that match, in (namespace, name) order, starting after `after`.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        selectors: &Selectors,
        after: Option<&ObjKey>,
    ) -> impl Iterator<Item = (&ObjKey, &Arc<Value>)> {
        let objects = self.objects.get(&rt.key());
        let range = objects.into_iter().flat_map(move |objs| match after {
            Some(key) => objs
                .range::<ObjKey, _>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded)),
            None => objs.range::<ObjKey, _>(..),
        });
        range.filter(move |(key, obj)| ns.is_none_or(|ns| key.0 == ns) && selectors.matches(obj))
    }

    fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        object: Option<Value>,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv.to_string();
        let objects = self.objects.entry(rt.key()).or_default();
        let (kind, stored) = match object {
            Some(mut obj) => {
                metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv));
                let obj = Arc::new(obj);
                objects.insert(key, obj.clone());
                (
                    if old.is_some() {
                        EventKind::Modified
                    } else {
                        EventKind::Added
                    },
                    obj,
                )
            }
            None => {
                objects.remove(&key);
                let mut last = old.as_deref().cloned().unwrap_or(Value::Null);
                metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv));
                (EventKind::Deleted, Arc::new(last))
            }
        };
        let event = Arc::new(Event {
            rv: self.rv,
            res: rt.key(),
            kind,
            object: stored.clone(),
            old,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted_rv = evicted.rv;
            }
        }
        let _ = self.events.send(event);
        self.dirty = true;
        if rt.group == "apiextensions.k8s.io" {
            self.sync_crd(&stored, kind);
        }
        stored
    }

    fn sync_crd(&mut self, crd: &Value, kind: EventKind) {
        let Ok(rt) = type_from_crd(crd) else { return };
        if kind == EventKind::Deleted {
            self.objects.remove(&rt.key());
            self.validators.remove(&rt.key());
            self.registry.remove(&rt.key());
        } else {
            if let Ok(compiled) = validation::compile(crd, &rt) {
                self.validators.insert(rt.key(), compiled);
            }
            self.registry.insert(rt);
        }
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: namespace is required",
            ));
        }
        let namespaces = self
            .registry
            .get("", "v1", "namespaces")
            .expect("namespaces are built in");
        let namespace = self.get(&namespaces, "", ns)?;
        if namespace["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.qualified()
                ),
            ));
        }
        Ok(())
    }

    /// Kind-specific defaulting and validation shared by create and update.
    fn prepare(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> ApiResult<()> {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => {
                if let Some(Value::Object(string_data)) =
                    obj.as_object_mut().and_then(|o| o.remove("stringData"))
                {
                    let data = obj["data"].as_object().cloned().unwrap_or_default();
                    let mut data = data;
                    for (key, value) in string_data {
                        let text = value.as_str().unwrap_or_default();
                        data.insert(
                            key,
                            json!(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                    obj["data"] = Value::Object(data);
                }
            }
            ("", "namespaces") if old.is_none() => {
                obj["status"] = json!({"phase": "Active"});
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let new_type = type_from_crd(obj).map_err(|(field, detail)| {
                    ApiError::invalid_field(rt, &name, &field, &detail)
                })?;
                validation::compile(obj, &new_type).map_err(|detail| {
                    ApiError::invalid_field(rt, &name, "spec.validation.openAPIV3Schema", &detail)
                })?;
                if old.is_none() {
                    let time = now();
                    let mut accepted = obj["spec"]["names"].clone();
                    accepted["singular"] = json!(new_type.singular);
                    obj["status"] = json!({
                        "conditions": [
                            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time}
                        ],
                        "acceptedNames": accepted,
                        "storedVersions": [new_type.storage_version()],
                    });
                }
            }
            _ => {}
        }
        if let Some(validator) = self
            .validators
            .get(&rt.key())
            .and_then(|v| v.get(&opts.version))
        {
            validation::validate(validator, rt, obj, old, opts.strict)?;
        }
        Ok(())
    }

    /// Creates an object (POST, or create-on-apply).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_kind(rt, &obj)?;
        let meta = metadata_mut(&mut obj);
        if rt.namespaced {
            match meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                Some(body_ns) if body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid_field(
                    rt,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = loop {
                let candidate = format!("{prefix}{}", validation::random_suffix());
                if !self
                    .objects
                    .get(&rt.key())
                    .is_some_and(|o| o.contains_key(&(ns.to_string(), candidate.clone())))
                {
                    break candidate;
                }
            };
            meta.insert("name".into(), json!(name));
        }
        validation::check_name(rt, &name)?;
        self.check_namespace(rt, ns)?;
        let key = (
            if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.clone(),
        );
        if self
            .objects
            .get(&rt.key())
            .is_some_and(|o| o.contains_key(&key))
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        if rt.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        obj["apiVersion"] = json!(rt.api_version(rt.storage_version()));
        obj["kind"] = json!(rt.kind);
        if rt.status_subresource && rt.plural != "customresourcedefinitions" {
            obj.as_object_mut()
                .expect("checked object")
                .remove("status");
        }
        self.prepare(rt, &mut obj, None, opts)?;
        if let Some(manager) = &opts.manager {
            let mut entries = Vec::new();
            let scope = Scope::Main {
                status_separate: rt.status_subresource,
            };
            apply::record_update(
                &json!({}),
                &obj,
                manager,
                &mut entries,
                scope,
                &rt.api_version(&opts.version),
                &now(),
            );
            apply::write_entries(&mut obj, &entries);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        Ok((*self.commit(rt, key, Some(obj), None)).clone())
    }

    /// Completes an update (PUT, PATCH, apply) of an existing object.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        old: Arc<Value>,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let ns = meta_str(&old, "namespace").unwrap_or_default().to_string();
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_kind(rt, &new)?;
        if let Some(body_name) = meta_str(&new, "name").filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if meta_str(&new, "resourceVersion")
            .is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiError::stale(rt, &name));
        }
        let scope = match subresource {
            Some("status") if rt.status_subresource => Scope::Status,
            Some(_) => return Err(ApiError::not_found(rt, &name)),
            None => Scope::Main {
                status_separate: rt.status_subresource,
            },
        };
        if scope == Scope::Status {
            let status = new.get("status").cloned();
            let managed = new["metadata"].get("managedFields").cloned();
            new = (*old).clone();
            let object = new.as_object_mut().expect("stored objects are objects");
            match status {
                Some(status) => object.insert("status".into(), status),
                None => object.remove("status"),
            };
            match managed {
                Some(managed) => metadata_mut(&mut new).insert("managedFields".into(), managed),
                None => metadata_mut(&mut new).remove("managedFields"),
            };
        } else if rt.status_subresource {
            let object = new.as_object_mut().expect("checked object");
            match old.get("status") {
                Some(status) => object.insert("status".into(), status.clone()),
                None => object.remove("status"),
            };
        }
        let meta = metadata_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("resourceVersion");
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = json!(rt.kind);
        let deleting = old["metadata"]["deletionTimestamp"].is_string();
        if deleting {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid_field(
                    rt,
                    &name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        self.prepare(rt, &mut new, Some(&old), opts)?;
        if rt.tracks_generation() && spec_changed(&old, &new, rt.status_subresource) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if let Some(manager) = &opts.manager {
            let mut entries = apply::read_entries(&old);
            apply::record_update(
                &old,
                &new,
                manager,
                &mut entries,
                scope,
                &rt.api_version(&opts.version),
                &now(),
            );
            apply::write_entries(&mut new, &entries);
        }
        if same_content(&old, &new) {
            return Ok((*old).clone());
        }
        let key = (ns, name);
        if deleting && finalizers(&new).is_empty() && rt.plural != "namespaces" {
            if !opts.dry_run {
                self.commit(rt, key, None, Some(old));
                self.gc_wake.notify_one();
            }
            return Ok(new);
        }
        if opts.dry_run {
            metadata_mut(&mut new).insert(
                "resourceVersion".into(),
                old["metadata"]["resourceVersion"].clone(),
            );
            return Ok(new);
        }
        Ok((*self.commit(rt, key, Some(new), Some(old))).clone())
    }

    /// PATCH, including server-side apply. Returns the object and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        subresource: Option<&str>,
        kind: PatchKind,
        body: &[u8],
        opts: &WriteOpts,
    ) -> ApiResult<(Value, bool)> {
        let current = self.get(rt, ns, name);
        let PatchKind::Apply { force } = kind else {
            let old = current?;
            let mut doc = (*old).clone();
            let result = match kind {
                PatchKind::Json => patch::json_patch(&mut doc, body),
                PatchKind::Merge => patch::merge_patch(&mut doc, body),
                _ => patch::strategic_merge_patch(&mut doc, body),
            };
            result.map_err(|failure| match failure {
                PatchFailure::Malformed(message) => ApiError::bad_request(message),
                PatchFailure::Unprocessable(message) => ApiError::new(422, "Invalid", message),
            })?;
            return self
                .update(rt, old, doc, subresource, opts)
                .map(|obj| (obj, false));
        };
        let manager = opts
            .manager
            .clone()
            .ok_or_else(|| ApiError::bad_request("PATCH /apply requires fieldManager to be set"))?;
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
        let applied: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        };
        if !applied.is_object()
            || applied["apiVersion"].as_str().is_none()
            || applied["kind"].as_str().is_none()
        {
            return Err(ApiError::bad_request(
                "apply patches must set apiVersion and kind",
            ));
        }
        if let Some(body_name) = meta_str(&applied, "name").filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let scope = match subresource {
            Some("status") if rt.status_subresource => Scope::Status,
            Some(_) => return Err(ApiError::not_found(rt, name)),
            None => Scope::Main {
                status_separate: rt.status_subresource,
            },
        };
        let live = current
            .as_ref()
            .map(|o| (**o).clone())
            .unwrap_or_else(|_| json!({}));
        let mut entries = apply::read_entries(&live);
        let api_version = rt.api_version(&opts.version);
        let mut merged = apply::apply(&live, &applied, &manager, force, &mut entries, scope, &api_version, &now())
            .map_err(|conflicts| {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": apply::display_path(&c.path)}))
                    .collect();
                let mut error = ApiError::conflict(rt, name, "");
                error.message = apply::conflict_message(&conflicts);
                error.details = Some(json!({"causes": causes}));
                error
            })?;
        apply::write_entries(&mut merged, &entries);
        let unmanaged = WriteOpts {
            manager: None,
            ..opts.clone()
        };
        match current {
            Ok(old) => self
                .update(rt, old, merged, subresource, &unmanaged)
                .map(|obj| (obj, false)),
            Err(_) if scope == Scope::Status => Err(ApiError::not_found(rt, name)),
            Err(_) => {
                metadata_mut(&mut merged).insert("name".into(), json!(name));
                self.create(rt, ns, merged, &unmanaged)
                    .map(|obj| (obj, true))
            }
        }
    }

    /// DELETE of one object. Objects with finalizers (and namespaces, CRDs) are only marked for deletion.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let old = self.get(rt, ns, name)?;
        if let Some(uid) = &opts.uid {
            let actual = meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            let actual = meta_str(&old, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        if old["metadata"]["deletionTimestamp"].is_string() {
            return Ok((*old).clone());
        }
        if opts.orphan && !opts.dry_run {
            self.orphan_dependents(meta_str(&old, "uid").unwrap_or_default());
        }
        let is_crd = rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io";
        let is_namespace = rt.plural == "namespaces" && rt.group.is_empty();
        let uid = meta_str(&old, "uid").unwrap_or_default();
        let foreground = opts.foreground && self.owner_uids().contains(uid);
        if finalizers(&old).is_empty() && !is_crd && !is_namespace && !foreground {
            if !opts.dry_run {
                self.commit(
                    rt,
                    (ns.to_string(), name.to_string()),
                    None,
                    Some(old.clone()),
                );
                self.gc_wake.notify_one();
            }
            return Ok((*old).clone());
        }
        let mut marked = (*old).clone();
        let meta = metadata_mut(&mut marked);
        meta.insert("deletionTimestamp".into(), json!(now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        let extra_finalizer = if is_crd {
            Some(validation::CRD_CLEANUP_FINALIZER)
        } else {
            foreground.then_some(FOREGROUND_FINALIZER)
        };
        if let Some(finalizer) = extra_finalizer {
            let list = meta.entry("finalizers").or_insert(json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!(finalizer));
            }
        }
        if is_namespace {
            if !marked["status"].is_object() {
                marked["status"] = json!({});
            }
            marked["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(marked);
        }
        let stored = self.commit(
            rt,
            (ns.to_string(), name.to_string()),
            Some(marked),
            Some(old),
        );
        self.gc_wake.notify_one();
        Ok((*stored).clone())
    }

    /// uids named in any object's ownerReferences.
    fn owner_uids(&self) -> HashSet<String> {
        self.objects
            .values()
            .flat_map(|o| o.values())
            .flat_map(|o| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
            })
            .filter_map(|r| r["uid"].as_str().map(String::from))
            .collect()
    }

    fn orphan_dependents(&mut self, uid: &str) {
        let mut changes = Vec::new();
        for (res, objects) in &self.objects {
            for (key, obj) in objects {
                let refs = obj["metadata"]["ownerReferences"].as_array();
                if refs.is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid)) {
                    changes.push((res.clone(), key.clone(), obj.clone()));
                }
            }
        }
        for (res, key, old) in changes {
            let Some(rt) = self.registry.by_key(&res) else {
                continue;
            };
            let mut new = (*old).clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
            }
            self.commit(&rt, key, Some(new), Some(old));
        }
    }

    /// One pass of background garbage collection: dependents of deleted owners, contents of terminating
    /// namespaces and of deleted CRDs. Returns whether anything changed.
    pub fn collect_garbage(&mut self) -> bool {
        let uids: HashSet<String> = self
            .objects
            .values()
            .flat_map(|o| o.values())
            .filter_map(|o| meta_str(o, "uid").map(String::from))
            .collect();
        let namespaces = self
            .registry
            .get("", "v1", "namespaces")
            .expect("namespaces are built in");
        let terminating_ns: HashSet<String> = self
            .list(&namespaces, None, &Selectors::default(), None)
            .filter(|(_, o)| o["metadata"]["deletionTimestamp"].is_string())
            .map(|(k, _)| k.1.clone())
            .collect();
        let crds = self
            .registry
            .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are built in");
        let terminating_crds: Vec<Arc<Value>> = self
            .list(&crds, None, &Selectors::default(), None)
            .filter(|(_, o)| finalizers(o).contains(&validation::CRD_CLEANUP_FINALIZER))
            .map(|(_, o)| o.clone())
            .collect();
        let mut doomed_types = HashSet::new();
        for crd in &terminating_crds {
            if let Ok(rt) = type_from_crd(crd) {
                doomed_types.insert(rt.key());
            }
        }
        let foreground_owners: Vec<(ResKey, Arc<Value>)> = self
            .objects
            .iter()
            .flat_map(|(res, objs)| objs.values().map(move |o| (res, o)))
            .filter(|(_, o)| finalizers(o).contains(&FOREGROUND_FINALIZER))
            .map(|(res, o)| (res.clone(), o.clone()))
            .collect();
        let foreground_uids: HashSet<&str> = foreground_owners
            .iter()
            .filter_map(|(_, o)| meta_str(o, "uid"))
            .collect();
        let mut doomed: Vec<(ResKey, ObjKey)> = Vec::new();
        let mut occupied_ns: HashSet<String> = HashSet::new();
        for (res, objects) in &self.objects {
            for (key, obj) in objects {
                occupied_ns.insert(key.0.clone());
                if obj["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                let refs = obj["metadata"]["ownerReferences"]
                    .as_array()
                    .filter(|r| !r.is_empty());
                let orphaned = refs.is_some_and(|refs| {
                    refs.iter()
                        .all(|r| !r["uid"].as_str().is_some_and(|u| uids.contains(u)))
                });
                let owner_leaving = refs.is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r["uid"]
                            .as_str()
                            .is_some_and(|u| foreground_uids.contains(u))
                    })
                });
                if orphaned
                    || owner_leaving
                    || terminating_ns.contains(&key.0)
                    || doomed_types.contains(res)
                {
                    doomed.push((res.clone(), key.clone()));
                }
            }
        }
        let mut changed = false;
        for (res, (ns, name)) in doomed {
            if let Some(rt) = self.registry.by_key(&res) {
                changed |= self.delete(&rt, &ns, &name, &DeleteOpts::default()).is_ok();
            }
        }
        for ns in terminating_ns.difference(&occupied_ns) {
            if let Ok(old) = self.get(&namespaces, "", ns)
                && finalizers(&old).is_empty()
            {
                self.commit(&namespaces, (String::new(), ns.clone()), None, Some(old));
                changed = true;
            }
        }
        let still_owning = self.owner_uids();
        for (res, owner) in foreground_owners {
            let Some(rt) = self.registry.by_key(&res) else {
                continue;
            };
            if still_owning.contains(meta_str(&owner, "uid").unwrap_or_default()) {
                continue;
            }
            let mut released = (*owner).clone();
            if let Some(list) = released["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != FOREGROUND_FINALIZER);
            }
            let version = rt.storage_version().to_string();
            let opts = WriteOpts {
                version,
                ..Default::default()
            };
            changed |= self.update(&rt, owner, released, None, &opts).is_ok();
        }
        for crd in terminating_crds {
            let Ok(rt) = type_from_crd(&crd) else {
                continue;
            };
            if self.objects.get(&rt.key()).is_none_or(BTreeMap::is_empty) {
                let mut new = (*crd).clone();
                if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                    list.retain(|f| f != validation::CRD_CLEANUP_FINALIZER);
                }
                let opts = WriteOpts {
                    version: "v1".into(),
                    ..Default::default()
                };
                changed |= self.update(&crds, crd, new, None, &opts).is_ok();
            }
        }
        changed
    }

    /// All objects (CRDs first) and the resourceVersion, for the state file.
    pub fn snapshot(&self) -> Value {
        let crd_key: ResKey = (
            "apiextensions.k8s.io".into(),
            "customresourcedefinitions".into(),
        );
        let mut objects: Vec<&Value> = self
            .objects
            .get(&crd_key)
            .into_iter()
            .flat_map(|o| o.values())
            .map(|o| o.as_ref())
            .collect();
        for (res, objs) in &self.objects {
            if *res != crd_key {
                objects.extend(objs.values().map(|o| o.as_ref()));
            }
        }
        json!({"resourceVersion": self.rv, "objects": objects})
    }

    /// Restores a snapshot taken by [`Store::snapshot`].
    pub fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        let objects = snapshot["objects"]
            .as_array()
            .ok_or("state has no objects list")?;
        for obj in objects {
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            let kind = obj["kind"].as_str().unwrap_or_default();
            let rt = self
                .registry
                .by_kind(api_version, kind)
                .ok_or_else(|| format!("unknown kind {api_version} {kind}"))?;
            let key = (
                meta_str(obj, "namespace").unwrap_or_default().to_string(),
                meta_str(obj, "name").unwrap_or_default().to_string(),
            );
            self.objects
                .entry(rt.key())
                .or_default()
                .insert(key, Arc::new(obj.clone()));
            if rt.plural == "customresourcedefinitions" {
                self.sync_crd(obj, EventKind::Added);
            }
        }
        self.rv = self
            .rv
            .max(snapshot["resourceVersion"].as_u64().unwrap_or(0));
        self.compacted_rv = self.rv;
        self.history.clear();
        Ok(())
    }

    /// The served apiVersion of `rt` for an object read at `version`.
    pub fn at_version(rt: &ResourceType, obj: &Value, version: &str) -> Value {
        let mut obj = obj.clone();
        if split_api_version(obj["apiVersion"].as_str().unwrap_or_default()).1 != version {
            obj["apiVersion"] = json!(rt.api_version(version));
        }
        obj
    }
}

fn check_kind(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    match obj["kind"].as_str() {
        Some(kind) if !kind.is_empty() && kind != rt.kind => Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the resource ({})",
            rt.kind
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(100, Arc::new(Notify::new()))
    }

    fn opts() -> WriteOpts {
        WriteOpts {
            version: "v1".into(),
            manager: Some("test".into()),
            ..Default::default()
        }
    }

    #[test]
    fn generation_bumps_only_on_spec_changes_and_noop_keeps_rv() {
        let mut s = store();
        let rt = s.registry.get("apps", "v1", "deployments").unwrap();
        let created = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}}),
                &opts(),
            )
            .unwrap();
        let rv = created["metadata"]["resourceVersion"].clone();
        let old = s.get(&rt, "default", "d").unwrap();
        let same = s
            .update(&rt, old.clone(), (*old).clone(), None, &opts())
            .unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], rv);
        let mut labelled = (*old).clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let labelled = s.update(&rt, old, labelled, None, &opts()).unwrap();
        assert_eq!(labelled["metadata"]["generation"], 1);
        let old = s.get(&rt, "default", "d").unwrap();
        let mut scaled = (*old).clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["status"] = json!({"replicas": 3});
        let scaled = s.update(&rt, old, scaled, None, &opts()).unwrap();
        assert_eq!(scaled["metadata"]["generation"], 2);
        assert!(
            scaled.get("status").is_none(),
            "main resource writes cannot set status"
        );
    }

    #[test]
    fn finalizers_delay_deletion_until_removed() {
        let mut s = store();
        let rt = s.registry.get("", "v1", "configmaps").unwrap();
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "c", "finalizers": ["x/y"]}}),
            &opts(),
        )
        .unwrap();
        let marked = s
            .delete(&rt, "default", "c", &DeleteOpts::default())
            .unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        let old = s.get(&rt, "default", "c").unwrap();
        let mut cleared = (*old).clone();
        cleared["metadata"]["finalizers"] = json!([]);
        s.update(&rt, old, cleared, None, &opts()).unwrap();
        assert!(s.get(&rt, "default", "c").is_err());
    }

    #[test]
    fn garbage_collection_follows_owner_references() {
        let mut s = store();
        let rt = s.registry.get("", "v1", "configmaps").unwrap();
        let owner = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "owner"}}),
                &opts(),
            )
            .unwrap();
        let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]);
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "child", "ownerReferences": owner_ref}}),
            &opts(),
        )
        .unwrap();
        s.delete(&rt, "default", "owner", &DeleteOpts::default())
            .unwrap();
        assert!(s.collect_garbage());
        assert!(s.get(&rt, "default", "child").is_err());
    }

    #[test]
    fn foreground_deletion_waits_for_dependents_and_orphan_keeps_them() {
        let mut s = store();
        let rt = s.registry.get("", "v1", "configmaps").unwrap();
        let child_of = |owner: &Value, name: &str| {
            let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]);
            json!({"metadata": {"name": name, "ownerReferences": owner_ref}})
        };
        let owner = s
            .create(&rt, "default", json!({"metadata": {"name": "fg"}}), &opts())
            .unwrap();
        s.create(&rt, "default", child_of(&owner, "fg-child"), &opts())
            .unwrap();
        let foreground = DeleteOpts {
            foreground: true,
            ..Default::default()
        };
        let marked = s.delete(&rt, "default", "fg", &foreground).unwrap();
        assert_eq!(
            marked["metadata"]["finalizers"],
            json!([FOREGROUND_FINALIZER])
        );
        while s.collect_garbage() {}
        assert!(s.get(&rt, "default", "fg-child").is_err());
        assert!(s.get(&rt, "default", "fg").is_err());

        let owner = s
            .create(&rt, "default", json!({"metadata": {"name": "or"}}), &opts())
            .unwrap();
        s.create(&rt, "default", child_of(&owner, "or-child"), &opts())
            .unwrap();
        let orphan = DeleteOpts {
            orphan: true,
            ..Default::default()
        };
        s.delete(&rt, "default", "or", &orphan).unwrap();
        while s.collect_garbage() {}
        let kept = s.get(&rt, "default", "or-child").unwrap();
        assert_eq!(kept["metadata"]["ownerReferences"], json!([]));
    }

    #[test]
    fn secrets_turn_string_data_into_data() {
        let mut s = store();
        let rt = s.registry.get("", "v1", "secrets").unwrap();
        let secret = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "stringData": {"k": "hi"}}),
                &opts(),
            )
            .unwrap();
        assert_eq!(secret["data"]["k"], "aGk=");
        assert!(secret.get("stringData").is_none());
    }
}
