//! Verizon ThingSpace simulator: OAuth token, M2M session and Software Management (FOTA v2)
//! files and campaigns, as in `vendors/thingspace.md` and `vendors/sdks.md` §4.
//!
//! # Routes (client base URL `http://HOST/api`)
//!
//! | route | notes |
//! |---|---|
//! | `POST /api/ts/v1/oauth2/token` | Basic auth, `grant_type=client_credentials`; the same token comes back until it expires, `expires_in` counting down |
//! | `POST /api/ts/v1/oauth2/revoke` | form `token=`; 200, empty body, `RevokedAccessToken` header |
//! | `POST /api/m2m/v1/session/login` | Bearer; `{"username","password"}` → `{"sessionToken"}`; 5 wrong passwords in a row lock the user |
//! | `POST /api/m2m/v1/session/logout` | Bearer + `VZ-M2M-Token` → `{"sessionToken"}` |
//! | `PUT /api/m2m/v1/session/password/actions/reset` | `{"oldPassword"}` → `{"newPassword"}` |
//! | `POST /api/fota/v2/files/{acc}` | multipart `fileupload`, `fileVersion`, `make`, `model`, `localTargetPath` |
//! | `GET /api/fota/v2/files/{acc}?distributionType=HTTP` or `.../files/{acc}/HTTP` | bare array or `{"AvailableFilesResponse":[...]}` (config `file_list_shape`) |
//! | `POST /api/fota/v2/campaigns/files/{acc}` | file campaign |
//! | `POST /api/fota/v2/campaigns/software/{acc}`, `POST /api/fota/v2/campaigns/{acc}` | software campaign |
//! | `GET` / `DELETE` / `PUT /api/fota/v2/campaigns/{acc}/{id}` | get / cancel-or-abort / add-remove devices (`{"Type","deviceList"}` or `{"addOrRemoveDevice":[{"type","deviceList"}]}`) |
//! | `PUT /api/fota/v2/campaigns/{acc}/{id}/dates` | change dates and windows |
//! | `GET /api/fota/v2/reports/{acc}/campaigns/{id}/devices?lastSeenDeviceId=0` | per-device status, pages of 1000 |
//! | `GET /api/fota/v2/reports/{acc}/campaigns?campaignStatus=` | campaign history |
//! | `GET /api/fota/v2/reports/{acc}/devices/{deviceId}` | a device's upgrade history |
//! | `GET /api/fota/v2/software/{acc}?distributionType=HTTP` | configured software |
//!
//! Every FOTA and M2M call needs `Authorization: Bearer`; FOTA calls also need a live
//! `VZ-M2M-Token` session of the account in the path (each use refreshes its 20-minute idle
//! timer).
//!
//! Token lifetime (`token_lifetime_secs`, 1 h) and session idle timeout
//! (`session_idle_secs`, 20 min) run on the virtual clock, like everything else: with a large
//! `--time-scale` clients must expect to re-authenticate sooner in real time.
//!
//! # Errors
//!
//! - Bearer missing: 401 `{"fault":{"code":900902,"message":"Missing Credentials",...}}`;
//!   invalid or expired: 401 fault `900901` "Invalid Credentials".
//! - Token endpoint: `{"error":"invalid_client"|"invalid_request"|"unsupported_grant_type","error_description"}`
//!   (401 for bad client credentials, 400 otherwise).
//! - Everything else: 400 `{"errorCode","errorMessage"}`. Session codes (inferred; clients
//!   should match on the suffix): `UnifiedWebService.REQUEST_FAILED.SessionToken.Missing`,
//!   `UnifiedWebService.REQUEST_FAILED.SessionToken.Expired` ("The Session has expired."),
//!   `UnifiedWebService.REQUEST_FAILED.UserNamePassword.Invalid`,
//!   `UnifiedWebService.REQUEST_FAILED.User.Locked`. FOTA validation uses `INVALID_PARAMETER`
//!   with the documented messages ("Device list is empty", "Invalid uuid",
//!   "Invalid upgradeId" for an unknown campaign, "Inactive account" for an account the
//!   session does not belong to, "Input binding error" for unreadable bodies).
//! - Uploads: 413 over `max_upload_bytes`, 415 when not multipart, 400 for malformed bodies.
//!
//! # Campaign lifecycle (virtual clock)
//!
//! `CampaignRequestPending` for `validation_delay_secs`, then `CampaignRequestFailed` (unknown
//! file/software, start date in the past) or `CampaignQueued` (spelling configurable:
//! `queued_status`), `CampaignScheduled` from 00:00 UTC of `startDate`, `CampaignEnded` when
//! every device finished or at the end of `endDate` (UTC). `DELETE` before the start cancels
//! (`CampaignCancelled`), after it aborts (`CampaignAborted`); finished devices stay upgraded.
//!
//! Devices: `Accepted` (or `DeviceRejected`) at validation, `UpgradePending` once the campaign
//! runs (devices start at the first hour inside a `downloadTimeWindowList` window, UTC), then
//! `UpgradeSuccess` (`DownloadInstallSucceeded`) or `UpgradeFailed` (`RovaClient...` reasons;
//! `RovaClientDidNotReportStatus` when the campaign ended first), or `CampaignCancelled` /
//! `CampaignAborted`. A device already on the target version reports `UpgradeSuccess` as soon
//! as the campaign runs. Software campaigns reject devices whose version is neither
//! `softwareFrom` nor `softwareTo` ("Current device software version does not meet software
//! prerequisites.").

// Handlers return early with a finished error response; boxing it would gain nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json};
use base64::Engine;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::fleet::{
    DeviceKey, DeviceProgress, PlannedOutcome, UpgradeId, UpgradeInfo, UpgradeRequest,
};
use super::multipart::{FileSink, read_form};
use super::{SharedState, SimConfig, SimState, Vendor, VendorAdmin, vendor_error};

/// Page size of device reports and campaign history.
pub const PAGE_SIZE: usize = 1000;
/// Largest JSON body accepted (campaign device lists).
const JSON_BODY_LIMIT: usize = 16 * 1024 * 1024;

const SESSION_MISSING: &str = "UnifiedWebService.REQUEST_FAILED.SessionToken.Missing";
const SESSION_EXPIRED: &str = "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired";
const LOGIN_INVALID: &str = "UnifiedWebService.REQUEST_FAILED.UserNamePassword.Invalid";
const USER_LOCKED: &str = "UnifiedWebService.REQUEST_FAILED.User.Locked";
const INVALID_PARAMETER: &str = "INVALID_PARAMETER";

/// Campaign states (v2), spelled as ThingSpace does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    RequestPending,
    RequestFailed,
    Queued,
    Scheduled,
    Cancelled,
    Aborted,
    Ended,
}

impl CampaignStatus {
    /// The wire spelling; `queued` is the configured spelling of the queued state.
    pub fn as_str(self, queued: &str) -> String {
        match self {
            Self::RequestPending => "CampaignRequestPending".into(),
            Self::RequestFailed => "CampaignRequestFailed".into(),
            Self::Queued => queued.into(),
            Self::Scheduled => "CampaignScheduled".into(),
            Self::Cancelled => "CampaignCancelled".into(),
            Self::Aborted => "CampaignAborted".into(),
            Self::Ended => "CampaignEnded".into(),
        }
    }

