//! Huawei Cloud IoTDA simulator (fact sheets: iotda.md §1-8, sdks.md §1-2).
//!
//! Routes on the main listener (`P` = `/v5/iot/{project_id}`):
//!
//! | request | answer |
//! |---|---|
//! | `POST /v3/auth/tokens` (IAM password method) | `201`, token in `X-Subject-Token` |
//! | `GET /v3/projects?name=` | the caller's project (what the SDKs use to find a project id) |
//! | `POST P/ota-upgrades/packages` | `201` package (OBS object must exist; `sign` checked) |
//! | `GET P/ota-upgrades/packages?package_type=` | `{"packages":[…],"page":{count,marker}}` (no `file_location`) |
//! | `GET` / `DELETE P/ota-upgrades/packages/{id}` | package / `204` |
//! | `POST P/batchtasks` | `201` task (`Initializing`) |
//! | `GET P/batchtasks?task_type=` | `{"batchtasks":[…],"page":…}` |
//! | `GET P/batchtasks/{id}` | `{"batchtask":…,"task_details":[…],"page":…}` |
//! | `POST P/batchtasks/{id}/stop\|retry\|confirm` | `{"targets":[{target,status,error_code?,error_msg?}]}` |
//! | `DELETE P/batchtasks/{id}` | `204` (finished tasks only) |
//!
//! # Authentication
//!
//! Every `/v5` call needs either `X-Auth-Token` (from `/v3/auth/tokens`) or an AK/SK signature
//! (`SDK-HMAC-SHA256` or `V11-HMAC-SHA256` with service `iotdm`), verified with
//! [`crate::signing::huawei`] from the headers as received. `X-Sdk-Date` more than
//! `max_clock_skew_secs` away from the real clock gives `401 APIGW.0303`. Like standard and
//! enterprise instances, a host that the SDKs would sign with the derived algorithm refuses
//! `SDK-HMAC-SHA256` with `401 IOTDA.000002` (`algorithm_check`: `auto` applies this to host
//! names only, `strict` to IP addresses too, `off` never).
//!
//! # Batch tasks
//!
//! Tasks are evaluated lazily at the virtual time of each request: a task is `Initializing` for
//! `initializing_secs`, then each target's upgrade runs on the [fleet](super::fleet) (which
//! decides outcome and timing up front). Sub-task states: `Waitting` (queued, device offline,
//! or waiting for `/confirm`), `Processing` (downloading / installing), `Success`, `Fail`,
//! `FailWaitRetry` (a failure with automatic retries left, for `retry_interval` minutes),
//! `Stopped`. Task states: `Initializing`, `Waitting`, `Processing`, then `Success`, `Fail` or
//! `PartialSuccess`; `/stop` gives `Stopping` for `stopping_secs`, then `Stopped`. A device
//! that never reports fails after `device_timeout_secs` (25 h, as the platform). Once a
//! task has settled its per-target results are cached, so polls of finished 10,000-device
//! tasks cost no fleet work.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::Secret;
use super::errors::VendorError;
use super::fleet::{DeviceKey, DeviceProgress, Fleet, UpgradeInfo, UpgradeRequest};
use super::{SharedState, SimConfig, SimState, Vendor, VendorAdmin};
use crate::signing::SigningError;
use crate::signing::huawei::{
    self, HuaweiAlgorithm, HuaweiAuthorization, IOTDA_DERIVED_SERVICE, ReceivedRequest,
};

/// Largest accepted request body (AK/SK-signed bodies are limited to 12 MB).
pub const MAX_BODY_BYTES: usize = 12 * 1024 * 1024;
/// Most targets one batch task can have.
pub const MAX_TASK_TARGETS: usize = 30_000;
/// Most targets in one stop / retry / confirm body.
pub const MAX_OPERATION_TARGETS: usize = 100;
const DEFAULT_MARKER: &str = "ffffffffffffffffffffffff";
const UPGRADE_TASK_TYPES: [&str; 3] = ["firmwareUpgrade", "softwareUpgrade", "moduleUpgrade"];
const OTHER_TASK_TYPES: [&str; 9] = [
    "createDevices",
    "deleteDevices",
    "freezeDevices",
    "unfreezeDevices",
    "createCommands",
    "createAsyncCommands",
    "createMessages",
    "updateDeviceShadows",
    "updateDevices",
];
const PACKAGE_TYPES: [&str; 3] = ["softwarePackage", "firmwarePackage", "modulePackage"];

/// One IoTDA tenant: project, credentials and IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IotdaAccount {
    /// Project id (the `{project_id}` path segment).
    pub project_id: String,
    /// Region id (derived-signature scope, IAM project name).
    pub region: String,
    pub access_key: String,
    pub secret_key: Secret,
    /// The default resource space (`app_id`).
    pub app_id: String,
    /// IAM account (domain) name for `/v3/auth/tokens`.
    pub iam_domain: String,
    pub iam_user: String,
    pub iam_password: Secret,
}

/// Demo project id (the one in sdks.md).
pub const DEMO_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";
/// Demo access key (the one in sdks.md).
pub const DEMO_ACCESS_KEY: &str = "HPUAEXAMPLEAK0000001";

impl Default for IotdaAccount {
    fn default() -> Self {
        Self {
            project_id: DEMO_PROJECT_ID.into(),
            region: "cn-north-4".into(),
            access_key: DEMO_ACCESS_KEY.into(),
            secret_key: Secret::new("ExampleSecretKey0000000000000000000000000"),
            app_id: "61f7e74d036aca5be29e1ed4".into(),
            iam_domain: "demo-account".into(),
            iam_user: "demo-user".into(),
            iam_password: Secret::new("demo-password"),
        }
    }
}

/// Where the "wrong signing algorithm for this host" rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmCheck {
    /// Host names the SDKs sign with V11 (instance hosts) refuse `SDK-HMAC-SHA256`; IP
    /// addresses and `localhost` accept both.
    #[default]
    Auto,
    /// Like `auto`, and IP addresses / `localhost` count as instance hosts (so they need V11).
    Strict,
    /// Both algorithms everywhere.
    Off,
}

/// What creating a package does when `sign` differs from the object's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignMismatch {
    /// 400 IOTDA.000006.
    #[default]
    Reject,
    /// Keep the given `sign` (the real service apparently does not check it).
    Accept,
}

/// Huawei Cloud IoTDA settings (the `iotda` section of the simulator configuration).
///
/// ```yaml
/// iotda:
///   accounts:
///     - project_id: 0123456789abcdef0123456789abcdef
///       region: cn-north-4
///       access_key: HPUAEXAMPLEAK0000001
///       secret_key: ExampleSecretKey0000000000000000000000000
///       app_id: 61f7e74d036aca5be29e1ed4
///       iam_domain: demo-account
///       iam_user: demo-user
///       iam_password: demo-password
///   algorithm_check: auto        # auto | strict | off
///   max_clock_skew_secs: 900     # 0 disables
///   token_lifetime_secs: 86400
///   sign_mismatch: reject        # reject | accept
///   require_obs_object: true
///   reject_duplicate_version: true
///   initializing_secs: 2
///   stopping_secs: 2
///   device_timeout_secs: 90000
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IotdaConfig {
    pub accounts: Vec<IotdaAccount>,
    pub algorithm_check: AlgorithmCheck,
    /// Allowed `X-Sdk-Date` skew against the real clock (0: unchecked).
    pub max_clock_skew_secs: u64,
    /// IAM token lifetime (virtual seconds).
    pub token_lifetime_secs: u64,
    pub sign_mismatch: SignMismatch,
    /// Package creation requires the OBS object to exist in the simulated OBS.
    pub require_obs_object: bool,
    /// A second package with the same product, type, module and version is refused.
    pub reject_duplicate_version: bool,
    /// Virtual seconds a new task stays `Initializing`.
    pub initializing_secs: u64,
    /// Virtual seconds a stopped task stays `Stopping`.
    pub stopping_secs: u64,
    /// Virtual seconds after which a device that has not finished fails.
    pub device_timeout_secs: u64,
}

impl Default for IotdaConfig {
    fn default() -> Self {
        Self {
            accounts: vec![IotdaAccount::default()],
            algorithm_check: AlgorithmCheck::Auto,
            max_clock_skew_secs: 900,
            token_lifetime_secs: 24 * 3600,
            sign_mismatch: SignMismatch::Reject,
            require_obs_object: true,
            reject_duplicate_version: true,
            initializing_secs: 2,
            stopping_secs: 2,
            device_timeout_secs: 25 * 3600,
        }
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> VendorError {
    VendorError::new(Vendor::Iotda, status, message).with_code(code)
}

fn invalid(message: impl Into<String>) -> VendorError {
    error(StatusCode::BAD_REQUEST, "IOTDA.000006", message)
}

fn not_found(what: &str, id: &str) -> VendorError {
    error(
        StatusCode::NOT_FOUND,
        "IOTDA.000007",
        format!("The {what} {id} does not exist."),
    )
}

fn format_time(time: Timestamp) -> String {
    huawei::format_sdk_date(time)
}

fn secs(value: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(value).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// `file_location` of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileLocation {
    pub obs_location: ObsLocation,
}

/// `file_location.obs_location` of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObsLocation {
    pub region_name: String,
    pub bucket_name: String,
    pub object_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

/// An OTA package as IoTDA returns it (Create / Show; list items drop `file_location`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub package_id: String,
    pub app_id: String,
    pub package_type: String,
    pub product_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_source_versions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_info: Option<String>,
    pub create_time: String,
    pub file_location: FileLocation,
}

impl Package {
    fn list_item(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("file_location");
        }
        value
    }
}

