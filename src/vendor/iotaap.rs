//! IoTaaP client.
//!
//! IoTaaP has no package and no campaign object: `POST /v1/ota/device` uploads the image for one
//! device, replacing whatever it was offered before, and the device flashes it the next time it
//! checks `latest` (every 6 hours, or at once on an MQTT trigger). The REST API records the upload
//! (the device's OTA record: version and `last_updated`) and when the device last called in
//! (`last_contact`), but never whether a flash worked. So a deployed device is:
//! - `Pending` until its OTA record shows our version (the upload has not happened);
//! - `InProgress` while the record shows our version and the device has not called in since;
//! - `Succeeded` once it called in after the upload: it was offered the version, downloaded it
//!   and rebooted into it (IoTaaP OS flashes whenever the offered version differs from its own);
//! - `Cancelled` when a later upload replaced ours (another version is now offered).
//!
//! Failures are not observable here; `deviceTimeout` on the campaign turns devices that never
//! call in into failures.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use reqwest::multipart;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    error::{Secret, VendorError},
    http::{CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp},
    types::{DeviceState, RolloutProgress},
};

const VENDOR: &str = "IoTaaP";
/// Log in again this long before the JWT expires.
const TOKEN_RENEWAL_MARGIN: Duration = Duration::from_secs(3600);
/// Records per page when listing devices and OTA records.
const PAGE_SIZE: usize = 100;

/// Where the account is and who we are there.
#[derive(Clone, Debug)]
pub struct IotaapConfig {
    /// Management API root, e.g. `https://api.iotaap.io/v1`.
    pub base_url: String,
    /// Device-facing API root, e.g. `https://ota.iotaap.io/v1`.
    pub device_url: String,
    /// Login e-mail.
    pub email: String,
    /// Login password.
    pub password: Secret,
    /// Deploys in flight at once.
    pub deploy_concurrency: usize,
}

/// IoTaaP errors: `{"message"}`, `{"message","error"}`, login's `{"error"}`, or plain
/// `Unauthorized`.
struct IotaapDialect;

impl ErrorDialect for IotaapDialect {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn parse(&self, status: u16, body: &[u8]) -> (Option<String>, String) {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => {
                let message = json["message"].as_str().or(json["error"].as_str());
                let detail = json["message"].as_str().and(json["error"].as_str());
                let text = match (message, detail) {
                    (Some(message), Some(detail)) => format!("{message}: {detail}"),
                    (Some(message), None) => message.to_string(),
                    _ => json.to_string(),
                };
                (None, text)
            }
            Err(_) => {
                let text: String = String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect();
                (
                    None,
                    if text.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        text
                    },
                )
            }
        }
    }
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    renew_at: tokio::time::Instant,
}

/// A device as IoTaaP lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct IotaapDevice {
    /// The device ID (a 24-hex ObjectId).
    #[serde(rename = "_id")]
    pub id: String,
    /// The device token a deploy must present.
    pub token: String,
    /// When the device last called in.
    #[serde(default)]
    pub last_contact: Option<String>,
}

/// The latest OTA upload for one device.
#[derive(Clone, Debug, Deserialize)]
pub struct OtaRecord {
    /// The device ID.
    pub device: String,
    /// The version uploaded.
    pub version: String,
    /// When it was uploaded.
    pub last_updated: String,
}

/// An IoTaaP account.
#[derive(Clone)]
pub struct IotaapClient {
    http: VendorHttp,
    config: Arc<IotaapConfig>,
    token: Arc<Mutex<Option<CachedToken>>>,
}

impl IotaapClient {
    /// A client for one account.
    pub fn new(
        config: IotaapConfig,
        policy: HttpPolicy,
        rate_limit: Option<RateLimitConfig>,
    ) -> Result<Self, VendorError> {
        let http = VendorHttp::new(
            Arc::new(IotaapDialect),
            policy,
            rate_limit,
            vec![config.password.clone()],
        )?;
        Ok(Self {
            http,
            config: Arc::new(config),
            token: Arc::default(),
        })
    }

    /// Reports every call to `observer` (metrics, tests).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.http = self.http.with_observer(observer);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Logs in (or reuses the JWT): proves the credentials work.
    pub async fn authenticate(&self) -> Result<(), VendorError> {
        self.jwt().await.map(drop)
    }

