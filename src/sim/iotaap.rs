//! IoTaaP simulator, as in `vendors/iotaap.md`: management API and device-facing OTA paths on
//! one host (client base URL `http://HOST/v1`).
//!
//! | route | auth | notes |
//! |---|---|---|
//! | `POST /v1/auth/login` | no | `{"email","password","rememberMe"?}` → `{"user":{"id","role"},"token":JWT}` (HS256, 30 days); 401 `{"error":"Login or password is wrong"}` |
//! | `GET /v1/devices` | yes | DataTables query `search_value` (name substring), `offset`, `limit`, `draw`, `order_dir` (by `created_at`) → `{"devices","recordsTotal","recordsFiltered","draw"}` |
//! | `POST /v1/devices` | yes | `{"name"?}` → 201 device |
//! | `GET` / `PUT` / `DELETE /v1/devices/{id}` | yes | 404 `{"message":"No such device"}` |
//! | `POST /v1/ota/device` | yes | multipart `firmware`, `device`, `token`, `version` (all required) → 201 `{"message":"Firmware successfully deployed"}` |
//! | `GET /v1/ota/device` | yes | latest record per device; `search_value` filters `path`; ordered by `last_updated` → `{"otas","recordsTotal","recordsFiltered","draw"}` |
//! | `GET /v1/ota/device/latest/{deviceId}` | no | `{"ver"}`; 404 `{"message":"No such device","error"}` |
//! | `GET /v1/ota/device/download/{deviceId}{deviceToken}` | no | the firmware bytes, `Content-Length` set |
//!
//! A missing, invalid, expired or revoked JWT gets 401 with the plain-text body
//! `Unauthorized`; unknown routes get Express's HTML 404. A token that does not match the
//! device on upload gets 400 `{"message":"Device token is not valid"}` (undocumented upstream).
//!
//! Devices are fleet devices with `vendor: iotaap` and `account` = the owner's user id. After
//! a deploy the fleet decides when the device polls `latest`, downloads and flashes
//! (the upgrade's `Queued` phase is the wait for its next poll): the device's version, and its
//! `last_contact`, change when it reports back. A device already running the deployed version
//! does not flash. The admin state shows each device's running version and deploy progress.

// Handlers return early with a finished error response; boxing it would gain nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::IotaapUser;
use super::fleet::{DeviceKey, DeviceSpec, DeviceView, UpgradeId, UpgradeRequest, hash_parts};
use super::multipart::{FileSink, discard, read_form};
use super::spool::SpooledFile;
use super::{SharedState, SimConfig, SimState, Vendor, VendorAdmin, vendor_error};

#[derive(Debug, Clone)]
struct OtaRecord {
    id: String,
    device: String,
    owner: String,
    path: String,
    version: String,
    last_updated: Timestamp,
    file: SpooledFile,
    upgrade: UpgradeId,
}