#[derive(Debug, Clone)]
enum Run {
    /// `need_confirm` task: nothing happens until `/confirm`.
    AwaitingConfirm,
    /// Stopped by `/stop`.
    Stopped,
    /// An upgrade on the fleet; `auto_retries` counts the policy's automatic retries used.
    Active {
        upgrade: Box<UpgradeInfo>,
        auto_retries: u32,
    },
}

#[derive(Debug, Clone)]
struct Subtask {
    target: String,
    run: Run,
}

/// A sub-task status (spelled as the API does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubtaskStatus {
    Waitting,
    Processing,
    Success,
    Fail,
    FailWaitRetry,
    Stopped,
}

impl SubtaskStatus {
    fn name(self) -> &'static str {
        match self {
            Self::Waitting => "Waitting",
            Self::Processing => "Processing",
            Self::Success => "Success",
            Self::Fail => "Fail",
            Self::FailWaitRetry => "FailWaitRetry",
            Self::Stopped => "Stopped",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Fail | Self::Stopped)
    }
}

/// One sub-task as seen at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubtaskView {
    status: SubtaskStatus,
    /// For `Success`: whether the device already ran the target version.
    already_current: Option<bool>,
    error: Option<(String, String)>,
}

/// `task_progress`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskProgress {
    pub total: u64,
    pub processing: u64,
    pub success: u64,
    pub fail: u64,
    pub waitting: u64,
    pub fail_wait_retry: u64,
    pub stopped: u64,
    pub removed: u64,
}

impl TaskProgress {
    fn from_views(views: &[SubtaskView]) -> Self {
        let mut progress = Self {
            total: views.len() as u64,
            ..Self::default()
        };
        for view in views {
            match view.status {
                SubtaskStatus::Waitting => progress.waitting += 1,
                SubtaskStatus::Processing => progress.processing += 1,
                SubtaskStatus::Success => progress.success += 1,
                SubtaskStatus::Fail => progress.fail += 1,
                SubtaskStatus::FailWaitRetry => progress.fail_wait_retry += 1,
                SubtaskStatus::Stopped => progress.stopped += 1,
            }
        }
        progress
    }
}

#[derive(Debug, Clone)]
struct Task {
    task_id: String,
    task_name: String,
    task_type: String,
    task_mode: Option<String>,
    need_confirm: bool,
    task_ext_info: Option<Value>,
    targets: Vec<String>,
    document: Value,
    task_policy: Option<Value>,
    app_id: String,
    package_id: String,
    target_version: String,
    created_at: Timestamp,
    dispatch_at: Timestamp,
    retry_count: u32,
    retry_interval: SignedDuration,
    stopped_at: Option<Timestamp>,
    subtasks: Vec<Subtask>,
    /// Views of every sub-task once none of them can change on its own any more.
    settled: Option<Arc<Vec<SubtaskView>>>,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    project_id: String,
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct Project {
    packages: BTreeMap<String, Package>,
    tasks: BTreeMap<String, Task>,
}

#[derive(Debug, Default)]
struct Inner {
    projects: HashMap<String, Project>,
    tokens: HashMap<String, IssuedToken>,
}

/// Huawei Cloud IoTDA state held in [`SimState`].
#[derive(Debug)]
pub struct IotdaState {
    config: IotdaConfig,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

impl Default for IotdaState {
    fn default() -> Self {
        Self::new(&SimConfig::default())
    }
}

impl IotdaState {
    /// Builds the initial state from the configuration.
    pub fn new(config: &SimConfig) -> Self {
        let mut inner = Inner::default();
        for account in &config.iotda.accounts {
            inner
                .projects
                .entry(account.project_id.clone())
                .or_default();
        }
        Self {
            config: config.iotda.clone(),
            inner: Mutex::new(inner),
            next_id: AtomicU64::new(super::fleet::splitmix64(config.seed) >> 40),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A 24-hex id, increasing with creation order (ObjectId-like: seconds then a counter).
    fn new_id(&self, now: Timestamp) -> String {
        let seconds = u32::try_from(now.as_second().max(0)).unwrap_or(u32::MAX);
        let counter = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{seconds:08x}{counter:016x}")
    }

    fn account_by_key(&self, access_key: &str) -> Option<&IotdaAccount> {
        self.config
            .accounts
            .iter()
            .find(|a| a.access_key == access_key)
    }

    fn account_by_project(&self, project_id: &str) -> Option<&IotdaAccount> {
        self.config
            .accounts
            .iter()
            .find(|a| a.project_id == project_id)
    }

    /// Every package of a project, newest first.
    pub fn packages(&self, project_id: &str) -> Vec<Package> {
        self.lock()
            .projects
            .get(project_id)
            .map(|p| p.packages.values().rev().cloned().collect())
            .unwrap_or_default()
    }
}

impl VendorAdmin for IotdaState {
    fn snapshot(&self, sim: &SimState) -> Value {
        let now = sim.now();
        let mut inner = self.lock();
        let tokens = inner.tokens.values().filter(|t| t.expires_at > now).count();
        let mut projects: Vec<Value> = inner
            .projects
            .iter_mut()
            .map(|(project_id, project)| {
                let packages: Vec<&Package> = project.packages.values().rev().collect();
                let tasks: Vec<Value> = project
                    .tasks
                    .values_mut()
                    .rev()
                    .map(|task| {
                        let views = task.views(&self.config, &sim.fleet, project_id, now);
                        let progress = TaskProgress::from_views(&views);
                        json!({
                            "task_id": task.task_id,
                            "task_name": task.task_name,
                            "task_type": task.task_type,
                            "status": task.status(&self.config, &views, now),
                            "task_progress": progress,
                            "package_id": task.package_id,
                            "target_version": task.target_version,
                            "create_time": format_time(task.created_at),
                        })
                    })
                    .collect();
                json!({"project_id": project_id, "packages": packages, "tasks": tasks})
            })
            .collect();
        projects.sort_by(|a, b| a["project_id"].as_str().cmp(&b["project_id"].as_str()));
        json!({"projects": projects, "active_tokens": tokens})
    }

    fn expire_tokens(&self, _sim: &SimState) {
        self.lock().tokens.clear();
    }
}

/// Start-up banner lines (identities only, never secrets).
pub fn describe(config: &SimConfig) -> Vec<String> {
    config
        .iotda
        .accounts
        .iter()
        .map(|a| {
            format!(
                "  IoTDA project {} (region {}, access key {}, IAM user {}/{})",
                a.project_id, a.region, a.access_key, a.iam_domain, a.iam_user
            )
        })
        .collect()
}

/// The Huawei Cloud IoTDA routes (and its IAM endpoints).
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v3/auth/tokens", post(issue_token))
        .route("/v3/projects", get(list_projects))
        .route(
            "/v5/iot/{project_id}/ota-upgrades/packages",
            post(create_package).get(list_packages),
        )
        .route(
            "/v5/iot/{project_id}/ota-upgrades/packages/{package_id}",
            get(show_package).delete(delete_package),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks",
            post(create_task).get(list_tasks),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}",
            get(show_task).delete(delete_task),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/stop",
            post(stop_task),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/retry",
            post(retry_task),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/confirm",
            post(confirm_task),
        )
        .layer(axum::middleware::map_response(add_request_id))
}

async fn add_request_id(mut response: Response) -> Response {
    if !response.headers().contains_key("x-request-id")
        && let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
    {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// An authenticated call: the caller's account and the request body.
struct Call {
    account: IotdaAccount,
    uri: Uri,
    body: Bytes,
    now: Timestamp,
}

fn host_is_address(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.parse::<std::net::IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost")
}

/// The algorithm the host demands, if any.
fn required_algorithm(check: AlgorithmCheck, host: &str) -> Option<HuaweiAlgorithm> {
    let applies = match check {
        AlgorithmCheck::Off => false,
        AlgorithmCheck::Auto => !host_is_address(host),
        AlgorithmCheck::Strict => true,
    };
    (applies && huawei::sdk_default_uses_derived(host)).then_some(HuaweiAlgorithm::Derived)
}

fn unauthorized(code: &str, message: &str) -> VendorError {
    error(StatusCode::UNAUTHORIZED, code, message)
}

/// Reads the body and authenticates the request; `project_id` is the path's, when it has one.
async fn prepare(
    sim: &SimState,
    request: Request,
    project_id: Option<&str>,
) -> Result<Call, Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "IOTDA.000008",
                "The request body is too large.",
            )
            .into_response()
        })?;
    let account = authenticate(sim, &parts.method, &parts.uri, &parts.headers, &body)
        .map_err(IntoResponse::into_response)?;
    if let Some(project_id) = project_id
        && account.project_id != project_id
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "IOTDA.000004",
            "The project_id in the URL does not belong to the caller.",
        )
        .into_response());
    }
    if !body.is_empty() {
        let json_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json_type {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "IOTDA.000008",
                "The request media type is not supported; use Content-Type: application/json.",
            )
            .into_response());
        }
    }
    Ok(Call {
        account,
        uri: parts.uri,
        body,
        now: sim.now(),
    })
}

