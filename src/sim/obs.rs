//! Huawei OBS simulator (fact sheets: iotda.md §5, sdks.md §3).
//!
//! Served on its own listener. Buckets come from the configuration; objects live in the
//! simulator's spool directory (never in memory), with their size, MD5 ETag and SHA-256
//! computed while the body streams in. A completed multipart upload keeps its parts' files as
//! the object's segments (OBS does not rewrite an object on completion either), and the
//! object's SHA-256 is chained through the parts as they arrive in order, so completing a
//! large upload neither copies nor re-reads it.
//!
//! | request | operation |
//! |---|---|
//! | `HEAD /?apiversion` (unsigned) | signature negotiation: `200` + `x-obs-api: 3.0` |
//! | `GET /` | list buckets |
//! | `HEAD /{bucket}`, `GET /{bucket}?prefix=&marker=&max-keys=` | bucket exists / list objects |
//! | `PUT /{bucket}/{key}` | put object (`Content-Length` required, `Content-MD5` checked) |
//! | `GET` / `HEAD /{bucket}/{key}` | get object (`Range: bytes=` supported) / metadata |
//! | `DELETE /{bucket}/{key}` | delete object (204 even when absent, as S3) |
//! | `POST /{bucket}/{key}?uploads` | initiate multipart upload |
//! | `PUT /{bucket}/{key}?partNumber=N&uploadId=ID` | upload part |
//! | `POST /{bucket}/{key}?uploadId=ID` | complete (part list validated) |
//! | `DELETE /{bucket}/{key}?uploadId=ID` | abort |
//!
//! Addressing: path-style as above, or virtual-host style with `Host: {bucket}.anything` (the
//! first label names a configured bucket, or the host looks like `{bucket}.obs.…`). Every request
//! except the negotiation must be signed with AWS V2 (`AWS ak:sig`), OBS native (`OBS ak:sig`)
//! or SigV4; the request time must be within `max_clock_skew_secs` of the real clock. Errors
//! are S3 XML with `x-obs-request-id`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::config::Secret;
use super::errors::{vendor_error, xml_escape};
use super::{SharedState, SimConfig, SimState, Vendor, VendorAdmin};
use crate::signing::obs::{
    Addressing, ObsAuthorization, ObsRequest, V4_CONTENT_SHA256_HEADER, format_http_date,
};
use crate::signing::{SigningError, sha256_hex};

const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
const MAX_COMPLETE_BODY_BYTES: usize = 4 << 20;

/// One configured bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsBucket {
    /// Bucket name (3-63 `[a-z0-9.-]`).
    pub name: String,
    /// Region of the bucket; the OBS default region when absent.
    #[serde(default)]
    pub region: Option<String>,
}

/// An access key accepted by OBS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsCredential {
    pub access_key: String,
    pub secret_key: Secret,
}

/// Huawei OBS settings (the `obs` section of the simulator configuration).
///
/// ```yaml
/// obs:
///   region: cn-north-4
///   buckets: [{name: fw-bucket}, {name: acme-firmware}]   # the examples' bucket too
///   credentials: []            # the IoTDA accounts' AK/SK are always accepted too
///   require_virtual_host: false   # true: path-style gets 403 VirtualHostDomainRequired
///   max_clock_skew_secs: 900      # 0 disables the check
///   min_part_size: 102400         # every multipart part but the last
///   max_object_bytes: 5368709120  # single PUT and part limit
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObsConfig {
    /// Default region (SigV4 scope, bucket region).
    pub region: String,
    /// Buckets that exist.
    pub buckets: Vec<ObsBucket>,
    /// Extra access keys (besides every IoTDA account's).
    pub credentials: Vec<ObsCredential>,
    /// Refuse path-style requests like production endpoints can.
    pub require_virtual_host: bool,
    /// Allowed difference between the request time and the real clock (0: unchecked).
    pub max_clock_skew_secs: u64,
    /// Smallest size of every multipart part but the last.
    pub min_part_size: u64,
    /// Largest single PUT body or part.
    pub max_object_bytes: u64,
}

impl Default for ObsConfig {
    fn default() -> Self {
        Self {
            region: "cn-north-4".into(),
            buckets: ["fw-bucket", "acme-firmware"]
                .map(|name| ObsBucket {
                    name: name.into(),
                    region: None,
                })
                .to_vec(),
            credentials: Vec::new(),
            require_virtual_host: false,
            max_clock_skew_secs: 900,
            min_part_size: 100 * 1024,
            max_object_bytes: 5 << 30,
        }
    }
}

/// What IoTDA (and the admin API) can see of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectSummary {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// ETag as sent in headers (with quotes).
    pub etag: String,
    pub content_type: String,
    pub last_modified: Timestamp,
}

/// One file holding a contiguous piece of an object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    path: PathBuf,
    size: u64,
}

#[derive(Debug, Clone)]
struct StoredObject {
    /// The content, in order: one file for a PUT, the parts' files for a multipart upload.
    segments: Vec<Segment>,
    summary: ObjectSummary,
    metadata: Vec<(String, String)>,
}

impl StoredObject {
    fn paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.segments.iter().map(|segment| segment.path.clone())
    }
}

/// The SHA-256 of an upload's parts in part order, advanced while parts stream in one after
/// the other (as a client streaming an image sends them), so completion need not read them.
#[derive(Debug, Clone, Default)]
struct HashChain {
    hasher: Sha256,
    /// The parts fed to `hasher`, in order: part number and file.
    fed: Vec<(u32, PathBuf)>,
    /// A part is streaming into a copy of `hasher`; no other part may start the next link.
    busy: bool,
    /// Bumped when the chain starts over, so a part that was streaming into the old chain
    /// does not extend the new one.
    generation: u64,
}

