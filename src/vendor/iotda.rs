//! Huawei Cloud IoTDA client: AK/SK-signed calls (`SDK-HMAC-SHA256` or the derived
//! `V11-HMAC-SHA256`, chosen by host as the SDKs do unless configured), OTA packages that point
//! at an OBS object uploaded first, and batch upgrade tasks.

use std::{path::Path, sync::Arc};

use reqwest::{Client, Method, RequestBuilder, header::HeaderMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    error::{Secret, VendorError},
    http::{CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp},
    obs::ObsClient,
    types::{
        DeleteOutcome, DeviceState, PROGRESS_SAMPLE_LIMIT, PackageSpec, PackageVendorSpec,
        RegisteredPackage, RolloutProgress, RolloutSpec,
    },
};
use crate::signing::huawei::{HuaweiCredentials, HuaweiSigner, IOTDA_DERIVED_SERVICE, Payload};

const VENDOR: &str = "IoTDA";
/// Largest page IoTDA serves.
const PAGE_LIMIT: usize = 50;
/// The first marker of a newest-first listing.
const FIRST_MARKER: &str = "ffffffffffffffffffffffff";

/// Which signing algorithm to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningChoice {
    /// As the SDKs do: derived for any host but the shared `iotda.{region}` one.
    Automatic,
    /// Always `SDK-HMAC-SHA256`.
    Standard,
    /// Always `V11-HMAC-SHA256`.
    Derived,
}

/// Where the instance is and who we are there.
#[derive(Clone, Debug)]
pub struct IotdaConfig {
    /// Application-side endpoint.
    pub endpoint: String,
    /// Project ID.
    pub project_id: String,
    /// `Instance-Id` header, when set.
    pub instance_id: Option<String>,
    /// Region ID.
    pub region: String,
    /// Signing algorithm.
    pub signing: SigningChoice,
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Prefix for OBS object keys.
    pub key_prefix: String,
    /// Authenticate with an IAM user token instead of signing every call with AK/SK.
    pub iam: Option<IamLogin>,
}

/// An IAM user that logs in with a password (`POST /v3/auth/tokens`).
#[derive(Clone, Debug)]
pub struct IamLogin {
    /// IAM endpoint, e.g. `https://iam.cn-north-4.myhuaweicloud.com`.
    pub endpoint: String,
    /// Account (domain) name.
    pub domain: String,
    /// IAM user name.
    pub user: String,
    /// IAM password.
    pub password: Secret,
}

/// Renew an IAM token this long before it expires.
const IAM_RENEWAL_MARGIN: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A cached IAM token.
#[derive(Debug)]
struct IamToken {
    token: Secret,
    renew_at: tokio::time::Instant,
}

/// IoTDA errors: `{"error_code","error_msg"}`, falling back to `{"errorCode","errorMsg"}` and
/// `{"code","message"}` as the SDKs do.
struct IotdaDialect;