fn authenticate(
    sim: &SimState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IotdaAccount, VendorError> {
    let iotda = &sim.iotda;
    if let Some(token) = headers.get("x-auth-token") {
        let token = token.to_str().unwrap_or_default();
        let now = sim.now();
        let project = iotda
            .lock()
            .tokens
            .get(token)
            .filter(|t| t.expires_at > now)
            .map(|t| t.project_id.clone());
        return project
            .and_then(|p| iotda.account_by_project(&p).cloned())
            .ok_or_else(|| {
                unauthorized(
                    "APIGW.0301",
                    "Incorrect IAM authentication information: the token is invalid or expired.",
                )
            });
    }
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "APIGW.0301",
            "Incorrect IAM authentication information: Authorization or X-Auth-Token header missing.",
        ));
    };
    let authorization = HuaweiAuthorization::parse(value).map_err(|e| {
        unauthorized(
            "APIGW.0301",
            &format!("Incorrect IAM authentication information: {e}"),
        )
    })?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if required_algorithm(iotda.config.algorithm_check, host)
        .is_some_and(|required| required != authorization.algorithm())
    {
        return Err(unauthorized(
            "IOTDA.000002",
            "Authentication failed: standard and enterprise edition instances require the derived AK/SK algorithm (V11-HMAC-SHA256).",
        ));
    }
    let account = iotda
        .account_by_key(&authorization.access_key)
        .ok_or_else(|| {
            unauthorized(
                "APIGW.0301",
                "Incorrect IAM authentication information: unknown access key.",
            )
        })?;
    if let Some(scope) = &authorization.scope
        && (scope.service != IOTDA_DERIVED_SERVICE || scope.region != account.region)
    {
        return Err(unauthorized(
            "APIGW.0301",
            "Incorrect IAM authentication information: the derived credential scope does not match this endpoint.",
        ));
    }
    let max_skew = match iotda.config.max_clock_skew_secs {
        0 => SignedDuration::MAX,
        value => secs(value),
    };
    let request = ReceivedRequest {
        method,
        uri,
        headers,
        body,
    };
    authorization
        .verify(&request, account.secret_key.expose(), Timestamp::now(), max_skew)
        .map_err(|e| match e {
            SigningError::ClockSkew { .. } | SigningError::MalformedDate(_) => unauthorized(
                "APIGW.0303",
                "Incorrect app authentication information: the X-Sdk-Date is invalid or too far from the server time.",
            ),
            SigningError::MissingHeader(name) => unauthorized(
                "APIGW.0301",
                &format!("Incorrect IAM authentication information: header {name} missing."),
            ),
            _ => unauthorized(
                "APIGW.0301",
                "Incorrect IAM authentication information: verify aksk signature fail.",
            ),
        })?;
    Ok(account.clone())
}

// ---------------------------------------------------------------------------------------------
// IAM
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct TokenBody {
    auth: TokenAuth,
}

#[derive(Debug, Deserialize)]
struct TokenAuth {
    identity: TokenIdentity,
    #[serde(default)]
    scope: Option<TokenScope>,
}

#[derive(Debug, Deserialize)]
struct TokenIdentity {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordIdentity>,
}

#[derive(Debug, Deserialize)]
struct PasswordIdentity {
    user: PasswordUser,
}

#[derive(Debug, Deserialize)]
struct PasswordUser {
    name: String,
    password: String,
    domain: NamedRef,
}

#[derive(Debug, Deserialize)]
struct NamedRef {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenScope {
    #[serde(default)]
    project: Option<NamedRef>,
}

fn iam_error(status: StatusCode, message: &str) -> Response {
    let body = if status == StatusCode::UNAUTHORIZED {
        json!({"error": {"code": 401, "message": message, "title": "Unauthorized"}})
    } else {
        json!({"error_msg": message, "error_code": "IAM.0011"})
    };
    (status, axum::Json(body)).into_response()
}

fn new_token() -> String {
    let mut bytes = vec![0u8; 1536];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "MIIT{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn iam_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn issue_token(
    State(sim): State<SharedState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<TokenBody>(&body) else {
        return iam_error(StatusCode::BAD_REQUEST, "Request body is invalid.");
    };
    let auth = request.auth;
    if !auth.identity.methods.iter().any(|m| m == "password") {
        return iam_error(
            StatusCode::BAD_REQUEST,
            "Only the password method is supported.",
        );
    }
    let Some(password) = auth.identity.password else {
        return iam_error(StatusCode::BAD_REQUEST, "Request body is invalid.");
    };
    let user = password.user;
    let account = sim.iotda.config.accounts.iter().find(|a| {
        a.iam_user == user.name
            && a.iam_password.expose() == user.password
            && (user.domain.name.as_deref() == Some(a.iam_domain.as_str())
                || user.domain.id.as_deref() == Some(a.iam_domain.as_str()))
    });
    let Some(account) = account else {
        return iam_error(
            StatusCode::UNAUTHORIZED,
            "The username or password is wrong.",
        );
    };
    let project = auth.scope.and_then(|s| s.project);
    let scoped = project.as_ref().is_some_and(|p| {
        p.id.as_deref() == Some(account.project_id.as_str())
            || p.name.as_deref() == Some(account.region.as_str())
    });
    if project.is_some() && !scoped {
        return iam_error(
            StatusCode::BAD_REQUEST,
            "The project in the scope does not exist.",
        );
    }
    let now = sim.now();
    let expires_at = now
        .saturating_add(secs(sim.iotda.config.token_lifetime_secs))
        .unwrap_or(Timestamp::MAX);
    let token = new_token();
    sim.iotda.lock().tokens.insert(
        token.clone(),
        IssuedToken {
            project_id: account.project_id.clone(),
            expires_at,
        },
    );
    let domain =
        json!({"id": format!("{:x}", md5_text(&account.iam_domain)), "name": account.iam_domain});
    let mut body = json!({"token": {
        "expires_at": iam_time(expires_at),
        "issued_at": iam_time(now),
        "methods": ["password"],
        "project": {"id": account.project_id, "name": account.region, "domain": domain},
        "user": {"id": format!("{:x}", md5_text(&account.iam_user)), "name": account.iam_user, "domain": domain, "password_expires_at": ""},
        "roles": [{"id": "0", "name": "op_service"}],
    }});
    if query.get("nocatalog").is_none_or(|v| v != "true") {
        body["token"]["catalog"] = json!([]);
    }
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("x-subject-token", value);
    }
    response
}

/// A short stable hex digest used for IAM ids.
fn md5_text(text: &str) -> u128 {
    use md5::Digest as _;
    u128::from_be_bytes(md5::Md5::digest(text.as_bytes()).into())
}

async fn list_projects(State(sim): State<SharedState>, request: Request) -> Response {
    let call = match prepare(&sim, request, None).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    #[derive(Deserialize)]
    struct ProjectQuery {
        name: Option<String>,
    }
    let name = Query::<ProjectQuery>::try_from_uri(&call.uri)
        .ok()
        .and_then(|Query(q)| q.name);
    let account = &call.account;
    let projects: Vec<Value> = if name.as_deref().is_none_or(|n| n == account.region) {
        vec![json!({
            "id": account.project_id,
            "name": account.region,
            "domain_id": format!("{:x}", md5_text(&account.iam_domain)),
            "enabled": true,
            "is_domain": false,
            "parent_id": format!("{:x}", md5_text(&account.iam_domain)),
            "description": "",
        })]
    } else {
        Vec::new()
    };
    axum::Json(json!({"projects": projects, "links": {"self": "/v3/projects", "next": null, "previous": null}}))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Request parsing helpers
// ---------------------------------------------------------------------------------------------

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, VendorError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            invalid(format!("Invalid input data: {e}"))
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "IOTDA.000008",
                format!("The request body is not valid JSON: {e}"),
            )
        }
    })
}

fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, VendorError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| invalid(format!("Invalid query parameters: {e}")))
}

fn charset_ok(value: &str, max: usize, extra: &[char]) -> bool {
    !value.is_empty()
        && value.chars().count() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, VendorError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("Invalid input data: {name} is required.")))
}

/// `limit`, `marker`, `offset` of list calls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Paging {
    limit: usize,
    marker: String,
    offset: usize,
}

impl Paging {
    fn parse(
        limit: Option<&str>,
        marker: Option<&str>,
        offset: Option<&str>,
    ) -> Result<Self, VendorError> {
        let limit = match limit {
            None => 10,
            Some(text) => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| invalid("Invalid input data: limit must be an integer."))?;
                if !(1..=50).contains(&n) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "IOTDA.000017",
                        "The limit must be between 1 and 50.",
                    ));
                }
                n as usize
            }
        };
        let marker = marker.unwrap_or(DEFAULT_MARKER);
        if marker.len() != 24 || !marker.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(
                "Invalid input data: marker must be 24 hexadecimal characters.",
            ));
        }
        let offset = match offset {
            None => 0,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= 500)
                .ok_or_else(|| invalid("Invalid input data: offset must be between 0 and 500."))?,
        };
        Ok(Self {
            limit,
            marker: marker.to_ascii_lowercase(),
            offset,
        })
    }

    /// Applies the paging to `(id, item)` pairs sorted by id descending; returns the page and the
    /// marker of its last item.
    fn apply<'a, T>(&self, items: impl Iterator<Item = (&'a str, T)>) -> (Vec<T>, Option<String>) {
        let mut last = None;
        let page: Vec<T> = items
            .filter(|(id, _)| *id < self.marker.as_str())
            .skip(self.offset)
            .take(self.limit)
            .map(|(id, item)| {
                last = Some(id.to_owned());
                item
            })
            .collect();
        (page, last)
    }
}

fn page(count: usize, marker: Option<String>) -> Value {
    match marker {
        Some(marker) => json!({"count": count, "marker": marker}),
        None => json!({"count": count}),
    }
}