    async fn jwt(&self) -> Result<Secret, VendorError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && tokio::time::Instant::now() < token.renew_at
        {
            return Ok(token.token.clone());
        }
        let body = json!({"email": self.config.email, "password": self.config.password.expose()});
        let response = self
            .http
            .send("login", |client| {
                Ok(client.post(self.url("auth/login")).json(&body))
            })
            .await
            .map_err(|err| match err {
                VendorError::Api {
                    status: 400 | 401 | 403,
                    message,
                    ..
                } => VendorError::Authentication {
                    vendor: VENDOR,
                    message: format!("login of {} rejected: {message}", self.config.email),
                },
                other => other,
            })?;
        let body: Value = decode(response, "login").await?;
        let token = body["token"].as_str().ok_or_else(|| VendorError::Decode {
            vendor: VENDOR,
            endpoint: "login",
            reason: "no token in the login response".into(),
        })?;
        let lifetime = jwt_lifetime(token).unwrap_or(Duration::from_secs(24 * 3600));
        let token = Secret::new(token);
        *cached = Some(CachedToken {
            token: token.clone(),
            renew_at: tokio::time::Instant::now() + lifetime.saturating_sub(TOKEN_RENEWAL_MARGIN),
        });
        Ok(token)
    }

    /// An authenticated GET of a DataTables-style list, every page.
    async fn list_all(
        &self,
        endpoint: &'static str,
        path: &str,
        key: &str,
    ) -> Result<Vec<Value>, VendorError> {
        let jwt = self.jwt().await?;
        let url = self.url(path);
        let mut items = Vec::new();
        loop {
            let offset = items.len().to_string();
            let limit = PAGE_SIZE.to_string();
            let response = self
                .http
                .send(endpoint, |client| {
                    Ok(client.get(&url).bearer_auth(jwt.expose()).query(&[
                        ("offset", offset.as_str()),
                        ("limit", limit.as_str()),
                        ("draw", "otaplane"),
                        ("order_dir", "asc"),
                    ]))
                })
                .await?;
            let page: Value = decode(response, endpoint).await?;
            let batch = page[key].as_array().cloned().unwrap_or_default();
            let total = page["recordsFiltered"]
                .as_u64()
                .or(page["recordsTotal"].as_u64())
                .unwrap_or(0) as usize;
            let got = batch.len();
            items.extend(batch);
            if got == 0 || items.len() >= total {
                return Ok(items);
            }
        }
    }

    /// Every device of the account, with its token.
    pub async fn list_devices(&self) -> Result<Vec<IotaapDevice>, VendorError> {
        self.list_all("list_devices", "devices", "devices")
            .await?
            .into_iter()
            .map(|item| decode_value(item, "list_devices"))
            .collect()
    }

    /// The latest OTA upload of every device that has one.
    pub async fn list_ota_records(&self) -> Result<Vec<OtaRecord>, VendorError> {
        self.list_all("list_ota_records", "ota/device", "otas")
            .await?
            .into_iter()
            .map(|item| decode_value(item, "list_ota_records"))
            .collect()
    }

    /// The version the device-facing API offers `device` (no authentication), if any.
    pub async fn offered_version(&self, device: &str) -> Result<Option<String>, VendorError> {
        let url = format!(
            "{}/ota/device/latest/{device}",
            self.config.device_url.trim_end_matches('/')
        );
        match self
            .http
            .send("latest_version", |client| Ok(client.get(&url)))
            .await
        {
            Ok(response) => {
                let body: Value = decode(response, "latest_version").await?;
                Ok(body["ver"].as_str().map(str::to_string))
            }
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Uploads the image for each device whose OTA record does not already show `version`
    /// (so a restart does not upload twice), at most `deploy_concurrency` at a time. Devices
    /// IoTaaP does not know are returned, not deployed.
    pub async fn deploy(
        &self,
        devices: &[String],
        version: &str,
        image: &Path,
    ) -> Result<Vec<String>, VendorError> {
        let known: HashMap<String, IotaapDevice> = self
            .list_devices()
            .await?
            .into_iter()
            .map(|device| (device.id.clone(), device))
            .collect();
        let done: HashMap<String, String> = self
            .list_ota_records()
            .await?
            .into_iter()
            .map(|record| (record.device, record.version))
            .collect();
        let unknown: Vec<String> = devices
            .iter()
            .filter(|id| !known.contains_key(*id))
            .cloned()
            .collect();
        let todo: Vec<&IotaapDevice> = devices
            .iter()
            .filter_map(|id| known.get(id))
            .filter(|device| done.get(&device.id).map(String::as_str) != Some(version))
            .collect();
        let jwt = self.jwt().await?;
        // The uploads are built before streaming them (they only start when polled): a closure
        // taking `&IotaapDevice` held inside the stream makes rustc unable to prove this future
        // `Send` for every lifetime ("implementation of `FnOnce` is not general enough"), which
        // the campaign controller's reconcile future must be.
        let uploads: Vec<_> = todo
            .into_iter()
            .map(|device| self.deploy_one(device, version, image, &jwt))
            .collect();
        futures::stream::iter(uploads)
            .buffer_unordered(self.config.deploy_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(unknown)
    }

    async fn deploy_one(
        &self,
        device: &IotaapDevice,
        version: &str,
        image: &Path,
        jwt: &Secret,
    ) -> Result<(), VendorError> {
        let size = std::fs::metadata(image)
            .map_err(|err| VendorError::Io {
                vendor: VENDOR,
                endpoint: "deploy",
                reason: err.to_string(),
            })?
            .len();
        let url = self.url("ota/device");
        self.http
            .send_upload("deploy", |client| {
                let file = std::fs::File::open(image).map_err(|err| VendorError::Io {
                    vendor: VENDOR,
                    endpoint: "deploy",
                    reason: err.to_string(),
                })?;
                let stream = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    256 * 1024,
                );
                let firmware =
                    multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                        .file_name("firmware.bin")
                        .mime_str("application/octet-stream")
                        .expect("a constant MIME type parses");
                let form = multipart::Form::new()
                    .part("firmware", firmware)
                    .text("device", device.id.clone())
                    .text("token", device.token.clone())
                    .text("version", version.to_string());
                Ok(client.post(&url).bearer_auth(jwt.expose()).multipart(form))
            })
            .await
            .map(drop)
    }

    /// Where each device of a deploy stands (see the module docs for what can be observed).
    pub async fn rollout_progress(
        &self,
        devices: &[String],
        version: &str,
    ) -> Result<RolloutProgress, VendorError> {
        let contacts: HashMap<String, Option<String>> = self
            .list_devices()
            .await?
            .into_iter()
            .map(|device| (device.id, device.last_contact))
            .collect();
        let records: HashMap<String, OtaRecord> = self
            .list_ota_records()
            .await?
            .into_iter()
            .map(|record| (record.device.clone(), record))
            .collect();
        let mut progress = RolloutProgress {
            vendor_status: "Deployed".into(),
            ..RolloutProgress::default()
        };
        for device in devices {
            let state = match (contacts.get(device), records.get(device)) {
                (None, _) => DeviceState::Skipped("unknown to IoTaaP".into()),
                (Some(_), None) => DeviceState::Pending,
                (Some(_), Some(record)) if record.version != version => DeviceState::Cancelled,
                (Some(contact), Some(record)) => match contact {
                    Some(contact) if is_after(contact, &record.last_updated) => {
                        DeviceState::Succeeded
                    }
                    _ => DeviceState::InProgress,
                },
            };
            progress.record(device, state);
        }
        Ok(progress)
    }
}

/// Whether ISO-8601 time `a` is later than `b`; unreadable times count as not later.
fn is_after(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

/// Time left before a JWT's `exp`, read from its payload (the signature is the server's business).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims["exp"].as_i64()?;
    let left = exp - jiff::Timestamp::now().as_second();
    u64::try_from(left).ok().map(Duration::from_secs)
}

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

fn decode_value<T: serde::de::DeserializeOwned>(
    value: Value,
    endpoint: &'static str,
) -> Result<T, VendorError> {
    serde_json::from_value(value).map_err(|err| VendorError::Decode {
        vendor: VENDOR,
        endpoint,
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_every_documented_shape() {
        let dialect = IotaapDialect;
        assert_eq!(
            dialect.parse(404, br#"{"message":"No such device"}"#).1,
            "No such device"
        );
        assert_eq!(
            dialect
                .parse(
                    500,
                    br#"{"message":"Error when uploading firmware file","error":"disk full"}"#
                )
                .1,
            "Error when uploading firmware file: disk full"
        );
        assert_eq!(
            dialect
                .parse(401, br#"{"error":"Login or password is wrong"}"#)
                .1,
            "Login or password is wrong"
        );
        assert_eq!(dialect.parse(401, b"Unauthorized").1, "Unauthorized");
    }

    #[test]
    fn the_jwt_lifetime_comes_from_its_exp_claim() {
        let exp = jiff::Timestamp::now().as_second() + 30 * 24 * 3600;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"id":"u","role":"user","iat":0,"exp":{exp}}}"#));
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        let lifetime = jwt_lifetime(&token).unwrap();
        assert!(
            lifetime > Duration::from_secs(29 * 24 * 3600),
            "{lifetime:?}"
        );
        assert_eq!(jwt_lifetime("not-a-jwt"), None);
    }

    #[test]
    fn contact_after_upload_means_the_device_took_the_image() {
        assert!(is_after(
            "2020-01-21T23:00:00.000Z",
            "2020-01-21T22:59:29.940Z"
        ));
        assert!(!is_after(
            "2020-01-21T22:00:00.000Z",
            "2020-01-21T22:59:29.940Z"
        ));
        assert!(!is_after("never", "2020-01-21T22:59:29.940Z"));
    }
}
