//! Huawei OBS / S3 request signatures (fact sheets: iotda.md §5, sdks.md §3).
//!
//! - AWS V2 (`Authorization: AWS ak:sig`, `x-amz-*` headers) and OBS native (`OBS ak:sig`,
//!   `x-obs-*` headers): base64 HMAC-SHA1 over
//!   `METHOD\nContent-MD5\nContent-Type\nDate\n{prefixed headers}{/bucket/key?subresources}`.
//! - AWS SigV4 (`AWS4-HMAC-SHA256`, scope `{date}/{region}/s3/aws4_request`), payload hash taken
//!   from `x-amz-content-sha256` (the OBS SDKs send `UNSIGNED-PAYLOAD`).
//!
//! [`ObsSigner`] is the client side, [`ObsAuthorization`] the server side.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jiff::{SignedDuration, Timestamp};
use sha1::Sha1;

use super::huawei::HuaweiCredentials;
use super::{
    SigningError, canonical_headers, canonical_query_from_pairs, check_skew, constant_time_eq,
    encode_unreserved, header_text, hmac_sha256, host_without_default_port, percent_decode,
    sha256_hex,
};

/// Algorithm name of SigV4.
pub const V4_ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SigV4 payload-hash header.
pub const V4_CONTENT_SHA256_HEADER: &str = "x-amz-content-sha256";
/// SigV4 request-time header.
pub const V4_DATE_HEADER: &str = "x-amz-date";
/// Literal payload hash of unsigned bodies.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Skew OBS tolerates before answering `RequestTimeTooSkewed`.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(15);

const V4_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Query parameters that are part of the V2/OBS canonical resource (compared lowercase), as in
/// the OBS SDK's allow-list.
const SUB_RESOURCES: &[&str] = &[
    "acl",
    "backtosource",
    "policy",
    "torrent",
    "logging",
    "location",
    "storageinfo",
    "quota",
    "storageclass",
    "storagepolicy",
    "requestpayment",
    "versions",
    "versioning",
    "versionid",
    "uploads",
    "uploadid",
    "partnumber",
    "website",
    "notification",
    "dispolicy",
    "lifecycle",
    "deletebucket",
    "delete",
    "cors",
    "restore",
    "tagging",
    "replication",
    "metadata",
    "encryption",
    "publicaccessblock",
    "bucketstatus",
    "policystatus",
    "x-obs-accesslabel",
    "inventory",
    "obscompresspolicy",
    "object-lock",
    "retention",
    "directcoldaccess",
    "append",
    "position",
    "truncate",
    "modify",
    "rename",
    "length",
    "name",
    "fileinterface",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "x-image-save-bucket",
    "x-image-save-object",
    "x-image-process",
    "x-oss-process",
    "obsbucketalias",
    "obsalias",
];

/// The two HMAC-SHA1 header schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Flavor {
    /// AWS V2 compatible: `AWS ak:sig`, `x-amz-*` headers.
    Aws,
    /// OBS native: `OBS ak:sig`, `x-obs-*` headers.
    Obs,
}

impl V2Flavor {
    /// `AWS` or `OBS`.
    pub fn auth_prefix(self) -> &'static str {
        match self {
            V2Flavor::Aws => "AWS",
            V2Flavor::Obs => "OBS",
        }
    }

    /// `x-amz-` or `x-obs-`.
    pub fn header_prefix(self) -> &'static str {
        match self {
            V2Flavor::Aws => "x-amz-",
            V2Flavor::Obs => "x-obs-",
        }
    }

    /// `x-amz-date` or `x-obs-date`.
    pub fn date_header(self) -> &'static str {
        match self {
            V2Flavor::Aws => "x-amz-date",
            V2Flavor::Obs => "x-obs-date",
        }
    }
}

/// How the bucket is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing<'a> {
    /// `/{bucket}/{key}` in the path.
    PathStyle,
    /// Bucket in the host name (`{bucket}.obs.…`), path is `/{key}`.
    VirtualHosted {
        /// Bucket name taken from the host.
        bucket: &'a str,
    },
}

/// Formats a time as an HTTP date (`Tue, 02 Jan 2024 03:04:05 GMT`).
pub fn format_http_date(time: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&time)
        .expect("timestamps within jiff's range format")
}