    fn matches(self, name: &str, queued: &str) -> bool {
        let spelled = self.as_str(queued);
        spelled.eq_ignore_ascii_case(name)
            || (self == Self::Queued
                && ["CampaignQueued", "CampaignRequestQueued"]
                    .iter()
                    .any(|q| q.eq_ignore_ascii_case(name)))
    }
}

#[derive(Debug)]
struct AccessToken {
    client_id: String,
    expires_at: Timestamp,
    scope: String,
}

#[derive(Debug)]
struct Session {
    account: String,
    username: String,
    last_used: Timestamp,
}

#[derive(Debug, Default)]
struct LoginState {
    failures: u32,
    locked: bool,
    password_override: Option<String>,
}

#[derive(Debug, Clone)]
struct StoredFile {
    file_name: String,
    file_version: String,
    launch_date: String,
    make: String,
    model: String,
    local_target_path: String,
    size: u64,
    sha256: String,
    uploaded_at: Timestamp,
}

impl StoredFile {
    fn to_json(&self, with_launch_date: bool) -> Value {
        let mut value = json!({
            "fileName": self.file_name,
            "fileVersion": self.file_version,
            "releaseNote": "",
            "make": self.make,
            "model": self.model,
            "localTargetPath": self.local_target_path,
            "distributionType": "HTTP",
            "devicePlatformId": "IoT",
        });
        if with_launch_date {
            value["launchDate"] = self.launch_date.clone().into();
        }
        value
    }
}

#[derive(Debug, Clone)]
enum Target {
    File {
        name: String,
        version: String,
    },
    Software {
        name: String,
        from: String,
        to: String,
    },
}

