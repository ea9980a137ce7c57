//! The admin API under `/_sim/` (never counted, never faulted).
//!
//! | call | body / query | answer |
//! |---|---|---|
//! | `GET /_sim/state` | | `{"now","started_at","time_scale","seed","devices":[Device],"faults":[Rule],"calls":[Call],"thingspace":{..},"iotaap":{..},"iotda":{..},"obs":{..}}` |
//! | `GET /_sim/devices` | `?vendor=&account=` | `{"devices":[Device]}` |
//! | `POST /_sim/devices` | `{"devices":[DeviceSpec]}` (create, or change the given fields) | `{"devices":[Device]}` |
//! | `GET /_sim/calls` | `?vendor=` | `{"calls":[Call],"total":N}` |
//! | `POST /_sim/reset-counts` | | `{"calls":[]}` |
//! | `GET /_sim/faults` | | `{"faults":[Rule]}` |
//! | `POST /_sim/faults` | `{"clear":bool,"remove":[id],"add":[Rule]}` (applied in that order) | `{"added":[Rule],"faults":[Rule]}` |
//! | `DELETE /_sim/faults` | | `{"faults":[]}` |
//! | `GET /_sim/clock` | | `{"now","started_at","time_scale"}` |
//! | `POST /_sim/clock/advance` | `{"seconds":F}` or `?seconds=F` | `{"now"}` |
//! | `POST /_sim/expire-tokens` | `?vendor=thingspace\|iotda\|obs\|iotaap` (all when absent) | `{"expired":[vendor]}` |
//!
//! Shapes:
//! - `Device` = `{"vendor","account","id","version","behaviour","token"?,"name"?,"type"?,"created_at","last_report_at","upgrades"}`
//!   where `version` is the device's version at the current virtual time and `behaviour` is
//!   `"succeeds"`, `"offline"`, `{"fails":{"code","reason"}}`, `{"slow":{"factor"}}` or
//!   `{"rejects":{"reason"}}`.
//! - `DeviceSpec` = `{"vendor","account","id","version"?,"behaviour"?,"token"?,"name"?,"type"?}`.
//! - `Rule` = a [`FaultRule`] (`{"id","vendor"?,"method"?,"path"?,"after","count"?,"rate"?,"action"}`,
//!   plus `"seen"` and `"fired"` counters in answers).
//! - `Call` = `{"vendor","method","route","status","count"}` with `route` the matched route
//!   template (`<unmatched>` for unknown paths) and `status` 0 for a connection reset by a fault.
//! - Times are RFC 3339 virtual times.
//!
//! Errors are `400 {"error":"..."}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::SignedDuration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::FaultRule;
use super::fleet::DeviceSpec;
use super::{SharedState, Vendor, VendorAdmin};

/// The admin routes.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/devices", get(list_devices).post(upsert_devices))
        .route("/_sim/calls", get(calls))
        .route("/_sim/reset-counts", post(reset_counts))
        .route(
            "/_sim/faults",
            get(faults).post(change_faults).delete(clear_faults),
        )
        .route("/_sim/clock", get(clock))
        .route("/_sim/clock/advance", post(advance_clock))
        .route("/_sim/expire-tokens", post(expire_tokens))
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

async fn state(State(sim): State<SharedState>) -> Json<Value> {
    let now = sim.now();
    Json(json!({
        "now": now,
        "started_at": sim.clock.started_at(),
        "time_scale": sim.clock.time_scale(),
        "seed": sim.config.seed,
        "devices": sim.fleet.devices(None, None, now),
        "faults": sim.faults.snapshot(),
        "calls": sim.calls.snapshot(),
        "thingspace": sim.thingspace.snapshot(&sim),
        "iotaap": sim.iotaap.snapshot(&sim),
        "iotda": sim.iotda.snapshot(&sim),
        "obs": sim.obs.snapshot(&sim),
    }))
}

#[derive(Debug, Deserialize)]
struct DeviceFilter {
    vendor: Option<Vendor>,
    account: Option<String>,
}