impl HashChain {
    /// The part number that continues the chain.
    fn next_part(&self) -> u32 {
        self.fed.last().map_or(1, |(number, _)| number + 1)
    }
}

#[derive(Debug, Clone)]
struct StoredPart {
    path: PathBuf,
    size: u64,
    md5: [u8; 16],
}

#[derive(Debug, Clone)]
struct MultipartUpload {
    bucket: String,
    key: String,
    initiated: Timestamp,
    content_type: String,
    metadata: Vec<(String, String)>,
    parts: BTreeMap<u32, StoredPart>,
    chain: HashChain,
}

#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<(String, String), StoredObject>,
    uploads: HashMap<String, MultipartUpload>,
}

/// Huawei OBS state held in [`SimState`].
#[derive(Debug)]
pub struct ObsState {
    config: ObsConfig,
    secrets: HashMap<String, Secret>,
    store: Mutex<Store>,
}

impl Default for ObsState {
    fn default() -> Self {
        Self::new(&SimConfig::default())
    }
}

impl ObsState {
    /// Builds the initial state: configured buckets (empty) and the accepted keys.
    pub fn new(config: &SimConfig) -> Self {
        let mut secrets = HashMap::new();
        for account in &config.iotda.accounts {
            secrets.insert(account.access_key.clone(), account.secret_key.clone());
        }
        for credential in &config.obs.credentials {
            secrets.insert(credential.access_key.clone(), credential.secret_key.clone());
        }
        Self {
            config: config.obs.clone(),
            secrets,
            store: Mutex::new(Store::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `bucket` exists.
    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.config.buckets.iter().any(|b| b.name == bucket)
    }

    /// The region of `bucket`, if it exists.
    pub fn bucket_region(&self, bucket: &str) -> Option<&str> {
        self.config
            .buckets
            .iter()
            .find(|b| b.name == bucket)
            .map(|b| b.region.as_deref().unwrap_or(&self.config.region))
    }

    /// Size, SHA-256 and ETag of an object, if it exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<ObjectSummary> {
        self.lock()
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| o.summary.clone())
    }

    /// How many multipart uploads are initiated and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Every stored object, in bucket/key order.
    pub fn objects(&self) -> Vec<ObjectSummary> {
        self.lock()
            .objects
            .values()
            .map(|o| o.summary.clone())
            .collect()
    }
}

impl VendorAdmin for ObsState {
    fn snapshot(&self, _sim: &SimState) -> serde_json::Value {
        let store = self.lock();
        let objects: Vec<&ObjectSummary> = store.objects.values().map(|o| &o.summary).collect();
        let mut uploads: Vec<serde_json::Value> = store
            .uploads
            .iter()
            .map(|(id, upload)| {
                serde_json::json!({
                    "upload_id": id,
                    "bucket": upload.bucket,
                    "key": upload.key,
                    "initiated": upload.initiated,
                    "parts": upload.parts.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        uploads.sort_by(|a, b| a["upload_id"].as_str().cmp(&b["upload_id"].as_str()));
        let buckets: Vec<serde_json::Value> = self
            .config
            .buckets
            .iter()
            .map(|b| serde_json::json!({"name": b.name, "region": self.bucket_region(&b.name)}))
            .collect();
        serde_json::json!({"buckets": buckets, "objects": objects, "uploads": uploads})
    }

    /// OBS signatures carry no tokens; nothing to expire.
    fn expire_tokens(&self, _sim: &SimState) {}
}

/// Start-up banner lines (identities only, never secrets).
pub fn describe(config: &SimConfig) -> Vec<String> {
    config
        .obs
        .buckets
        .iter()
        .map(|b| {
            format!(
                "  OBS bucket {} (region {})",
                b.name,
                b.region.as_deref().unwrap_or(&config.obs.region)
            )
        })
        .collect()
}

/// The Huawei OBS routes (all paths; the handler resolves bucket and key itself).
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", any(handle))
        .route("/{bucket}", any(handle))
        .route("/{bucket}/{*key}", any(handle))
}

/// An S3-style error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ObsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ObsError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn no_such_bucket() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        )
    }

    fn no_such_key() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    }

    fn no_such_upload() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified multipart upload does not exist.",
        )
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("{what} is not implemented by the simulator"),
        )
    }
}

impl IntoResponse for ObsError {
    fn into_response(self) -> Response {
        vendor_error(Vendor::Obs, self.status, Some(self.code), &self.message)
    }
}

/// Which bucket and key a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Bucket taken from the host (virtual-host style).
    host_bucket: Option<String>,
    bucket: Option<String>,
    /// Decoded key (`None` for bucket-level requests).
    key: Option<String>,
}

impl Target {
    fn addressing(&self) -> Addressing<'_> {
        match &self.host_bucket {
            Some(bucket) => Addressing::VirtualHosted { bucket },
            None => Addressing::PathStyle,
        }
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn host_name(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]"))?
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
            .to_owned()
    };
    Some(name.to_ascii_lowercase())
}