impl ErrorDialect for IotdaDialect {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn parse(&self, status: u16, body: &[u8]) -> (Option<String>, String) {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            let text: String = String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect();
            return (
                None,
                if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    text
                },
            );
        };
        for (code, message) in [
            ("error_code", "error_msg"),
            ("errorCode", "errorMsg"),
            ("code", "message"),
        ] {
            if let Some(found) = json.get(code).and_then(Value::as_str) {
                return (
                    Some(found.to_string()),
                    json[message].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        (None, json.to_string())
    }

    fn is_flow_control(&self, status: u16, code: Option<&str>) -> bool {
        status == 403 && matches!(code, Some("IOTDA.021101" | "IOTDA.021102"))
    }
}

/// An OTA package as IoTDA lists or shows it.
#[derive(Debug, Deserialize)]
struct OtaPackage {
    package_id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    file_location: Option<FileLocation>,
}

#[derive(Debug, Deserialize)]
struct FileLocation {
    obs_location: Option<ObsLocation>,
}

#[derive(Debug, Deserialize)]
struct ObsLocation {
    bucket_name: String,
    object_key: String,
    #[serde(default)]
    sign: Option<String>,
}

impl From<OtaPackage> for RegisteredPackage {
    fn from(package: OtaPackage) -> Self {
        let location = package
            .file_location
            .and_then(|location| location.obs_location);
        RegisteredPackage {
            external_id: package.package_id,
            version: package.version,
            sha256: location.as_ref().and_then(|location| location.sign.clone()),
            obs_bucket: location
                .as_ref()
                .map(|location| location.bucket_name.clone()),
            obs_object_key: location.map(|location| location.object_key),
        }
    }
}

/// An IoTDA instance with its OBS bucket.
#[derive(Clone)]
pub struct IotdaClient {
    http: VendorHttp,
    config: Arc<IotdaConfig>,
    signer: HuaweiSigner,
    obs: ObsClient,
    iam_token: Arc<tokio::sync::Mutex<Option<IamToken>>>,
}

impl IotdaClient {
    /// A client for one instance; `obs` holds its packages.
    pub fn new(
        config: IotdaConfig,
        obs: ObsClient,
        policy: HttpPolicy,
        rate_limit: Option<RateLimitConfig>,
    ) -> Result<Self, VendorError> {
        let credentials =
            HuaweiCredentials::new(&config.access_key_id, config.secret_access_key.expose());
        let host = url::Url::parse(&config.endpoint)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .ok_or_else(|| VendorError::Config {
                vendor: VENDOR,
                reason: format!("endpoint {:?} is not a URL with a host", config.endpoint),
            })?;
        let signer = match config.signing {
            SigningChoice::Standard => HuaweiSigner::standard(credentials),
            SigningChoice::Derived => {
                HuaweiSigner::derived(credentials, &config.region, IOTDA_DERIVED_SERVICE)
            }
            SigningChoice::Automatic => HuaweiSigner::for_host(
                credentials,
                &host,
                Some(&config.region),
                IOTDA_DERIVED_SERVICE,
            )
            .map_err(|err| VendorError::Config {
                vendor: VENDOR,
                reason: err.to_string(),
            })?,
        };
        let mut secrets = vec![config.secret_access_key.clone()];
        secrets.extend(config.iam.iter().map(|iam| iam.password.clone()));
        let http = VendorHttp::new(Arc::new(IotdaDialect), policy, rate_limit, secrets)?;
        Ok(Self {
            http,
            config: Arc::new(config),
            signer,
            obs,
            iam_token: Arc::default(),
        })
    }

    /// Reports every IoTDA and OBS call to `observer` (metrics, tests).
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.http = self.http.with_observer(observer.clone());
        self.obs = self.obs.with_observer(observer);
        self
    }

    /// The signing algorithm in use.
    pub fn algorithm(&self) -> &'static str {
        self.signer.algorithm().name()
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut query: Vec<(&str, &String)> =
            query.iter().map(|(key, value)| (*key, value)).collect();
        // The wire query must be in canonical (sorted) order, as the signature covers it.
        query.sort();
        let encoded: Vec<String> = query
            .iter()
            .map(|(key, value)| {
                format!(
                    "{key}={}",
                    percent_encoding::utf8_percent_encode(value, QUERY_VALUE)
                )
            })
            .collect();
        let base = format!(
            "{}/v5/iot/{}/{path}",
            self.config.endpoint.trim_end_matches('/'),
            self.config.project_id
        );
        if encoded.is_empty() {
            base
        } else {
            format!("{base}?{}", encoded.join("&"))
        }
    }

    /// A JSON request, authenticated with the IAM token when there is one, else AK/SK-signed.
    fn signed(
        &self,
        client: &Client,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        iam_token: Option<&Secret>,
    ) -> Result<RequestBuilder, VendorError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            "application/json".parse().expect("valid"),
        );
        if let Some(instance) = &self.config.instance_id {
            headers.insert(
                "instance-id",
                instance.parse().map_err(|_| VendorError::Config {
                    vendor: VENDOR,
                    reason: "instanceId is not a valid header value".into(),
                })?,
            );
        }
        if let Some(token) = iam_token {
            let mut value: reqwest::header::HeaderValue =
                token.expose().parse().map_err(|_| VendorError::Decode {
                    vendor: VENDOR,
                    endpoint: "iam_token",
                    reason: "the IAM token is not a valid header value".into(),
                })?;
            value.set_sensitive(true);
            headers.insert("x-auth-token", value);
            let request = client.request(method, url).headers(headers);
            return Ok(match body {
                Some(body) => request.body(body.to_vec()),
                None => request,
            });
        }
        let uri: http::Uri = url.parse().map_err(|err| VendorError::Config {
            vendor: VENDOR,
            reason: format!("request URL: {err}"),
        })?;
        let signature = self
            .signer
            .sign(
                &method,
                &uri,
                &headers,
                Payload::Bytes(body.unwrap_or_default()),
                jiff::Timestamp::now(),
            )
            .and_then(|signature| signature.into_header_pairs())
            .map_err(|err| VendorError::Config {
                vendor: VENDOR,
                reason: format!("signing: {err}"),
            })?;
        headers.extend(
            signature
                .into_iter()
                .map(|(name, value)| (Some(name), value)),
        );
        let request = client.request(method, url).headers(headers);
        Ok(match body {
            Some(body) => request.body(body.to_vec()),
            None => request,
        })
    }

    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, VendorError> {
        let bytes = body.map(|body| serde_json::to_vec(&body).expect("JSON serializes"));
        let mut renewed = false;
        let response = loop {
            let token = self.iam_token().await?;
            let result = self
                .http
                .send(endpoint, |client| {
                    self.signed(
                        client,
                        method.clone(),
                        url,
                        bytes.as_deref(),
                        token.as_ref(),
                    )
                })
                .await;
            match result {
                // A token revoked or expired early (password change): log in once more.
                Err(VendorError::Api {
                    status: 401 | 403, ..
                }) if token.is_some() && !renewed => {
                    *self.iam_token.lock().await = None;
                    renewed = true;
                }
                other => break other?,
            }
        };
        let text = response.bytes().await.map_err(|err| VendorError::Network {
            vendor: VENDOR,
            endpoint,
            reason: format!("reading the response failed: {err}"),
        })?;
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|err| VendorError::Decode {
                vendor: VENDOR,
                endpoint,
                reason: err.to_string(),
            })
    }

    /// The IAM token, logging in when there is none or it is about to expire; `None` when the
    /// client signs with AK/SK instead.
    async fn iam_token(&self) -> Result<Option<Secret>, VendorError> {
        let Some(iam) = &self.config.iam else {
            return Ok(None);
        };
        let mut cached = self.iam_token.lock().await;
        if let Some(token) = cached.as_ref()
            && tokio::time::Instant::now() < token.renew_at
        {
            return Ok(Some(token.token.clone()));
        }
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": iam.user,
                "password": iam.password.expose(),
                "domain": {"name": iam.domain},
            }}},
            "scope": {"project": {"id": self.config.project_id}},
        }});
        let url = format!(
            "{}/v3/auth/tokens?nocatalog=true",
            iam.endpoint.trim_end_matches('/')
        );
        let response = self
            .http
            .send("iam_token", |client| Ok(client.post(&url).json(&body)))
            .await
            .map_err(|err| match err {
                VendorError::Api {
                    status: 400 | 401 | 403,
                    code,
                    message,
                    ..
                } => VendorError::Authentication {
                    vendor: VENDOR,
                    message: format!(
                        "IAM login of {}/{} rejected: {}{message}",
                        iam.domain,
                        iam.user,
                        code.map(|code| format!("{code}: ")).unwrap_or_default()
                    ),
                },
                other => other,
            })?;
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|value| value.to_str().ok())
            .map(Secret::new)
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "iam_token",
                reason: "no X-Subject-Token in the answer".into(),
            })?;
        let answer: Value =
            serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or_default();
        let lifetime = answer["token"]["expires_at"]
            .as_str()
            .and_then(|at| at.parse::<jiff::Timestamp>().ok())
            .and_then(|at| {
                std::time::Duration::try_from(at.duration_since(jiff::Timestamp::now())).ok()
            })
            .unwrap_or(std::time::Duration::from_secs(24 * 3600));
        *cached = Some(IamToken {
            token: token.clone(),
            renew_at: tokio::time::Instant::now() + lifetime.saturating_sub(IAM_RENEWAL_MARGIN),
        });
        Ok(Some(token))
    }

    /// Proves the credentials work with one cheap authenticated call.
    pub async fn authenticate(&self) -> Result<(), VendorError> {
        let url = self.url(
            "ota-upgrades/packages",
            &[
                ("package_type", "firmwarePackage".into()),
                ("limit", "1".into()),
            ],
        );
        match self
            .call("list_ota_packages", Method::GET, &url, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(VendorError::Api {
                status: 401 | 403,
                code,
                message,
                retryable: false,
                ..
            }) => Err(VendorError::Authentication {
                vendor: VENDOR,
                message: format!("{}: {message}", code.unwrap_or_default()),
            }),
            Err(other) => Err(other),
        }
    }

    /// Every package of a type (and, when given, resource space and product), newest first.
    pub async fn list_packages(
        &self,
        package_type: &str,
        app_id: Option<&str>,
        product_id: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<RegisteredPackage>, VendorError> {
        let mut packages = Vec::new();
        let mut marker = FIRST_MARKER.to_string();
        loop {
            let mut query = vec![
                ("package_type", package_type.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
                ("marker", marker.clone()),
            ];
            query.extend(app_id.map(|app| ("app_id", app.to_string())));
            query.extend(product_id.map(|product| ("product_id", product.to_string())));
            query.extend(version.map(|version| ("version", version.to_string())));
            let url = self.url("ota-upgrades/packages", &query);
            let page = self
                .call("list_ota_packages", Method::GET, &url, None)
                .await?
                .unwrap_or_default();
            let batch: Vec<OtaPackage> =
                decode_value(page["packages"].clone(), "list_ota_packages")?;
            let count = batch.len();
            packages.extend(batch.into_iter().map(RegisteredPackage::from));
            let next = page["page"]["marker"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if count < PAGE_LIMIT || next.is_empty() || next == marker {
                return Ok(packages);
            }
            marker = next;
        }
    }

    /// The package registered for this product and version, with its OBS location and checksum.
    pub async fn find_package(
        &self,
        spec: &PackageSpec,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        let PackageVendorSpec::Iotda {
            product_id,
            app_id,
            package_type,
            ..
        } = &spec.vendor
        else {
            return Err(wrong_vendor());
        };
        let found = self
            .list_packages(
                package_type,
                app_id.as_deref(),
                Some(product_id),
                Some(&spec.version),
            )
            .await?
            .into_iter()
            .find(|package| package.version == spec.version);
        match found {
            Some(package) => self.get_package(&package.external_id).await,
            None => Ok(None),
        }
    }

    /// The package with this ID, or `None` when IoTDA has none.
    pub async fn get_package(
        &self,
        package_id: &str,
    ) -> Result<Option<RegisteredPackage>, VendorError> {
        let url = self.url(&format!("ota-upgrades/packages/{package_id}"), &[]);
        match self.call("show_ota_package", Method::GET, &url, None).await {
            Ok(body) => Ok(Some(
                decode_value::<OtaPackage>(body.unwrap_or_default(), "show_ota_package")?.into(),
            )),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The OBS object key of a package: deterministic, so a retried upload overwrites.
    pub fn object_key(&self, spec: &PackageSpec, file_name: &str) -> String {
        format!(
            "{}{}/{}/{}/{}",
            self.config.key_prefix, spec.namespace, spec.name, spec.version, file_name
        )
    }

    /// The OBS bucket that holds the packages.
    pub fn obs(&self) -> &ObsClient {
        &self.obs
    }

    /// Uploads the image to OBS (skipped when an object of the same size is already there) and
    /// registers it with its SHA-256 as `sign`.
    pub async fn register_package(
        &self,
        spec: &PackageSpec,
        image: &Path,
        sha256: &str,
        size: u64,
        file_name: &str,
    ) -> Result<RegisteredPackage, VendorError> {
        if !matches!(spec.vendor, PackageVendorSpec::Iotda { .. }) {
            return Err(wrong_vendor());
        }
        let key = self.object_key(spec, file_name);
        if self.obs.head_object(&key).await? != Some(size) {
            self.obs.upload(&key, image, size).await?;
        }
        self.create_package(spec, &key, sha256).await
    }

    /// Registers the object already uploaded to OBS as `object_key` (see
    /// [`IotdaClient::object_key`]), with its SHA-256 as `sign`: the second half of
    /// [`IotdaClient::register_package`].
    pub async fn create_package(
        &self,
        spec: &PackageSpec,
        object_key: &str,
        sha256: &str,
    ) -> Result<RegisteredPackage, VendorError> {
        let PackageVendorSpec::Iotda {
            product_id,
            app_id,
            package_type,
            module_name,
            support_source_versions,
            custom_info,
        } = &spec.vendor
        else {
            return Err(wrong_vendor());
        };
        let mut body = json!({
            "package_type": package_type,
            "product_id": product_id,
            "version": spec.version,
            "file_location": {"obs_location": {
                "region_name": self.config.region,
                "bucket_name": self.obs.bucket(),
                "object_key": object_key,
                "sign_method": "SHA256",
                "sign": sha256,
            }},
        });
        let optional = [
            ("app_id", app_id.clone().map(Value::from)),
            ("module_name", module_name.clone().map(Value::from)),
            ("description", spec.description.clone().map(Value::from)),
            ("custom_info", custom_info.clone().map(Value::from)),
            (
                "support_source_versions",
                (!support_source_versions.is_empty())
                    .then(|| Value::from(support_source_versions.clone())),
            ),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                body[field] = value;
            }
        }
        let url = self.url("ota-upgrades/packages", &[]);
        let created = self
            .call("create_ota_package", Method::POST, &url, Some(body))
            .await?
            .unwrap_or_default();
        Ok(decode_value::<OtaPackage>(created, "create_ota_package")?.into())
    }

    /// Deletes the package record (the OBS object stays, as in IoTDA itself).
    pub async fn delete_package(&self, package_id: &str) -> Result<DeleteOutcome, VendorError> {
        let url = self.url(&format!("ota-upgrades/packages/{package_id}"), &[]);
        match self
            .call("delete_ota_package", Method::DELETE, &url, None)
            .await
        {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(err) if err.is_not_found() => Ok(DeleteOutcome::AlreadyGone),
            Err(err) => Err(err),
        }
    }

    /// Creates the batch task of a wave; returns its task ID. The task name is the rollout name
    /// with `-` mapped to `_` (IoTDA refuses `-`).
    pub async fn start_rollout(
        &self,
        package: &RegisteredPackage,
        task_type: &str,
        app_id: Option<&str>,
        rollout: &RolloutSpec,
    ) -> Result<String, VendorError> {
        let mut body = json!({
            "task_name": task_name(&rollout.name),
            "task_type": task_type,
            "targets": rollout.devices,
            "document": {"package_ids": [package.external_id]},
        });
        if let Some(app_id) = app_id {
            body["app_id"] = app_id.into();
        }
        if let Some((count, interval)) = rollout.retry {
            body["task_policy"] = json!({"retry_count": count, "retry_interval": interval});
        }
        if rollout.gateway_mode {
            body["task_mode"] = "GATEWAY".into();
        }
        let url = self.url("batchtasks", &[]);
        let task = self
            .call("create_batch_task", Method::POST, &url, Some(body))
            .await?
            .unwrap_or_default();
        task["task_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| VendorError::Decode {
                vendor: VENDOR,
                endpoint: "create_batch_task",
                reason: "no task_id in the answer".into(),
            })
    }

    /// The ID of the task created for the rollout called `name`, if any.
    pub async fn find_rollout(
        &self,
        task_type: &str,
        name: &str,
    ) -> Result<Option<String>, VendorError> {
        let wanted = task_name(name);
        let mut marker = FIRST_MARKER.to_string();
        loop {
            let url = self.url(
                "batchtasks",
                &[
                    ("task_type", task_type.to_string()),
                    ("limit", PAGE_LIMIT.to_string()),
                    ("marker", marker.clone()),
                ],
            );
            let page = self
                .call("list_batch_tasks", Method::GET, &url, None)
                .await?
                .unwrap_or_default();
            let tasks = page["batchtasks"].as_array().cloned().unwrap_or_default();
            if let Some(task) = tasks
                .iter()
                .find(|task| task["task_name"].as_str() == Some(wanted.as_str()))
            {
                return Ok(task["task_id"].as_str().map(str::to_string));
            }
            let next = page["page"]["marker"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if tasks.len() < PAGE_LIMIT || next.is_empty() || next == marker {
                return Ok(None);
            }
            marker = next;
        }
    }

    /// Counts from `task_progress` and the first failed devices with their errors: two calls
    /// whatever the size of the wave.
    pub async fn rollout_progress(&self, task_id: &str) -> Result<RolloutProgress, VendorError> {
        let url = self.url(&format!("batchtasks/{task_id}"), &[("limit", "1".into())]);
        let shown = self
            .call("show_batch_task", Method::GET, &url, None)
            .await?
            .unwrap_or_default();
        let task = &shown["batchtask"];
        let counter = |name: &str| task["task_progress"][name].as_u64().unwrap_or(0);
        let mut progress = RolloutProgress {
            vendor_status: task["status"].as_str().unwrap_or_default().to_string(),
            ..RolloutProgress::default()
        };
        progress.tally.pending = counter("waitting");
        progress.tally.in_progress = counter("processing") + counter("fail_wait_retry");
        progress.tally.succeeded = counter("success");
        progress.tally.failed = counter("fail");
        progress.tally.cancelled = counter("stopped");
        progress.tally.skipped = counter("removed");
        if progress.tally.failed > 0 {
            let url = self.url(
                &format!("batchtasks/{task_id}"),
                &[
                    ("task_detail_status", "Fail".into()),
                    ("limit", PROGRESS_SAMPLE_LIMIT.min(PAGE_LIMIT).to_string()),
                ],
            );
            let failed = self
                .call("show_batch_task", Method::GET, &url, None)
                .await?
                .unwrap_or_default();
            for detail in failed["task_details"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let target = detail["target"].as_str().unwrap_or_default().to_string();
                let error = &detail["error"];
                let reason = match (error["error_code"].as_str(), error["error_msg"].as_str()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_string(),
                    (None, Some(message)) => message.to_string(),
                    (None, None) => detail["output"].as_str().unwrap_or("Fail").to_string(),
                };
                progress.failures.push((target, reason));
            }
        }
        Ok(progress)
    }

    /// Stops the task's unfinished devices. A task that already finished counts as stopped.
    pub async fn cancel_rollout(&self, task_id: &str) -> Result<(), VendorError> {
        let url = self.url(&format!("batchtasks/{task_id}/stop"), &[]);
        match self
            .call("stop_batch_task", Method::POST, &url, Some(json!({})))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err @ VendorError::Api { status: 400, .. }) => {
                // IoTDA refuses to stop a finished task; check that this is why.
                let progress = self.rollout_progress(task_id).await?;
                if matches!(
                    progress.vendor_status.as_str(),
                    "Success" | "Fail" | "PartialSuccess" | "Stopped" | "Stopping"
                ) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
            Err(err) => Err(err),
        }
    }
}

/// The normalized state of one IoTDA subtask status.
pub fn subtask_state(status: &str, reason: &str) -> DeviceState {
    match status {
        "Success" => DeviceState::Succeeded,
        "Fail" => DeviceState::Failed(reason.to_string()),
        "Stopped" => DeviceState::Cancelled,
        "Removed" => DeviceState::Skipped("removed from the task".into()),
        "Processing" | "FailWaitRetry" => DeviceState::InProgress,
        _ => DeviceState::Pending,
    }
}

/// IoTDA task names allow letters, digits, `_` and CJK only.
pub fn task_name(rollout_name: &str) -> String {
    rollout_name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// Query values: everything but unreserved characters is percent-encoded, spaces as `%20`.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn wrong_vendor() -> VendorError {
    VendorError::Config {
        vendor: VENDOR,
        reason: "the package has no iotda block".into(),
    }
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
    fn task_names_never_contain_dashes() {
        assert_eq!(
            task_name("otaplane-0123456789ab-w2"),
            "otaplane_0123456789ab_w2"
        );
        assert_eq!(task_name(&"x".repeat(200)).len(), 128);
    }

    #[test]
    fn errors_read_every_shape_the_sdks_accept() {
        assert_eq!(
            IotdaDialect.parse(
                400,
                br#"{"error_code":"IOTDA.000006","error_msg":"Invalid input data."}"#
            ),
            (Some("IOTDA.000006".into()), "Invalid input data.".into())
        );
        assert_eq!(
            IotdaDialect.parse(401, br#"{"errorCode":"APIGW.0301","errorMsg":"Incorrect IAM authentication information"}"#),
            (Some("APIGW.0301".into()), "Incorrect IAM authentication information".into())
        );
        assert_eq!(IotdaDialect.parse(500, b""), (None, "HTTP 500".into()));
        assert!(IotdaDialect.is_flow_control(403, Some("IOTDA.021101")));
        assert!(!IotdaDialect.is_flow_control(403, Some("IOTDA.000004")));
    }

    #[test]
    fn subtask_words_map_to_states() {
        assert_eq!(subtask_state("Waitting", ""), DeviceState::Pending);
        assert_eq!(subtask_state("FailWaitRetry", ""), DeviceState::InProgress);
        assert_eq!(
            subtask_state("Fail", "IOTDA.014016"),
            DeviceState::Failed("IOTDA.014016".into())
        );
        assert_eq!(subtask_state("Stopped", ""), DeviceState::Cancelled);
    }
}
