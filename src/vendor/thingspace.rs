//! Verizon ThingSpace Software Management (FOTA v2) client.
//!
//! Every FOTA call carries an OAuth bearer token and an M2M session token (`VZ-M2M-Token`).
//! The OAuth token is cached until shortly before it expires; the session token is kept until
//! ThingSpace says it expired. A rejected login is never retried by this client: five bad
//! passwords lock the user, so the error sticks until the Secret changes (the caller then builds
//! a new client).

use std::{collections::HashSet, path::Path, sync::Arc, time::Duration};

use reqwest::{Client, RequestBuilder, multipart};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    error::{Secret, VendorError},
    http::{ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp},
    types::{
        DeleteOutcome, DeviceState, PackageSpec, PackageVendorSpec, RegisteredPackage,
        RolloutProgress, RolloutSpec,
    },
};

const VENDOR: &str = "ThingSpace";
/// Renew the OAuth token this long before ThingSpace says it expires.
const TOKEN_RENEWAL_MARGIN: Duration = Duration::from_secs(60);
/// The distribution type of HTTP-client devices: the only one with file campaigns.
const DISTRIBUTION_TYPE: &str = "HTTP";
/// Days a campaign runs when the caller gives no end date.
const DEFAULT_CAMPAIGN_DAYS: i64 = 7;
/// Campaign states listed when looking a campaign up by name.
const CAMPAIGN_STATES: [&str; 9] = [
    "CampaignRequestPending",
    "CampaignQueued",
    "CampaignRequestQueued",
    "CampaignScheduled",
    "CampaignEnded",
    "CampaignCancelled",
    "CampaignAborted",
    "CampaignRequestFailed",
    "CampaignFailed",
];

/// Where the account is and who we are there.
#[derive(Clone, Debug)]
pub struct ThingSpaceConfig {
    /// API root, e.g. `https://thingspace.verizon.com/api`.
    pub base_url: String,
    /// Billing account name, leading zeros kept.
    pub account_name: String,
    /// OAuth client ID.
    pub app_key: Secret,
    /// OAuth client secret.
    pub app_secret: Secret,
    /// UWS user for the M2M session.
    pub username: String,
    /// UWS password.
    pub password: Secret,
}

/// How ThingSpace spells errors: `{errorCode, errorMessage}`, a WSO2 `{fault}`, or an OAuth
/// `{error, error_description}`.
struct ThingSpaceDialect;