fn resolve_target(obs: &ObsState, headers: &HeaderMap, path: &str) -> Target {
    let host_bucket = host_name(headers).and_then(|host| {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() || host == "localhost" {
            return None;
        }
        let (first, rest) = host.split_once('.')?;
        (obs.has_bucket(first) || rest.starts_with("obs.")).then(|| first.to_owned())
    });
    let trimmed = path.trim_start_matches('/');
    match host_bucket {
        Some(bucket) => Target {
            key: (!trimmed.is_empty()).then(|| decode(trimmed)),
            bucket: Some(bucket.clone()),
            host_bucket: Some(bucket),
        },
        None => {
            let (bucket, key) = match trimmed.split_once('/') {
                Some((bucket, key)) => (bucket, (!key.is_empty()).then(|| decode(key))),
                None => (trimmed, None),
            };
            Target {
                host_bucket: None,
                bucket: (!bucket.is_empty()).then(|| decode(bucket)),
                key,
            }
        }
    }
}

/// Query items: decoded key and value (`None` when there was no `=`).
fn query_items(uri: &Uri) -> Vec<(String, Option<String>)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(segment), None),
        })
        .collect()
}

fn query_value<'a>(items: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    items
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_deref().unwrap_or(""))
}

fn has_query(items: &[(String, Option<String>)], name: &str) -> bool {
    items.iter().any(|(k, _)| k == name)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_uppercase()
}

async fn handle(State(sim): State<SharedState>, request: Request) -> Response {
    let mut response = match serve(&sim, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    if !headers.contains_key("x-obs-request-id") {
        let id = request_id();
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert("x-obs-request-id", value.clone());
            headers.insert("x-amz-request-id", value);
        }
    }
    response
}

async fn serve(sim: &SimState, request: Request) -> Result<Response, ObsError> {
    let (parts, body) = request.into_parts();
    let obs = &sim.obs;
    let query = query_items(&parts.uri);
    if parts.method == Method::HEAD && has_query(&query, "apiversion") {
        return Ok(([(HeaderName::from_static("x-obs-api"), "3.0")], "").into_response());
    }
    let target = resolve_target(obs, &parts.headers, parts.uri.path());
    if obs.config.require_virtual_host && target.host_bucket.is_none() && target.bucket.is_some() {
        return Err(ObsError::new(
            StatusCode::FORBIDDEN,
            "VirtualHostDomainRequired",
            "Please use virtual hosted style to access.",
        ));
    }
    authenticate(
        obs,
        &parts.method,
        &parts.uri,
        &parts.headers,
        target.addressing(),
    )?;

    let Some(bucket) = target.bucket.clone() else {
        return match parts.method {
            Method::GET => Ok(list_buckets(obs)),
            _ => Err(ObsError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )),
        };
    };
    if !obs.has_bucket(&bucket) {
        return Err(ObsError::no_such_bucket());
    }
    let Some(key) = target.key.clone() else {
        return match parts.method {
            Method::HEAD => Ok(StatusCode::OK.into_response()),
            Method::GET => list_objects(obs, &bucket, &query),
            _ => Err(ObsError::not_implemented("this bucket operation")),
        };
    };
    let upload_id = query_value(&query, "uploadId").map(str::to_owned);
    match (parts.method.clone(), upload_id) {
        (Method::PUT, Some(upload_id)) => {
            upload_part(sim, &bucket, &key, &upload_id, &query, &parts.headers, body).await
        }
        (Method::PUT, None) => put_object(sim, &bucket, &key, &parts.headers, body).await,
        (Method::POST, None) if has_query(&query, "uploads") => {
            Ok(initiate_upload(sim, &bucket, &key, &parts.headers))
        }
        (Method::POST, Some(upload_id)) => {
            complete_upload(sim, &bucket, &key, &upload_id, body).await
        }
        (Method::DELETE, Some(upload_id)) => abort_upload(obs, &bucket, &key, &upload_id).await,
        (Method::DELETE, None) => delete_object(obs, &bucket, &key).await,
        (Method::GET, None) => get_object(obs, &bucket, &key, &parts.headers, false).await,
        (Method::HEAD, None) => get_object(obs, &bucket, &key, &parts.headers, true).await,
        _ => Err(ObsError::not_implemented("this object operation")),
    }
}

fn authenticate(
    obs: &ObsState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    addressing: Addressing<'_>,
) -> Result<(), ObsError> {
    let access_denied =
        |message: &str| ObsError::new(StatusCode::FORBIDDEN, "AccessDenied", message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(access_denied(
            "Anonymous access is forbidden for this operation",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| access_denied("The Authorization header is not valid text"))?;
    let authorization = ObsAuthorization::parse(value).map_err(|e| match e {
        SigningError::UnsupportedAlgorithm(_) => ObsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Unsupported Authorization Type",
        ),
        _ => ObsError::new(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed: {e}"),
        ),
    })?;
    if let ObsAuthorization::V4 { scope, .. } = &authorization {
        let expected = match addressing {
            Addressing::VirtualHosted { bucket } => {
                obs.bucket_region(bucket).unwrap_or(&obs.config.region)
            }
            Addressing::PathStyle => &obs.config.region,
        };
        if scope.region != expected {
            return Err(ObsError::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationHeaderMalformed",
                format!(
                    "the region '{}' is wrong; expecting '{expected}'",
                    scope.region
                ),
            ));
        }
        let payload = headers
            .get(V4_CONTENT_SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if payload.starts_with("STREAMING-") {
            return Err(ObsError::not_implemented(
                "aws-chunked (streaming) SigV4 payload",
            ));
        }
    }
    let Some(secret) = obs.secrets.get(authorization.access_key()) else {
        return Err(ObsError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    };
    let max_skew = match obs.config.max_clock_skew_secs {
        0 => SignedDuration::MAX,
        secs => SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX)),
    };
    let request = ObsRequest {
        method,
        uri,
        headers,
        addressing,
    };
    authorization
        .verify(&request, secret.expose(), Timestamp::now(), max_skew)
        .map_err(|e| match e {
            SigningError::ClockSkew { .. } => ObsError::new(
                StatusCode::FORBIDDEN,
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            ),
            SigningError::SignatureMismatch => ObsError::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ),
            SigningError::ScopeMismatch(detail) => ObsError::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed: {detail}"),
            ),
            other => access_denied(&other.to_string()),
        })
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"),
    )
        .into_response()
}