impl OtaRecord {
    fn to_json(&self) -> Value {
        json!({
            "_id": self.id,
            "device": self.device,
            "__v": 0,
            "last_updated": iso_millis(self.last_updated),
            "owner": self.owner,
            "path": self.path,
            "version": self.version,
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Latest OTA record per device id.
    otas: HashMap<String, OtaRecord>,
    /// Tokens issued since the last expiry (by signature).
    issued: std::collections::HashSet<String>,
    /// Tokens invalidated by `expire_tokens`.
    revoked: std::collections::HashSet<String>,
    next_object: u64,
}

/// IoTaaP state: OTA records, issued JWTs and the signing key.
pub struct IotaapState {
    inner: Mutex<Inner>,
    jwt_key: Vec<u8>,
    seed: u64,
}

impl std::fmt::Debug for IotaapState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IotaapState").finish_non_exhaustive()
    }
}

fn iso_millis(t: Timestamp) -> String {
    format!("{t:.3}")
}

impl IotaapState {
    /// Builds the initial state; the JWT key comes from the config or is random.
    pub fn new(config: &SimConfig) -> Self {
        let jwt_key = match &config.iotaap.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => uuid::Uuid::new_v4().as_bytes().to_vec(),
        };
        Self {
            inner: Mutex::new(Inner::default()),
            jwt_key,
            seed: config.seed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sign(&self, data: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.jwt_key).expect("HMAC takes any key length");
        mac.update(data.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Issues an HS256 JWT `{"id","role","iat","exp"}`.
    fn issue_token(&self, user: &IotaapUser, now: Timestamp, lifetime_secs: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let iat = now.as_second();
        let claims = json!({
            "id": user.id,
            "role": user.role,
            "iat": iat,
            "exp": iat.saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX)),
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature = self.sign(&signing_input);
        self.lock().issued.insert(signature.clone());
        format!("{signing_input}.{signature}")
    }

    /// The user id of a valid, unexpired, unrevoked token.
    fn verify_token(&self, token: &str, now: Timestamp) -> Option<String> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.jwt_key).ok()?;
        mac.update(format!("{header}.{payload}").as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?)
            .ok()?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "HS256" {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        if claims["exp"].as_i64()? <= now.as_second() || self.lock().revoked.contains(signature) {
            return None;
        }
        claims["id"].as_str().map(str::to_owned)
    }

    /// A fresh 24-hex ObjectId: 4 bytes of virtual seconds, 8 bytes from the seed and a counter.
    fn object_id(&self, now: Timestamp) -> String {
        let n = {
            let mut inner = self.lock();
            inner.next_object += 1;
            inner.next_object
        };
        let secs = u32::try_from(now.as_second().max(0)).unwrap_or(u32::MAX);
        format!(
            "{secs:08x}{:016x}",
            hash_parts(self.seed, &["objectid", &n.to_string()])
        )
    }
}

impl VendorAdmin for IotaapState {
    fn snapshot(&self, sim: &SimState) -> Value {
        let now = sim.now();
        let inner = self.lock();
        let devices: Vec<Value> = sim
            .fleet
            .devices(Some(Vendor::Iotaap), None, now)
            .into_iter()
            .map(|d| {
                let ota = inner.otas.get(&d.id);
                json!({
                    "id": d.id,
                    "owner": d.account,
                    "name": d.name,
                    "version": d.version,
                    "deployedVersion": ota.map(|o| o.version.clone()),
                    "progress": ota.map(|o| sim.fleet.progress(o.upgrade, now)),
                    "last_contact": d.last_report_at.map(iso_millis),
                })
            })
            .collect();
        let mut otas: Vec<&OtaRecord> = inner.otas.values().collect();
        otas.sort_by(|a, b| a.device.cmp(&b.device));
        json!({
            "users": sim.config.iotaap.users.iter().map(|u| json!({"id": u.id, "email": u.email, "role": u.role})).collect::<Vec<_>>(),
            "devices": devices,
            "otas": otas.iter().map(|o| {
                let mut value = o.to_json();
                value["size"] = o.file.digest.size.into();
                value["sha256"] = o.file.digest.sha256.clone().into();
                value
            }).collect::<Vec<_>>(),
        })
    }

    fn expire_tokens(&self, _sim: &SimState) {
        let mut inner = self.lock();
        let issued = std::mem::take(&mut inner.issued);
        inner.revoked.extend(issued);
    }
}

/// The IoTaaP routes.
pub fn routes(config: &SimConfig) -> Router<SharedState> {
    let upload_limit = usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/devices", get(list_devices).post(create_device))
        .route(
            "/v1/devices/{id}",
            get(get_device).put(update_device).delete(delete_device),
        )
        .route(
            "/v1/ota/device",
            post(deploy)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(list_otas),
        )
        .route("/v1/ota/device/latest/{device}", get(latest_version))
        .route("/v1/ota/device/download/{device_and_token}", get(download))
}

fn message(status: StatusCode, text: &str) -> Response {
    vendor_error(Vendor::Iotaap, status, None, text)
}

fn message_with_error(status: StatusCode, text: &str, error: &str) -> Response {
    (status, Json(json!({"message": text, "error": error}))).into_response()
}

fn unauthorized() -> Response {
    vendor_error(
        Vendor::Iotaap,
        StatusCode::UNAUTHORIZED,
        None,
        "Unauthorized",
    )
}

/// The caller's user id from `Authorization: Bearer <JWT>`.
fn authenticate(sim: &SimState, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(unauthorized)?;
    let user = sim
        .iotaap
        .verify_token(token, sim.now())
        .ok_or_else(unauthorized)?;
    if sim.config.iotaap.users.iter().any(|u| u.id == user) {
        Ok(user)
    } else {
        Err(unauthorized())
    }
}

fn is_object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Ok(json!({}));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: HashMap<String, String> = serde_urlencoded_pairs(body);
        return Ok(json!(pairs));
    }
    if !content_type.is_empty() && !content_type.contains("json") {
        return Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported content type; send application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        message_with_error(StatusCode::BAD_REQUEST, "Invalid JSON body", &e.to_string())
    })
}

fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (!k.is_empty()).then(|| (decode(k), decode(v)))
        })
        .collect()
}

async fn login(State(sim): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match parse_json_body(&headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let email = body["email"].as_str().unwrap_or_default();
    let password = body["password"].as_str().unwrap_or_default();
    let user = sim.config.iotaap.users.iter().find(|u| {
        u.email.eq_ignore_ascii_case(email)
            && !password.is_empty()
            && u.password.expose() == password
    });
    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Login or password is wrong"})),
        )
            .into_response();
    };
    let token = sim
        .iotaap
        .issue_token(user, sim.now(), sim.config.iotaap.token_lifetime_secs);
    Json(json!({"user": {"id": user.id, "role": user.role}, "token": token})).into_response()
}

/// DataTables-style list parameters.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    search_value: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
    draw: Option<String>,
    order_dir: Option<String>,
}

impl ListQuery {
    /// `(offset, limit)`, or the parse error text.
    fn window(&self) -> Result<(usize, Option<usize>), String> {
        let parse = |v: &Option<String>, name: &str| -> Result<Option<usize>, String> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s.parse::<usize>().map(Some).map_err(|_| {
                    format!("CastError: Cast to number failed for value \"{s}\" at path \"{name}\"")
                }),
            }
        };
        Ok((
            parse(&self.offset, "offset")?.unwrap_or(0),
            parse(&self.limit, "limit")?,
        ))
    }

    fn descending(&self) -> bool {
        self.order_dir
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("desc"))
    }

    fn draw(&self) -> Value {
        self.draw.clone().map_or(Value::Null, Value::from)
    }
}

fn device_json(sim: &SimState, device: &DeviceView) -> Value {
    let mut value = json!({
        "_id": device.id,
        "type": device.device_type.clone().unwrap_or_else(|| "ESP32".into()),
        "name": device.name.clone().unwrap_or_else(|| device.id.clone()),
        "token": device.token,
        "last_contact": device.last_report_at.map(iso_millis),
        "created_at": iso_millis(device.created_at),
        "owner": device.account,
        "__v": 0,
    });
    if sim.config.iotaap.report_fw_version {
        value["fw_version"] = device.version.clone().into();
    }
    value
}

async fn list_devices(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (offset, limit) = match query.window() {
        Ok(window) => window,
        Err(e) => {
            return message_with_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error when getting devices",
                &e,
            );
        }
    };
    let mut devices = sim
        .fleet
        .devices(Some(Vendor::Iotaap), Some(&user), sim.now());
    let total = devices.len();
    if let Some(search) = query.search_value.as_deref().filter(|s| !s.is_empty()) {
        let search = search.to_lowercase();
        devices.retain(|d| {
            d.name
                .as_deref()
                .unwrap_or(&d.id)
                .to_lowercase()
                .contains(&search)
        });
    }
    let filtered = devices.len();
    devices.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if query.descending() {
        devices.reverse();
    }
    let page: Vec<Value> = devices
        .iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|d| device_json(&sim, d))
        .collect();
    Json(json!({
        "devices": page,
        "recordsTotal": total,
        "recordsFiltered": filtered,
        "draw": query.draw(),
    }))
    .into_response()
}