// ---------------------------------------------------------------------------------------------
// Packages
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CreatePackageBody {
    app_id: Option<String>,
    package_type: Option<String>,
    product_id: Option<String>,
    module_name: Option<String>,
    version: Option<String>,
    support_source_versions: Option<Vec<String>>,
    description: Option<String>,
    custom_info: Option<String>,
    file_location: Option<FileLocationBody>,
}

#[derive(Debug, Deserialize)]
struct FileLocationBody {
    obs_location: Option<ObsLocationBody>,
}

#[derive(Debug, Deserialize)]
struct ObsLocationBody {
    region_name: Option<String>,
    bucket_name: Option<String>,
    object_key: Option<String>,
    sign_method: Option<String>,
    sign: Option<String>,
}

const VERSION_CHARS: &[char] = &['_', '.', '-'];
const ID_CHARS: &[char] = &['_', '-'];

fn validate_package(body: &CreatePackageBody) -> Result<(), VendorError> {
    let app_id = required(&body.app_id, "app_id")?;
    if !charset_ok(app_id, 36, ID_CHARS) {
        return Err(invalid(
            "Invalid input data: app_id must be at most 36 characters of [A-Za-z0-9_-].",
        ));
    }
    let package_type = required(&body.package_type, "package_type")?;
    if !PACKAGE_TYPES.contains(&package_type) {
        return Err(invalid(format!(
            "Invalid input data: package_type must be one of {}.",
            PACKAGE_TYPES.join(", ")
        )));
    }
    let product_id = required(&body.product_id, "product_id")?;
    if !charset_ok(product_id, 36, ID_CHARS) {
        return Err(invalid(
            "Invalid input data: product_id must be at most 36 characters of [A-Za-z0-9_-].",
        ));
    }
    match (&body.module_name, package_type) {
        (Some(name), "modulePackage") if charset_ok(name, 64, VERSION_CHARS) => {}
        (None, _) => {}
        (Some(_), "modulePackage") => {
            return Err(invalid(
                "Invalid input data: module_name must be at most 64 characters of [A-Za-z0-9_.-].",
            ));
        }
        (Some(_), _) => {
            return Err(invalid(
                "Invalid input data: module_name is only allowed with modulePackage.",
            ));
        }
    }
    let version = required(&body.version, "version")?;
    if !charset_ok(version, 256, VERSION_CHARS) {
        return Err(invalid(
            "Invalid input data: version must be at most 256 characters of [A-Za-z0-9_.-].",
        ));
    }
    if let Some(sources) = &body.support_source_versions {
        if sources.len() > 20 {
            return Err(invalid(
                "Invalid input data: support_source_versions has more than 20 entries.",
            ));
        }
        if sources.iter().any(|s| !charset_ok(s, 256, VERSION_CHARS)) {
            return Err(invalid(
                "Invalid input data: support_source_versions entries must use [A-Za-z0-9_.-].",
            ));
        }
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err(invalid(
            "Invalid input data: description is longer than 1024 characters.",
        ));
    }
    if body
        .custom_info
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4096)
    {
        return Err(invalid(
            "Invalid input data: custom_info is longer than 4096 characters.",
        ));
    }
    let location = body
        .file_location
        .as_ref()
        .and_then(|f| f.obs_location.as_ref())
        .ok_or_else(|| invalid("Invalid input data: file_location.obs_location is required."))?;
    let region = required(&location.region_name, "region_name")?;
    if !charset_ok(region, 256, &['-']) {
        return Err(invalid(
            "Invalid input data: region_name must use [A-Za-z0-9-].",
        ));
    }
    let bucket = required(&location.bucket_name, "bucket_name")?;
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(invalid(
            "Invalid input data: bucket_name must be 3-63 characters of [a-z0-9.-].",
        ));
    }
    let key = required(&location.object_key, "object_key")?;
    if key.chars().count() > 1024 {
        return Err(invalid(
            "Invalid input data: object_key is longer than 1024 characters.",
        ));
    }
    if location
        .sign_method
        .as_deref()
        .is_some_and(|m| m != "SHA256")
    {
        return Err(invalid(
            "Invalid input data: sign_method only supports SHA256.",
        ));
    }
    if location
        .sign
        .as_deref()
        .is_some_and(|s| s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(invalid(
            "Invalid input data: sign must be 64 hexadecimal characters.",
        ));
    }
    Ok(())
}

impl IotdaState {
    fn create_package(&self, sim: &SimState, call: &Call) -> Result<Response, VendorError> {
        let body: CreatePackageBody = parse_json(&call.body)?;
        validate_package(&body)?;
        let location = body
            .file_location
            .and_then(|f| f.obs_location)
            .expect("validated above");
        let (region, bucket, key) = (
            location.region_name.unwrap_or_default(),
            location.bucket_name.unwrap_or_default(),
            location.object_key.unwrap_or_default(),
        );
        let mut sign = location.sign.map(|s| s.to_ascii_lowercase());
        let mut sign_method = location.sign_method;
        if self.config.require_obs_object {
            let bucket_region = sim.obs.bucket_region(&bucket).ok_or_else(|| {
                invalid(format!(
                    "Invalid input data: the OBS bucket {bucket} does not exist."
                ))
            })?;
            if bucket_region != region {
                return Err(invalid(format!(
                    "Invalid input data: the OBS bucket {bucket} is in region {bucket_region}, not {region}."
                )));
            }
            let object = sim.obs.object(&bucket, &key).ok_or_else(|| {
                invalid(format!(
                    "Invalid input data: the OBS object {key} does not exist in bucket {bucket}."
                ))
            })?;
            match &sign {
                Some(given)
                    if *given != object.sha256
                        && self.config.sign_mismatch == SignMismatch::Reject =>
                {
                    return Err(invalid(
                        "Invalid input data: sign does not match the SHA-256 of the OBS object.",
                    ));
                }
                Some(_) => {}
                None => {
                    sign = Some(object.sha256.clone());
                    sign_method = Some("SHA256".into());
                }
            }
        }
        if sign.is_some() && sign_method.is_none() {
            sign_method = Some("SHA256".into());
        }
        let package_type = body.package_type.unwrap_or_default();
        let product_id = body.product_id.unwrap_or_default();
        let version = body.version.unwrap_or_default();
        let mut inner = self.lock();
        let project = inner
            .projects
            .entry(call.account.project_id.clone())
            .or_default();
        if self.config.reject_duplicate_version
            && project.packages.values().any(|p| {
                p.product_id == product_id
                    && p.package_type == package_type
                    && p.module_name == body.module_name
                    && p.version == version
            })
        {
            return Err(invalid(format!(
                "Invalid input data: product {product_id} already has a {package_type} with version {version}."
            )));
        }
        let package = Package {
            package_id: self.new_id(call.now),
            app_id: body.app_id.unwrap_or_default(),
            package_type,
            product_id,
            module_name: body.module_name,
            version,
            support_source_versions: body.support_source_versions,
            description: body.description,
            custom_info: body.custom_info,
            create_time: format_time(call.now),
            file_location: FileLocation {
                obs_location: ObsLocation {
                    region_name: region,
                    bucket_name: bucket,
                    object_key: key,
                    sign_method,
                    sign,
                },
            },
        };
        project
            .packages
            .insert(package.package_id.clone(), package.clone());
        Ok((StatusCode::CREATED, axum::Json(package)).into_response())
    }

    fn list_packages(&self, call: &Call) -> Result<Response, VendorError> {
        #[derive(Deserialize)]
        struct ListQuery {
            app_id: Option<String>,
            package_type: Option<String>,
            product_id: Option<String>,
            version: Option<String>,
            limit: Option<String>,
            marker: Option<String>,
            offset: Option<String>,
        }
        let q: ListQuery = query(&call.uri)?;
        let package_type = required(&q.package_type, "package_type")?;
        if !PACKAGE_TYPES.contains(&package_type) {
            return Err(invalid("Invalid input data: unknown package_type."));
        }
        let paging = Paging::parse(q.limit.as_deref(), q.marker.as_deref(), q.offset.as_deref())?;
        let inner = self.lock();
        let Some(project) = inner.projects.get(&call.account.project_id) else {
            return Ok(axum::Json(json!({"packages": [], "page": page(0, None)})).into_response());
        };
        let matching = || {
            project.packages.values().rev().filter(|p| {
                p.package_type == package_type
                    && q.app_id.as_deref().is_none_or(|a| a == p.app_id)
                    && q.product_id.as_deref().is_none_or(|a| a == p.product_id)
                    && q.version.as_deref().is_none_or(|a| a == p.version)
            })
        };
        let count = matching().count();
        let (items, marker) =
            paging.apply(matching().map(|p| (p.package_id.as_str(), p.list_item())));
        Ok(axum::Json(json!({"packages": items, "page": page(count, marker)})).into_response())
    }

    fn show_package(&self, call: &Call, package_id: &str) -> Result<Response, VendorError> {
        let inner = self.lock();
        let package = inner
            .projects
            .get(&call.account.project_id)
            .and_then(|p| p.packages.get(package_id))
            .ok_or_else(|| not_found("package", package_id))?;
        Ok(axum::Json(package).into_response())
    }