fn list_buckets(obs: &ObsState) -> Response {
    let buckets: String = obs
        .config
        .buckets
        .iter()
        .map(|b| {
            format!(
                "<Bucket><Name>{}</Name><CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket>",
                xml_escape(&b.name)
            )
        })
        .collect();
    xml_response(
        StatusCode::OK,
        format!(
            "<ListAllMyBucketsResult xmlns=\"{S3_XMLNS}\"><Owner><ID>otaplane-sim</ID></Owner><Buckets>{buckets}</Buckets></ListAllMyBucketsResult>"
        ),
    )
}

fn iso_millis(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn list_objects(
    obs: &ObsState,
    bucket: &str,
    query: &[(String, Option<String>)],
) -> Result<Response, ObsError> {
    let prefix = query_value(query, "prefix").unwrap_or_default();
    let marker = query_value(query, "marker").unwrap_or_default();
    let max_keys = match query_value(query, "max-keys") {
        None => 1000,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| {
                ObsError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "max-keys must be 0..=1000",
                )
            })?,
    };
    let store = obs.lock();
    let matching: Vec<&ObjectSummary> = store
        .objects
        .range((bucket.to_owned(), String::new())..)
        .take_while(|((b, _), _)| b == bucket)
        .map(|(_, o)| &o.summary)
        .filter(|o| o.key.starts_with(prefix) && o.key.as_str() > marker)
        .collect();
    let truncated = matching.len() > max_keys;
    let contents: String = matching
        .iter()
        .take(max_keys)
        .map(|o| {
            format!(
                "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                xml_escape(&o.key),
                iso_millis(o.last_modified),
                xml_escape(&o.etag),
                o.size
            )
        })
        .collect();
    let next_marker = if truncated {
        matching
            .get(max_keys.saturating_sub(1))
            .map(|o| format!("<NextMarker>{}</NextMarker>", xml_escape(&o.key)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<ListBucketResult xmlns=\"{S3_XMLNS}\"><Name>{}</Name><Prefix>{}</Prefix><Marker>{}</Marker>{next_marker}<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>{contents}</ListBucketResult>",
            xml_escape(bucket),
            xml_escape(prefix),
            xml_escape(marker)
        ),
    ))
}

/// The user metadata headers (`x-amz-meta-*`, `x-obs-meta-*`) of a request.
fn user_metadata(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            name.as_str().starts_with("x-amz-meta-") || name.as_str().starts_with("x-obs-meta-")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_CONTENT_TYPE)
        .to_owned()
}

/// A body written to the spool.
struct Received {
    path: PathBuf,
    size: u64,
    /// SHA-256 of the body, when it was asked for (see [`Hashing`]).
    sha256: Option<String>,
    md5: [u8; 16],
    /// The chain hasher handed in, advanced over the body.
    chain: Option<Sha256>,
}

/// What [`receive`] computes besides the MD5 (always: it is the ETag).
#[derive(Default)]
struct Hashing {
    /// The body's own SHA-256: a whole object, or a part whose `x-amz-content-sha256` is a
    /// digest to check.
    body_sha256: bool,
    /// A running SHA-256 to advance over the body (an upload's [`HashChain`]).
    chain: Option<Sha256>,
}

impl Hashing {
    /// The body's SHA-256 is needed when the object is the body, or the client declared it.
    fn for_body(headers: &HeaderMap, whole_object: bool) -> Self {
        Self {
            body_sha256: whole_object || declared_sha256(headers).is_some(),
            chain: None,
        }
    }
}

/// A hex `x-amz-content-sha256` (not `UNSIGNED-PAYLOAD` or a streaming marker).
fn declared_sha256(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(V4_CONTENT_SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|value| value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Chunks queued for the thread that hashes and writes a body.
const RECEIVE_DEPTH: usize = 16;

/// Streams `body` into a spool file, computing MD5 and what `hashing` asks for, refusing more
/// than `limit` bytes. The declared `Content-Length` is required. Hashing and writing run on a
/// blocking thread, overlapping with reading the next chunks from the connection.
async fn receive(
    sim: &SimState,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    hashing: Hashing,
) -> Result<Received, ObsError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            ObsError::new(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            )
        })?;
    let too_large = || {
        ObsError::new(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            format!(
                "Your proposed upload exceeds the maximum allowed object size ({limit} bytes)."
            ),
        )
    };
    if declared > limit {
        return Err(too_large());
    }
    let path = sim.spool.reserve();
    let (to_writer, chunks) = tokio::sync::mpsc::channel(RECEIVE_DEPTH);
    let writer = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || hash_and_write(chunks, &path, hashing))
    };
    let mut size: u64 = 0;
    let mut refusal = None;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) => {
                refusal = Some(ObsError::new(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                ));
                break;
            }
        };
        size += chunk.len() as u64;
        if size > limit {
            refusal = Some(too_large());
            break;
        }
        if to_writer.send(chunk).await.is_err() {
            // The writer stopped on an I/O error, reported when it is joined.
            break;
        }
    }
    drop(to_writer);
    let written = writer
        .await
        .map_err(|e| ObsError::internal(format!("the spool writer failed: {e}")))
        .and_then(|written| {
            written.map_err(|e| ObsError::internal(format!("cannot write spool file: {e}")))
        });
    let digests = match (refusal, written) {
        (None, Ok(digests)) => digests,
        (Some(error), _) | (None, Err(error)) => {
            tokio::fs::remove_file(&path).await.ok();
            return Err(error);
        }
    };
    let received = Received {
        path,
        size,
        sha256: digests.sha256,
        md5: digests.md5,
        chain: digests.chain,
    };
    if let Err(error) = check_digests(headers, &received) {
        tokio::fs::remove_file(&received.path).await.ok();
        return Err(error);
    }
    Ok(received)
}