impl Target {
    fn version(&self) -> &str {
        match self {
            Self::File { version, .. } => version,
            Self::Software { to, .. } => to,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::File { name, .. } | Self::Software { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancellation {
    Cancelled,
    Aborted,
}

#[derive(Debug, Clone)]
struct CampaignDevice {
    id: String,
    upgrade: Option<UpgradeId>,
    /// Rejected at validation (software prerequisites) with this reason.
    rejection: Option<String>,
}

#[derive(Debug, Clone)]
struct Dates {
    start: Date,
    end: Date,
    download_after: Option<String>,
    download_windows: Value,
    install_after: Option<String>,
    install_windows: Value,
    windows: Vec<(u8, u8)>,
}

#[derive(Debug, Clone)]
struct Campaign {
    id: String,
    account: String,
    name: Option<String>,
    target: Target,
    distribution_type: String,
    make: String,
    model: String,
    dates: Dates,
    created_at: Timestamp,
    validated_at: Timestamp,
    /// Why asynchronous validation fails, if it does.
    failure: Option<String>,
    devices: BTreeMap<DeviceOrder, CampaignDevice>,
    cancelled: Option<(Timestamp, Cancellation)>,
}

type DeviceOrder = (u8, u128, String);

/// Sort key for device ids: numeric ids (IMEIs) by value, then other ids by text.
fn device_order(id: &str) -> DeviceOrder {
    match id.parse::<u128>() {
        Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => (0, n, id.to_owned()),
        _ => (1, 0, id.to_owned()),
    }
}

fn start_of(date: Date) -> Timestamp {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

fn today(now: Timestamp) -> Date {
    now.to_zoned(jiff::tz::TimeZone::UTC).date()
}

fn parse_date(text: &str) -> Option<Date> {
    let text = text.trim();
    let date_part = text
        .get(..10)
        .filter(|_| text.len() == 10 || text.as_bytes().get(10) == Some(&b'T'))?;
    date_part.parse().ok()
}

/// The first instant at or after `from` whose UTC hour lies in one of `windows`
/// (`start <= hour < end`); `from` itself when there are no windows.
fn next_window_opening(from: Timestamp, windows: &[(u8, u8)]) -> Timestamp {
    if windows.is_empty() {
        return from;
    }
    let in_window = |t: Timestamp| {
        let hour = t.to_zoned(jiff::tz::TimeZone::UTC).hour();
        windows
            .iter()
            .any(|(s, e)| i16::from(*s) <= i16::from(hour) && i16::from(hour) < i16::from(*e))
    };
    if in_window(from) {
        return from;
    }
    let secs = from.as_second();
    let mut hour_start = secs - secs.rem_euclid(3600);
    for _ in 0..48 {
        hour_start += 3600;
        if let Ok(t) = Timestamp::from_second(hour_start)
            && in_window(t)
        {
            return t;
        }
    }
    from
}

impl Campaign {
    fn scheduled_at(&self) -> Timestamp {
        self.validated_at.max(start_of(self.dates.start))
    }

    fn end_boundary(&self) -> Timestamp {
        start_of(self.dates.end.tomorrow().unwrap_or(self.dates.end))
    }

    fn device_start(&self) -> Timestamp {
        let mut base = self.scheduled_at();
        if let Some(after) = self.dates.download_after.as_deref().and_then(parse_date) {
            base = base.max(start_of(after));
        }
        next_window_opening(base, &self.dates.windows).min(self.end_boundary())
    }

    /// When every device has settled (or the end boundary, whichever is first).
    fn ends_at(&self, upgrades: &HashMap<UpgradeId, UpgradeInfo>) -> Timestamp {
        let scheduled = self.scheduled_at();
        let mut latest = scheduled;
        for device in self.devices.values() {
            if let Some(id) = device.upgrade {
                match upgrades.get(&id).and_then(UpgradeInfo::settles_at) {
                    Some(settled) => latest = latest.max(settled),
                    None => return self.end_boundary(),
                }
            }
        }
        latest.min(self.end_boundary())
    }

    fn status(&self, now: Timestamp, upgrades: &HashMap<UpgradeId, UpgradeInfo>) -> CampaignStatus {
        if let Some((at, how)) = self.cancelled
            && now >= at
        {
            return match how {
                Cancellation::Cancelled => CampaignStatus::Cancelled,
                Cancellation::Aborted => CampaignStatus::Aborted,
            };
        }
        if now < self.validated_at {
            return CampaignStatus::RequestPending;
        }
        if self.failure.is_some() {
            return CampaignStatus::RequestFailed;
        }
        if now < self.scheduled_at() {
            return CampaignStatus::Queued;
        }
        if now >= self.ends_at(upgrades) {
            return CampaignStatus::Ended;
        }
        CampaignStatus::Scheduled
    }

    /// `(status, resultReason)` of one device at `now`.
    fn device_status(
        &self,
        device: &CampaignDevice,
        now: Timestamp,
        upgrades: &HashMap<UpgradeId, UpgradeInfo>,
    ) -> (&'static str, String) {
        let cancel_label = |how: Cancellation| match how {
            Cancellation::Cancelled => {
                ("CampaignCancelled", "Campaign canceled by user.".to_owned())
            }
            Cancellation::Aborted => ("CampaignAborted", "Campaign aborted by user.".to_owned()),
        };
        if let Some((at, how)) = self.cancelled
            && now >= at
            && at < self.validated_at
        {
            return cancel_label(how);
        }
        if now < self.validated_at {
            return ("Accepted", String::new());
        }
        if let Some(failure) = &self.failure {
            return ("DeviceRejected", failure.clone());
        }
        if let Some(reason) = &device.rejection {
            return ("DeviceRejected", reason.clone());
        }
        let Some(upgrade) = device.upgrade.and_then(|id| upgrades.get(&id)) else {
            return ("DeviceRejected", "Device not found.".into());
        };
        if let PlannedOutcome::Reject { reason } = &upgrade.planned {
            return (
                "DeviceRejected",
                reason
                    .clone()
                    .unwrap_or_else(|| "Device not eligible for service (not FOTA capable)".into()),
            );
        }
        let progress = upgrade.progress_at(now);
        match progress {
            DeviceProgress::Cancelled => match self.cancelled {
                Some((_, how)) => cancel_label(how),
                None => ("CampaignCancelled", "Campaign canceled by user.".into()),
            },
            _ if now < self.scheduled_at() => ("Accepted", String::new()),
            DeviceProgress::Queued
            | DeviceProgress::Downloading { .. }
            | DeviceProgress::Offline => ("UpgradePending", String::new()),
            DeviceProgress::Installing => {
                ("UpgradePending", "RovaClientDownloadNotInstalledYet".into())
            }
            DeviceProgress::Succeeded { .. } => {
                ("UpgradeSuccess", "DownloadInstallSucceeded".into())
            }
            DeviceProgress::Failed { reason, .. } => (
                "UpgradeFailed",
                reason.unwrap_or_else(|| "RovaClientDownloadedInstallFailed".into()),
            ),
            DeviceProgress::TimedOut => ("UpgradeFailed", "RovaClientDidNotReportStatus".into()),
            DeviceProgress::Rejected { reason } => (
                "DeviceRejected",
                reason
                    .unwrap_or_else(|| "Device not eligible for service (not FOTA capable)".into()),
            ),
        }
    }

    fn to_json(&self, status: &str) -> Value {
        let mut object = Map::new();
        object.insert("id".into(), self.id.clone().into());
        object.insert("accountName".into(), self.account.clone().into());
        if let Some(name) = &self.name {
            object.insert("campaignName".into(), name.clone().into());
        }
        match &self.target {
            Target::File { name, version } => {
                object.insert("fileName".into(), name.clone().into());
                object.insert("fileVersion".into(), version.clone().into());
            }
            Target::Software { name, from, to } => {
                object.insert("softwareName".into(), name.clone().into());
                object.insert("softwareFrom".into(), from.clone().into());
                object.insert("softwareTo".into(), to.clone().into());
            }
        }
        object.insert(
            "distributionType".into(),
            self.distribution_type.clone().into(),
        );
        object.insert("make".into(), self.make.clone().into());
        object.insert("model".into(), self.model.clone().into());
        object.insert("startDate".into(), self.dates.start.to_string().into());
        object.insert("endDate".into(), self.dates.end.to_string().into());
        if let Some(d) = &self.dates.download_after {
            object.insert("downloadAfterDate".into(), d.clone().into());
        }
        if !self.dates.download_windows.is_null() {
            object.insert(
                "downloadTimeWindowList".into(),
                self.dates.download_windows.clone(),
            );
        }
        if let Some(d) = &self.dates.install_after {
            object.insert("installAfterDate".into(), d.clone().into());
        }
        if !self.dates.install_windows.is_null() {
            object.insert(
                "installTimeWindowList".into(),
                self.dates.install_windows.clone(),
            );
        }
        object.insert("status".into(), status.into());
        Value::Object(object)
    }
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<String, AccessToken>,
    sessions: HashMap<String, Session>,
    logins: HashMap<String, LoginState>,
    files: BTreeMap<String, Vec<StoredFile>>,
    campaigns: BTreeMap<String, Campaign>,
}

/// ThingSpace state: tokens, sessions, files and campaigns.
#[derive(Debug, Default)]
pub struct ThingSpaceState {
    inner: Mutex<Inner>,
}

impl ThingSpaceState {
    /// Builds the initial state.
    pub fn new(_config: &SimConfig) -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn upgrades_of(sim: &SimState, campaigns: &[&Campaign]) -> HashMap<UpgradeId, UpgradeInfo> {
    let ids: Vec<UpgradeId> = campaigns
        .iter()
        .flat_map(|c| c.devices.values().filter_map(|d| d.upgrade))
        .collect();
    sim.fleet
        .upgrades(&ids)
        .into_iter()
        .map(|u| (u.id, u))
        .collect()
}

impl VendorAdmin for ThingSpaceState {
    fn snapshot(&self, sim: &SimState) -> Value {
        let now = sim.now();
        let queued = &sim.config.thingspace.queued_status;
        let inner = self.lock();
        let all: Vec<&Campaign> = inner.campaigns.values().collect();
        let upgrades = upgrades_of(sim, &all);
        let campaigns: Vec<Value> = all
            .iter()
            .map(|c| {
                let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
                for device in c.devices.values() {
                    *counts
                        .entry(c.device_status(device, now, &upgrades).0)
                        .or_default() += 1;
                }
                let mut value = c.to_json(&c.status(now, &upgrades).as_str(queued));
                value["devices"] = c.devices.len().into();
                value["deviceStatusCounts"] = json!(counts);
                value["createdAt"] = json!(c.created_at);
                value
            })
            .collect();
        let files: Vec<Value> = inner
            .files
            .iter()
            .flat_map(|(account, files)| {
                files.iter().map(move |f| {
                    let mut value = f.to_json(true);
                    value["accountName"] = account.clone().into();
                    value["size"] = f.size.into();
                    value["sha256"] = f.sha256.clone().into();
                    value["uploadedAt"] = json!(f.uploaded_at);
                    value
                })
            })
            .collect();
        let locked: Vec<&String> = inner
            .logins
            .iter()
            .filter(|(_, l)| l.locked)
            .map(|(u, _)| u)
            .collect();
        json!({
            "accounts": sim.config.thingspace.accounts.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "files": files,
            "campaigns": campaigns,
            "tokens": inner.tokens.len(),
            "sessions": inner.sessions.len(),
            "lockedUsers": locked,
        })
    }

    fn expire_tokens(&self, _sim: &SimState) {
        let mut inner = self.lock();
        inner.tokens.clear();
        inner.sessions.clear();
    }
}

/// The ThingSpace routes.
pub fn routes(config: &SimConfig) -> Router<SharedState> {
    let upload_limit = usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX);
    let p = "/api/fota/v2";
    Router::new()
        .route("/api/ts/v1/oauth2/token", post(oauth_token))
        .route("/api/ts/v1/oauth2/revoke", post(oauth_revoke))
        .route("/api/m2m/v1/session/login", post(login))
        .route("/api/m2m/v1/session/logout", post(logout))
        .route(
            "/api/m2m/v1/session/password/actions/reset",
            put(reset_password),
        )
        .route(
            &format!("{p}/files/{{acc}}"),
            post(upload_file)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(list_files),
        )
        .route(
            &format!("{p}/files/{{acc}}/{{distribution}}"),
            get(list_files_by_path),
        )
        .route(
            &format!("{p}/campaigns/files/{{acc}}"),
            post(schedule_file_campaign),
        )
        .route(
            &format!("{p}/campaigns/software/{{acc}}"),
            post(schedule_software_campaign),
        )
        .route(
            &format!("{p}/campaigns/{{acc}}"),
            post(schedule_software_campaign_legacy),
        )
        .route(
            &format!("{p}/campaigns/{{acc}}/{{campaign}}"),
            get(get_campaign)
                .delete(cancel_campaign)
                .put(add_remove_devices),
        )
        .route(
            &format!("{p}/campaigns/{{acc}}/{{campaign}}/dates"),
            put(change_dates),
        )
        .route(
            &format!("{p}/reports/{{acc}}/campaigns/{{campaign}}/devices"),
            get(device_report),
        )
        .route(
            &format!("{p}/reports/{{acc}}/campaigns"),
            get(campaign_history),
        )
        .route(
            &format!("{p}/reports/{{acc}}/devices/{{device}}"),
            get(device_history),
        )
        .route(&format!("{p}/software/{{acc}}"), get(list_software))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
}

fn fota_error(status: StatusCode, code: &str, message: &str) -> Response {
    vendor_error(Vendor::ThingSpace, status, Some(code), message)
}

fn invalid(message: &str) -> Response {
    fota_error(StatusCode::BAD_REQUEST, INVALID_PARAMETER, message)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn json_rejection(rejection: JsonRejection) -> Response {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    fota_error(status, INVALID_PARAMETER, "Input binding error")
}

fn parse_body<T: for<'de> Deserialize<'de>>(
    body: Result<Json<Value>, JsonRejection>,
) -> Result<T, Response> {
    let Json(value) = body.map_err(json_rejection)?;
    serde_json::from_value(value).map_err(|_| invalid("Input binding error"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn gateway_fault(code: &str, message: &str, description: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"fault": {"code": code.parse::<u64>().map_or_else(|_| Value::from(code), Value::from), "message": message, "description": description}})),
    )
        .into_response()
}

impl ThingSpaceState {
    /// Checks the Bearer token (401 WSO2 fault when missing, unknown or expired).
    fn check_bearer(&self, headers: &HeaderMap, now: Timestamp) -> Result<(), Response> {
        let Some(token) = bearer(headers) else {
            return Err(gateway_fault(
                "900902",
                "Missing Credentials",
                "Required OAuth credentials not provided. Make sure your API invocation call has a header: 'Authorization: Bearer ACCESS_TOKEN'",
            ));
        };
        let mut inner = self.lock();
        match inner.tokens.get(token) {
            Some(t) if t.expires_at > now => Ok(()),
            Some(_) => {
                inner.tokens.remove(token);
                Err(invalid_credentials())
            }
            None => Err(invalid_credentials()),
        }
    }

    /// Checks Bearer and `VZ-M2M-Token` for `account`, refreshing the session's idle timer.
    fn check_fota(
        &self,
        sim: &SimState,
        headers: &HeaderMap,
        account: &str,
    ) -> Result<(), Response> {
        let now = sim.now();
        self.check_bearer(headers, now)?;
        let Some(token) = header_str(headers, "vz-m2m-token").filter(|t| !t.is_empty()) else {
            return Err(fota_error(
                StatusCode::BAD_REQUEST,
                SESSION_MISSING,
                "The VZ-M2M-Token header is missing.",
            ));
        };
        let idle = SignedDuration::from_secs(sim.config.thingspace.session_idle_secs as i64);
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(token) else {
            return Err(session_expired());
        };
        if now.duration_since(session.last_used) > idle {
            inner.sessions.remove(token);
            return Err(session_expired());
        }
        session.last_used = session.last_used.max(now);
        if session.account != account {
            return Err(invalid("Inactive account"));
        }
        Ok(())
    }
}

fn invalid_credentials() -> Response {
    gateway_fault(
        "900901",
        "Invalid Credentials",
        "Access failure for API: /api, version: v1 status: (900901) - Invalid Credentials. Make sure you have provided the correct security credentials",
    )
}

fn session_expired() -> Response {
    fota_error(
        StatusCode::BAD_REQUEST,
        SESSION_EXPIRED,
        "The Session has expired.",
    )
}

/// The OAuth client ID of a request whose Basic credentials match a configured account, or the
/// `invalid_client` answer.
fn authenticate_client(sim: &SharedState, headers: &HeaderMap) -> Result<String, Response> {
    let invalid = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client Authentication failed.",
        )
    };
    let (client_id, secret) = basic_credentials(headers).ok_or_else(invalid)?;
    let known = sim
        .config
        .thingspace
        .accounts
        .iter()
        .any(|a| a.client_id == client_id && a.client_secret.expose() == secret);
    if known { Ok(client_id) } else { Err(invalid()) }
}

async fn oauth_token(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let client_id = match authenticate_client(&sim, &headers) {
        Ok(client_id) => client_id,
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing parameters: grant_type",
        );
    };
    match form.get("grant_type").map(String::as_str) {
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing parameters: grant_type",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant_type value",
            );
        }
    }
    let now = sim.now();
    let lifetime = SignedDuration::from_secs(sim.config.thingspace.token_lifetime_secs as i64);
    let mut inner = sim.thingspace.lock();
    inner.tokens.retain(|_, t| t.expires_at > now);
    let existing = inner
        .tokens
        .iter()
        .find(|(_, t)| t.client_id == client_id)
        .map(|(token, t)| (token.clone(), t.expires_at, t.scope.clone()));
    let (token, expires_at, scope) = existing.unwrap_or_else(|| {
        let token = uuid::Uuid::new_v4().to_string();
        let scope = form
            .get("scope")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".into());
        let expires_at = now.saturating_add(lifetime).unwrap_or(Timestamp::MAX);
        inner.tokens.insert(
            token.clone(),
            AccessToken {
                client_id: client_id.clone(),
                expires_at,
                scope: scope.clone(),
            },
        );
        (token, expires_at, scope)
    });
    let remaining = expires_at.duration_since(now).as_secs().max(1);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": remaining,
        "scope": scope,
    }))
    .into_response()
}