impl ErrorDialect for ThingSpaceDialect {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn parse(&self, status: u16, body: &[u8]) -> (Option<String>, String) {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect::<String>();
            let message = if text.is_empty() {
                format!("HTTP {status}")
            } else {
                text
            };
            return (None, message);
        };
        if let Some(code) = json.get("errorCode") {
            return (
                Some(value_text(code)),
                json["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if let Some(fault) = json.get("fault") {
            let message = [fault["message"].as_str(), fault["description"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return (Some(value_text(&fault["code"])), message);
        }
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            return (
                Some(error.to_string()),
                json["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        (None, json.to_string())
    }

    fn is_flow_control(&self, _status: u16, code: Option<&str>) -> bool {
        // WSO2's throttling fault.
        code == Some("900800")
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether an error says the M2M session expired (matched on the code, never the message).
fn is_session_expired(err: &VendorError) -> bool {
    matches!(err, VendorError::Api { code: Some(code), .. }
        if code.ends_with("SessionToken.Expired") || code.ends_with("SessionToken.Invalid"))
}

/// Whether an error says the OAuth bearer token is invalid or expired (WSO2 900901/900903).
fn is_bearer_expired(err: &VendorError) -> bool {
    matches!(err, VendorError::Api { status: 401, code: Some(code), .. }
        if code == "900901" || code == "900903")
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    renew_at: tokio::time::Instant,
}

/// Session state: the token, or the login rejection that stops any further attempt.
#[derive(Debug, Default)]
struct Session {
    token: Option<Secret>,
    rejected: Option<String>,
}

/// A ThingSpace account.
#[derive(Clone)]
pub struct ThingSpaceClient {
    http: VendorHttp,
    config: Arc<ThingSpaceConfig>,
    oauth: Arc<Mutex<Option<CachedToken>>>,
    session: Arc<Mutex<Session>>,
}

/// One file as ThingSpace lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileInfo {
    file_name: String,
    #[serde(default)]
    file_version: Option<String>,
    #[serde(default)]
    make: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    local_target_path: Option<String>,
}

impl From<FileInfo> for RegisteredPackage {
    fn from(file: FileInfo) -> Self {
        RegisteredPackage {
            external_id: file.file_name,
            version: file.file_version.unwrap_or_default(),
            ..RegisteredPackage::default()
        }
    }
}

impl ThingSpaceClient {
    /// A client for one account.
    pub fn new(
        config: ThingSpaceConfig,
        policy: HttpPolicy,
        rate_limit: Option<RateLimitConfig>,
    ) -> Result<Self, VendorError> {
        let secrets = vec![
            config.app_key.clone(),
            config.app_secret.clone(),
            config.password.clone(),
        ];
        let http = VendorHttp::new(Arc::new(ThingSpaceDialect), policy, rate_limit, secrets)?;
        Ok(Self::with_http(config, http))
    }

    /// A client on a prepared [`VendorHttp`] (for example one with a call observer).
    pub fn with_http(config: ThingSpaceConfig, http: VendorHttp) -> Self {
        Self {
            http,
            config: Arc::new(config),
            oauth: Arc::default(),
            session: Arc::default(),
        }
    }

    /// Reports every call to `observer` (metrics, tests).
    pub fn with_observer(mut self, observer: Arc<dyn super::http::CallObserver>) -> Self {
        self.http = self.http.with_observer(observer);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }

    fn fota_url(&self, path: &str) -> String {
        self.url(&format!("fota/v2/{path}"))
    }

    fn account(&self) -> String {
        percent_encoding::utf8_percent_encode(
            &self.config.account_name,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string()
    }

    /// Gets (or reuses) the OAuth token and the M2M session: proves the credentials work.
    pub async fn authenticate(&self) -> Result<(), VendorError> {
        self.session_token().await.map(drop)
    }

    async fn bearer(&self) -> Result<Secret, VendorError> {
        let mut cached = self.oauth.lock().await;
        if let Some(token) = cached.as_ref()
            && tokio::time::Instant::now() < token.renew_at
        {
            return Ok(token.token.clone());
        }
        let response = self
            .http
            .send("oauth2_token", |client| {
                Ok(client
                    .post(self.url("ts/v1/oauth2/token"))
                    .basic_auth(
                        self.config.app_key.expose(),
                        Some(self.config.app_secret.expose()),
                    )
                    .header("Accept", "application/json")
                    .form(&[("grant_type", "client_credentials")]))
            })
            .await
            .map_err(|err| match err {
                VendorError::Api {
                    status: 400 | 401,
                    message,
                    ..
                } => VendorError::Authentication {
                    vendor: VENDOR,
                    message: format!("OAuth client credentials rejected: {message}"),
                },
                other => other,
            })?;
        let body: Value = decode(response, "oauth2_token").await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "oauth2_token",
                reason: "no access_token in the token response".into(),
            })?;
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        let token = Secret::new(token);
        *cached = Some(CachedToken {
            token: token.clone(),
            renew_at: tokio::time::Instant::now() + lifetime.saturating_sub(TOKEN_RENEWAL_MARGIN),
        });
        Ok(token)
    }

    async fn session_token(&self) -> Result<Secret, VendorError> {
        let mut session = self.session.lock().await;
        if let Some(message) = &session.rejected {
            return Err(VendorError::Authentication {
                vendor: VENDOR,
                message: message.clone(),
            });
        }
        if let Some(token) = &session.token {
            return Ok(token.clone());
        }
        let bearer = self.bearer().await?;
        let body =
            json!({"username": self.config.username, "password": self.config.password.expose()});
        let result = self
            .http
            .send("session_login", |client| {
                Ok(client
                    .post(self.url("m2m/v1/session/login"))
                    .bearer_auth(bearer.expose())
                    .json(&body))
            })
            .await;
        let response = match result {
            Ok(response) => response,
            Err(VendorError::Api {
                status,
                code,
                message,
                ..
            }) if (400..500).contains(&status) && status != 429 => {
                let message = format!(
                    "login of UWS user {:?} rejected ({}): {message}; not retried, since 5 failed logins lock the user: fix the Secret",
                    self.config.username,
                    code.unwrap_or_else(|| format!("HTTP {status}")),
                );
                session.rejected = Some(message.clone());
                return Err(VendorError::Authentication {
                    vendor: VENDOR,
                    message,
                });
            }
            Err(other) => return Err(other),
        };
        let body: Value = decode(response, "session_login").await?;
        let token = body["sessionToken"]
            .as_str()
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "session_login",
                reason: "no sessionToken in the login response".into(),
            })?;
        let token = Secret::new(token);
        session.token = Some(token.clone());
        Ok(token)
    }

    /// Sends a FOTA call with both tokens; renews the session (or the bearer token) once if
    /// ThingSpace says it expired.
    async fn fota<B>(
        &self,
        endpoint: &'static str,
        upload: bool,
        build: B,
    ) -> Result<reqwest::Response, VendorError>
    where
        B: Fn(&Client) -> Result<RequestBuilder, VendorError>,
    {
        // Each token is renewed at most once per call: a second expiry means something else.
        let (mut renewed_session, mut renewed_bearer) = (false, false);
        loop {
            let bearer = self.bearer().await?;
            let session = self.session_token().await?;
            let authorized = |client: &Client| {
                Ok(build(client)?
                    .bearer_auth(bearer.expose())
                    .header("VZ-M2M-Token", session.expose())
                    .header("Accept", "application/json"))
            };
            let result = if upload {
                self.http.send_upload(endpoint, authorized).await
            } else {
                self.http.send(endpoint, authorized).await
            };
            match result {
                Err(err) if !renewed_session && is_session_expired(&err) => {
                    tracing::info!(
                        vendor = VENDOR,
                        endpoint,
                        "M2M session expired; logging in again"
                    );
                    self.session.lock().await.token = None;
                    renewed_session = true;
                }
                Err(err) if !renewed_bearer && is_bearer_expired(&err) => {
                    tracing::info!(
                        vendor = VENDOR,
                        endpoint,
                        "OAuth token rejected; fetching a new one"
                    );
                    *self.oauth.lock().await = None;
                    renewed_bearer = true;
                }
                other => return other,
            }
        }
    }

    /// All files of the account (one call; ThingSpace lists at most 100).
    pub async fn list_packages(&self) -> Result<Vec<RegisteredPackage>, VendorError> {
        Ok(self
            .list_files()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn list_files(&self) -> Result<Vec<FileInfo>, VendorError> {
        let url = self.fota_url(&format!("files/{}", self.account()));
        let response = self
            .fota("list_files", false, |client| {
                Ok(client
                    .get(&url)
                    .query(&[("distributionType", DISTRIBUTION_TYPE)]))
            })
            .await?;
        let body: Value = decode(response, "list_files").await?;
        // The docs show a bare array, the SDK a wrapped one: accept both.
        let items = match body {
            Value::Array(items) => items,
            Value::Object(mut object) => match object.remove("AvailableFilesResponse") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        items
            .into_iter()
            .map(|item| {
                serde_json::from_value(item).map_err(|err| VendorError::Decode {
                    vendor: VENDOR,
                    endpoint: "list_files",
                    reason: err.to_string(),
                })
            })
            .collect()
    }

    /// The file registered for this make, model and version, if any.
    pub async fn find_package(
        &self,
        spec: &PackageSpec,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        let PackageVendorSpec::ThingSpace {
            make,
            model,
            local_target_path,
        } = &spec.vendor
        else {
            return Err(wrong_vendor());
        };
        let found = self.list_files().await?.into_iter().find(|file| {
            file.file_version.as_deref() == Some(spec.version.as_str())
                && file.make.as_deref() == Some(make.as_str())
                && file.model.as_deref() == Some(model.as_str())
                && file
                    .local_target_path
                    .as_deref()
                    .is_none_or(|path| path == local_target_path)
        });
        Ok(found.map(Into::into))
    }

    /// The file called `file_name`, if it exists.
    pub async fn get_package(
        &self,
        file_name: &str,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        Ok(self
            .list_files()
            .await?
            .into_iter()
            .find(|file| file.file_name == file_name)
            .map(Into::into))
    }

    /// Uploads the spooled image as a file, streamed as multipart from disk.
    pub async fn register_package(
        &self,
        spec: &PackageSpec,
        image: &Path,
        size: u64,
    ) -> Result<RegisteredPackage, VendorError> {
        let PackageVendorSpec::ThingSpace {
            make,
            model,
            local_target_path,
        } = &spec.vendor
        else {
            return Err(wrong_vendor());
        };
        let url = self.fota_url(&format!("files/{}", self.account()));
        let file_name = upload_file_name(spec, local_target_path);
        let response = self
            .fota("upload_file", true, |client| {
                let file = std::fs::File::open(image).map_err(|err| VendorError::Io {
                    vendor: VENDOR,
                    endpoint: "upload_file",
                    reason: err.to_string(),
                })?;
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 * 1024,
                );
                let part =
                    multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                        .file_name(file_name.clone())
                        .mime_str("application/octet-stream")
                        .expect("a constant MIME type parses");
                let form = multipart::Form::new()
                    .text("fileVersion", spec.version.clone())
                    .text("make", make.clone())
                    .text("model", model.clone())
                    .text("localTargetPath", local_target_path.clone())
                    .part("fileupload", part);
                Ok(client.post(&url).multipart(form))
            })
            .await?;
        let file: FileInfo = decode(response, "upload_file").await?;
        let mut registered: RegisteredPackage = file.into();
        if registered.version.is_empty() {
            registered.version = spec.version.clone();
        }
        Ok(registered)
    }

    /// Uploads an image that is still arriving (see `ArtifactFetcher::fetch_teed`) in one
    /// attempt: the stream cannot be replayed, so on any failure the caller uploads again from
    /// the spool file with [`ThingSpaceClient::register_package`].
    pub async fn register_package_streaming<S>(
        &self,
        spec: &PackageSpec,
        image: S,
    ) -> Result<RegisteredPackage, VendorError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let PackageVendorSpec::ThingSpace {
            make,
            model,
            local_target_path,
        } = &spec.vendor
        else {
            return Err(wrong_vendor());
        };
        let bearer = self.bearer().await?;
        let session = self.session_token().await?;
        let url = self.fota_url(&format!("files/{}", self.account()));
        let part = multipart::Part::stream(reqwest::Body::wrap_stream(image))
            .file_name(upload_file_name(spec, local_target_path))
            .mime_str("application/octet-stream")
            .expect("a constant MIME type parses");
        let form = multipart::Form::new()
            .text("fileVersion", spec.version.clone())
            .text("make", make.clone())
            .text("model", model.clone())
            .text("localTargetPath", local_target_path.clone())
            .part("fileupload", part);
        let response = self
            .http
            .send_once("upload_file", |client| {
                client
                    .post(&url)
                    .multipart(form)
                    .bearer_auth(bearer.expose())
                    .header("VZ-M2M-Token", session.expose())
                    .header("Accept", "application/json")
            })
            .await?;
        let file: FileInfo = decode(response, "upload_file").await?;
        let mut registered: RegisteredPackage = file.into();
        if registered.version.is_empty() {
            registered.version = spec.version.clone();
        }
        Ok(registered)
    }

    /// ThingSpace has no API to delete a file: it stays.
    pub async fn delete_package(&self, _file_name: &str) -> Result<DeleteOutcome, VendorError> {
        Ok(DeleteOutcome::NotSupported)
    }

    /// Schedules a file campaign for the wave; returns the campaign ID.
    pub async fn start_rollout(
        &self,
        package: &RegisteredPackage,
        rollout: &RolloutSpec,
    ) -> Result<String, VendorError> {
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let end_date = match &rollout.end_date {
            Some(date) => date.clone(),
            None => today
                .checked_add(jiff::Span::new().days(DEFAULT_CAMPAIGN_DAYS))
                .map_err(|err| VendorError::Config {
                    vendor: VENDOR,
                    reason: err.to_string(),
                })?
                .to_string(),
        };
        let windows = |windows: &[(u8, u8)]| {
            windows
                .iter()
                .map(|(start, end)| json!({"startTime": start, "endTime": end}))
                .collect::<Vec<_>>()
        };
        let mut body = json!({
            "campaignName": rollout.name,
            "fileName": package.external_id,
            "fileVersion": package.version,
            "distributionType": DISTRIBUTION_TYPE,
            "startDate": today.to_string(),
            "endDate": end_date,
            "deviceList": rollout.devices,
        });
        if !rollout.download_windows.is_empty() {
            body["downloadTimeWindowList"] = windows(&rollout.download_windows).into();
        }
        if !rollout.install_windows.is_empty() {
            body["installTimeWindowList"] = windows(&rollout.install_windows).into();
        }
        let url = self.fota_url(&format!("campaigns/files/{}", self.account()));
        let response = self
            .fota("schedule_file_campaign", false, |client| {
                Ok(client.post(&url).json(&body))
            })
            .await?;
        let campaign: Value = decode(response, "schedule_file_campaign").await?;
        campaign["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "schedule_file_campaign",
                reason: "no campaign id in the response".into(),
            })
    }

    /// The ID of the campaign called `name`, searching the campaign history of every state.
    pub async fn find_rollout(&self, name: &str) -> Result<Option<String>, VendorError> {
        let url = self.fota_url(&format!("reports/{}/campaigns", self.account()));
        for state in CAMPAIGN_STATES {
            let mut last_seen = String::new();
            loop {
                let response = self
                    .fota("campaign_history", false, |client| {
                        Ok(client.get(&url).query(&[
                            ("campaignStatus", state),
                            ("lastSeenCampaignId", last_seen.as_str()),
                        ]))
                    })
                    .await;
                let page: Value = match response {
                    Ok(response) => decode(response, "campaign_history").await?,
                    // An unknown state name is refused with a 400 by some gateways: skip it.
                    Err(err) if err.status() == Some(400) => break,
                    Err(err) => return Err(err),
                };
                let campaigns = page["campaignList"].as_array().cloned().unwrap_or_default();
                if let Some(found) = campaigns
                    .iter()
                    .find(|campaign| campaign["campaignName"].as_str() == Some(name))
                {
                    return Ok(found["id"].as_str().map(str::to_string));
                }
                let next = page["lastSeenCampaignId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if page["hasMoreData"].as_bool() != Some(true)
                    || next.is_empty()
                    || next == last_seen
                {
                    break;
                }
                last_seen = next;
            }
        }
        Ok(None)
    }

    /// The campaign's state and each device's, paging the device report 1,000 at a time.
    /// Devices of the wave that the report does not list yet count as pending; once the
    /// campaign itself ended, they count as failed (they never reported). A campaign ThingSpace
    /// does not know is a not-found error ([`VendorError::is_not_found`]).
    pub async fn rollout_progress(
        &self,
        campaign_id: &str,
        devices: &[String],
    ) -> Result<RolloutProgress, VendorError> {
        let campaign_url = self.fota_url(&format!("campaigns/{}/{campaign_id}", self.account()));
        let response = self
            .fota(
                "get_campaign",
                false,
                |client| Ok(client.get(&campaign_url)),
            )
            .await
            .map_err(campaign_not_found)?;
        let campaign: Value = decode(response, "get_campaign").await?;
        let campaign_status = campaign["status"].as_str().unwrap_or_default().to_string();

        let mut progress = RolloutProgress {
            vendor_status: campaign_status.clone(),
            ..RolloutProgress::default()
        };
        let wanted: HashSet<&str> = devices.iter().map(String::as_str).collect();
        let mut reported = HashSet::new();
        let report_url = self.fota_url(&format!(
            "reports/{}/campaigns/{campaign_id}/devices",
            self.account()
        ));
        let mut last_seen = "0".to_string();
        loop {
            let response = self
                .fota("campaign_device_report", false, |client| {
                    Ok(client
                        .get(&report_url)
                        .query(&[("lastSeenDeviceId", last_seen.as_str())]))
                })
                .await
                .map_err(campaign_not_found)?;
            let page: Value = decode(response, "campaign_device_report").await?;
            for device in page["deviceList"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let Some(id) = device["deviceId"].as_str() else {
                    continue;
                };
                if !wanted.contains(id) || !reported.insert(id.to_string()) {
                    continue;
                }
                let status = device["status"].as_str().unwrap_or_default();
                let reason = device["resultReason"].as_str().unwrap_or_default();
                progress.record(id, device_state(status, reason));
            }
            let next = page["lastSeenDeviceId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if page["hasMoreData"].as_bool() != Some(true) || next.is_empty() || next == last_seen {
                break;
            }
            last_seen = next;
        }
        for device in devices
            .iter()
            .filter(|device| !reported.contains(device.as_str()))
        {
            progress.record(device, unreported_state(&campaign_status));
        }
        Ok(progress)
    }

    /// Cancels (before start) or aborts (after start) the campaign. A campaign that already
    /// finished (ended, cancelled or aborted) or that ThingSpace does not know counts as done:
    /// nothing of it is left to stop.
    pub async fn cancel_rollout(&self, campaign_id: &str) -> Result<(), VendorError> {
        let url = self.fota_url(&format!("campaigns/{}/{campaign_id}", self.account()));
        match self
            .fota("cancel_campaign", false, |client| Ok(client.delete(&url)))
            .await
            .map_err(campaign_not_found)
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() || is_already_finished(&err) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The words of a vendor text, lower-cased, split at anything that is not a letter or digit.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether an error is ThingSpace's answer to a campaign ID it does not know.
///
/// ThingSpace has no 404 for campaigns: an unknown ID gets HTTP 400 `INVALID_PARAMETER` with
/// the message "Invalid upgradeId" (fact sheet §6, the SWM error table). Every SWM validation
/// error shares that code, so the message is what tells them apart. It is compared by its words
/// (case, spacing and punctuation ignored: "Invalid upgradeId", "INVALID_UPGRADE_ID" and
/// "invalid upgrade id" all match), in the message or in the code. "Invalid uuid" (a malformed
/// ID) does not match: that is our mistake, not a campaign that went away.
fn is_unknown_campaign(err: &VendorError) -> bool {
    let VendorError::Api {
        status: 400,
        code,
        message,
        ..
    } = err
    else {
        return false;
    };
    [Some(message.as_str()), code.as_deref()]
        .into_iter()
        .flatten()
        .any(|text| words(text).concat().contains("invalidupgradeid"))
}

/// Whether an error is ThingSpace refusing to cancel a campaign that already finished.
///
/// Cancel errors are HTTP 400 `{errorCode, errorMessage}` (fact sheet §3.4), and Ended,
/// Cancelled and Aborted are terminal states (fact sheet, Lifecycle), so a DELETE on such a
/// campaign is refused. No code is documented for it (every SWM code is `INVALID_PARAMETER`),
/// so the message decides: it says "already" and names a finished state ("Campaign has already
/// ended", "Campaign is already cancelled", "... already completed/aborted"), in any case or
/// punctuation.
fn is_already_finished(err: &VendorError) -> bool {
    const FINISHED: [&str; 7] = [
        "ended",
        "completed",
        "finished",
        "cancelled",
        "canceled",
        "aborted",
        "expired",
    ];
    let VendorError::Api {
        status: 400,
        message,
        ..
    } = err
    else {
        return false;
    };
    let words = words(message);
    words.iter().any(|word| word == "already")
        && words.iter().any(|word| FINISHED.contains(&word.as_str()))
}

/// Turns ThingSpace's "Invalid upgradeId" (HTTP 400) into [`VendorError::NotFound`], so that
/// a campaign that is gone reads as missing rather than as a refused call.
fn campaign_not_found(err: VendorError) -> VendorError {
    if !is_unknown_campaign(&err) {
        return err;
    }
    match err {
        VendorError::Api {
            vendor,
            endpoint,
            status,
            code,
            message,
            ..
        } => VendorError::NotFound {
            vendor,
            endpoint,
            status,
            code,
            message,
        },
        other => other,
    }
}

/// A device's report line, normalized. Unknown words count as in progress.
fn device_state(status: &str, reason: &str) -> DeviceState {
    let reason_or = |fallback: &str| {
        if reason.is_empty() {
            fallback.to_string()
        } else {
            reason.to_string()
        }
    };
    match status {
        "UpgradeSuccess" | "Success" => DeviceState::Succeeded,
        "UpgradeFailed" | "UpgradedFailed" | "Failure" => DeviceState::Failed(reason_or(status)),
        "DeviceRejected" => {
            DeviceState::Skipped(format!("DeviceRejected: {}", reason_or("rejected")))
        }
        "CampaignCancelled" | "CampaignAborted" => DeviceState::Cancelled,
        "Accepted" => DeviceState::Pending,
        _ => DeviceState::InProgress,
    }
}

/// The state of a device the report has not listed, given the campaign's state.
fn unreported_state(campaign_status: &str) -> DeviceState {
    match campaign_status {
        "CampaignCancelled" | "CampaignAborted" => DeviceState::Cancelled,
        "CampaignRequestFailed" | "CampaignFailed" => {
            DeviceState::Failed(campaign_status.to_string())
        }
        "CampaignEnded" => DeviceState::Failed("RovaClientDidNotReportStatus".into()),
        _ => DeviceState::Pending,
    }
}

/// The file name presented at upload: the last segment of the device path.
fn upload_file_name(spec: &PackageSpec, local_target_path: &str) -> String {
    Path::new(local_target_path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}-{}.bin", spec.name, spec.version))
}

fn wrong_vendor() -> VendorError {
    VendorError::Config {
        vendor: VENDOR,
        reason: "the package has no thingspace block".into(),
    }
}

/// Reads a 2xx JSON body.
async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    endpoint: &'static str,
) -> Result<T, VendorError> {
    let bytes = response.bytes().await.map_err(|err| VendorError::Network {
        vendor: VENDOR,
        endpoint,
        reason: format!("reading the response failed: {err}"),
    })?;
    serde_json::from_slice(&bytes).map_err(|err| VendorError::Decode {
        vendor: VENDOR,
        endpoint,
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_error_shapes_are_understood() {
        let dialect = ThingSpaceDialect;
        assert_eq!(
            dialect.parse(400, br#"{"errorCode":"UnifiedWebService.REQUEST_FAILED.SessionToken.Expired","errorMessage":"The Session has expired."}"#),
            (Some("UnifiedWebService.REQUEST_FAILED.SessionToken.Expired".into()), "The Session has expired.".into())
        );
        assert_eq!(
            dialect.parse(401, br#"{"fault":{"code":900901,"message":"Invalid Credentials","description":"Access failure"}}"#),
            (Some("900901".into()), "Invalid Credentials: Access failure".into())
        );
        assert_eq!(
            dialect.parse(
                401,
                br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
            ),
            (
                Some("invalid_client".into()),
                "Client authentication failed".into()
            )
        );
        assert_eq!(
            dialect.parse(502, b"<html>Bad Gateway</html>"),
            (None, "<html>Bad Gateway</html>".into())
        );
        assert_eq!(dialect.parse(502, b""), (None, "HTTP 502".into()));
        assert!(dialect.is_flow_control(503, Some("900800")));
    }

    #[test]
    fn device_report_words_map_to_states() {
        assert_eq!(
            device_state("UpgradeSuccess", "DownloadInstallSucceeded"),
            DeviceState::Succeeded
        );
        assert_eq!(
            device_state("UpgradedFailed", "RovaClientDownloadFailed"),
            DeviceState::Failed("RovaClientDownloadFailed".into())
        );
        assert_eq!(
            device_state("DeviceRejected", "Invalid device IMEI."),
            DeviceState::Skipped("DeviceRejected: Invalid device IMEI.".into())
        );
        assert_eq!(device_state("CampaignAborted", ""), DeviceState::Cancelled);
        assert_eq!(device_state("Accepted", ""), DeviceState::Pending);
        assert_eq!(device_state("UpgradePending", ""), DeviceState::InProgress);
        assert_eq!(device_state("SomethingNew", ""), DeviceState::InProgress);
        assert_eq!(
            unreported_state("CampaignEnded"),
            DeviceState::Failed("RovaClientDidNotReportStatus".into())
        );
        assert_eq!(unreported_state("CampaignScheduled"), DeviceState::Pending);
    }

    fn refused(status: u16, code: &str, message: &str) -> VendorError {
        VendorError::Api {
            vendor: VENDOR,
            endpoint: "get_campaign",
            status,
            code: Some(code.into()),
            message: message.into(),
            retryable: status >= 500,
            retry_after: None,
        }
    }

    #[test]
    fn an_unknown_campaign_id_reads_as_not_found() {
        let err = campaign_not_found(refused(400, "INVALID_PARAMETER", "Invalid upgradeId"));
        assert!(err.is_not_found(), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("Invalid upgradeId"), "{err}");
        assert_eq!(err.status(), Some(400), "the status ThingSpace really sent");
        for (code, message) in [
            ("INVALID_PARAMETER", "invalid upgrade id."),
            ("INVALID_PARAMETER", "INVALID_UPGRADEID"),
            ("INVALID_UPGRADE_ID", ""),
        ] {
            let err = campaign_not_found(refused(400, code, message));
            assert!(err.is_not_found(), "{code} {message}");
        }
        for (status, message) in [
            (400, "Invalid uuid"),
            (400, "Device list is empty"),
            (400, "upgradeId is invalid for this account"),
            (503, "Invalid upgradeId"),
        ] {
            let err = campaign_not_found(refused(status, "INVALID_PARAMETER", message));
            assert!(!err.is_not_found(), "{status} {message}");
            assert_eq!(err.status(), Some(status));
        }
    }

    #[test]
    fn a_cancel_refused_because_the_campaign_finished_is_recognised() {
        for message in [
            "Campaign has already ended",
            "Campaign is already cancelled",
            "The campaign has already ended or was cancelled",
            "campaign already COMPLETED",
            "Campaign was already aborted.",
        ] {
            assert!(
                is_already_finished(&refused(400, "INVALID_PARAMETER", message)),
                "{message}"
            );
        }
        for (status, message) in [
            (400, "A started campaign cannot be cancelled"),
            (400, "Device already in another campaign"),
            (400, "Invalid upgradeId"),
            (500, "Campaign has already ended"),
        ] {
            assert!(
                !is_already_finished(&refused(status, "INVALID_PARAMETER", message)),
                "{status} {message}"
            );
        }
    }

    #[test]
    fn expiry_is_recognised_by_code_only() {
        let api = |status, code: &str| VendorError::Api {
            vendor: VENDOR,
            endpoint: "x",
            status,
            code: Some(code.into()),
            message: "The Session has expired.".into(),
            retryable: false,
            retry_after: None,
        };
        assert!(is_session_expired(&api(
            400,
            "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
        )));
        assert!(!is_session_expired(&api(400, "INVALID_PARAMETER")));
        assert!(is_bearer_expired(&api(401, "900901")));
        assert!(!is_bearer_expired(&api(400, "900901")));
    }
}