/// Parses a request time in HTTP-date form or the compact ISO form `yyyyMMddTHHmmssZ`.
pub fn parse_request_time(value: &str) -> Result<Timestamp, SigningError> {
    let value = value.trim();
    if let Ok(time) = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value) {
        return Ok(time);
    }
    jiff::civil::DateTime::strptime(V4_DATE_FORMAT, value)
        .ok()
        .and_then(|civil| jiff::tz::TimeZone::UTC.to_timestamp(civil).ok())
        .ok_or_else(|| SigningError::MalformedDate(value.to_string()))
}

/// Raw query split into `(decoded key, decoded value or None when there was no '=')`.
fn query_items(raw_query: Option<&str>) -> Vec<(String, Option<String>)> {
    raw_query
        .unwrap_or_default()
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((key, value)) => (percent_decode(key), Some(percent_decode(value))),
            None => (percent_decode(segment), None),
        })
        .collect()
}

/// The V2/OBS canonical resource: `/{bucket}[/{key}]` (path-style) or `/{bucket}/{key}`
/// (virtual-hosted), with the key as it appears on the wire, then the allow-listed
/// sub-resources sorted by name (`?k=v&k2`, values decoded).
pub fn v2_canonical_resource(
    flavor: V2Flavor,
    addressing: Addressing<'_>,
    raw_path: &str,
    raw_query: Option<&str>,
) -> String {
    let mut resource = match addressing {
        Addressing::PathStyle => {
            let trimmed = raw_path.trim_start_matches('/');
            match trimmed.split_once('/') {
                Some((bucket, key)) if !key.is_empty() => format!("/{bucket}/{key}"),
                Some((bucket, _)) => format!("/{bucket}"),
                None if trimmed.is_empty() => "/".to_string(),
                None => format!("/{trimmed}"),
            }
        }
        Addressing::VirtualHosted { bucket } => {
            format!("/{bucket}/{}", raw_path.trim_start_matches('/'))
        }
    };
    let mut items: Vec<(String, Option<String>)> = query_items(raw_query)
        .into_iter()
        .filter(|(key, _)| {
            let lower = key.to_ascii_lowercase();
            SUB_RESOURCES.contains(&lower.as_str()) || lower.starts_with(flavor.header_prefix())
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if !items.is_empty() {
        let joined = items
            .iter()
            .map(|(key, value)| match value {
                Some(value) => format!("{key}={value}"),
                None => key.clone(),
            })
            .collect::<Vec<_>>()
            .join("&");
        resource.push('?');
        resource.push_str(&joined);
    }
    resource
}

/// The V2/OBS string to sign for a request with `headers` and canonical `resource`.
pub fn v2_string_to_sign(
    flavor: V2Flavor,
    method: &str,
    headers: &HeaderMap,
    resource: &str,
) -> Result<String, SigningError> {
    let content_md5 = header_text(headers, "content-md5")?.unwrap_or_default();
    let content_type = header_text(headers, CONTENT_TYPE.as_str())?.unwrap_or_default();
    let has_prefixed_date =
        headers.contains_key("x-amz-date") || headers.contains_key("x-obs-date");
    let date = if has_prefixed_date {
        String::new()
    } else {
        header_text(headers, DATE.as_str())?.unwrap_or_default()
    };
    let mut prefixed: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        if name.as_str().starts_with(flavor.header_prefix())
            && let Some(value) = header_text(headers, name.as_str())?
        {
            prefixed.push((name.as_str().to_string(), value));
        }
    }
    prefixed.sort();
    let header_block: String = prefixed
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    Ok(format!(
        "{method}\n{content_md5}\n{content_type}\n{date}\n{header_block}{resource}"
    ))
}

/// Base64 HMAC-SHA1 of `string_to_sign` under the secret key.
pub fn v2_signature(secret_key: &str, string_to_sign: &str) -> String {
    BASE64.encode(hmac_sha1(secret_key.as_bytes(), string_to_sign.as_bytes()))
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// SigV4 canonical URI: the decoded path re-encoded per segment (S3 does not double-encode).
pub fn v4_canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    raw_path
        .split('/')
        .map(|segment| encode_unreserved(&percent_decode(segment)))
        .collect::<Vec<_>>()
        .join("/")
}

/// SigV4 canonical query: pairs re-encoded and sorted, `k=v` (empty value gives `k=`).
pub fn v4_canonical_query(raw_query: Option<&str>) -> String {
    canonical_query_from_pairs(
        query_items(raw_query)
            .into_iter()
            .map(|(key, value)| (key, value.unwrap_or_default())),
    )
}

/// SigV4 canonical request; `signed_headers` are sorted by name here.
pub fn v4_canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: Option<&str>,
    signed_headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let (header_block, names) = canonical_headers(signed_headers);
    format!(
        "{method}\n{}\n{}\n{header_block}\n{names}\n{payload_hash}",
        v4_canonical_uri(raw_path),
        v4_canonical_query(raw_query)
    )
}