async fn oauth_revoke(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let client_id = match authenticate_client(&sim, &headers) {
        Ok(client_id) => client_id,
        Err(response) => return response,
    };
    let Some(token) = form.ok().and_then(|Form(f)| f.get("token").cloned()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing parameters: token",
        );
    };
    let mut inner = sim.thingspace.lock();
    if inner
        .tokens
        .get(&token)
        .is_some_and(|t| t.client_id == client_id)
    {
        inner.tokens.remove(&token);
    }
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("revokedaccesstoken", value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    username: Option<String>,
    password: Option<String>,
}

async fn login(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let now = sim.now();
    if let Err(response) = sim.thingspace.check_bearer(&headers, now) {
        return response;
    }
    let body: LoginBody = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (Some(username), Some(password)) = (body.username, body.password) else {
        return invalid("Input binding error");
    };
    let settings = &sim.config.thingspace;
    let account = settings.accounts.iter().find(|a| a.username == username);
    let mut inner = sim.thingspace.lock();
    let state = inner.logins.entry(username.clone()).or_default();
    if state.locked {
        return fota_error(
            StatusCode::BAD_REQUEST,
            USER_LOCKED,
            "The user account is locked. Contact Verizon support to unlock it.",
        );
    }
    let expected = account.map(|a| {
        state
            .password_override
            .clone()
            .unwrap_or_else(|| a.password.expose().to_owned())
    });
    let Some(account) = account.filter(|_| expected.as_deref() == Some(password.as_str())) else {
        state.failures += 1;
        if state.failures >= settings.max_failed_logins {
            state.locked = true;
        }
        return fota_error(
            StatusCode::BAD_REQUEST,
            LOGIN_INVALID,
            "Invalid username or password.",
        );
    };
    state.failures = 0;
    let token = uuid::Uuid::new_v4().to_string();
    inner.sessions.insert(
        token.clone(),
        Session {
            account: account.name.clone(),
            username,
            last_used: now,
        },
    );
    Json(json!({ "sessionToken": token })).into_response()
}