    fn delete_package(&self, call: &Call, package_id: &str) -> Result<Response, VendorError> {
        self.lock()
            .projects
            .get_mut(&call.account.project_id)
            .and_then(|p| p.packages.remove(package_id))
            .ok_or_else(|| not_found("package", package_id))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

// ---------------------------------------------------------------------------------------------
// Batch tasks: model
// ---------------------------------------------------------------------------------------------

/// Text for a device's OTA `result_code`.
fn result_text(code: &str) -> &'static str {
    match code {
        "0" => "success",
        "1" => "device in use",
        "2" => "poor signal quality",
        "3" => "already the latest version",
        "4" => "low battery",
        "5" => "insufficient storage space",
        "6" => "download timed out",
        "7" => "package verification failed",
        "8" => "unsupported package type",
        "9" => "insufficient memory",
        "10" => "Firmware update failed",
        "255" => "internal error",
        _ => "Firmware update failed",
    }
}

/// The failure an upgrade ended in, as `(error_code, error_msg)`.
fn failure_of(upgrade: &UpgradeInfo, progress: &DeviceProgress) -> (String, String) {
    match progress {
        DeviceProgress::Failed { code, reason } => {
            let code = code.clone().unwrap_or_else(|| "10".into());
            let message = reason
                .clone()
                .unwrap_or_else(|| result_text(&code).to_owned());
            (code, message)
        }
        DeviceProgress::Rejected { reason } => (
            "1".into(),
            reason
                .clone()
                .unwrap_or_else(|| "The device refused the upgrade: device in use".into()),
        ),
        _ => {
            let downloaded = upgrade
                .download_starts_at
                .zip(upgrade.deadline)
                .is_some_and(|(download, deadline)| download < deadline);
            let message = if downloaded {
                "Wait for the device to report upgrade result timeout"
            } else {
                "Waiting for the device online timeout"
            };
            ("TIMEOUT".into(), message.into())
        }
    }
}

fn success_output(target_version: &str, already_current: bool) -> String {
    if already_current {
        json!({"fw_version": target_version, "description": "The device is already on the target version."})
            .to_string()
    } else {
        json!({"result_code": 0, "progress": 100, "version": target_version, "description": "success"})
            .to_string()
    }
}

struct TaskContext<'a> {
    config: &'a IotdaConfig,
    fleet: &'a Fleet,
    project_id: &'a str,
    target_version: &'a str,
    retry_count: u32,
    retry_interval: SignedDuration,
}

impl TaskContext<'_> {
    fn start(&self, target: &str, starts_at: Timestamp) -> Box<UpgradeInfo> {
        let id = self.fleet.start_upgrade(UpgradeRequest {
            key: DeviceKey::new(Vendor::Iotda, self.project_id, target),
            target_version: self.target_version.to_owned(),
            starts_at,
            deadline: starts_at
                .saturating_add(secs(self.config.device_timeout_secs))
                .ok(),
        });
        self.fleet
            .upgrade(id)
            .map(Box::new)
            .expect("the fleet knows the upgrade it just started")
    }
}

impl Subtask {
    /// The sub-task at `now`; starts automatic retries that are due.
    fn evaluate(&mut self, ctx: &TaskContext<'_>, now: Timestamp) -> SubtaskView {
        loop {
            let Run::Active {
                upgrade,
                auto_retries,
            } = &mut self.run
            else {
                let status = match self.run {
                    Run::Stopped => SubtaskStatus::Stopped,
                    _ => SubtaskStatus::Waitting,
                };
                return SubtaskView {
                    status,
                    already_current: None,
                    error: None,
                };
            };
            let progress = upgrade.progress_at(now);
            let view = |status| SubtaskView {
                status,
                already_current: None,
                error: None,
            };
            match &progress {
                DeviceProgress::Queued | DeviceProgress::Offline => {
                    return view(SubtaskStatus::Waitting);
                }
                DeviceProgress::Downloading { .. } | DeviceProgress::Installing => {
                    return view(SubtaskStatus::Processing);
                }
                DeviceProgress::Cancelled => return view(SubtaskStatus::Stopped),
                DeviceProgress::Succeeded { already_current } => {
                    return SubtaskView {
                        status: SubtaskStatus::Success,
                        already_current: Some(*already_current),
                        error: None,
                    };
                }
                DeviceProgress::Failed { .. }
                | DeviceProgress::Rejected { .. }
                | DeviceProgress::TimedOut => {
                    let failure = failure_of(upgrade, &progress);
                    if *auto_retries >= ctx.retry_count {
                        return SubtaskView {
                            status: SubtaskStatus::Fail,
                            already_current: None,
                            error: Some(failure),
                        };
                    }
                    let failed_at = upgrade.settles_at().unwrap_or(now);
                    let retry_at = failed_at
                        .saturating_add(ctx.retry_interval)
                        .unwrap_or(Timestamp::MAX);
                    if now < retry_at {
                        return SubtaskView {
                            status: SubtaskStatus::FailWaitRetry,
                            already_current: None,
                            error: Some(failure),
                        };
                    }
                    let used = *auto_retries + 1;
                    self.run = Run::Active {
                        upgrade: ctx.start(&self.target, retry_at),
                        auto_retries: used,
                    };
                }
            }
        }
    }
}

impl Task {
    fn context<'a>(
        &'a self,
        config: &'a IotdaConfig,
        fleet: &'a Fleet,
        project_id: &'a str,
    ) -> TaskContext<'a> {
        TaskContext {
            config,
            fleet,
            project_id,
            target_version: &self.target_version,
            retry_count: self.retry_count,
            retry_interval: self.retry_interval,
        }
    }

    /// Every sub-task at `now` (cached once all are final).
    fn views(
        &mut self,
        config: &IotdaConfig,
        fleet: &Fleet,
        project_id: &str,
        now: Timestamp,
    ) -> Arc<Vec<SubtaskView>> {
        if let Some(settled) = &self.settled {
            return Arc::clone(settled);
        }
        let ctx = TaskContext {
            config,
            fleet,
            project_id,
            target_version: &self.target_version,
            retry_count: self.retry_count,
            retry_interval: self.retry_interval,
        };
        let views: Arc<Vec<SubtaskView>> = Arc::new(
            self.subtasks
                .iter_mut()
                .map(|s| s.evaluate(&ctx, now))
                .collect(),
        );
        if views.iter().all(|v| v.status.is_terminal()) {
            self.settled = Some(Arc::clone(&views));
        }
        views
    }

    /// Task status at `now` given the sub-task views.
    fn status(&self, config: &IotdaConfig, views: &[SubtaskView], now: Timestamp) -> &'static str {
        if let Some(stopped_at) = self.stopped_at {
            let done = stopped_at
                .saturating_add(secs(config.stopping_secs))
                .unwrap_or(Timestamp::MAX);
            return if now < done { "Stopping" } else { "Stopped" };
        }
        if now
            < self
                .created_at
                .saturating_add(secs(config.initializing_secs))
                .unwrap_or(Timestamp::MAX)
        {
            return "Initializing";
        }
        if views.iter().all(|v| v.status.is_terminal()) {
            let success = views
                .iter()
                .filter(|v| v.status == SubtaskStatus::Success)
                .count();
            let fail = views
                .iter()
                .filter(|v| v.status == SubtaskStatus::Fail)
                .count();
            return if success == views.len() {
                "Success"
            } else if success > 0 {
                "PartialSuccess"
            } else if fail > 0 {
                "Fail"
            } else {
                "Stopped"
            };
        }
        if views.iter().all(|v| v.status == SubtaskStatus::Waitting) {
            "Waitting"
        } else {
            "Processing"
        }
    }

    fn to_json(&self, status: &'static str, progress: TaskProgress) -> TaskJson<'_> {
        TaskJson {
            task_id: &self.task_id,
            task_name: &self.task_name,
            task_type: &self.task_type,
            task_mode: self.task_mode.as_deref(),
            need_confirm: self.need_confirm,
            task_ext_info: self.task_ext_info.as_ref(),
            targets: &self.targets,
            document: &self.document,
            task_policy: self.task_policy.as_ref(),
            status,
            status_desc: status_desc(status),
            task_progress: progress,
            create_time: format_time(self.created_at),
            app_id: &self.app_id,
        }
    }
}

/// The Task object of responses, borrowed from the task (large `targets` are not copied).
#[derive(Debug, Serialize)]
struct TaskJson<'a> {
    task_id: &'a str,
    task_name: &'a str,
    task_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_mode: Option<&'a str>,
    need_confirm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_ext_info: Option<&'a Value>,
    targets: &'a [String],
    document: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_policy: Option<&'a Value>,
    status: &'static str,
    status_desc: &'static str,
    task_progress: TaskProgress,
    create_time: String,
    app_id: &'a str,
}

fn status_desc(status: &str) -> &'static str {
    match status {
        "Fail" => "All sub tasks failed.",
        "PartialSuccess" => "Some sub tasks failed.",
        "Stopped" => "The task was stopped.",
        _ => "",
    }
}

/// Sub-task record id for `task_details` paging: ids descend with the target order.
fn detail_id(index: usize) -> String {
    format!("{:024x}", detail_value(index))
}

/// Numeric value of [`detail_id`].
fn detail_value(index: usize) -> u128 {
    ((1u128 << 96) - 2) - index as u128
}

fn detail_json(target: &str, view: &SubtaskView, target_version: &str) -> Value {
    let mut detail = json!({"target": target, "status": view.status.name()});
    if let Some(already_current) = view.already_current {
        detail["output"] = json!(success_output(target_version, already_current));
    }
    if let Some((code, message)) = &view.error {
        detail["error"] = json!({"error_code": code, "error_msg": message});
    }
    detail
}

// ---------------------------------------------------------------------------------------------
// Batch tasks: operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CreateTaskBody {
    app_id: Option<String>,
    task_name: Option<String>,
    task_type: Option<String>,
    targets: Option<Vec<String>>,
    targets_filter: Option<Value>,
    document: Option<Value>,
    document_source: Option<String>,
    task_policy: Option<TaskPolicyBody>,
    task_mode: Option<String>,
    task_ext_info: Option<Value>,
    need_confirm: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize)]