/// What [`hash_and_write`] computed.
struct BodyDigests {
    md5: [u8; 16],
    sha256: Option<String>,
    chain: Option<Sha256>,
}

/// Writes the chunks to `path` and hashes them as `hashing` asks (runs on a blocking thread).
fn hash_and_write(
    mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    path: &std::path::Path,
    hashing: Hashing,
) -> std::io::Result<BodyDigests> {
    use std::io::Write as _;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut md5 = Md5::new();
    let mut body_sha256 = hashing.body_sha256.then(Sha256::new);
    let mut chain = hashing.chain;
    while let Some(chunk) = chunks.blocking_recv() {
        md5.update(&chunk);
        if let Some(hasher) = &mut body_sha256 {
            hasher.update(&chunk);
        }
        if let Some(hasher) = &mut chain {
            hasher.update(&chunk);
        }
        writer.write_all(&chunk)?;
    }
    writer.flush()?;
    Ok(BodyDigests {
        md5: md5.finalize().into(),
        sha256: body_sha256.map(|hasher| hex::encode(hasher.finalize())),
        chain,
    })
}

/// Continues `hasher` over the files in order (runs on a blocking thread).
fn hash_files(mut hasher: Sha256, paths: &[PathBuf]) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut buffer = vec![0u8; 1 << 20];
    for path in paths {
        let mut file = std::fs::File::open(path)?;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Removes the files of replaced or discarded objects and parts.
async fn remove_files(paths: impl IntoIterator<Item = PathBuf>) {
    for path in paths {
        tokio::fs::remove_file(&path).await.ok();
    }
}

/// `Content-MD5` (base64) and a hex `x-amz-content-sha256` must match the body.
fn check_digests(headers: &HeaderMap, received: &Received) -> Result<(), ObsError> {
    if let Some(expected) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        let actual = base64::engine::general_purpose::STANDARD.encode(received.md5);
        if expected.trim() != actual {
            return Err(ObsError::new(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    if let Some(expected) = declared_sha256(headers)
        && received
            .sha256
            .as_deref()
            .is_none_or(|actual| !expected.eq_ignore_ascii_case(actual))
    {
        return Err(ObsError::new(
            StatusCode::BAD_REQUEST,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    Ok(())
}

fn etag_header(etag: &str) -> Result<HeaderValue, ObsError> {
    HeaderValue::from_str(etag).map_err(|_| ObsError::internal("unrepresentable ETag"))
}

async fn put_object(
    sim: &SimState,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ObsError> {
    if headers.contains_key("x-amz-copy-source") || headers.contains_key("x-obs-copy-source") {
        return Err(ObsError::not_implemented("copy object"));
    }
    let received = receive(
        sim,
        headers,
        body,
        sim.obs.config.max_object_bytes,
        Hashing::for_body(headers, true),
    )
    .await?;
    let etag = format!("\"{}\"", hex::encode(received.md5));
    let object = StoredObject {
        segments: vec![Segment {
            path: received.path,
            size: received.size,
        }],
        summary: ObjectSummary {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: received.size,
            sha256: received.sha256.unwrap_or_default(),
            etag: etag.clone(),
            content_type: content_type(headers),
            last_modified: sim.now(),
        },
        metadata: user_metadata(headers),
    };
    let replaced = sim
        .obs
        .lock()
        .objects
        .insert((bucket.to_owned(), key.to_owned()), object);
    if let Some(old) = replaced {
        remove_files(old.paths()).await;
    }
    Ok(([(header::ETAG, etag_header(&etag)?)], "").into_response())
}

/// Parses `Range: bytes=a-b | a- | -n` against `size` into an inclusive `(start, end)`.
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 || size == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => {
            let start: u64 = start.parse().ok()?;
            if start >= size {
                return Some(Err(()));
            }
            (start, size - 1)
        }
        (start, end) => {
            let start: u64 = start.parse().ok()?;
            let end: u64 = end.parse().ok()?;
            if start > end || start >= size {
                return Some(Err(()));
            }
            (start, end.min(size - 1))
        }
    };
    Some(Ok(range))
}

async fn get_object(
    obs: &ObsState,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response, ObsError> {
    let object = obs
        .lock()
        .objects
        .get(&(bucket.to_owned(), key.to_owned()))
        .cloned()
        .ok_or_else(ObsError::no_such_key)?;
    let size = object.summary.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => match parse_range(value, size) {
            None => None,
            Some(Ok(range)) => Some(range),
            Some(Err(())) => {
                return Err(ObsError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range cannot be satisfied.",
                ));
            }
        },
    };
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut response_headers = HeaderMap::new();
    let text = |value: &str| {
        HeaderValue::from_str(value).map_err(|_| ObsError::internal("unrepresentable header value"))
    };
    response_headers.insert(header::CONTENT_TYPE, text(&object.summary.content_type)?);
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response_headers.insert(header::ETAG, etag_header(&object.summary.etag)?);
    response_headers.insert(
        header::LAST_MODIFIED,
        text(&format_http_date(object.summary.last_modified))?,
    );
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        response_headers.insert(
            header::CONTENT_RANGE,
            text(&format!("bytes {start}-{}/{size}", start + length - 1))?,
        );
    }
    for (name, value) in &object.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response_headers.insert(name, value);
        }
    }
    if head_only {
        return Ok((status, response_headers).into_response());
    }
    Ok((
        status,
        response_headers,
        segments_body(object.segments, start, length),
    )
        .into_response())
}

/// Bytes read per chunk of an object download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// A response body with `length` bytes of the segments' concatenation from `start`, read on a
/// blocking thread a chunk at a time (memory stays at a few chunks whatever the object size).
fn segments_body(segments: Vec<Segment>, start: u64, length: u64) -> Body {
    let (sender, chunks) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = read_segments(&segments, start, length, &sender) {
            // The client may already be gone; then nobody needs the error.
            let _ = sender.blocking_send(Err(e));
        }
    });
    Body::from_stream(crate::streams::receiver_stream(chunks))
}