/// SigV4 signing key: HMAC chain over `AWS4{SK}`, date, region, service, `aws4_request`.
pub fn v4_signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let date_key = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let region_key = hmac_sha256(&date_key, region.as_bytes());
    let service_key = hmac_sha256(&region_key, service.as_bytes());
    hmac_sha256(&service_key, b"aws4_request")
}

/// SigV4 string to sign.
pub fn v4_string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{V4_ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Which scheme an [`ObsSigner`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObsScheme {
    /// AWS V2 compatible (`AWS ak:sig`).
    AwsV2,
    /// OBS native (`OBS ak:sig`).
    Obs,
    /// AWS SigV4 with `UNSIGNED-PAYLOAD`, for `region`.
    V4 {
        /// Region id of the scope.
        region: String,
    },
}

/// Client-side OBS signer.
#[derive(Debug, Clone)]
pub struct ObsSigner {
    credentials: HuaweiCredentials,
    scheme: ObsScheme,
}

impl ObsSigner {
    /// A signer for `scheme`.
    pub fn new(credentials: HuaweiCredentials, scheme: ObsScheme) -> Self {
        Self {
            credentials,
            scheme,
        }
    }

    /// The scheme in use.
    pub fn scheme(&self) -> &ObsScheme {
        &self.scheme
    }

    /// Headers to add to the request (`Date` or `x-amz-date`, `x-amz-content-sha256` for V4,
    /// `Authorization`). An existing `Date` / `x-amz-date` / `x-obs-date` is used as the request
    /// time; otherwise `now`. `uri` must be absolute unless `headers` carries `Host`.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        addressing: Addressing<'_>,
        now: Timestamp,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SigningError> {
        let header_value = |name: &str, text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| SigningError::InvalidHeaderValue(name.to_string()))
        };
        let mut added = Vec::new();
        match &self.scheme {
            ObsScheme::AwsV2 | ObsScheme::Obs => {
                let flavor = if self.scheme == ObsScheme::Obs {
                    V2Flavor::Obs
                } else {
                    V2Flavor::Aws
                };
                let mut working = headers.clone();
                let has_time =
                    working.contains_key(DATE) || working.contains_key(flavor.date_header());
                if !has_time {
                    let date = header_value("date", &format_http_date(now))?;
                    working.insert(DATE, date.clone());
                    added.push((DATE, date));
                }
                let resource = v2_canonical_resource(flavor, addressing, uri.path(), uri.query());
                let sts = v2_string_to_sign(flavor, method.as_str(), &working, &resource)?;
                let signature = v2_signature(self.credentials.secret_key(), &sts);
                let authorization = format!(
                    "{} {}:{signature}",
                    flavor.auth_prefix(),
                    self.credentials.access_key()
                );
                added.push((
                    AUTHORIZATION,
                    header_value("authorization", &authorization)?,
                ));
            }
            ObsScheme::V4 { region } => {
                let mut signed: Vec<(String, String)> = Vec::new();
                for name in headers.keys() {
                    if name == AUTHORIZATION
                        || name == HOST
                        || name.as_str() == V4_CONTENT_SHA256_HEADER
                    {
                        continue;
                    }
                    if let Some(value) = header_text(headers, name.as_str())? {
                        signed.push((name.as_str().to_string(), value));
                    }
                }
                let host = match header_text(headers, HOST.as_str())? {
                    Some(host) => host,
                    None => host_without_default_port(uri)
                        .ok_or_else(|| SigningError::MissingHeader("host".into()))?,
                };
                signed.push((HOST.as_str().to_string(), host));
                signed.push((
                    V4_CONTENT_SHA256_HEADER.to_string(),
                    UNSIGNED_PAYLOAD.to_string(),
                ));
                added.push((
                    HeaderName::from_static(V4_CONTENT_SHA256_HEADER),
                    HeaderValue::from_static(UNSIGNED_PAYLOAD),
                ));
                let time = if let Some(value) = header_text(headers, V4_DATE_HEADER)? {
                    parse_request_time(&value)?
                } else if let Some(value) = header_text(headers, DATE.as_str())? {
                    parse_request_time(&value)?
                } else {
                    let amz_date = now.strftime(V4_DATE_FORMAT).to_string();
                    signed.push((V4_DATE_HEADER.to_string(), amz_date.clone()));
                    added.push((
                        HeaderName::from_static(V4_DATE_HEADER),
                        header_value(V4_DATE_HEADER, &amz_date)?,
                    ));
                    now
                };
                let amz_date = time.strftime(V4_DATE_FORMAT).to_string();
                let day = &amz_date[..8];
                let scope = format!("{day}/{region}/s3/aws4_request");
                let canonical = v4_canonical_request(
                    method.as_str(),
                    uri.path(),
                    uri.query(),
                    &signed,
                    UNSIGNED_PAYLOAD,
                );
                let key = v4_signing_key(self.credentials.secret_key(), day, region, "s3");
                let signature = hex::encode(hmac_sha256(
                    &key,
                    v4_string_to_sign(&amz_date, &scope, &canonical).as_bytes(),
                ));
                let mut names: Vec<&str> = signed.iter().map(|(name, _)| name.as_str()).collect();
                names.sort_unstable();
                let authorization = format!(
                    "{V4_ALGORITHM} Credential={}/{scope},SignedHeaders={},Signature={signature}",
                    self.credentials.access_key(),
                    names.join(";")
                );
                added.push((
                    AUTHORIZATION,
                    header_value("authorization", &authorization)?,
                ));
            }
        }
        Ok(added)
    }
}

