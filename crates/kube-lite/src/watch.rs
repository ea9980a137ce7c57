//! Watch streams: initial state or history replay, then live events, bookmarks and timeouts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selectors::Selectors;
use crate::server::Shared;
use crate::store::{Event, EventKind, Store};
use crate::table::{self, IncludeObject};

/// Parameters of a watch request.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Namespace filter.
    pub namespace: Option<String>,
    /// Label and field selectors.
    pub selectors: Selectors,
    /// `resourceVersion` to resume after; None or "0" starts with the current state.
    pub resource_version: Option<String>,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub send_initial: bool,
    /// Version the client asked for.
    pub version: String,
    /// Table output for `kubectl get -w`.
    pub table: Option<IncludeObject>,
}

fn event_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Added => "ADDED",
        EventKind::Modified => "MODIFIED",
        EventKind::Deleted => "DELETED",
    }
}

/// What a watcher with these filters sees of an event (objects entering or leaving the selection
/// become ADDED or DELETED).
fn visible(event: &Event, params: &WatchParams) -> Option<&'static str> {
    let matches = |obj: &Value| {
        params
            .namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
            && params.selectors.matches(obj)
    };
    let now = matches(&event.object);
    match event.kind {
        EventKind::Added | EventKind::Deleted => now.then_some(event_type(event.kind)),
        EventKind::Modified => match (event.old.as_deref().is_some_and(matches), now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

struct Encoder {
    rt: Arc<ResourceType>,
    version: String,
    table: Option<IncludeObject>,
}

impl Encoder {
    fn line(&self, event_type: &str, object: &Value) -> Bytes {
        let mut line = format!("{{\"type\":\"{event_type}\",\"object\":").into_bytes();
        let stored_version = object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.ends_with(&self.version));
        let passthrough = matches!(event_type, "BOOKMARK" | "ERROR");
        let written = match self.table {
            Some(include) if !passthrough => serde_json::to_writer(
                &mut line,
                &table::table(&self.rt, &[object], json!({}), include),
            ),
            _ if stored_version || passthrough => serde_json::to_writer(&mut line, object),
            _ => serde_json::to_writer(
                &mut line,
                &Store::at_version(&self.rt, object, &self.version),
            ),
        };
        written.expect("JSON values always serialize");
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": metadata});
        self.line("BOOKMARK", &object)
    }
}

/// Starts a watch. Subscribing and reading the initial state happen under one lock, so no change is missed.
pub fn start(shared: Arc<Shared>, rt: Arc<ResourceType>, params: WatchParams) -> Response {
    let encoder = Encoder {
        rt: rt.clone(),
        version: params.version.clone(),
        table: params.table,
    };
    let (initial, mut receiver, start_rv) = {
        let store = shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let receiver = store.events.subscribe();
        let requested = params
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty() && *rv != "0");
        let initial: Result<Vec<Bytes>, ApiError> = match requested {
            Some(rv) if !params.send_initial => match rv.parse::<u64>() {
                Err(_) => Err(ApiError::bad_request(format!(
                    "invalid resource version: {rv}"
                ))),
                Ok(rv) => match store.events_since(rv) {
                    None => Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        store.compacted_rv + 1
                    ))),
                    Some(events) => Ok(events
                        .iter()
                        .filter(|e| e.res == rt.key())
                        .filter_map(|e| visible(e, &params).map(|t| encoder.line(t, &e.object)))
                        .collect()),
                },
            },
            _ => Ok(store
                .list(&rt, params.namespace.as_deref(), &params.selectors, None)
                .map(|(_, obj)| encoder.line("ADDED", obj))
                .collect()),
        };
        (initial, receiver, store.rv)
    };
    let (sender, mut lines) = mpsc::channel::<Bytes>(256);
    let mut drop_signal = shared.faults.drop_signal();
    let bookmark_interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let initial = match initial {
            Ok(lines) => lines,
            Err(error) => {
                let _ = sender.send(encoder.line("ERROR", &error.status())).await;
                return;
            }
        };
        for line in initial {
            if sender.send(line).await.is_err() {
                return;
            }
        }
        if params.send_initial && sender.send(encoder.bookmark(start_rv, true)).await.is_err() {
            return;
        }
        let mut last_rv = start_rv;
        let deadline = tokio::time::sleep(params.timeout.unwrap_or(Duration::from_secs(1800)));
        tokio::pin!(deadline);
        let mut bookmarks = tokio::time::interval(bookmark_interval);
        bookmarks.reset();
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = drop_signal.changed() => return,
                _ = sender.closed() => return,
                _ = bookmarks.tick(), if params.bookmarks => encoder.bookmark(last_rv, false),
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.rv <= last_rv {
                            continue;
                        }
                        last_rv = event.rv;
                        if event.res != encoder.rt.key() {
                            continue;
                        }
                        match visible(&event, &params) {
                            Some(event_type) => encoder.line(event_type, &event.object),
                            None => continue,
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
            };
            if sender.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        lines
            .poll_recv(cx)
            .map(|l| l.map(Ok::<_, std::convert::Infallible>))
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("static headers are valid")
}