fn read_segments(
    segments: &[Segment],
    mut start: u64,
    mut remaining: u64,
    sender: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _};
    for segment in segments {
        if remaining == 0 {
            break;
        }
        if start >= segment.size {
            start -= segment.size;
            continue;
        }
        let mut file = std::fs::File::open(&segment.path)?;
        file.seek(std::io::SeekFrom::Start(start))?;
        let mut left_here = (segment.size - start).min(remaining);
        start = 0;
        while left_here > 0 {
            let mut chunk = vec![0u8; DOWNLOAD_CHUNK.min(left_here as usize)];
            file.read_exact(&mut chunk)?;
            left_here -= chunk.len() as u64;
            remaining -= chunk.len() as u64;
            if sender.blocking_send(Ok(chunk.into())).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn delete_object(obs: &ObsState, bucket: &str, key: &str) -> Result<Response, ObsError> {
    let removed = obs
        .lock()
        .objects
        .remove(&(bucket.to_owned(), key.to_owned()));
    if let Some(object) = removed {
        remove_files(object.paths()).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn initiate_upload(sim: &SimState, bucket: &str, key: &str, headers: &HeaderMap) -> Response {
    let upload_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    sim.obs.lock().uploads.insert(
        upload_id.clone(),
        MultipartUpload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated: sim.now(),
            content_type: content_type(headers),
            metadata: user_metadata(headers),
            parts: BTreeMap::new(),
            chain: HashChain::default(),
        },
    );
    xml_response(
        StatusCode::OK,
        format!(
            "<InitiateMultipartUploadResult xmlns=\"{S3_XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>",
            xml_escape(bucket),
            xml_escape(key)
        ),
    )
}

async fn upload_part(
    sim: &SimState,
    bucket: &str,
    key: &str,
    upload_id: &str,
    query: &[(String, Option<String>)],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ObsError> {
    let part_number = query_value(query, "partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            ObsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })?;
    // The part that continues the upload's hash chain takes a copy of the chain's hasher
    // along; any other part (out of order, or while the next one is streaming) does not.
    let chained = {
        let mut store = sim.obs.lock();
        let upload = store
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .ok_or_else(ObsError::no_such_upload)?;
        let chain = &mut upload.chain;
        (!chain.busy && chain.next_part() == part_number).then(|| {
            chain.busy = true;
            (chain.generation, chain.hasher.clone())
        })
    };
    let hashing = Hashing {
        chain: chained.as_ref().map(|(_, hasher)| hasher.clone()),
        ..Hashing::for_body(headers, false)
    };
    let received = receive(sim, headers, body, sim.obs.config.max_object_bytes, hashing).await;
    let received = match received {
        Ok(received) => received,
        Err(error) => {
            if let Some((generation, _)) = chained
                && let Some(upload) = sim.obs.lock().uploads.get_mut(upload_id)
                && upload.chain.generation == generation
            {
                upload.chain.busy = false;
            }
            return Err(error);
        }
    };
    let etag = format!("\"{}\"", hex::encode(received.md5));
    let part = StoredPart {
        path: received.path,
        size: received.size,
        md5: received.md5,
    };
    let outcome = {
        let mut store = sim.obs.lock();
        match store.uploads.get_mut(upload_id) {
            Some(upload) => {
                let chain = &mut upload.chain;
                match (chained.map(|(generation, _)| generation), received.chain) {
                    (Some(generation), Some(advanced)) if generation == chain.generation => {
                        chain.hasher = advanced;
                        chain.fed.push((part_number, part.path.clone()));
                        chain.busy = false;
                    }
                    // A part the chain already covers was sent again: start the chain over
                    // (completion then hashes the parts from their files).
                    _ if chain.fed.iter().any(|(number, _)| *number == part_number) => {
                        *chain = HashChain {
                            generation: chain.generation + 1,
                            ..HashChain::default()
                        };
                    }
                    _ => {}
                }
                Ok(upload.parts.insert(part_number, part.clone()))
            }
            None => Err(part.path.clone()),
        }
    };
    match outcome {
        Ok(replaced) => {
            if let Some(old) = replaced {
                remove_files([old.path]).await;
            }
            Ok(([(header::ETAG, etag_header(&etag)?)], "").into_response())
        }
        Err(orphan) => {
            tokio::fs::remove_file(orphan).await.ok();
            Err(ObsError::no_such_upload())
        }
    }
}

#[derive(Debug, Deserialize)]
struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(Debug, Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

fn malformed_xml() -> ObsError {
    ObsError::new(
        StatusCode::BAD_REQUEST,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema.",
    )
}

/// Checks the listed parts against the uploaded ones and returns them in order.
fn validate_parts(
    upload: &MultipartUpload,
    listed: &[CompletePart],
    min_part_size: u64,
) -> Result<Vec<StoredPart>, ObsError> {
    if listed.is_empty() {
        return Err(malformed_xml());
    }
    if listed
        .windows(2)
        .any(|pair| pair[0].part_number >= pair[1].part_number)
    {
        return Err(ObsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidPartOrder",
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        ));
    }
    let mut parts = Vec::with_capacity(listed.len());
    for (index, item) in listed.iter().enumerate() {
        let invalid_part = || {
            ObsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidPart",
                format!(
                    "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag (part {}).",
                    item.part_number
                ),
            )
        };
        let part = upload
            .parts
            .get(&item.part_number)
            .ok_or_else(invalid_part)?;
        let given = item.etag.trim().trim_matches('"').to_ascii_lowercase();
        if given != hex::encode(part.md5) {
            return Err(invalid_part());
        }
        if index + 1 < listed.len() && part.size < min_part_size {
            return Err(ObsError::new(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                format!(
                    "Your proposed upload is smaller than the minimum allowed size (part {} is {} bytes, minimum {min_part_size}).",
                    item.part_number, part.size
                ),
            ));
        }
        parts.push(part.clone());
    }
    Ok(parts)
}

/// The SHA-256 of the object the listed parts make: the upload's hash chain where it covers
/// a prefix of them, continued over the remaining part files (all of them when the parts came
/// out of order or were sent again).
async fn object_sha256(
    chain: &HashChain,
    listed: &[CompletePart],
    parts: &[StoredPart],
) -> Result<String, ObsError> {
    let covered =
        !chain.busy
            && chain.fed.len() <= parts.len()
            && chain.fed.iter().zip(listed.iter().zip(parts)).all(
                |((number, path), (item, part))| *number == item.part_number && *path == part.path,
            );
    let (hasher, rest) = if covered {
        (chain.hasher.clone(), &parts[chain.fed.len()..])
    } else {
        (Sha256::new(), parts)
    };
    let paths: Vec<PathBuf> = rest.iter().map(|part| part.path.clone()).collect();
    tokio::task::spawn_blocking(move || hash_files(hasher, &paths))
        .await
        .map_err(|e| ObsError::internal(format!("hashing the object failed: {e}")))?
        .map_err(|e| ObsError::internal(format!("cannot read the uploaded parts: {e}")))
}

async fn complete_upload(
    sim: &SimState,
    bucket: &str,
    key: &str,
    upload_id: &str,
    body: Body,
) -> Result<Response, ObsError> {
    let bytes = axum::body::to_bytes(body, MAX_COMPLETE_BODY_BYTES)
        .await
        .map_err(|_| malformed_xml())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed_xml())?;
    let listed: CompleteMultipartUpload =
        quick_xml::de::from_str(text).map_err(|_| malformed_xml())?;
    let (upload, parts) = {
        let store = sim.obs.lock();
        let upload = store
            .uploads
            .get(upload_id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .ok_or_else(ObsError::no_such_upload)?;
        let parts = validate_parts(upload, &listed.parts, sim.obs.config.min_part_size)?;
        (upload.clone(), parts)
    };
    let sha256 = object_sha256(&upload.chain, &listed.parts, &parts).await?;
    let mut combined = Md5::new();
    for part in &parts {
        combined.update(part.md5);
    }
    let etag = format!("\"{}-{}\"", hex::encode(combined.finalize()), parts.len());
    let segments: Vec<Segment> = parts
        .iter()
        .map(|part| Segment {
            path: part.path.clone(),
            size: part.size,
        })
        .collect();
    let object = StoredObject {
        summary: ObjectSummary {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: segments.iter().map(|segment| segment.size).sum(),
            sha256,
            etag: etag.clone(),
            content_type: upload.content_type.clone(),
            last_modified: sim.now(),
        },
        segments,
        metadata: upload.metadata.clone(),
    };
    let (unused_parts, replaced) = {
        let mut store = sim.obs.lock();
        // Parts sent again while the object was hashed would no longer match it.
        let unchanged = store.uploads.get(upload_id).is_some_and(|current| {
            listed.parts.iter().zip(&parts).all(|(item, part)| {
                current
                    .parts
                    .get(&item.part_number)
                    .is_some_and(|now| now.path == part.path)
            })
        });
        if !unchanged {
            return Err(ObsError::new(
                StatusCode::CONFLICT,
                "OperationAborted",
                "A part of this upload changed while it was being completed; please retry.",
            ));
        }
        let removed = store.uploads.remove(upload_id);
        let unused: Vec<PathBuf> = removed
            .map(|upload| {
                upload
                    .parts
                    .into_values()
                    .map(|part| part.path)
                    .filter(|path| !object.segments.iter().any(|s| &s.path == path))
                    .collect()
            })
            .unwrap_or_default();
        let replaced = store
            .objects
            .insert((bucket.to_owned(), key.to_owned()), object);
        (unused, replaced)
    };
    if let Some(old) = replaced {
        remove_files(old.paths()).await;
    }
    remove_files(unused_parts).await;
    Ok(xml_response(
        StatusCode::OK,
        format!(
            "<CompleteMultipartUploadResult xmlns=\"{S3_XMLNS}\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            xml_escape(bucket),
            xml_escape(key),
            xml_escape(bucket),
            xml_escape(key),
            xml_escape(&etag)
        ),
    ))
}

async fn abort_upload(
    obs: &ObsState,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Response, ObsError> {
    let removed = {
        let mut store = obs.lock();
        match store.uploads.get(upload_id) {
            Some(u) if u.bucket == bucket && u.key == key => store.uploads.remove(upload_id),
            _ => None,
        }
    };
    let upload = removed.ok_or_else(ObsError::no_such_upload)?;
    for part in upload.parts.values() {
        tokio::fs::remove_file(&part.path).await.ok();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// SHA-256 of a byte string as OBS reports it (helper for tests and IoTDA checks).
pub fn content_sha256(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    #[test]
    fn targets_resolve_for_both_addressing_styles() {
        let obs = ObsState::default();
        let path_style = resolve_target(
            &obs,
            &headers_with_host("127.0.0.1:9000"),
            "/fw-bucket/fw/a%20b.bin",
        );
        assert_eq!(path_style.bucket.as_deref(), Some("fw-bucket"));
        assert_eq!(path_style.key.as_deref(), Some("fw/a b.bin"));
        assert_eq!(path_style.host_bucket, None);

        let virtual_host = resolve_target(
            &obs,
            &headers_with_host("fw-bucket.obs.cn-north-4.myhuaweicloud.com"),
            "/fw/2.0.0.bin",
        );
        assert_eq!(virtual_host.bucket.as_deref(), Some("fw-bucket"));
        assert_eq!(virtual_host.key.as_deref(), Some("fw/2.0.0.bin"));
        assert_eq!(virtual_host.host_bucket.as_deref(), Some("fw-bucket"));

        let unknown = resolve_target(&obs, &headers_with_host("other.obs.example:9000"), "/");
        assert_eq!(unknown.bucket.as_deref(), Some("other"));
        assert_eq!(unknown.key, None);

        let service = resolve_target(&obs, &headers_with_host("localhost:9000"), "/");
        assert_eq!(service.bucket, None);
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-3", 10), Some(Ok((0, 3))));
        assert_eq!(parse_range("bytes=5-", 10), Some(Ok((5, 9))));
        assert_eq!(parse_range("bytes=-4", 10), Some(Ok((6, 9))));
        assert_eq!(parse_range("bytes=8-100", 10), Some(Ok((8, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Some(Err(())));
        assert_eq!(parse_range("bytes=4-2", 10), Some(Err(())));
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
    }

    #[test]
    fn complete_body_parses_with_and_without_namespace() {
        let plain = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"abc\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"def\"</ETag></Part></CompleteMultipartUpload>";
        let parsed: CompleteMultipartUpload = quick_xml::de::from_str(plain).unwrap();
        assert_eq!(parsed.parts.len(), 2);
        assert_eq!(parsed.parts[1].part_number, 2);
        let namespaced = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload xmlns=\"{S3_XMLNS}\"><Part><ETag>x</ETag><PartNumber>3</PartNumber></Part></CompleteMultipartUpload>"
        );
        let parsed: CompleteMultipartUpload = quick_xml::de::from_str(&namespaced).unwrap();
        assert_eq!(parsed.parts[0].part_number, 3);
    }

    #[test]
    fn part_validation_enforces_order_etags_and_minimum_size() {
        let part = |size: u64, byte: u8| StoredPart {
            path: PathBuf::from("/nonexistent"),
            size,
            md5: [byte; 16],
        };
        let upload = MultipartUpload {
            bucket: "b".into(),
            key: "k".into(),
            initiated: Timestamp::UNIX_EPOCH,
            content_type: DEFAULT_CONTENT_TYPE.into(),
            metadata: Vec::new(),
            parts: BTreeMap::from([(1, part(200, 1)), (2, part(50, 2)), (3, part(10, 3))]),
            chain: HashChain::default(),
        };
        let listed = |items: &[(u32, u8)]| -> Vec<CompletePart> {
            items
                .iter()
                .map(|(n, b)| CompletePart {
                    part_number: *n,
                    etag: format!("\"{}\"", hex::encode([*b; 16])),
                })
                .collect()
        };
        assert_eq!(
            validate_parts(&upload, &listed(&[(1, 1), (2, 2)]), 100)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            validate_parts(&upload, &listed(&[(2, 2), (1, 1)]), 100)
                .unwrap_err()
                .code,
            "InvalidPartOrder"
        );
        assert_eq!(
            validate_parts(&upload, &listed(&[(1, 9)]), 100)
                .unwrap_err()
                .code,
            "InvalidPart"
        );
        assert_eq!(
            validate_parts(&upload, &listed(&[(4, 1)]), 100)
                .unwrap_err()
                .code,
            "InvalidPart"
        );
        assert_eq!(
            validate_parts(&upload, &listed(&[(2, 2), (3, 3)]), 100)
                .unwrap_err()
                .code,
            "EntityTooSmall"
        );
    }
}