/// SigV4 credential scope `{date}/{region}/{service}/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Scope {
    /// `yyyymmdd`.
    pub date: String,
    /// Region id.
    pub region: String,
    /// Service (`s3`).
    pub service: String,
}

/// A request as an OBS endpoint received it.
#[derive(Debug, Clone, Copy)]
pub struct ObsRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target as on the wire.
    pub uri: &'a Uri,
    /// Headers as received.
    pub headers: &'a HeaderMap,
    /// How the bucket was addressed.
    pub addressing: Addressing<'a>,
}

/// A parsed OBS `Authorization` header (server side).
#[derive(Clone, PartialEq, Eq)]
pub enum ObsAuthorization {
    /// `AWS ak:sig` or `OBS ak:sig`.
    V2 {
        /// Which header scheme.
        flavor: V2Flavor,
        /// Access key id.
        access_key: String,
        /// Base64 signature.
        signature: String,
    },
    /// `AWS4-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
    V4 {
        /// Access key id.
        access_key: String,
        /// Credential scope.
        scope: V4Scope,
        /// Lowercase signed header names.
        signed_headers: Vec<String>,
        /// Hex signature.
        signature: String,
    },
}

impl fmt::Debug for ObsAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObsAuthorization::V2 {
                flavor, access_key, ..
            } => f
                .debug_struct("V2")
                .field("flavor", flavor)
                .field("access_key", access_key)
                .finish_non_exhaustive(),
            ObsAuthorization::V4 {
                access_key,
                scope,
                signed_headers,
                ..
            } => f
                .debug_struct("V4")
                .field("access_key", access_key)
                .field("scope", scope)
                .field("signed_headers", signed_headers)
                .finish_non_exhaustive(),
        }
    }
}