struct TaskPolicyBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_interval: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct TargetsBody {
    targets: Option<Vec<String>>,
}

/// The package a `document` points at: `{"package_ids":[…]}` or `{"package_id":"…"}`.
fn document_package(document: &Value) -> Result<String, VendorError> {
    if let Some(ids) = document.get("package_ids") {
        let ids = ids
            .as_array()
            .ok_or_else(|| invalid("Invalid input data: document.package_ids must be an array."))?;
        return match ids.as_slice() {
            [Value::String(id)] => Ok(id.clone()),
            [] => Err(invalid(
                "Invalid input data: document.package_ids is empty.",
            )),
            _ => Err(invalid(
                "Invalid input data: document.package_ids must hold exactly one package id.",
            )),
        };
    }
    match document.get("package_id") {
        Some(Value::String(id)) => Ok(id.clone()),
        _ => Err(invalid(
            "Invalid input data: document.package_ids is required for upgrade tasks.",
        )),
    }
}

fn package_type_for(task_type: &str) -> &'static str {
    match task_type {
        "softwareUpgrade" => "softwarePackage",
        "moduleUpgrade" => "modulePackage",
        _ => "firmwarePackage",
    }
}

fn operation_result(target: &str, outcome: Result<(), &str>) -> Value {
    match outcome {
        Ok(()) => json!({"target": target, "status": "success"}),
        Err(message) => json!({
            "target": target,
            "status": "failure",
            "error_code": "IOTDA.014219",
            "error_msg": message,
        }),
    }
}