async fn list_devices(
    State(sim): State<SharedState>,
    Query(filter): Query<DeviceFilter>,
) -> Json<Value> {
    let devices = sim
        .fleet
        .devices(filter.vendor, filter.account.as_deref(), sim.now());
    Json(json!({ "devices": devices }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesBody {
    devices: Vec<DeviceSpec>,
}

async fn upsert_devices(
    State(sim): State<SharedState>,
    body: Result<Json<DevicesBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return bad_request(e.body_text()),
    };
    let now = sim.now();
    let devices: Vec<_> = body
        .devices
        .into_iter()
        .map(|spec| sim.fleet.upsert_device(spec, now))
        .collect();
    Json(json!({ "devices": devices })).into_response()
}

#[derive(Debug, Deserialize)]
struct VendorQuery {
    vendor: Option<String>,
}

async fn calls(State(sim): State<SharedState>, Query(query): Query<VendorQuery>) -> Response {
    let vendor = match query
        .vendor
        .as_deref()
        .map(str::parse::<Vendor>)
        .transpose()
    {
        Ok(vendor) => vendor,
        Err(e) => return bad_request(e.to_string()),
    };
    let calls: Vec<_> = sim
        .calls
        .snapshot()
        .into_iter()
        .filter(|c| vendor.is_none_or(|v| c.vendor == v))
        .collect();
    let total: u64 = calls.iter().map(|c| c.count).sum();
    Json(json!({ "calls": calls, "total": total })).into_response()
}

async fn reset_counts(State(sim): State<SharedState>) -> Json<Value> {
    sim.calls.reset();
    Json(json!({ "calls": [] }))
}

async fn faults(State(sim): State<SharedState>) -> Json<Value> {
    Json(json!({ "faults": sim.faults.snapshot() }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FaultsBody {
    clear: bool,
    remove: Vec<u64>,
    add: Vec<FaultRule>,
}

async fn change_faults(
    State(sim): State<SharedState>,
    body: Result<Json<FaultsBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(e) => return bad_request(e.body_text()),
    };
    if body.clear {
        sim.faults.clear();
    }
    for id in body.remove {
        sim.faults.remove(id);
    }
    let added = sim.faults.add(body.add);
    Json(json!({ "added": added, "faults": sim.faults.snapshot() })).into_response()
}

async fn clear_faults(State(sim): State<SharedState>) -> Json<Value> {
    sim.faults.clear();
    Json(json!({ "faults": [] }))
}

async fn clock(State(sim): State<SharedState>) -> Json<Value> {
    Json(json!({
        "now": sim.now(),
        "started_at": sim.clock.started_at(),
        "time_scale": sim.clock.time_scale(),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct AdvanceBody {
    seconds: Option<f64>,
}

async fn advance_clock(
    State(sim): State<SharedState>,
    Query(query): Query<AdvanceBody>,
    body: Option<Json<AdvanceBody>>,
) -> Response {
    let seconds = query.seconds.or_else(|| body.and_then(|Json(b)| b.seconds));
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return bad_request(
            "give a non-negative number of seconds as {\"seconds\":N} or ?seconds=N",
        );
    };
    let Ok(by) = SignedDuration::try_from_secs_f64(seconds) else {
        return bad_request("seconds out of range");
    };
    Json(json!({ "now": sim.clock.advance(by) })).into_response()
}

async fn expire_tokens(
    State(sim): State<SharedState>,
    Query(query): Query<VendorQuery>,
) -> Response {
    let vendors = match query.vendor.as_deref() {
        None | Some("") | Some("all") => Vendor::ALL.to_vec(),
        Some(name) => match name.parse::<Vendor>() {
            Ok(vendor) => vec![vendor],
            Err(e) => return bad_request(e.to_string()),
        },
    };
    for vendor in &vendors {
        match vendor {
            Vendor::ThingSpace => sim.thingspace.expire_tokens(&sim),
            Vendor::Iotaap => sim.iotaap.expire_tokens(&sim),
            Vendor::Iotda => sim.iotda.expire_tokens(&sim),
            Vendor::Obs => sim.obs.expire_tokens(&sim),
        }
    }
    Json(json!({ "expired": vendors })).into_response()
}