impl ObsAuthorization {
    /// Parses any of the three schemes.
    pub fn parse(value: &str) -> Result<Self, SigningError> {
        let value = value.trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or(SigningError::MalformedAuthorization("no scheme separator"))?;
        let rest = rest.trim();
        match scheme {
            "AWS" | "OBS" => {
                let flavor = if scheme == "AWS" {
                    V2Flavor::Aws
                } else {
                    V2Flavor::Obs
                };
                let (access_key, signature) =
                    rest.rsplit_once(':')
                        .ok_or(SigningError::MalformedAuthorization(
                            "expected ak:signature",
                        ))?;
                if access_key.is_empty() || signature.is_empty() {
                    return Err(SigningError::MalformedAuthorization(
                        "empty access key or signature",
                    ));
                }
                Ok(ObsAuthorization::V2 {
                    flavor,
                    access_key: access_key.to_string(),
                    signature: signature.to_string(),
                })
            }
            V4_ALGORITHM => {
                let mut credential = None;
                let mut signed_headers = None;
                let mut signature = None;
                for field in rest.split(',') {
                    let (key, value) = field
                        .trim()
                        .split_once('=')
                        .ok_or(SigningError::MalformedAuthorization("field without '='"))?;
                    match key {
                        "Credential" => credential = Some(value),
                        "SignedHeaders" => signed_headers = Some(value),
                        "Signature" => signature = Some(value),
                        _ => return Err(SigningError::MalformedAuthorization("unknown field")),
                    }
                }
                let credential =
                    credential.ok_or(SigningError::MalformedAuthorization("missing Credential"))?;
                let parts: Vec<&str> = credential.split('/').collect();
                let [access_key, date, region, service, "aws4_request"] = parts.as_slice() else {
                    return Err(SigningError::MalformedAuthorization(
                        "Credential is not AK/date/region/service/aws4_request",
                    ));
                };
                let signed_headers: Vec<String> = signed_headers
                    .ok_or(SigningError::MalformedAuthorization(
                        "missing SignedHeaders",
                    ))?
                    .split(';')
                    .filter(|name| !name.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect();
                if signed_headers.is_empty() || access_key.is_empty() {
                    return Err(SigningError::MalformedAuthorization(
                        "empty SignedHeaders or access key",
                    ));
                }
                Ok(ObsAuthorization::V4 {
                    access_key: access_key.to_string(),
                    scope: V4Scope {
                        date: date.to_string(),
                        region: region.to_string(),
                        service: service.to_string(),
                    },
                    signed_headers,
                    signature: signature
                        .ok_or(SigningError::MalformedAuthorization("missing Signature"))?
                        .to_ascii_lowercase(),
                })
            }
            other => Err(SigningError::UnsupportedAlgorithm(other.to_string())),
        }
    }

    /// The access key id the client claims.
    pub fn access_key(&self) -> &str {
        match self {
            ObsAuthorization::V2 { access_key, .. } | ObsAuthorization::V4 { access_key, .. } => {
                access_key
            }
        }
    }

    /// Checks the request time (within `max_skew` of `now`) and the signature.
    pub fn verify(
        &self,
        request: &ObsRequest<'_>,
        secret_key: &str,
        now: Timestamp,
        max_skew: SignedDuration,
    ) -> Result<(), SigningError> {
        match self {
            ObsAuthorization::V2 {
                flavor, signature, ..
            } => {
                let time_text = header_text(request.headers, flavor.date_header())?
                    .or(header_text(request.headers, "x-amz-date")?)
                    .or(header_text(request.headers, "x-obs-date")?)
                    .or(header_text(request.headers, DATE.as_str())?)
                    .ok_or_else(|| SigningError::MissingHeader("Date".into()))?;
                check_skew(parse_request_time(&time_text)?, now, max_skew)?;
                let resource = v2_canonical_resource(
                    *flavor,
                    request.addressing,
                    request.uri.path(),
                    request.uri.query(),
                );
                let sts = v2_string_to_sign(
                    *flavor,
                    request.method.as_str(),
                    request.headers,
                    &resource,
                )?;
                let expected = v2_signature(secret_key, &sts);
                if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                    Ok(())
                } else {
                    Err(SigningError::SignatureMismatch)
                }
            }
            ObsAuthorization::V4 {
                scope,
                signed_headers,
                signature,
                ..
            } => {
                let time_text = header_text(request.headers, V4_DATE_HEADER)?
                    .or(header_text(request.headers, DATE.as_str())?)
                    .ok_or_else(|| SigningError::MissingHeader("x-amz-date".into()))?;
                let time = parse_request_time(&time_text)?;
                check_skew(time, now, max_skew)?;
                let amz_date = time.strftime(V4_DATE_FORMAT).to_string();
                if amz_date[..8] != scope.date {
                    return Err(SigningError::ScopeMismatch(
                        "credential date differs from request time".into(),
                    ));
                }
                if scope.service != "s3" {
                    return Err(SigningError::ScopeMismatch(format!(
                        "service {:?} is not s3",
                        scope.service
                    )));
                }
                let payload_hash = header_text(request.headers, V4_CONTENT_SHA256_HEADER)?
                    .ok_or_else(|| SigningError::MissingHeader(V4_CONTENT_SHA256_HEADER.into()))?;
                let mut signed = Vec::with_capacity(signed_headers.len());
                for name in signed_headers {
                    let value = header_text(request.headers, name)?
                        .ok_or_else(|| SigningError::MissingHeader(name.clone()))?;
                    signed.push((name.clone(), value));
                }
                let canonical = v4_canonical_request(
                    request.method.as_str(),
                    request.uri.path(),
                    request.uri.query(),
                    &signed,
                    &payload_hash,
                );
                let scope_text = format!(
                    "{}/{}/{}/aws4_request",
                    scope.date, scope.region, scope.service
                );
                let key = v4_signing_key(secret_key, &scope.date, &scope.region, &scope.service);
                let expected = hex::encode(hmac_sha256(
                    &key,
                    v4_string_to_sign(&amz_date, &scope_text, &canonical).as_bytes(),
                ));
                if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                    Ok(())
                } else {
                    Err(SigningError::SignatureMismatch)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "HPUAEXAMPLEAK0000001";
    const SK: &str = "ExampleSecretKey0000000000000000000000000";
    const D: &str = "Tue, 02 Jan 2024 03:04:05 GMT";

    fn at() -> Timestamp {
        "2024-01-02T03:04:05Z".parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Checks the string to sign, the signer's Authorization and the verifier for one V2/OBS vector.
    fn v2_vector(
        scheme: ObsScheme,
        method: Method,
        target: &str,
        request_headers: &[(&str, &str)],
        expected_sts: &str,
        expected_authorization: &str,
    ) {
        let flavor = if scheme == ObsScheme::Obs {
            V2Flavor::Obs
        } else {
            V2Flavor::Aws
        };
        let uri: Uri = target.parse().unwrap();
        let mut map = headers(request_headers);
        map.insert(DATE, HeaderValue::from_static(D));
        let resource =
            v2_canonical_resource(flavor, Addressing::PathStyle, uri.path(), uri.query());
        assert_eq!(
            v2_string_to_sign(flavor, method.as_str(), &map, &resource).unwrap(),
            expected_sts
        );

        let added = ObsSigner::new(HuaweiCredentials::new(AK, SK), scheme)
            .sign(&method, &uri, &map, Addressing::PathStyle, at())
            .unwrap();
        assert_eq!(
            added,
            vec![(
                AUTHORIZATION,
                HeaderValue::from_str(expected_authorization).unwrap()
            )]
        );

        map.insert(
            AUTHORIZATION,
            HeaderValue::from_str(expected_authorization).unwrap(),
        );
        let request = ObsRequest {
            method: &method,
            uri: &uri,
            headers: &map,
            addressing: Addressing::PathStyle,
        };
        let parsed = ObsAuthorization::parse(expected_authorization).unwrap();
        assert_eq!(parsed.access_key(), AK);
        parsed.verify(&request, SK, at(), MAX_CLOCK_SKEW).unwrap();
        assert_eq!(
            parsed.verify(&request, "other", at(), MAX_CLOCK_SKEW),
            Err(SigningError::SignatureMismatch)
        );
        let later = at() + SignedDuration::from_mins(16);
        assert!(matches!(
            parsed.verify(&request, SK, later, MAX_CLOCK_SKEW),
            Err(SigningError::ClockSkew { .. })
        ));
    }

    #[test]
    fn golden_o1_v2_put_object() {
        v2_vector(
            ObsScheme::AwsV2,
            Method::PUT,
            "http://127.0.0.1:9000/fw-bucket/fw/2.0.0.bin",
            &[
                ("content-type", "application/octet-stream"),
                ("x-amz-meta-fw-version", "2.0.0"),
            ],
            &format!(
                "PUT\n\napplication/octet-stream\n{D}\nx-amz-meta-fw-version:2.0.0\n/fw-bucket/fw/2.0.0.bin"
            ),
            "AWS HPUAEXAMPLEAK0000001:5rzXo3AXXjYeF1ltfqja6hsrzTw=",
        );
    }

    #[test]
    fn golden_o2_v2_upload_part() {
        v2_vector(
            ObsScheme::AwsV2,
            Method::PUT,
            "http://127.0.0.1:9000/fw-bucket/fw/big.bin?uploadId=UPLOADID0001&partNumber=2",
            &[],
            &format!("PUT\n\n\n{D}\n/fw-bucket/fw/big.bin?partNumber=2&uploadId=UPLOADID0001"),
            "AWS HPUAEXAMPLEAK0000001:Vlg2quL4tz/bp5pvve9RkjdoR4o=",
        );
    }

    #[test]
    fn golden_o3_v2_initiate_multipart() {
        v2_vector(
            ObsScheme::AwsV2,
            Method::POST,
            "http://127.0.0.1:9000/fw-bucket/fw/big.bin?uploads",
            &[("content-type", "application/octet-stream")],
            &format!("POST\n\napplication/octet-stream\n{D}\n/fw-bucket/fw/big.bin?uploads"),
            "AWS HPUAEXAMPLEAK0000001:+ZK90byQEPTOMsM7TZxXEalcEHI=",
        );
    }

    #[test]
    fn golden_o4_obs_put_object() {
        v2_vector(
            ObsScheme::Obs,
            Method::PUT,
            "http://127.0.0.1:9000/fw-bucket/fw/2.0.0.bin",
            &[
                ("content-type", "application/octet-stream"),
                ("x-obs-meta-fw-version", "2.0.0"),
            ],
            &format!(
                "PUT\n\napplication/octet-stream\n{D}\nx-obs-meta-fw-version:2.0.0\n/fw-bucket/fw/2.0.0.bin"
            ),
            "OBS HPUAEXAMPLEAK0000001:NbmdOxmrdcwUZQoYCfOUJLmAC/w=",
        );
    }

    #[test]
    fn golden_o5_obs_complete_multipart() {
        v2_vector(
            ObsScheme::Obs,
            Method::POST,
            "http://127.0.0.1:9000/fw-bucket/fw/big.bin?uploadId=UPLOADID0001",
            &[],
            &format!("POST\n\n\n{D}\n/fw-bucket/fw/big.bin?uploadId=UPLOADID0001"),
            "OBS HPUAEXAMPLEAK0000001:HLywyj2QQO1gOsSuP5vIlaPZpss=",
        );
    }

    #[test]
    fn golden_o6_v4_put_object() {
        let uri: Uri = "http://127.0.0.1:9000/fw-bucket/fw/2.0.0.bin"
            .parse()
            .unwrap();
        let map = headers(&[
            ("content-length", "14"),
            ("content-type", "application/octet-stream"),
            ("date", D),
        ]);
        let expected_authorization = "AWS4-HMAC-SHA256 Credential=HPUAEXAMPLEAK0000001/20240102/cn-north-4/s3/aws4_request,SignedHeaders=content-length;content-type;date;host;x-amz-content-sha256,Signature=bfbfd5f45385476657e8a0547b957ba1785e270e735dec6a90c7c68905a54ccc";
        let signed: Vec<(String, String)> = [
            ("content-length", "14"),
            ("content-type", "application/octet-stream"),
            ("date", D),
            ("host", "127.0.0.1:9000"),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            v4_canonical_request("PUT", uri.path(), uri.query(), &signed, UNSIGNED_PAYLOAD),
            format!(
                "PUT\n/fw-bucket/fw/2.0.0.bin\n\ncontent-length:14\ncontent-type:application/octet-stream\ndate:{D}\nhost:127.0.0.1:9000\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n\ncontent-length;content-type;date;host;x-amz-content-sha256\nUNSIGNED-PAYLOAD"
            )
        );

        let signer = ObsSigner::new(
            HuaweiCredentials::new(AK, SK),
            ObsScheme::V4 {
                region: "cn-north-4".into(),
            },
        );
        let added = signer
            .sign(&Method::PUT, &uri, &map, Addressing::PathStyle, at())
            .unwrap();
        let authorization = added
            .iter()
            .find(|(name, _)| name == AUTHORIZATION)
            .unwrap()
            .1
            .to_str()
            .unwrap();
        assert_eq!(authorization, expected_authorization);

        let mut received = map.clone();
        for (name, value) in added {
            received.insert(name, value);
        }
        received.insert(HOST, HeaderValue::from_static("127.0.0.1:9000"));
        let origin: Uri = "/fw-bucket/fw/2.0.0.bin".parse().unwrap();
        let request = ObsRequest {
            method: &Method::PUT,
            uri: &origin,
            headers: &received,
            addressing: Addressing::PathStyle,
        };
        let parsed = ObsAuthorization::parse(expected_authorization).unwrap();
        parsed.verify(&request, SK, at(), MAX_CLOCK_SKEW).unwrap();
        let mut moved = received.clone();
        moved.insert(HOST, HeaderValue::from_static("127.0.0.1:9001"));
        let request = ObsRequest {
            headers: &moved,
            ..request
        };
        assert_eq!(
            parsed.verify(&request, SK, at(), MAX_CLOCK_SKEW),
            Err(SigningError::SignatureMismatch)
        );
    }

    #[test]
    fn v4_signer_without_date_adds_amz_date_and_verifies() {
        let uri: Uri = "http://127.0.0.1:9000/fw-bucket/fw/a%20b.bin?partNumber=1&uploadId=U1"
            .parse()
            .unwrap();
        let signer = ObsSigner::new(
            HuaweiCredentials::new(AK, SK),
            ObsScheme::V4 {
                region: "cn-north-4".into(),
            },
        );
        let mut received = HeaderMap::new();
        for (name, value) in signer
            .sign(
                &Method::PUT,
                &uri,
                &HeaderMap::new(),
                Addressing::PathStyle,
                at(),
            )
            .unwrap()
        {
            received.insert(name, value);
        }
        assert_eq!(received.get(V4_DATE_HEADER).unwrap(), "20240102T030405Z");
        received.insert(HOST, HeaderValue::from_static("127.0.0.1:9000"));
        let request = ObsRequest {
            method: &Method::PUT,
            uri: &uri,
            headers: &received,
            addressing: Addressing::PathStyle,
        };
        let parsed =
            ObsAuthorization::parse(received.get(AUTHORIZATION).unwrap().to_str().unwrap())
                .unwrap();
        parsed.verify(&request, SK, at(), MAX_CLOCK_SKEW).unwrap();
    }

    #[test]
    fn virtual_hosted_resource_puts_bucket_first() {
        assert_eq!(
            v2_canonical_resource(
                V2Flavor::Obs,
                Addressing::VirtualHosted {
                    bucket: "fw-bucket"
                },
                "/fw/2.0.0.bin",
                None
            ),
            "/fw-bucket/fw/2.0.0.bin"
        );
        assert_eq!(
            v2_canonical_resource(
                V2Flavor::Aws,
                Addressing::PathStyle,
                "/fw-bucket",
                Some("prefix=a&acl")
            ),
            "/fw-bucket?acl"
        );
        let uri: Uri = "http://fw-bucket.obs.cn-north-4.myhuaweicloud.com/fw/2.0.0.bin"
            .parse()
            .unwrap();
        let map = headers(&[
            ("content-type", "application/octet-stream"),
            ("x-obs-meta-fw-version", "2.0.0"),
        ]);
        let addressing = Addressing::VirtualHosted {
            bucket: "fw-bucket",
        };
        let mut received = map.clone();
        for (name, value) in ObsSigner::new(HuaweiCredentials::new(AK, SK), ObsScheme::Obs)
            .sign(&Method::PUT, &uri, &map, addressing, at())
            .unwrap()
        {
            received.insert(name, value);
        }
        assert_eq!(received.get(DATE).unwrap(), D);
        let auth = received
            .get(AUTHORIZATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            auth,
            "OBS HPUAEXAMPLEAK0000001:NbmdOxmrdcwUZQoYCfOUJLmAC/w="
        );
        let request = ObsRequest {
            method: &Method::PUT,
            uri: &uri,
            headers: &received,
            addressing,
        };
        ObsAuthorization::parse(&auth)
            .unwrap()
            .verify(&request, SK, at(), MAX_CLOCK_SKEW)
            .unwrap();
    }

    #[test]
    fn parse_rejects_unknown_and_malformed() {
        assert!(matches!(
            ObsAuthorization::parse("Bearer x"),
            Err(SigningError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            ObsAuthorization::parse("AWS nocolon"),
            Err(SigningError::MalformedAuthorization(_))
        ));
        assert!(matches!(
            ObsAuthorization::parse(
                "AWS4-HMAC-SHA256 Credential=AK/20240102/r/s3,SignedHeaders=host,Signature=00"
            ),
            Err(SigningError::MalformedAuthorization(_))
        ));
        let parsed = ObsAuthorization::parse("AWS AK:secret-looking-signature").unwrap();
        assert!(!format!("{parsed:?}").contains("secret-looking-signature"));
    }

    #[test]
    fn request_time_accepts_both_forms() {
        assert_eq!(parse_request_time(D).unwrap(), at());
        assert_eq!(parse_request_time("20240102T030405Z").unwrap(), at());
        assert_eq!(format_http_date(at()), D);
        assert!(parse_request_time("yesterday").is_err());
    }
}