/// Which sub-tasks an operation touches: the listed targets, or every one in `eligible` states.
fn selected_targets(body: &TargetsBody) -> Result<Option<Vec<String>>, VendorError> {
    match &body.targets {
        Some(targets) if targets.len() > MAX_OPERATION_TARGETS => Err(invalid(format!(
            "Invalid input data: at most {MAX_OPERATION_TARGETS} targets per call."
        ))),
        Some(targets) if targets.is_empty() => {
            Err(invalid("Invalid input data: targets is empty."))
        }
        Some(targets) => Ok(Some(targets.clone())),
        None => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Stop,
    Retry,
    Confirm,
}

impl IotdaState {
    fn create_task(&self, sim: &SimState, call: &Call) -> Result<Response, VendorError> {
        let body: CreateTaskBody = parse_json(&call.body)?;
        let task_name = required(&body.task_name, "task_name")?.to_owned();
        if task_name.chars().count() > 128
            || !task_name.chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "Invalid input data: task_name may only contain Chinese characters, letters, digits and underscores (at most 128).",
            ));
        }
        let task_type = required(&body.task_type, "task_type")?.to_owned();
        if !UPGRADE_TASK_TYPES.contains(&task_type.as_str()) {
            return Err(if OTHER_TASK_TYPES.contains(&task_type.as_str()) {
                invalid(format!(
                    "Invalid input data: task_type {task_type} is not simulated; only upgrade tasks are."
                ))
            } else {
                invalid(format!(
                    "Invalid input data: unknown task_type {task_type}."
                ))
            });
        }
        if let Some(app_id) = &body.app_id
            && !charset_ok(app_id, 36, ID_CHARS)
        {
            return Err(invalid(
                "Invalid input data: app_id must be at most 36 characters of [A-Za-z0-9_-].",
            ));
        }
        if body.task_mode.as_deref().is_some_and(|m| m != "GATEWAY") {
            return Err(invalid(
                "Invalid input data: task_mode only supports GATEWAY.",
            ));
        }
        if let Some(info) = &body.task_ext_info {
            if !info.is_object() {
                return Err(invalid(
                    "Invalid input data: task_ext_info must be an object.",
                ));
            }
            if info.to_string().chars().count() > 512 {
                return Err(invalid(
                    "Invalid input data: task_ext_info is longer than 512 characters.",
                ));
            }
        }
        let targets: Vec<String> = match (
            &body.targets,
            &body.targets_filter,
            &body.document_source,
        ) {
            (Some(targets), _, _) => {
                if targets.is_empty() {
                    return Err(invalid("Invalid input data: targets is empty."));
                }
                if targets.len() > MAX_TASK_TARGETS {
                    return Err(invalid(format!(
                        "Invalid input data: at most {MAX_TASK_TARGETS} targets."
                    )));
                }
                if let Some(bad) = targets.iter().find(|t| !charset_ok(t, 128, ID_CHARS)) {
                    return Err(invalid(format!(
                        "Invalid input data: device id {bad:?} must be at most 128 characters of [A-Za-z0-9_-]."
                    )));
                }
                let mut seen = std::collections::HashSet::with_capacity(targets.len());
                targets
                    .iter()
                    .filter(|t| seen.insert(t.as_str()))
                    .cloned()
                    .collect()
            }
            (None, Some(_), _) => {
                return Err(invalid(
                    "Invalid input data: targets_filter (device groups) is not simulated; list the devices in targets.",
                ));
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    "Invalid input data: document_source is not supported for upgrade tasks.",
                ));
            }
            (None, None, None) => return Err(invalid("Invalid input data: targets is required.")),
        };
        let document = body.document.clone().ok_or_else(|| {
            invalid("Invalid input data: document is required for upgrade tasks.")
        })?;
        let package_id = document_package(&document)?;

        let (retry_count, retry_interval, schedule) = match &body.task_policy {
            None => (0, SignedDuration::ZERO, None),
            Some(policy) => {
                let (count, interval) = match (policy.retry_count, policy.retry_interval) {
                    (None, None) => (0, 0),
                    (Some(count), Some(interval)) => {
                        if !(0..=5).contains(&count) {
                            return Err(invalid(
                                "Invalid input data: retry_count must be between 0 and 5.",
                            ));
                        }
                        if !(1..=1440).contains(&interval) {
                            return Err(invalid(
                                "Invalid input data: retry_interval must be between 1 and 1440 minutes.",
                            ));
                        }
                        (count, interval)
                    }
                    _ => {
                        return Err(invalid(
                            "Invalid input data: retry_count and retry_interval must be given together.",
                        ));
                    }
                };
                let schedule = match &policy.schedule_time {
                    None => None,
                    Some(text) => {
                        let at = huawei::parse_sdk_date(text).map_err(|_| {
                            invalid("Invalid input data: schedule_time must look like yyyyMMddTHHmmssZ.")
                        })?;
                        if at
                            > call
                                .now
                                .saturating_add(SignedDuration::from_hours(7 * 24))
                                .unwrap_or(Timestamp::MAX)
                        {
                            return Err(invalid(
                                "Invalid input data: schedule_time must be within 7 days.",
                            ));
                        }
                        Some(at)
                    }
                };
                (count as u32, SignedDuration::from_mins(interval), schedule)
            }
        };

        let mut inner = self.lock();
        let project_id = call.account.project_id.clone();
        let project = inner.projects.entry(project_id.clone()).or_default();
        let package = project.packages.get(&package_id).ok_or_else(|| {
            invalid(format!(
                "Invalid input data: the package {package_id} does not exist."
            ))
        })?;
        if package.package_type != package_type_for(&task_type) {
            return Err(invalid(format!(
                "Invalid input data: a {task_type} task needs a {} package, {package_id} is a {}.",
                package_type_for(&task_type),
                package.package_type
            )));
        }
        let target_version = package.version.clone();
        let created_at = call.now;
        let initialized = created_at
            .saturating_add(secs(self.config.initializing_secs))
            .unwrap_or(Timestamp::MAX);
        let dispatch_at = schedule.map_or(initialized, |s| s.max(initialized));
        let need_confirm = body.need_confirm.unwrap_or(false);
        let mut task = Task {
            task_id: self.new_id(call.now),
            task_name,
            task_type,
            task_mode: body.task_mode,
            need_confirm,
            task_ext_info: body.task_ext_info,
            targets: targets.clone(),
            document,
            task_policy: body
                .task_policy
                .as_ref()
                .map(|p| serde_json::to_value(p).unwrap_or_default()),
            app_id: body.app_id.unwrap_or_else(|| call.account.app_id.clone()),
            package_id,
            target_version,
            created_at,
            dispatch_at,
            retry_count,
            retry_interval,
            stopped_at: None,
            subtasks: Vec::new(),
            settled: None,
        };
        let subtasks: Vec<Subtask> = {
            let ctx = task.context(&self.config, &sim.fleet, &project_id);
            targets
                .into_iter()
                .map(|target| {
                    let run = if need_confirm {
                        Run::AwaitingConfirm
                    } else {
                        Run::Active {
                            upgrade: ctx.start(&target, dispatch_at),
                            auto_retries: 0,
                        }
                    };
                    Subtask { target, run }
                })
                .collect()
        };
        task.subtasks = subtasks;
        let views = task.views(&self.config, &sim.fleet, &project_id, call.now);
        let response = (
            StatusCode::CREATED,
            axum::Json(task.to_json(
                task.status(&self.config, &views, call.now),
                TaskProgress::from_views(&views),
            )),
        )
            .into_response();
        project.tasks.insert(task.task_id.clone(), task);
        Ok(response)
    }

    fn list_tasks(&self, sim: &SimState, call: &Call) -> Result<Response, VendorError> {
        #[derive(Deserialize)]
        struct ListQuery {
            app_id: Option<String>,
            task_type: Option<String>,
            status: Option<String>,
            limit: Option<String>,
            marker: Option<String>,
            offset: Option<String>,
        }
        let q: ListQuery = query(&call.uri)?;
        let task_type = required(&q.task_type, "task_type")?;
        let paging = Paging::parse(q.limit.as_deref(), q.marker.as_deref(), q.offset.as_deref())?;
        let project_id = call.account.project_id.as_str();
        let mut inner = self.lock();
        let Some(project) = inner.projects.get_mut(project_id) else {
            return Ok(axum::Json(json!({"batchtasks": [], "page": page(0, None)})).into_response());
        };
        let mut matching: Vec<(String, &'static str, TaskProgress)> = Vec::new();
        for task in project.tasks.values_mut().rev() {
            if task.task_type != task_type || q.app_id.as_deref().is_some_and(|a| a != task.app_id)
            {
                continue;
            }
            let views = task.views(&self.config, &sim.fleet, project_id, call.now);
            let status = task.status(&self.config, &views, call.now);
            if q.status.as_deref().is_some_and(|s| s != status) {
                continue;
            }
            matching.push((
                task.task_id.clone(),
                status,
                TaskProgress::from_views(&views),
            ));
        }
        let count = matching.len();
        let (items, marker) = paging.apply(
            matching
                .iter()
                .map(|(id, status, progress)| (id.as_str(), (id, *status, *progress))),
        );
        let batchtasks: Vec<TaskJson<'_>> = items
            .into_iter()
            .filter_map(|(id, status, progress)| {
                project
                    .tasks
                    .get(id)
                    .map(|task| task.to_json(status, progress))
            })
            .collect();
        #[derive(Serialize)]
        struct ListTasksResponse<'a> {
            batchtasks: Vec<TaskJson<'a>>,
            page: Value,
        }
        Ok(axum::Json(ListTasksResponse {
            batchtasks,
            page: page(count, marker),
        })
        .into_response())
    }

    fn show_task(
        &self,
        sim: &SimState,
        call: &Call,
        task_id: &str,
    ) -> Result<Response, VendorError> {
        #[derive(Deserialize)]
        struct ShowQuery {
            task_detail_status: Option<String>,
            target: Option<String>,
            limit: Option<String>,
            marker: Option<String>,
            offset: Option<String>,
        }
        let q: ShowQuery = query(&call.uri)?;
        const DETAIL_STATUSES: [&str; 7] = [
            "Waitting",
            "Processing",
            "Success",
            "Fail",
            "FailWaitRetry",
            "Stopped",
            "Removed",
        ];
        if q.task_detail_status
            .as_deref()
            .is_some_and(|s| !DETAIL_STATUSES.contains(&s))
        {
            return Err(invalid("Invalid input data: unknown task_detail_status."));
        }
        let paging = Paging::parse(q.limit.as_deref(), q.marker.as_deref(), q.offset.as_deref())?;
        let project_id = call.account.project_id.as_str();
        let mut inner = self.lock();
        let task = inner
            .projects
            .get_mut(project_id)
            .and_then(|p| p.tasks.get_mut(task_id))
            .ok_or_else(|| not_found("task", task_id))?;
        let views = task.views(&self.config, &sim.fleet, project_id, call.now);
        let status = task.status(&self.config, &views, call.now);
        let selected = || {
            task.subtasks
                .iter()
                .zip(views.iter())
                .enumerate()
                .filter(|(_, (subtask, view))| {
                    q.task_detail_status
                        .as_deref()
                        .is_none_or(|s| s == view.status.name())
                        && q.target.as_deref().is_none_or(|t| t == subtask.target)
                })
        };
        let count = selected().count();
        let marker_value = u128::from_str_radix(&paging.marker, 16).unwrap_or(u128::MAX);
        let page_items: Vec<(usize, Value)> = selected()
            .filter(|(index, _)| detail_value(*index) < marker_value)
            .skip(paging.offset)
            .take(paging.limit)
            .map(|(index, (subtask, view))| {
                (
                    index,
                    detail_json(&subtask.target, view, &task.target_version),
                )
            })
            .collect();
        let marker = page_items.last().map(|(index, _)| detail_id(*index));
        let details: Vec<Value> = page_items.into_iter().map(|(_, detail)| detail).collect();
        #[derive(Serialize)]
        struct ShowTaskResponse<'a> {
            batchtask: TaskJson<'a>,
            task_details: Vec<Value>,
            page: Value,
        }
        Ok(axum::Json(ShowTaskResponse {
            batchtask: task.to_json(status, TaskProgress::from_views(&views)),
            task_details: details,
            page: page(count, marker),
        })
        .into_response())
    }

    fn delete_task(
        &self,
        sim: &SimState,
        call: &Call,
        task_id: &str,
    ) -> Result<Response, VendorError> {
        let project_id = call.account.project_id.as_str();
        let mut inner = self.lock();
        let project = inner
            .projects
            .get_mut(project_id)
            .ok_or_else(|| not_found("task", task_id))?;
        let task = project
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| not_found("task", task_id))?;
        let views = task.views(&self.config, &sim.fleet, project_id, call.now);
        let status = task.status(&self.config, &views, call.now);
        if !matches!(status, "Success" | "Fail" | "PartialSuccess" | "Stopped") {
            return Err(invalid(format!(
                "The task is {status}; only finished tasks (Success, Fail, PartialSuccess, Stopped) can be deleted."
            )));
        }
        project.tasks.remove(task_id);
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn operate(
        &self,
        sim: &SimState,
        call: &Call,
        task_id: &str,
        operation: Operation,
    ) -> Result<Response, VendorError> {
        let body: TargetsBody = parse_json(&call.body)?;
        let listed = selected_targets(&body)?;
        let project_id = call.account.project_id.as_str();
        let now = call.now;
        let mut inner = self.lock();
        let task = inner
            .projects
            .get_mut(project_id)
            .and_then(|p| p.tasks.get_mut(task_id))
            .ok_or_else(|| not_found("task", task_id))?;
        let views = task.views(&self.config, &sim.fleet, project_id, now);
        let status = task.status(&self.config, &views, now);
        let refused: &[&str] = match operation {
            Operation::Stop => &["Success", "Fail", "PartialSuccess", "Stopped", "Stopping"],
            Operation::Retry => &["Success", "Stopped", "Stopping", "Waitting", "Initializing"],
            Operation::Confirm => &["Success", "Fail", "PartialSuccess", "Stopped", "Stopping"],
        };
        if refused.contains(&status) {
            return Err(invalid(format!(
                "The task status {status} does not support this operation."
            )));
        }
        if operation == Operation::Confirm && !task.need_confirm {
            return Err(invalid("The task was not created with need_confirm=true."));
        }
        let eligible = |view: &SubtaskView, run: &Run| match operation {
            Operation::Stop => matches!(
                view.status,
                SubtaskStatus::Processing | SubtaskStatus::Waitting | SubtaskStatus::FailWaitRetry
            ),
            Operation::Retry => matches!(
                view.status,
                SubtaskStatus::Fail | SubtaskStatus::FailWaitRetry | SubtaskStatus::Stopped
            ),
            Operation::Confirm => matches!(run, Run::AwaitingConfirm),
        };
        let index: HashMap<&str, usize> = task
            .subtasks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.target.as_str(), i))
            .collect();
        let chosen: Vec<(String, Result<usize, &'static str>)> = match &listed {
            Some(targets) => targets
                .iter()
                .map(|target| {
                    let outcome = match index.get(target.as_str()) {
                        None => Err("The device is not a target of this task."),
                        Some(&i) if eligible(&views[i], &task.subtasks[i].run) => Ok(i),
                        Some(_) => Err("The sub task status does not support this operation."),
                    };
                    (target.clone(), outcome)
                })
                .collect(),
            None => task
                .subtasks
                .iter()
                .enumerate()
                .filter(|(i, s)| eligible(&views[*i], &s.run))
                .map(|(i, s)| (s.target.clone(), Ok(i)))
                .collect(),
        };
        drop(index);
        let ctx_start = now.max(task.dispatch_at);
        let mut results = Vec::with_capacity(chosen.len());
        let mut changed = false;
        for (target, outcome) in chosen {
            let Ok(i) = outcome else {
                results.push(operation_result(&target, outcome.map(|_| ())));
                continue;
            };
            changed = true;
            let new_run = match operation {
                Operation::Stop => {
                    if let Run::Active { upgrade, .. } = &task.subtasks[i].run {
                        sim.fleet.cancel_upgrade(upgrade.id, now);
                    }
                    Run::Stopped
                }
                Operation::Retry | Operation::Confirm => {
                    let ctx = task.context(&self.config, &sim.fleet, project_id);
                    let starts_at = if operation == Operation::Retry {
                        now
                    } else {
                        ctx_start
                    };
                    Run::Active {
                        upgrade: ctx.start(&target, starts_at),
                        auto_retries: 0,
                    }
                }
            };
            task.subtasks[i].run = new_run;
            results.push(operation_result(&target, Ok(())));
        }
        if changed {
            task.settled = None;
        }
        if operation == Operation::Stop && listed.is_none() {
            task.stopped_at = Some(now);
        }
        Ok(axum::Json(json!({"targets": results})).into_response())
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn respond(result: Result<Response, VendorError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn create_package(
    State(sim): State<SharedState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.create_package(&sim, &call)),
        Err(response) => response,
    }
}

async fn list_packages(
    State(sim): State<SharedState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.list_packages(&call)),
        Err(response) => response,
    }
}

async fn show_package(
    State(sim): State<SharedState>,
    Path((project_id, package_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.show_package(&call, &package_id)),
        Err(response) => response,
    }
}