async fn logout(State(sim): State<SharedState>, headers: HeaderMap) -> Response {
    let now = sim.now();
    if let Err(response) = sim.thingspace.check_bearer(&headers, now) {
        return response;
    }
    let Some(token) = header_str(&headers, "vz-m2m-token").filter(|t| !t.is_empty()) else {
        return fota_error(
            StatusCode::BAD_REQUEST,
            SESSION_MISSING,
            "The VZ-M2M-Token header is missing.",
        );
    };
    let idle = SignedDuration::from_secs(sim.config.thingspace.session_idle_secs as i64);
    let mut inner = sim.thingspace.lock();
    match inner.sessions.remove(token) {
        Some(session) if now.duration_since(session.last_used) <= idle => {
            Json(json!({ "sessionToken": token })).into_response()
        }
        _ => session_expired(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResetPasswordBody {
    old_password: Option<String>,
}

async fn reset_password(
    State(sim): State<SharedState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let now = sim.now();
    if let Err(response) = sim.thingspace.check_bearer(&headers, now) {
        return response;
    }
    let Some(token) = header_str(&headers, "vz-m2m-token").filter(|t| !t.is_empty()) else {
        return fota_error(
            StatusCode::BAD_REQUEST,
            SESSION_MISSING,
            "The VZ-M2M-Token header is missing.",
        );
    };
    let body: ResetPasswordBody = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let idle = SignedDuration::from_secs(sim.config.thingspace.session_idle_secs as i64);
    let mut inner = sim.thingspace.lock();
    let username = match inner.sessions.get_mut(token) {
        Some(session) if now.duration_since(session.last_used) <= idle => {
            session.last_used = now;
            session.username.clone()
        }
        _ => return session_expired(),
    };
    let Some(account) = sim
        .config
        .thingspace
        .accounts
        .iter()
        .find(|a| a.username == username)
    else {
        return session_expired();
    };
    let state = inner.logins.entry(username).or_default();
    let current = state
        .password_override
        .clone()
        .unwrap_or_else(|| account.password.expose().to_owned());
    if body.old_password.as_deref() != Some(current.as_str()) {
        return fota_error(
            StatusCode::BAD_REQUEST,
            LOGIN_INVALID,
            "Invalid username or password.",
        );
    }
    let new_password = uuid::Uuid::new_v4().simple().to_string();
    state.password_override = Some(new_password.clone());
    Json(json!({ "newPassword": new_password })).into_response()
}

fn valid_account_name(account: &str) -> bool {
    !account.is_empty()
        && account.len() <= 64
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn upload_file(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if !valid_account_name(&account) {
        return invalid("Invalid account name format");
    }
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let limit = sim.config.max_upload_bytes;
    let form = match read_form(multipart, "fileupload", FileSink::Digest, limit).await {
        Ok(form) => form,
        Err(e) => {
            let message = match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    format!("File size exceeds the limit of {limit} bytes")
                }
                StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    "Content-Type must be multipart/form-data".into()
                }
                _ => format!("Input binding error: {e}"),
            };
            return fota_error(e.status(), INVALID_PARAMETER, &message);
        }
    };
    let Some(file) = &form.file else {
        return invalid("fileupload is required");
    };
    let Some(base) = &file.file_name else {
        return invalid("fileupload must carry a file name");
    };
    for field in ["fileVersion", "make", "model"] {
        if form.text(field).is_none() {
            return invalid(&format!("{field} is required"));
        }
    }
    let (version, make, model) = (
        form.text("fileVersion").unwrap_or_default().to_owned(),
        form.text("make").unwrap_or_default().to_owned(),
        form.text("model").unwrap_or_default().to_owned(),
    );
    let now = sim.now();
    let stored = StoredFile {
        file_name: format!("configfile-{make}_{model}_{base}"),
        file_version: version,
        launch_date: today(now).to_string(),
        make,
        model,
        local_target_path: form.text("localTargetPath").unwrap_or_default().to_owned(),
        size: file.digest.size,
        sha256: file.digest.sha256.clone(),
        uploaded_at: now,
    };
    let response = stored.to_json(true);
    let mut inner = sim.thingspace.lock();
    let files = inner.files.entry(account).or_default();
    files.retain(|f| !(f.file_name == stored.file_name && f.file_version == stored.file_version));
    files.push(stored);
    Json(response).into_response()
}

#[derive(Debug, Deserialize)]
struct DistributionQuery {
    #[serde(rename = "distributionType")]
    distribution_type: Option<String>,
}

async fn list_files(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    Query(query): Query<DistributionQuery>,
    headers: HeaderMap,
) -> Response {
    files_response(&sim, &account, query.distribution_type.as_deref(), &headers)
}

async fn list_files_by_path(
    State(sim): State<SharedState>,
    Path((account, distribution)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    files_response(&sim, &account, Some(&distribution), &headers)
}

fn valid_distribution(value: &str) -> bool {
    ["HTTP", "LWM2M", "OMA", "OMD-DM"].contains(&value)
}

fn files_response(
    sim: &SimState,
    account: &str,
    distribution: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(sim, headers, account) {
        return response;
    }
    let Some(distribution) = distribution.filter(|d| !d.is_empty()) else {
        return invalid("distributionType is required");
    };
    if !valid_distribution(distribution) {
        return invalid("Invalid distributionType");
    }
    let inner = sim.thingspace.lock();
    let files: Vec<Value> = inner
        .files
        .get(account)
        .into_iter()
        .flatten()
        .filter(|_| distribution == "HTTP")
        .take(100)
        .map(|f| f.to_json(false))
        .collect();
    match sim.config.thingspace.file_list_shape {
        super::config::FileListShape::Wrapped => {
            Json(json!({ "AvailableFilesResponse": files })).into_response()
        }
        super::config::FileListShape::Bare => Json(Value::Array(files)).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleBody {
    campaign_name: Option<String>,
    file_name: Option<String>,
    file_version: Option<String>,
    software_name: Option<String>,
    software_from: Option<String>,
    software_to: Option<String>,
    distribution_type: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    download_after_date: Option<String>,
    download_time_window_list: Option<Value>,
    install_after_date: Option<String>,
    install_time_window_list: Option<Value>,
    device_list: Option<Vec<String>>,
}

/// Parses `[{startTime,endTime}]` with integer or string hours.
fn parse_windows(value: &Option<Value>) -> Result<Vec<(u8, u8)>, Response> {
    let Some(value) = value.as_ref().filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(list) = value.as_array() else {
        return Err(invalid("Invalid time window list"));
    };
    let hour = |v: Option<&Value>| -> Option<i64> {
        match v? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    list.iter()
        .map(|w| {
            let start = hour(w.get("startTime"));
            let end = hour(w.get("endTime"));
            match (start, end) {
                (Some(s), Some(e)) if (0..=23).contains(&s) && (1..=24).contains(&e) && s < e => {
                    Ok((s as u8, e as u8))
                }
                _ => Err(invalid(
                    "Invalid time window: startTime must be 0-23, endTime 1-24 and after startTime",
                )),
            }
        })
        .collect()
}

fn parse_dates(
    start: Option<&str>,
    end: Option<&str>,
    download_after: Option<String>,
    download_windows: Option<Value>,
    install_after: Option<String>,
    install_windows: Option<Value>,
) -> Result<Dates, Response> {
    let (Some(start), Some(end)) = (start, end) else {
        return Err(invalid("startDate and endDate are required"));
    };
    let (Some(start), Some(end)) = (parse_date(start), parse_date(end)) else {
        return Err(invalid("FotaPostUpgrades: invalid state date"));
    };
    if end < start {
        return Err(invalid("FotaPostUpgrades: invalid state date"));
    }
    for date in [&download_after, &install_after].into_iter().flatten() {
        if parse_date(date).is_none() {
            return Err(invalid("FotaPostUpgrades: invalid state date"));
        }
    }
    let windows = parse_windows(&download_windows)?;
    parse_windows(&install_windows)?;
    Ok(Dates {
        start,
        end,
        download_after,
        download_windows: download_windows.unwrap_or(Value::Null),
        install_after,
        install_windows: install_windows.unwrap_or(Value::Null),
        windows,
    })
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScheduleKind {
    File,
    Software,
}

/// Validates and stores a new campaign; returns it.
fn schedule(
    sim: &SimState,
    account: &str,
    body: ScheduleBody,
    kind: ScheduleKind,
) -> Result<Campaign, Response> {
    let target = match kind {
        ScheduleKind::File => {
            let name = body.file_name.filter(|s| !s.trim().is_empty());
            let version = body.file_version.filter(|s| !s.trim().is_empty());
            let (Some(name), Some(version)) = (name, version) else {
                return Err(invalid("fileName and fileVersion are required"));
            };
            Target::File { name, version }
        }
        ScheduleKind::Software => {
            let name = body.software_name.filter(|s| !s.trim().is_empty());
            let from = body.software_from.filter(|s| !s.trim().is_empty());
            let to = body.software_to.filter(|s| !s.trim().is_empty());
            let (Some(name), Some(from), Some(to)) = (name, from, to) else {
                return Err(invalid(
                    "softwareName, softwareFrom and softwareTo are required",
                ));
            };
            Target::Software { name, from, to }
        }
    };
    let Some(distribution) = body.distribution_type.filter(|d| !d.is_empty()) else {
        return Err(invalid("distributionType is required"));
    };
    if !["HTTP", "OMA"].contains(&distribution.as_str()) {
        return Err(invalid("Invalid distributionType"));
    }
    let dates = parse_dates(
        body.start_date.as_deref(),
        body.end_date.as_deref(),
        body.download_after_date,
        body.download_time_window_list,
        body.install_after_date,
        body.install_time_window_list,
    )?;
    let device_list = body.device_list.unwrap_or_default();
    if device_list.is_empty() {
        return Err(invalid("Device list is empty"));
    }
    if device_list.iter().any(|d| !valid_device_id(d)) {
        return Err(invalid("Invalid device id format"));
    }

    let now = sim.now();
    let (make, model, mut failure) = {
        let inner = sim.thingspace.lock();
        match &target {
            Target::File { name, version } => match inner.files.get(account).and_then(|files| {
                files
                    .iter()
                    .find(|f| &f.file_name == name && &f.file_version == version)
            }) {
                Some(file) => (file.make.clone(), file.model.clone(), None),
                None => (
                    String::new(),
                    String::new(),
                    Some("File not found.".to_owned()),
                ),
            },
            Target::Software { name, .. } => match sim
                .config
                .thingspace
                .software
                .iter()
                .find(|s| s.account == account && &s.software_name == name)
            {
                Some(software) => (software.make.clone(), software.model.clone(), None),
                None => (
                    String::new(),
                    String::new(),
                    Some("Software not found.".to_owned()),
                ),
            },
        }
    };
    if dates.start < today(now) {
        failure.get_or_insert_with(|| "Campaign start date is in the past.".to_owned());
    }
    let validation = SignedDuration::from_secs(sim.config.thingspace.validation_delay_secs as i64);
    let mut campaign = Campaign {
        id: uuid::Uuid::new_v4().to_string(),
        account: account.to_owned(),
        name: body.campaign_name,
        target,
        distribution_type: distribution,
        make,
        model,
        dates,
        created_at: now,
        validated_at: now.saturating_add(validation).unwrap_or(Timestamp::MAX),
        failure,
        devices: BTreeMap::new(),
        cancelled: None,
    };
    add_devices(sim, &mut campaign, &device_list, now);
    sim.thingspace
        .lock()
        .campaigns
        .insert(campaign.id.clone(), campaign.clone());
    Ok(campaign)
}

/// Adds devices (skipping ones already present) and starts their upgrades.
fn add_devices(sim: &SimState, campaign: &mut Campaign, ids: &[String], now: Timestamp) {
    for id in ids {
        let order = device_order(id);
        if campaign.devices.contains_key(&order) {
            continue;
        }
        let device = start_device(sim, campaign, id, now);
        campaign.devices.insert(order, device);
    }
}

fn start_device(sim: &SimState, campaign: &Campaign, id: &str, now: Timestamp) -> CampaignDevice {
    let key = DeviceKey::new(Vendor::ThingSpace, campaign.account.clone(), id.to_owned());
    if campaign.failure.is_some() {
        sim.fleet.ensure_device(&key, now);
        return CampaignDevice {
            id: id.to_owned(),
            upgrade: None,
            rejection: None,
        };
    }
    if let Target::Software { from, to, .. } = &campaign.target {
        let version = sim.fleet.version_at(&key, now);
        if &version != from && &version != to {
            return CampaignDevice {
                id: id.to_owned(),
                upgrade: None,
                rejection: Some(
                    "Current device software version does not meet software prerequisites.".into(),
                ),
            };
        }
    }
    let upgrade = sim.fleet.start_upgrade(UpgradeRequest {
        key,
        target_version: campaign.target.version().to_owned(),
        starts_at: campaign.device_start(),
        deadline: Some(campaign.end_boundary()),
    });
    CampaignDevice {
        id: id.to_owned(),
        upgrade: Some(upgrade),
        rejection: None,
    }
}

fn schedule_response(campaign: &Campaign, with_devices: bool) -> Response {
    let mut value = campaign.to_json("CampaignRequestPending");
    if with_devices {
        value["deviceList"] = campaign
            .devices
            .values()
            .map(|d| Value::from(d.id.clone()))
            .collect::<Vec<_>>()
            .into();
    }
    Json(value).into_response()
}

async fn schedule_file_campaign(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    schedule_handler(&sim, &account, &headers, body, ScheduleKind::File, true)
}

async fn schedule_software_campaign(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    schedule_handler(&sim, &account, &headers, body, ScheduleKind::Software, true)
}

async fn schedule_software_campaign_legacy(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    schedule_handler(
        &sim,
        &account,
        &headers,
        body,
        ScheduleKind::Software,
        false,
    )
}

fn schedule_handler(
    sim: &SimState,
    account: &str,
    headers: &HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
    kind: ScheduleKind,
    with_devices: bool,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(sim, headers, account) {
        return response;
    }
    let body: ScheduleBody = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match schedule(sim, account, body, kind) {
        Ok(campaign) => schedule_response(&campaign, with_devices),
        Err(response) => response,
    }
}

/// Looks up a campaign of `account`: "Invalid uuid" for a malformed id, "Invalid upgradeId"
/// for an unknown one.
fn find_campaign<'a>(inner: &'a Inner, account: &str, id: &str) -> Result<&'a Campaign, Response> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid("Invalid uuid"));
    }
    inner
        .campaigns
        .get(id)
        .filter(|c| c.account == account)
        .ok_or_else(|| invalid("Invalid upgradeId"))
}

async fn get_campaign(
    State(sim): State<SharedState>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let inner = sim.thingspace.lock();
    let campaign = match find_campaign(&inner, &account, &id) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let upgrades = upgrades_of(&sim, &[campaign]);
    let status = campaign
        .status(sim.now(), &upgrades)
        .as_str(&sim.config.thingspace.queued_status);
    Json(campaign.to_json(&status)).into_response()
}

async fn cancel_campaign(
    State(sim): State<SharedState>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let now = sim.now();
    let mut inner = sim.thingspace.lock();
    let campaign = match find_campaign(&inner, &account, &id) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let upgrades = upgrades_of(&sim, &[campaign]);
    let how = match campaign.status(now, &upgrades) {
        CampaignStatus::RequestPending | CampaignStatus::Queued => Cancellation::Cancelled,
        CampaignStatus::Scheduled => Cancellation::Aborted,
        CampaignStatus::Cancelled | CampaignStatus::Aborted => {
            return invalid("Campaign is already cancelled");
        }
        CampaignStatus::Ended | CampaignStatus::RequestFailed => {
            return invalid("Campaign has already ended");
        }
    };
    let ids: Vec<UpgradeId> = campaign
        .devices
        .values()
        .filter_map(|d| d.upgrade)
        .collect();
    for upgrade in ids {
        sim.fleet.cancel_upgrade(upgrade, now);
    }
    if let Some(campaign) = inner.campaigns.get_mut(&id) {
        campaign.cancelled = Some((now, how));
    }
    Json(json!({ "success": true })).into_response()
}

#[derive(Debug, Deserialize)]
struct AddRemoveEntry {
    #[serde(alias = "Type")]
    r#type: Option<String>,
    #[serde(rename = "deviceList")]
    device_list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct AddRemoveBody {
    #[serde(rename = "Type", alias = "type")]
    r#type: Option<String>,
    #[serde(rename = "deviceList")]
    device_list: Option<Vec<String>>,
    #[serde(rename = "addOrRemoveDevice")]
    add_or_remove_device: Option<Vec<AddRemoveEntry>>,
}

async fn add_remove_devices(
    State(sim): State<SharedState>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let body: AddRemoveBody = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut operations: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(entries) = body.add_or_remove_device {
        for entry in entries {
            operations.push((
                entry.r#type.unwrap_or_default(),
                entry.device_list.unwrap_or_default(),
            ));
        }
    }
    if body.r#type.is_some() || body.device_list.is_some() {
        operations.push((
            body.r#type.unwrap_or_default(),
            body.device_list.unwrap_or_default(),
        ));
    }
    if operations.is_empty() {
        return invalid("Input binding error");
    }
    for (kind, devices) in &operations {
        if !["append", "remove"].contains(&kind.to_ascii_lowercase().as_str()) {
            return invalid("Type must be append or remove");
        }
        if devices.is_empty() {
            return invalid("Device list is empty");
        }
        if devices.iter().any(|d| !valid_device_id(d)) {
            return invalid("Invalid device id format");
        }
    }
    let now = sim.now();
    let mut inner = sim.thingspace.lock();
    let mut campaign = match find_campaign(&inner, &account, &id) {
        Ok(c) => c.clone(),
        Err(response) => return response,
    };
    let upgrades = upgrades_of(&sim, &[&campaign]);
    if !matches!(
        campaign.status(now, &upgrades),
        CampaignStatus::RequestPending | CampaignStatus::Queued
    ) {
        return invalid(
            "Devices can only be added or removed while the campaign is pending or queued",
        );
    }
    for (kind, devices) in operations {
        if kind.eq_ignore_ascii_case("append") {
            add_devices(&sim, &mut campaign, &devices, now);
        } else {
            for device in devices {
                if let Some(removed) = campaign.devices.remove(&device_order(&device))
                    && let Some(upgrade) = removed.upgrade
                {
                    sim.fleet.cancel_upgrade(upgrade, now);
                }
            }
        }
    }
    inner.campaigns.insert(id.clone(), campaign);
    Json(json!({
        "accountName": account,
        "campaignId": id,
        "requestId": uuid::Uuid::new_v4().to_string(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatesBody {
    start_date: Option<String>,
    end_date: Option<String>,
    download_after_date: Option<String>,
    download_time_window_list: Option<Value>,
    install_after_date: Option<String>,
    install_time_window_list: Option<Value>,
}

async fn change_dates(
    State(sim): State<SharedState>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let body: DatesBody = match parse_body(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let dates = match parse_dates(
        body.start_date.as_deref(),
        body.end_date.as_deref(),
        body.download_after_date,
        body.download_time_window_list,
        body.install_after_date,
        body.install_time_window_list,
    ) {
        Ok(dates) => dates,
        Err(response) => return response,
    };
    let now = sim.now();
    let mut inner = sim.thingspace.lock();
    let mut campaign = match find_campaign(&inner, &account, &id) {
        Ok(c) => c.clone(),
        Err(response) => return response,
    };
    let upgrades = upgrades_of(&sim, &[&campaign]);
    let status = campaign.status(now, &upgrades);
    match status {
        CampaignStatus::RequestPending | CampaignStatus::Queued => {
            if dates.start < today(now) {
                return invalid("FotaPostUpgrades: invalid state date");
            }
            campaign.dates = dates;
            let ids: Vec<String> = campaign.devices.values().map(|d| d.id.clone()).collect();
            for device in campaign.devices.values() {
                if let Some(upgrade) = device.upgrade {
                    sim.fleet.cancel_upgrade(upgrade, now);
                }
            }
            campaign.devices.clear();
            add_devices(&sim, &mut campaign, &ids, now);
        }
        CampaignStatus::Scheduled => {
            if dates.start != campaign.dates.start {
                return invalid("The start date of a started campaign cannot change");
            }
            let new_end = start_of(dates.end.tomorrow().unwrap_or(dates.end));
            if new_end
                < now
                    .saturating_add(SignedDuration::from_hours(24))
                    .unwrap_or(Timestamp::MAX)
            {
                return invalid(
                    "The end date of a started campaign must be at least 24 hours from now",
                );
            }
            if !campaign
                .dates
                .windows
                .iter()
                .all(|w| dates.windows.contains(w))
            {
                return invalid("Time windows of a started campaign can be added but not removed");
            }
            campaign.dates = dates;
            let deadline = campaign.end_boundary();
            for device in campaign.devices.values() {
                if let Some(upgrade) = device.upgrade {
                    sim.fleet.set_deadline(upgrade, Some(deadline), now);
                }
            }
        }
        _ => return invalid("The campaign has already ended or was cancelled"),
    }
    let upgrades = upgrades_of(&sim, &[&campaign]);
    let status = campaign
        .status(now, &upgrades)
        .as_str(&sim.config.thingspace.queued_status);
    let response = campaign.to_json(&status);
    inner.campaigns.insert(id, campaign);
    Json(response).into_response()
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    #[serde(rename = "lastSeenDeviceId")]
    last_seen_device_id: Option<String>,
}

async fn device_report(
    State(sim): State<SharedState>,
    Path((account, id)): Path<(String, String)>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let last_seen = query
        .last_seen_device_id
        .filter(|s| !s.is_empty() && s != "0");
    if last_seen.as_deref().is_some_and(|s| !valid_device_id(s)) {
        return invalid("LastSeenDeviceId Not Valid");
    }
    let now = sim.now();
    let inner = sim.thingspace.lock();
    let campaign = match find_campaign(&inner, &account, &id) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let range = match &last_seen {
        Some(seen) => campaign.devices.range((
            std::ops::Bound::Excluded(device_order(seen)),
            std::ops::Bound::Unbounded,
        )),
        None => campaign.devices.range(..),
    };
    let mut devices: Vec<&CampaignDevice> = range.take(PAGE_SIZE + 1).map(|(_, d)| d).collect();
    let has_more = devices.len() > PAGE_SIZE;
    devices.truncate(PAGE_SIZE);
    let ids: Vec<UpgradeId> = devices.iter().filter_map(|d| d.upgrade).collect();
    let upgrades: HashMap<UpgradeId, UpgradeInfo> = sim
        .fleet
        .upgrades(&ids)
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let page: Vec<(String, &str, String)> = devices
        .into_iter()
        .map(|device| {
            let (status, reason) = campaign.device_status(device, now, &upgrades);
            (device.id.clone(), status, reason)
        })
        .collect();
    let last = page
        .last()
        .map(|(id, _, _)| id.clone())
        .or(last_seen)
        .unwrap_or_else(|| "0".into());
    let list: Vec<Value> = page
        .into_iter()
        .map(|(id, status, reason)| json!({"deviceId": id, "status": status, "resultReason": reason}))
        .collect();
    Json(json!({
        "totalDevice": campaign.devices.len(),
        "hasMoreData": has_more,
        "lastSeenDeviceId": last,
        "maxPageSize": PAGE_SIZE,
        "deviceList": list,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(rename = "campaignStatus")]
    campaign_status: Option<String>,
    #[serde(rename = "lastSeenCampaignId")]
    last_seen_campaign_id: Option<String>,
}

async fn campaign_history(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let now = sim.now();
    let queued = &sim.config.thingspace.queued_status;
    let inner = sim.thingspace.lock();
    let mine: Vec<&Campaign> = inner
        .campaigns
        .values()
        .filter(|c| c.account == account)
        .filter(|c| {
            query
                .last_seen_campaign_id
                .as_deref()
                .filter(|s| !s.is_empty() && *s != "0")
                .is_none_or(|seen| c.id.as_str() > seen)
        })
        .collect();
    let upgrades = upgrades_of(&sim, &mine);
    let mut list = Vec::new();
    let mut has_more = false;
    for campaign in mine {
        let status = campaign.status(now, &upgrades);
        if let Some(wanted) = query.campaign_status.as_deref().filter(|s| !s.is_empty())
            && !status.matches(wanted, queued)
        {
            continue;
        }
        if list.len() == PAGE_SIZE {
            has_more = true;
            break;
        }
        list.push(campaign.to_json(&status.as_str(queued)));
    }
    let last = list
        .last()
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Json(json!({
        "hasMoreData": has_more,
        "lastSeenCampaignId": last,
        "campaignList": list,
    }))
    .into_response()
}

async fn device_history(
    State(sim): State<SharedState>,
    Path((account, device)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let now = sim.now();
    let inner = sim.thingspace.lock();
    let order = device_order(&device);
    let campaigns: Vec<&Campaign> = inner
        .campaigns
        .values()
        .filter(|c| c.account == account && c.devices.contains_key(&order))
        .collect();
    let upgrades = upgrades_of(&sim, &campaigns);
    let rows: Vec<Value> = campaigns
        .iter()
        .map(|c| {
            let (status, reason) = c.device_status(&c.devices[&order], now, &upgrades);
            let reason = if status == "UpgradeSuccess" {
                "success".to_owned()
            } else {
                reason
            };
            json!({
                "deviceId": device,
                "id": c.id,
                "accountName": c.account,
                "softwareName": c.target.name(),
                "startDate": c.dates.start.to_string(),
                "status": status,
                "reason": reason,
            })
        })
        .collect();
    Json(Value::Array(rows)).into_response()
}

async fn list_software(
    State(sim): State<SharedState>,
    Path(account): Path<String>,
    Query(query): Query<DistributionQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = sim.thingspace.check_fota(&sim, &headers, &account) {
        return response;
    }
    let Some(distribution) = query.distribution_type.filter(|d| !d.is_empty()) else {
        return invalid("distributionType is required");
    };
    let list: Vec<Value> = sim
        .config
        .thingspace
        .software
        .iter()
        .filter(|s| s.account == account && s.distribution_type == distribution)
        .map(|s| {
            json!({
                "softwareName": s.software_name,
                "launchDate": s.launch_date,
                "releaseNote": s.release_note,
                "model": s.model,
                "make": s.make,
                "distributionType": s.distribution_type,
                "devicePlatformId": "IoT",
            })
        })
        .collect();
    Json(Value::Array(list)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_sort_numerically_then_textually() {
        let mut ids = vec!["990013907884259", "abc", "990013907835573", "5", "10"];
        ids.sort_by_key(|id| device_order(id));
        assert_eq!(
            ids,
            ["5", "10", "990013907835573", "990013907884259", "abc"]
        );
    }

    #[test]
    fn windows_open_at_the_next_matching_hour() {
        let t: Timestamp = "2024-06-01T05:30:00Z".parse().unwrap();
        assert_eq!(next_window_opening(t, &[]), t);
        assert_eq!(next_window_opening(t, &[(5, 6)]), t);
        assert_eq!(
            next_window_opening(t, &[(1, 4)]),
            "2024-06-02T01:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            next_window_opening(t, &[(20, 24), (7, 8)]),
            "2024-06-01T07:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn windows_accept_integer_and_string_hours() {
        let windows = parse_windows(&Some(json!([{"startTime": 1, "endTime": "4"}]))).unwrap();
        assert_eq!(windows, vec![(1, 4)]);
        assert!(parse_windows(&Some(json!([{"startTime": 5, "endTime": 5}]))).is_err());
        assert!(parse_windows(&Some(json!([{"startTime": 0, "endTime": 25}]))).is_err());
    }

    #[test]
    fn queued_status_accepts_both_spellings() {
        assert!(CampaignStatus::Queued.matches("CampaignRequestQueued", "CampaignQueued"));
        assert!(CampaignStatus::Queued.matches("CampaignQueued", "CampaignRequestQueued"));
        assert!(!CampaignStatus::Scheduled.matches("CampaignQueued", "CampaignQueued"));
    }
}