fn owned_device(sim: &SimState, user: &str, id: &str) -> Option<DeviceView> {
    if !is_object_id(id) {
        return None;
    }
    sim.fleet
        .device(&DeviceKey::new(Vendor::Iotaap, user, id), sim.now())
}

async fn get_device(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    match owned_device(&sim, &user, &id) {
        Some(device) => Json(device_json(&sim, &device)).into_response(),
        None => message(StatusCode::NOT_FOUND, "No such device"),
    }
}

fn random_name(sim: &SimState, salt: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = hash_parts(sim.config.seed, &["name", salt]);
    (0..10)
        .map(|_| {
            state = super::fleet::splitmix64(state);
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

async fn create_device(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let body = match parse_json_body(&headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let now = sim.now();
    let id = sim.iotaap.object_id(now);
    let name = body["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .map_or_else(|| random_name(&sim, &id), str::to_owned);
    let device = sim.fleet.upsert_device(
        DeviceSpec {
            vendor: Vendor::Iotaap,
            account: user,
            id,
            version: None,
            behaviour: None,
            token: None,
            name: Some(name),
            device_type: None,
        },
        now,
    );
    (StatusCode::CREATED, Json(device_json(&sim, &device))).into_response()
}

async fn update_device(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let body = match parse_json_body(&headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(device) = owned_device(&sim, &user, &id) else {
        return message(StatusCode::NOT_FOUND, "No such device");
    };
    let name = body["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .map(str::to_owned);
    let device = sim.fleet.upsert_device(
        DeviceSpec {
            vendor: Vendor::Iotaap,
            account: device.account,
            id: device.id,
            version: None,
            behaviour: None,
            token: None,
            name,
            device_type: None,
        },
        sim.now(),
    );
    Json(device_json(&sim, &device)).into_response()
}

async fn delete_device(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Some(device) = owned_device(&sim, &user, &id) else {
        return message(StatusCode::NOT_FOUND, "No such device");
    };
    sim.fleet.remove_device(&device.key());
    let removed = sim.iotaap.lock().otas.remove(&device.id);
    if let Some(record) = removed {
        tokio::fs::remove_file(&record.file.path).await.ok();
    }
    Json(json!({"message": "Device successfully removed"})).into_response()
}

async fn deploy(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let limit = sim.config.max_upload_bytes;
    let form = match read_form(multipart, "firmware", FileSink::Spool(&sim.spool), limit).await {
        Ok(form) => form,
        Err(e) => {
            let status = e.status();
            let text = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                "No file uploaded"
            } else {
                "Error when uploading firmware file"
            };
            let status = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                StatusCode::BAD_REQUEST
            } else {
                status
            };
            return message_with_error(status, text, &e.to_string());
        }
    };
    for field in ["device", "token", "version"] {
        if form.text(field).is_none() {
            discard(form.file).await;
            return message(
                StatusCode::BAD_REQUEST,
                &format!("{field} is a mandatory field"),
            );
        }
    }
    let device_id = form.text("device").unwrap_or_default().to_owned();
    let token = form.text("token").unwrap_or_default().to_owned();
    let version = form.text("version").unwrap_or_default().to_owned();
    let Some(file) = form.file.clone().filter(|f| f.digest.size > 0) else {
        discard(form.file).await;
        return message(StatusCode::BAD_REQUEST, "No file uploaded");
    };
    if !is_object_id(&device_id) {
        discard(Some(file)).await;
        return message(StatusCode::BAD_REQUEST, "Device ID is not valid");
    }
    let Some(device) = owned_device(&sim, &user, &device_id) else {
        discard(Some(file)).await;
        return message(StatusCode::NOT_FOUND, "No such device");
    };
    if device.token.as_deref() != Some(token.as_str()) {
        discard(Some(file)).await;
        return message(StatusCode::BAD_REQUEST, "Device token is not valid");
    }
    let Some(spooled) = file.spooled else {
        return message_with_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error when uploading firmware file",
            "upload was not stored",
        );
    };
    let now = sim.now();
    let upgrade = sim.fleet.start_upgrade(UpgradeRequest {
        key: device.key(),
        target_version: version.clone(),
        starts_at: now,
        deadline: None,
    });
    let record = OtaRecord {
        id: sim.iotaap.object_id(now),
        device: device_id.clone(),
        owner: user,
        path: format!("ota/device/{device_id}{token}/firmware.bin"),
        version,
        last_updated: now,
        file: spooled,
        upgrade,
    };
    let previous = sim.iotaap.lock().otas.insert(device_id, record);
    if let Some(previous) = previous {
        sim.fleet.cancel_upgrade(previous.upgrade, now);
        tokio::fs::remove_file(&previous.file.path).await.ok();
    }
    (
        StatusCode::CREATED,
        Json(json!({"message": "Firmware successfully deployed"})),
    )
        .into_response()
}

async fn list_otas(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let user = match authenticate(&sim, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (offset, limit) = match query.window() {
        Ok(window) => window,
        Err(e) => {
            return message_with_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error when getting device OTA's.",
                &e,
            );
        }
    };
    let inner = sim.iotaap.lock();
    let mut otas: Vec<&OtaRecord> = inner.otas.values().filter(|o| o.owner == user).collect();
    let total = otas.len();
    if let Some(search) = query.search_value.as_deref().filter(|s| !s.is_empty()) {
        otas.retain(|o| o.path.contains(search));
    }
    let filtered = otas.len();
    otas.sort_by(|a, b| (a.last_updated, &a.id).cmp(&(b.last_updated, &b.id)));
    if query.descending() {
        otas.reverse();
    }
    let page: Vec<Value> = otas
        .iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(|o| o.to_json())
        .collect();
    Json(json!({
        "otas": page,
        "recordsTotal": total,
        "recordsFiltered": filtered,
        "draw": query.draw(),
    }))
    .into_response()
}

async fn latest_version(State(sim): State<SharedState>, Path(device): Path<String>) -> Response {
    let version = sim
        .iotaap
        .lock()
        .otas
        .get(&device)
        .map(|o| o.version.clone());
    match version {
        Some(ver) => Json(json!({"ver": ver})).into_response(),
        None => message_with_error(
            StatusCode::NOT_FOUND,
            "No such device",
            "No firmware for this device",
        ),
    }
}

async fn download(
    State(sim): State<SharedState>,
    Path(device_and_token): Path<String>,
) -> Response {
    let not_found = || {
        message_with_error(
            StatusCode::NOT_FOUND,
            "No such device",
            "No firmware for this device",
        )
    };
    let (Some(device), Some(token)) = (device_and_token.get(..24), device_and_token.get(24..))
    else {
        return not_found();
    };
    let record = sim.iotaap.lock().otas.get(device).cloned();
    let Some(record) = record else {
        return not_found();
    };
    let owner_device = sim.fleet.device(
        &DeviceKey::new(Vendor::Iotaap, record.owner.clone(), device),
        sim.now(),
    );
    if owner_device.and_then(|d| d.token).as_deref() != Some(token) {
        return not_found();
    }
    let file = match tokio::fs::File::open(&record.file.path).await {
        Ok(file) => file,
        Err(_) => return not_found(),
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, record.file.digest.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"firmware.bin\"".to_owned(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_round_trips_expires_and_is_revocable() {
        let config = SimConfig::default();
        let state = IotaapState::new(&config);
        let user = &config.iotaap.users[0];
        let now: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        let token = state.issue_token(user, now, 30 * 24 * 3600);
        assert_eq!(
            state.verify_token(&token, now).as_deref(),
            Some(user.id.as_str())
        );
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            2_592_000
        );
        let later = now + jiff::SignedDuration::from_hours(30 * 24);
        assert_eq!(
            state.verify_token(&token, later),
            None,
            "expired after 30 days"
        );
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(state.verify_token(&tampered, now), None);
        state
            .lock()
            .revoked
            .insert(token.rsplit('.').next().unwrap().to_owned());
        assert_eq!(state.verify_token(&token, now), None, "revoked");
    }

    #[test]
    fn millisecond_timestamps() {
        let t: Timestamp = "2020-01-21T22:59:29.94Z".parse().unwrap();
        assert_eq!(iso_millis(t), "2020-01-21T22:59:29.940Z");
    }
}