async fn delete_package(
    State(sim): State<SharedState>,
    Path((project_id, package_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.delete_package(&call, &package_id)),
        Err(response) => response,
    }
}

async fn create_task(
    State(sim): State<SharedState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.create_task(&sim, &call)),
        Err(response) => response,
    }
}

async fn list_tasks(
    State(sim): State<SharedState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.list_tasks(&sim, &call)),
        Err(response) => response,
    }
}

async fn show_task(
    State(sim): State<SharedState>,
    Path((project_id, task_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.show_task(&sim, &call, &task_id)),
        Err(response) => response,
    }
}

async fn delete_task(
    State(sim): State<SharedState>,
    Path((project_id, task_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.delete_task(&sim, &call, &task_id)),
        Err(response) => response,
    }
}

async fn operate(
    sim: SharedState,
    project_id: String,
    task_id: String,
    request: Request,
    operation: Operation,
) -> Response {
    match prepare(&sim, request, Some(&project_id)).await {
        Ok(call) => respond(sim.iotda.operate(&sim, &call, &task_id, operation)),
        Err(response) => response,
    }
}

async fn stop_task(
    State(sim): State<SharedState>,
    Path((project_id, task_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    operate(sim, project_id, task_id, request, Operation::Stop).await
}

async fn retry_task(
    State(sim): State<SharedState>,
    Path((project_id, task_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    operate(sim, project_id, task_id, request, Operation::Retry).await
}

async fn confirm_task(
    State(sim): State<SharedState>,
    Path((project_id, task_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    operate(sim, project_id, task_id, request, Operation::Confirm).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fleet::{Behaviour, BehaviourRule, FleetConfig, PlannedOutcome, UpgradeTiming};

    fn t0() -> Timestamp {
        "2024-06-01T00:00:00Z".parse().unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(seconds)
    }

    fn fleet() -> Fleet {
        let rule = |device: &str, behaviour| BehaviourRule {
            vendor: None,
            account: None,
            device: Some(device.into()),
            probability: None,
            behaviour,
        };
        Fleet::new(
            FleetConfig {
                rules: vec![
                    rule(
                        "bad*",
                        Behaviour::Fails {
                            code: Some("7".into()),
                            reason: None,
                        },
                    ),
                    rule("off*", Behaviour::Offline),
                ],
                timing: UpgradeTiming {
                    queue_secs: 10.0,
                    download_secs: 10.0,
                    install_secs: 10.0,
                    jitter: 0.0,
                },
                ..FleetConfig::default()
            },
            1,
            t0(),
        )
    }

    fn task(
        targets: &[&str],
        retry_count: u32,
        need_confirm: bool,
        config: &IotdaConfig,
        fleet: &Fleet,
    ) -> Task {
        let mut task = Task {
            task_id: "0".repeat(24),
            task_name: "t".into(),
            task_type: "firmwareUpgrade".into(),
            task_mode: None,
            need_confirm,
            task_ext_info: None,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            document: json!({"package_ids": ["p"]}),
            task_policy: None,
            app_id: "app".into(),
            package_id: "p".into(),
            target_version: "2.0.0".into(),
            created_at: t0(),
            dispatch_at: at(2),
            retry_count,
            retry_interval: SignedDuration::from_mins(1),
            stopped_at: None,
            subtasks: Vec::new(),
            settled: None,
        };
        let ctx = task.context(config, fleet, "proj");
        let subtasks = targets
            .iter()
            .map(|target| Subtask {
                target: target.to_string(),
                run: if need_confirm {
                    Run::AwaitingConfirm
                } else {
                    Run::Active {
                        upgrade: ctx.start(target, at(2)),
                        auto_retries: 0,
                    }
                },
            })
            .collect();
        task.subtasks = subtasks;
        task
    }

    fn statuses(
        task: &mut Task,
        config: &IotdaConfig,
        fleet: &Fleet,
        now: Timestamp,
    ) -> (String, TaskProgress) {
        let views = task.views(config, fleet, "proj", now);
        (
            task.status(config, &views, now).to_owned(),
            TaskProgress::from_views(&views),
        )
    }

    #[test]
    fn task_moves_from_initializing_to_partial_success_and_counts_add_up() {
        let config = IotdaConfig::default();
        let fleet = fleet();
        let mut task = task(&["ok1", "ok2", "bad1"], 0, false, &config, &fleet);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(1));
        assert_eq!(status, "Initializing");
        assert_eq!(progress.waitting, 3);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(5));
        assert_eq!(status, "Waitting");
        assert_eq!(progress.total, 3);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(15));
        assert_eq!(status, "Processing");
        assert_eq!(progress.processing, 3);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(40));
        assert_eq!(status, "PartialSuccess");
        assert_eq!((progress.success, progress.fail), (2, 1));
        assert!(task.settled.is_some(), "a finished task caches its results");
        let views = task.views(&config, &fleet, "proj", at(40));
        assert_eq!(
            views[2].error,
            Some(("7".into(), "package verification failed".into()))
        );
        assert_eq!(
            fleet.version_at(&DeviceKey::new(Vendor::Iotda, "proj", "ok1"), at(40)),
            "2.0.0"
        );
    }

    #[test]
    fn failures_wait_for_automatic_retries_then_fail() {
        let config = IotdaConfig::default();
        let fleet = fleet();
        let mut task = task(&["bad1"], 2, false, &config, &fleet);
        let (_, progress) = statuses(&mut task, &config, &fleet, at(40));
        assert_eq!(progress.fail_wait_retry, 1);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(105));
        assert_eq!(
            (status.as_str(), progress.processing),
            ("Processing", 1),
            "first retry runs"
        );
        let (status, progress) = statuses(&mut task, &config, &fleet, at(1000));
        assert_eq!((status.as_str(), progress.fail), ("Fail", 1));
        let Run::Active { auto_retries, .. } = &task.subtasks[0].run else {
            panic!()
        };
        assert_eq!(*auto_retries, 2);
    }

    #[test]
    fn offline_devices_wait_then_time_out() {
        let config = IotdaConfig::default();
        let fleet = fleet();
        let mut task = task(&["off1"], 0, false, &config, &fleet);
        let Run::Active { upgrade, .. } = &task.subtasks[0].run else {
            panic!()
        };
        assert_eq!(upgrade.planned, PlannedOutcome::Offline);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(3600));
        assert_eq!((status.as_str(), progress.waitting), ("Waitting", 1));
        let views = task.views(&config, &fleet, "proj", at(26 * 3600));
        assert_eq!(views[0].status, SubtaskStatus::Fail);
        assert_eq!(
            views[0].error.as_ref().unwrap().1,
            "Waiting for the device online timeout"
        );
    }

    #[test]
    fn need_confirm_keeps_subtasks_waiting() {
        let config = IotdaConfig::default();
        let fleet = fleet();
        let mut task = task(&["ok1"], 0, true, &config, &fleet);
        let (status, progress) = statuses(&mut task, &config, &fleet, at(1000));
        assert_eq!((status.as_str(), progress.waitting), ("Waitting", 1));
    }

    #[test]
    fn paging_uses_descending_ids_marker_and_offset() {
        let ids = ["c", "b", "a"].map(|s| s.repeat(24));
        let paging = Paging::parse(Some("2"), None, None).unwrap();
        let (page1, marker) = paging.apply(ids.iter().map(|id| (id.as_str(), id.clone())));
        assert_eq!(page1, vec![ids[0].clone(), ids[1].clone()]);
        let paging = Paging::parse(Some("2"), marker.as_deref(), None).unwrap();
        let (page2, _) = paging.apply(ids.iter().map(|id| (id.as_str(), id.clone())));
        assert_eq!(page2, vec![ids[2].clone()]);
        let paging = Paging::parse(None, None, Some("1")).unwrap();
        assert_eq!(
            paging.apply(ids.iter().map(|id| (id.as_str(), 1))).0.len(),
            2
        );
        assert_eq!(
            Paging::parse(Some("51"), None, None)
                .unwrap_err()
                .code
                .as_deref(),
            Some("IOTDA.000017")
        );
        assert!(Paging::parse(None, Some("xyz"), None).is_err());
        assert!(Paging::parse(None, None, Some("501")).is_err());
        assert!(detail_id(0) > detail_id(1) && detail_id(0).as_str() < DEFAULT_MARKER);
    }

    #[test]
    fn document_accepts_both_package_forms() {
        assert_eq!(
            document_package(&json!({"package_ids": ["a"]})).unwrap(),
            "a"
        );
        assert_eq!(document_package(&json!({"package_id": "b"})).unwrap(), "b");
        assert!(document_package(&json!({"package_ids": []})).is_err());
        assert!(document_package(&json!({})).is_err());
    }

    #[test]
    fn algorithm_rule_depends_on_host_and_setting() {
        let instance = "abc.st1.iotda-app.cn-north-4.myhuaweicloud.com";
        assert_eq!(
            required_algorithm(AlgorithmCheck::Auto, instance),
            Some(HuaweiAlgorithm::Derived)
        );
        assert_eq!(
            required_algorithm(AlgorithmCheck::Auto, "iotda.cn-north-4.myhuaweicloud.com"),
            None
        );
        assert_eq!(
            required_algorithm(AlgorithmCheck::Auto, "127.0.0.1:8080"),
            None
        );
        assert_eq!(
            required_algorithm(AlgorithmCheck::Strict, "127.0.0.1:8080"),
            Some(HuaweiAlgorithm::Derived)
        );
        assert_eq!(required_algorithm(AlgorithmCheck::Off, instance), None);
    }
}
