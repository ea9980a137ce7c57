//! Huawei Cloud API-gateway AK/SK signatures, as used by IoTDA (fact sheets: iotda.md §2b-2d,
//! sdks.md §2).
//!
//! - `SDK-HMAC-SHA256`: HMAC-SHA256 keyed with the secret key over
//!   `SDK-HMAC-SHA256\n{X-Sdk-Date}\n{hex sha256(canonical request)}`.
//! - `V11-HMAC-SHA256` (derived AK/SK, required by standard/enterprise instance hosts): the key is
//!   the lowercase hex *text* of `HKDF-SHA256(ikm = SK, salt = AK, info = "{yyyymmdd}/{region}/{service}")`
//!   and the string to sign carries the `info` line.
//!
//! [`HuaweiSigner`] is the client side (returns the headers to add), [`HuaweiAuthorization`] the
//! server side (parses `Authorization` and checks a received request).

use std::fmt;
use std::sync::LazyLock;

use hkdf::Hkdf;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jiff::{SignedDuration, Timestamp};
use regex::Regex;
use sha2::Sha256;

use super::{
    SigningError, canonical_headers, canonical_query_from_pairs, check_skew, constant_time_eq,
    decode_query_pairs, encode_unreserved, header_text, hmac_sha256, host_without_default_port,
    percent_decode, sha256_hex,
};

/// Algorithm name of the standard AK/SK signature.
pub const STANDARD_ALGORITHM: &str = "SDK-HMAC-SHA256";
/// Algorithm name of the derived AK/SK signature.
pub const DERIVED_ALGORITHM: &str = "V11-HMAC-SHA256";
/// Derived-signing service name the IoTDA SDKs use.
pub const IOTDA_DERIVED_SERVICE: &str = "iotdm";
/// Request time header.
pub const SDK_DATE_HEADER: &str = "x-sdk-date";
/// Header that switches the payload hash to the literal `UNSIGNED-PAYLOAD`.
pub const CONTENT_SHA256_HEADER: &str = "x-sdk-content-sha256";
/// Literal payload hash for unsigned bodies.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Skew the API gateway tolerates between `X-Sdk-Date` and its clock.
pub const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(15);

const SDK_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Which of the two AK/SK signature algorithms a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuaweiAlgorithm {
    /// `SDK-HMAC-SHA256`.
    Standard,
    /// `V11-HMAC-SHA256` (derived AK/SK).
    Derived,
}

impl HuaweiAlgorithm {
    /// The algorithm's name as it appears in `Authorization`.
    pub fn name(self) -> &'static str {
        match self {
            HuaweiAlgorithm::Standard => STANDARD_ALGORITHM,
            HuaweiAlgorithm::Derived => DERIVED_ALGORITHM,
        }
    }
}

/// An access key and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HuaweiCredentials {
    access_key: String,
    secret_key: String,
}

impl HuaweiCredentials {
    /// Pairs an access key id with its secret key.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// The access key id (not secret).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub(crate) fn secret_key(&self) -> &str {
        &self.secret_key
    }
}

impl fmt::Debug for HuaweiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuaweiCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// What the body contributes to the signature.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The exact body bytes (empty slice for no body).
    Bytes(&'a [u8]),
    /// The lowercase hex SHA-256 of the body, computed by the caller while streaming.
    Sha256Hex(&'a str),
    /// Sign `UNSIGNED-PAYLOAD` and send `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` (what the SDKs do
    /// for non-JSON bodies such as multipart).
    Unsigned,
}

impl Payload<'_> {
    fn hash(&self) -> String {
        match self {
            Payload::Bytes(bytes) => sha256_hex(bytes),
            Payload::Sha256Hex(hash) => hash.to_string(),
            Payload::Unsigned => UNSIGNED_PAYLOAD.to_string(),
        }
    }
}

/// Formats a timestamp as `X-Sdk-Date` (`yyyyMMddTHHmmssZ`, UTC).
pub fn format_sdk_date(time: Timestamp) -> String {
    time.strftime(SDK_DATE_FORMAT).to_string()
}

/// Parses an `X-Sdk-Date` value.
pub fn parse_sdk_date(value: &str) -> Result<Timestamp, SigningError> {
    jiff::civil::DateTime::strptime(SDK_DATE_FORMAT, value)
        .ok()
        .and_then(|civil| jiff::tz::TimeZone::UTC.to_timestamp(civil).ok())
        .ok_or_else(|| SigningError::MalformedDate(value.to_string()))
}

/// Canonical URI: each path segment decoded then re-encoded with the unreserved set, and a
/// trailing `/` appended (only in the canonical form, never on the wire).
pub fn canonical_uri(raw_path: &str) -> String {
    let mut uri = raw_path
        .split('/')
        .map(|segment| encode_unreserved(&percent_decode(segment)))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.starts_with('/') {
        uri.insert(0, '/');
    }
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Canonical query string: pairs decoded, re-encoded, sorted by key then value, `k=v` joined by `&`.
pub fn canonical_query(raw_query: Option<&str>) -> String {
    canonical_query_from_pairs(decode_query_pairs(raw_query))
}

/// The canonical request. `signed_headers` are `(name, value)` pairs; names are lowercased and
/// sorted here, values trimmed.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: Option<&str>,
    signed_headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let (header_block, names) = canonical_headers(signed_headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri(raw_path),
        canonical_query(raw_query),
        header_block,
        names,
        payload_hash
    )
}

/// `info` of derived signing: `{yyyymmdd}/{region}/{service}`.
pub fn derived_info(sdk_date: &str, region: &str, service: &str) -> String {
    let day = sdk_date.get(..8).unwrap_or(sdk_date);
    format!("{day}/{region}/{service}")
}

/// The derived signing key: lowercase hex text of `HKDF-SHA256(ikm = SK, salt = AK, info, 32)`.
pub fn derived_signing_key(access_key: &str, secret_key: &str, info: &str) -> String {
    let hkdf = Hkdf::<Sha256>::new(Some(access_key.as_bytes()), secret_key.as_bytes());
    let mut okm = [0u8; 32];
    hkdf.expand(info.as_bytes(), &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    hex::encode(okm)
}

/// String to sign for `SDK-HMAC-SHA256`.
pub fn standard_string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    format!(
        "{STANDARD_ALGORITHM}\n{sdk_date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// String to sign for `V11-HMAC-SHA256`.
pub fn derived_string_to_sign(sdk_date: &str, info: &str, canonical_request: &str) -> String {
    format!(
        "{DERIVED_ALGORITHM}\n{sdk_date}\n{info}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Hex signature of `string_to_sign` under `key` (the SK for standard, the hex key text for derived).
pub fn signature_hex(key: &str, string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(key.as_bytes(), string_to_sign.as_bytes()))
}

static SHARED_ENDPOINT_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-\d{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)",
    )
    .expect("valid regex")
});

static REGION_IN_HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\.([a-z]{2,}-[a-z]+-\d{1,2})\.").expect("valid regex"));

/// The SDKs' default derived predicate: derived signing unless the host looks like a shared
/// `{service}.{region}.myhuaweicloud.com` endpoint. So `iotda.cn-north-4.myhuaweicloud.com` is
/// standard while instance hosts (`x.st1.iotda-app.…`) and `127.0.0.1` are derived.
pub fn sdk_default_uses_derived(host: &str) -> bool {
    !SHARED_ENDPOINT_HOST.is_match(host)
}

/// The region id embedded in a Huawei host name (`….cn-north-4.…`), if any.
pub fn region_from_host(host: &str) -> Option<&str> {
    REGION_IN_HOST
        .captures(host)
        .and_then(|captures| captures.get(1))
        .map(|region| region.as_str())
}

/// Headers a signer adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `X-Sdk-Date` value used (the request's own if it had one).
    pub sdk_date: String,
    /// `X-Sdk-Content-Sha256` when the payload is unsigned.
    pub content_sha256: Option<&'static str>,
    /// `Authorization` value.
    pub authorization: String,
}

impl SignatureHeaders {
    /// The headers as name/value pairs ready to insert into a request.
    pub fn into_header_pairs(self) -> Result<Vec<(HeaderName, HeaderValue)>, SigningError> {
        let value = |name: &str, text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| SigningError::InvalidHeaderValue(name.to_string()))
        };
        let mut pairs = vec![(
            HeaderName::from_static(SDK_DATE_HEADER),
            value(SDK_DATE_HEADER, &self.sdk_date)?,
        )];
        if let Some(hash) = self.content_sha256 {
            pairs.push((
                HeaderName::from_static(CONTENT_SHA256_HEADER),
                HeaderValue::from_static(hash),
            ));
        }
        pairs.push((AUTHORIZATION, value("authorization", &self.authorization)?));
        Ok(pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DerivedTarget {
    region: String,
    service: String,
}

/// Client-side signer: given a request, computes the headers that make it acceptable to the
/// Huawei API gateway. Signs every header present (names without `_`, as the Python SDK does)
/// plus `host` and `x-sdk-date`.
#[derive(Debug, Clone)]
pub struct HuaweiSigner {
    credentials: HuaweiCredentials,
    derived: Option<DerivedTarget>,
}

impl HuaweiSigner {
    /// `SDK-HMAC-SHA256` signer.
    pub fn standard(credentials: HuaweiCredentials) -> Self {
        Self {
            credentials,
            derived: None,
        }
    }

    /// `V11-HMAC-SHA256` signer for `region` and derived service name (`iotdm` for IoTDA).
    pub fn derived(
        credentials: HuaweiCredentials,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            credentials,
            derived: Some(DerivedTarget {
                region: region.into(),
                service: service.into(),
            }),
        }
    }

    /// Chooses the algorithm from the endpoint host like the SDKs' default predicate
    /// ([`sdk_default_uses_derived`]). The region comes from `region` or, failing that, the host.
    pub fn for_host(
        credentials: HuaweiCredentials,
        host: &str,
        region: Option<&str>,
        service: &str,
    ) -> Result<Self, SigningError> {
        if !sdk_default_uses_derived(host) {
            return Ok(Self::standard(credentials));
        }
        let region = region
            .or_else(|| region_from_host(host))
            .ok_or(SigningError::MissingRegion)?;
        Ok(Self::derived(credentials, region, service))
    }

    /// The algorithm this signer uses.
    pub fn algorithm(&self) -> HuaweiAlgorithm {
        if self.derived.is_some() {
            HuaweiAlgorithm::Derived
        } else {
            HuaweiAlgorithm::Standard
        }
    }

    /// Signs a request. `uri` should be absolute unless `headers` carries `Host`. An `X-Sdk-Date`
    /// already in `headers` is kept, otherwise `now` is used.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        payload: Payload<'_>,
        now: Timestamp,
    ) -> Result<SignatureHeaders, SigningError> {
        let host = match header_text(headers, HOST.as_str())? {
            Some(host) => host,
            None => host_without_default_port(uri)
                .ok_or_else(|| SigningError::MissingHeader("host".into()))?,
        };
        let sdk_date = match header_text(headers, SDK_DATE_HEADER)? {
            Some(date) => date,
            None => format_sdk_date(now),
        };
        let content_sha256 = match payload {
            Payload::Unsigned => Some(UNSIGNED_PAYLOAD),
            Payload::Bytes(_) | Payload::Sha256Hex(_) => None,
        };

        let mut signed: Vec<(String, String)> = Vec::new();
        for name in headers.keys() {
            let name = name.as_str();
            if name.contains('_')
                || name == AUTHORIZATION.as_str()
                || name == HOST.as_str()
                || name == SDK_DATE_HEADER
            {
                continue;
            }
            if let Some(value) = header_text(headers, name)? {
                signed.push((name.to_string(), value));
            }
        }
        signed.push((HOST.as_str().to_string(), host));
        signed.push((SDK_DATE_HEADER.to_string(), sdk_date.clone()));
        if let Some(hash) = content_sha256 {
            signed.retain(|(name, _)| name != CONTENT_SHA256_HEADER);
            signed.push((CONTENT_SHA256_HEADER.to_string(), hash.to_string()));
        }
        signed.sort_by(|a, b| a.0.cmp(&b.0));
        let names = signed
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");

        let canonical = canonical_request(
            method.as_str(),
            uri.path(),
            uri.query(),
            &signed,
            &payload.hash(),
        );
        let access_key = &self.credentials.access_key;
        let authorization = match &self.derived {
            None => {
                let sts = standard_string_to_sign(&sdk_date, &canonical);
                let signature = signature_hex(&self.credentials.secret_key, &sts);
                format!(
                    "{STANDARD_ALGORITHM} Access={access_key}, SignedHeaders={names}, Signature={signature}"
                )
            }
            Some(target) => {
                let info = derived_info(&sdk_date, &target.region, &target.service);
                let key = derived_signing_key(access_key, &self.credentials.secret_key, &info);
                let sts = derived_string_to_sign(&sdk_date, &info, &canonical);
                let signature = signature_hex(&key, &sts);
                format!(
                    "{DERIVED_ALGORITHM} Credential={access_key}/{info}, SignedHeaders={names}, Signature={signature}"
                )
            }
        };
        Ok(SignatureHeaders {
            sdk_date,
            content_sha256,
            authorization,
        })
    }
}

/// Credential scope of a derived signature (`Credential={AK}/{date}/{region}/{service}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedScope {
    /// `yyyymmdd`.
    pub date: String,
    /// Region id.
    pub region: String,
    /// Derived service name.
    pub service: String,
}

impl DerivedScope {
    /// `{date}/{region}/{service}`.
    pub fn info(&self) -> String {
        format!("{}/{}/{}", self.date, self.region, self.service)
    }
}

/// A parsed `Authorization` header of either algorithm (server side).
#[derive(Clone, PartialEq, Eq)]
pub struct HuaweiAuthorization {
    /// Access key id the client claims.
    pub access_key: String,
    /// Lowercase names from `SignedHeaders`, in the order sent.
    pub signed_headers: Vec<String>,
    /// Present for `V11-HMAC-SHA256`.
    pub scope: Option<DerivedScope>,
    signature: String,
}

impl fmt::Debug for HuaweiAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuaweiAuthorization")
            .field("access_key", &self.access_key)
            .field("signed_headers", &self.signed_headers)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target (path and query as on the wire).
    pub uri: &'a Uri,
    /// Headers as received.
    pub headers: &'a HeaderMap,
    /// Body bytes (ignored when `X-Sdk-Content-Sha256` is present).
    pub body: &'a [u8],
}

impl HuaweiAuthorization {
    /// Whether `value` starts with one of the two algorithm names (i.e. it is meant for this
    /// verifier rather than, say, a token scheme).
    pub fn is_aksk(value: &str) -> bool {
        value.starts_with(STANDARD_ALGORITHM) || value.starts_with(DERIVED_ALGORITHM)
    }

    /// Parses `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…` or
    /// `V11-HMAC-SHA256 Credential=AK/date/region/service, SignedHeaders=…, Signature=…`.
    pub fn parse(value: &str) -> Result<Self, SigningError> {
        let (algorithm, rest) =
            value
                .trim()
                .split_once(' ')
                .ok_or(SigningError::MalformedAuthorization(
                    "no algorithm separator",
                ))?;
        let algorithm = match algorithm {
            STANDARD_ALGORITHM => HuaweiAlgorithm::Standard,
            DERIVED_ALGORITHM => HuaweiAlgorithm::Derived,
            other => return Err(SigningError::UnsupportedAlgorithm(other.to_string())),
        };
        let mut access = None;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for field in rest.split(',') {
            let (key, value) = field
                .trim()
                .split_once('=')
                .ok_or(SigningError::MalformedAuthorization("field without '='"))?;
            match key {
                "Access" => access = Some(value),
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed_headers = Some(value),
                "Signature" => signature = Some(value),
                _ => return Err(SigningError::MalformedAuthorization("unknown field")),
            }
        }
        let signed_headers: Vec<String> = signed_headers
            .ok_or(SigningError::MalformedAuthorization(
                "missing SignedHeaders",
            ))?
            .split(';')
            .filter(|name| !name.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        if signed_headers.is_empty() {
            return Err(SigningError::MalformedAuthorization("empty SignedHeaders"));
        }
        let signature = signature
            .ok_or(SigningError::MalformedAuthorization("missing Signature"))?
            .to_ascii_lowercase();
        let (access_key, scope) = match algorithm {
            HuaweiAlgorithm::Standard => (
                access
                    .ok_or(SigningError::MalformedAuthorization("missing Access"))?
                    .to_string(),
                None,
            ),
            HuaweiAlgorithm::Derived => {
                let credential =
                    credential.ok_or(SigningError::MalformedAuthorization("missing Credential"))?;
                let mut parts = credential.splitn(4, '/');
                let (Some(ak), Some(date), Some(region), Some(service)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(SigningError::MalformedAuthorization(
                        "Credential is not AK/date/region/service",
                    ));
                };
                (
                    ak.to_string(),
                    Some(DerivedScope {
                        date: date.to_string(),
                        region: region.to_string(),
                        service: service.to_string(),
                    }),
                )
            }
        };
        if access_key.is_empty() {
            return Err(SigningError::MalformedAuthorization("empty access key"));
        }
        Ok(Self {
            access_key,
            signed_headers,
            scope,
            signature,
        })
    }

    /// The algorithm of this header.
    pub fn algorithm(&self) -> HuaweiAlgorithm {
        if self.scope.is_some() {
            HuaweiAlgorithm::Derived
        } else {
            HuaweiAlgorithm::Standard
        }
    }

    /// Checks the request: `X-Sdk-Date` present and within `max_skew` of `now`, derived scope date
    /// equal to the `X-Sdk-Date` day, every signed header present, and the signature recomputed
    /// from the header values as received.
    pub fn verify(
        &self,
        request: &ReceivedRequest<'_>,
        secret_key: &str,
        now: Timestamp,
        max_skew: SignedDuration,
    ) -> Result<(), SigningError> {
        let sdk_date = header_text(request.headers, SDK_DATE_HEADER)?
            .ok_or_else(|| SigningError::MissingHeader("X-Sdk-Date".into()))?;
        check_skew(parse_sdk_date(&sdk_date)?, now, max_skew)?;

        let mut signed = Vec::with_capacity(self.signed_headers.len());
        for name in &self.signed_headers {
            let value = header_text(request.headers, name)?
                .ok_or_else(|| SigningError::MissingHeader(name.clone()))?;
            signed.push((name.clone(), value));
        }
        let payload_hash = match header_text(request.headers, CONTENT_SHA256_HEADER)? {
            Some(hash) => hash,
            None => sha256_hex(request.body),
        };
        let canonical = canonical_request(
            request.method.as_str(),
            request.uri.path(),
            request.uri.query(),
            &signed,
            &payload_hash,
        );
        let expected = match &self.scope {
            None => signature_hex(secret_key, &standard_string_to_sign(&sdk_date, &canonical)),
            Some(scope) => {
                if sdk_date.get(..8) != Some(scope.date.as_str()) {
                    return Err(SigningError::ScopeMismatch(
                        "credential date differs from X-Sdk-Date".into(),
                    ));
                }
                let info = scope.info();
                let key = derived_signing_key(&self.access_key, secret_key, &info);
                signature_hex(&key, &derived_string_to_sign(&sdk_date, &info, &canonical))
            }
        };
        if constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            Ok(())
        } else {
            Err(SigningError::SignatureMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "HPUAEXAMPLEAK0000001";
    const SK: &str = "ExampleSecretKey0000000000000000000000000";
    const PID: &str = "0123456789abcdef0123456789abcdef";

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn sdk_headers(extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-project-id", HeaderValue::from_static(PID));
        headers.insert(
            "user-agent",
            HeaderValue::from_static("huaweicloud-usdk-python/3.0"),
        );
        for (name, value) in extra {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    /// Adds the signer's headers and the Host a client would send, then verifies server-side.
    fn verify_as_server(
        method: &Method,
        uri: &Uri,
        mut headers: HeaderMap,
        body: &[u8],
        signed: SignatureHeaders,
        secret: &str,
        now: Timestamp,
    ) -> Result<(), SigningError> {
        let authorization = signed.authorization.clone();
        for (name, value) in signed.into_header_pairs().unwrap() {
            headers.insert(name, value);
        }
        if let Some(host) = host_without_default_port(uri) {
            headers.insert(HOST, HeaderValue::from_str(&host).unwrap());
        }
        let origin: Uri = uri.path_and_query().unwrap().as_str().parse().unwrap();
        let request = ReceivedRequest {
            method,
            uri: &origin,
            headers: &headers,
            body,
        };
        HuaweiAuthorization::parse(&authorization)?.verify(&request, secret, now, MAX_CLOCK_SKEW)
    }

    const V1_BODY: &str = r#"{"app_id": "app1", "package_type": "firmwarePackage", "product_id": "prod1", "version": "2.0.0", "file_location": {"obs_location": {"region_name": "cn-north-4", "bucket_name": "fw-bucket", "object_key": "fw/2.0.0.bin"}}}"#;

    #[test]
    fn golden_v1_standard_create_ota_package() {
        let uri: Uri = format!(
            "https://iotda.cn-north-4.myhuaweicloud.com/v5/iot/{PID}/ota-upgrades/packages"
        )
        .parse()
        .unwrap();
        let headers = sdk_headers(&[("instance-id", "inst-0001")]);
        let expected_canonical = format!(
            "POST\n/v5/iot/{PID}/ota-upgrades/packages/\n\ncontent-type:application/json\nhost:iotda.cn-north-4.myhuaweicloud.com\ninstance-id:inst-0001\nuser-agent:huaweicloud-usdk-python/3.0\nx-project-id:{PID}\nx-sdk-date:20240102T030405Z\n\ncontent-type;host;instance-id;user-agent;x-project-id;x-sdk-date\na57504c59e44f7fc1e414affb319608286951ad40632961cbbf9ba9662f846ba"
        );
        let signed_pairs: Vec<(String, String)> = [
            ("content-type", "application/json"),
            ("host", "iotda.cn-north-4.myhuaweicloud.com"),
            ("instance-id", "inst-0001"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", PID),
            ("x-sdk-date", "20240102T030405Z"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let canonical = canonical_request(
            "POST",
            uri.path(),
            uri.query(),
            &signed_pairs,
            &sha256_hex(V1_BODY.as_bytes()),
        );
        assert_eq!(canonical, expected_canonical);
        assert_eq!(
            standard_string_to_sign("20240102T030405Z", &canonical),
            "SDK-HMAC-SHA256\n20240102T030405Z\n9ed65c2ee8fc226c33f508049626a9743d1f1195461046c5e267549755e8b99b"
        );

        let signer = HuaweiSigner::standard(HuaweiCredentials::new(AK, SK));
        let now = at("2024-01-02T03:04:05Z");
        let signed = signer
            .sign(
                &Method::POST,
                &uri,
                &headers,
                Payload::Bytes(V1_BODY.as_bytes()),
                now,
            )
            .unwrap();
        assert_eq!(signed.sdk_date, "20240102T030405Z");
        assert_eq!(
            signed.authorization,
            "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, SignedHeaders=content-type;host;instance-id;user-agent;x-project-id;x-sdk-date, Signature=1fae6b5d01bbccaae7b7e5e14705b5271f66f870f133ce8b02f35b98c2aeb17f"
        );
        verify_as_server(
            &Method::POST,
            &uri,
            headers.clone(),
            V1_BODY.as_bytes(),
            signed.clone(),
            SK,
            now,
        )
        .unwrap();
        assert_eq!(
            verify_as_server(
                &Method::POST,
                &uri,
                headers.clone(),
                b"{}",
                signed.clone(),
                SK,
                now
            ),
            Err(SigningError::SignatureMismatch)
        );
        assert_eq!(
            verify_as_server(
                &Method::POST,
                &uri,
                headers,
                V1_BODY.as_bytes(),
                signed,
                "wrong-secret",
                now
            ),
            Err(SigningError::SignatureMismatch)
        );
    }

    #[test]
    fn golden_v2_standard_list_batch_tasks_sorts_query() {
        let uri: Uri = format!(
            "https://iotda.cn-north-4.myhuaweicloud.com/v5/iot/{PID}/batchtasks?task_type=firmwareUpgrade&status=Processing&limit=10&app_id=my%20app%2F1~x&marker=ffffffffffffffffffffffff"
        )
        .parse()
        .unwrap();
        assert_eq!(
            canonical_query(uri.query()),
            "app_id=my%20app%2F1~x&limit=10&marker=ffffffffffffffffffffffff&status=Processing&task_type=firmwareUpgrade"
        );
        let headers = sdk_headers(&[]);
        let now = at("2024-01-02T03:04:05Z");
        let signed = HuaweiSigner::standard(HuaweiCredentials::new(AK, SK))
            .sign(&Method::GET, &uri, &headers, Payload::Bytes(b""), now)
            .unwrap();
        assert_eq!(
            signed.authorization,
            "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=8abf11e21d2a722fb3b7c3d8d67bc0c6fa09b6aaf2f12c4c904406d94dfaf7b3"
        );
        verify_as_server(&Method::GET, &uri, headers, b"", signed, SK, now).unwrap();
    }

    #[test]
    fn golden_v3_derived_stop_batch_task() {
        let uri: Uri =
            format!("http://127.0.0.1:18080/v5/iot/{PID}/batchtasks/5f0e1d2c3b4a596877665544/stop")
                .parse()
                .unwrap();
        let body = br#"{"targets": ["dev-1", "dev-2"]}"#;
        let info = derived_info("20240102T030405Z", "cn-north-4", IOTDA_DERIVED_SERVICE);
        assert_eq!(info, "20240102/cn-north-4/iotdm");
        assert_eq!(
            derived_signing_key(AK, SK, &info),
            "8d0afa5c4d32692043ac2f721e621b00190960bd06a492e81fa8725ca2b87b59"
        );
        let headers = sdk_headers(&[]);
        let signed_pairs: Vec<(String, String)> = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:18080"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", PID),
            ("x-sdk-date", "20240102T030405Z"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let canonical =
            canonical_request("POST", uri.path(), None, &signed_pairs, &sha256_hex(body));
        assert!(
            canonical.ends_with("4d5eef812f38b140e82b3e9f2dba1baca8073c581bf37bc2da359fcbf742e09e")
        );
        assert!(canonical.starts_with(&format!(
            "POST\n/v5/iot/{PID}/batchtasks/5f0e1d2c3b4a596877665544/stop/\n\n"
        )));
        assert_eq!(
            derived_string_to_sign("20240102T030405Z", &info, &canonical),
            "V11-HMAC-SHA256\n20240102T030405Z\n20240102/cn-north-4/iotdm\n029f92baf6be5fdc9d84bcca1e9c7975f925795fa4c3358eb52b309de31c7bbb"
        );

        let signer = HuaweiSigner::for_host(
            HuaweiCredentials::new(AK, SK),
            "127.0.0.1:18080",
            Some("cn-north-4"),
            IOTDA_DERIVED_SERVICE,
        )
        .unwrap();
        assert_eq!(signer.algorithm(), HuaweiAlgorithm::Derived);
        let now = at("2024-01-02T03:04:05Z");
        let signed = signer
            .sign(&Method::POST, &uri, &headers, Payload::Bytes(body), now)
            .unwrap();
        assert_eq!(
            signed.authorization,
            "V11-HMAC-SHA256 Credential=HPUAEXAMPLEAK0000001/20240102/cn-north-4/iotdm, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=5773388063069001646e70097813551cef47301ca5f6b7e7d49afb8f89040ded"
        );
        let parsed = HuaweiAuthorization::parse(&signed.authorization).unwrap();
        assert_eq!(parsed.algorithm(), HuaweiAlgorithm::Derived);
        assert_eq!(parsed.scope.as_ref().unwrap().service, "iotdm");
        verify_as_server(&Method::POST, &uri, headers, body, signed, SK, now).unwrap();
    }

    #[test]
    fn official_guide_vector() {
        let signed: Vec<(String, String)> = [
            ("content-type", "application/json"),
            ("host", "service.region.example.com"),
            ("x-sdk-date", "20191115T033655Z"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let canonical = canonical_request(
            "GET",
            "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            Some("limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"),
            &signed,
            &sha256_hex(b""),
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        let sts = standard_string_to_sign("20191115T033655Z", &canonical);
        assert_eq!(
            signature_hex("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", &sts),
            "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    /// The Go SDK's signer tests sign only `x-sdk-date`; the verifier must accept such requests.
    fn go_vector(method: Method, target: &str, body: &[u8], standard: &str, derived: &str) {
        let sdk_date = "20060102T150405Z";
        let uri: Uri = target.parse().unwrap();
        let signed = vec![("x-sdk-date".to_string(), sdk_date.to_string())];
        let canonical = canonical_request(
            method.as_str(),
            uri.path(),
            uri.query(),
            &signed,
            &sha256_hex(body),
        );
        assert_eq!(
            signature_hex("SecretKey", &standard_string_to_sign(sdk_date, &canonical)),
            standard
        );
        let info = derived_info(sdk_date, "test-region-1", "demo");
        let key = derived_signing_key("AccessKey", "SecretKey", &info);
        assert_eq!(
            signature_hex(&key, &derived_string_to_sign(sdk_date, &info, &canonical)),
            derived
        );

        let now = at("2006-01-02T15:04:05Z");
        let mut headers = HeaderMap::new();
        headers.insert("x-sdk-date", HeaderValue::from_static(sdk_date));
        let request = ReceivedRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            body,
        };
        let std_header = format!(
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature={standard}"
        );
        HuaweiAuthorization::parse(&std_header)
            .unwrap()
            .verify(&request, "SecretKey", now, MAX_CLOCK_SKEW)
            .unwrap();
        let v11_header = format!(
            "V11-HMAC-SHA256 Credential=AccessKey/20060102/test-region-1/demo, SignedHeaders=x-sdk-date, Signature={derived}"
        );
        HuaweiAuthorization::parse(&v11_header)
            .unwrap()
            .verify(&request, "SecretKey", now, MAX_CLOCK_SKEW)
            .unwrap();
    }

    #[test]
    fn go_sdk_vectors_get() {
        go_vector(
            Method::GET,
            "/path?limit=1",
            b"",
            "5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
            "8fd3610508884bb19718317797c7378716a94bc740d97502e569322e366341cc",
        );
    }

    #[test]
    fn go_sdk_vectors_post() {
        go_vector(
            Method::POST,
            "/path?key=value",
            b"{\"Name\":\"test\",\"Id\":1}\n",
            "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59",
            "4112f88b92d82dd1e1b7dd142f1e99e4f1762c42ca8fe0968b3045120870a903",
        );
    }

    #[test]
    fn verifier_rejects_skew_missing_headers_and_scope_date() {
        let uri: Uri = "http://127.0.0.1:8080/v5/iot/p/batchtasks".parse().unwrap();
        let headers = sdk_headers(&[]);
        let signer = HuaweiSigner::standard(HuaweiCredentials::new(AK, SK));
        let signed_at = at("2024-01-02T03:04:05Z");
        let signed = signer
            .sign(&Method::GET, &uri, &headers, Payload::Bytes(b""), signed_at)
            .unwrap();
        let late = signed_at + SignedDuration::from_mins(16);
        assert!(matches!(
            verify_as_server(
                &Method::GET,
                &uri,
                headers.clone(),
                b"",
                signed.clone(),
                SK,
                late
            ),
            Err(SigningError::ClockSkew { .. })
        ));

        let parsed = HuaweiAuthorization::parse(&signed.authorization).unwrap();
        let bare = HeaderMap::new();
        let request = ReceivedRequest {
            method: &Method::GET,
            uri: &uri,
            headers: &bare,
            body: b"",
        };
        assert_eq!(
            parsed.verify(&request, SK, signed_at, MAX_CLOCK_SKEW),
            Err(SigningError::MissingHeader("X-Sdk-Date".into()))
        );

        let derived = HuaweiSigner::derived(HuaweiCredentials::new(AK, SK), "cn-north-4", "iotdm");
        let signed = derived
            .sign(&Method::GET, &uri, &headers, Payload::Bytes(b""), signed_at)
            .unwrap();
        let forged = signed.authorization.replace("/20240102/", "/20240103/");
        let mut received = headers.clone();
        received.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        received.insert("x-sdk-date", HeaderValue::from_static("20240102T030405Z"));
        let request = ReceivedRequest {
            method: &Method::GET,
            uri: &uri,
            headers: &received,
            body: b"",
        };
        assert!(matches!(
            HuaweiAuthorization::parse(&forged).unwrap().verify(
                &request,
                SK,
                signed_at,
                MAX_CLOCK_SKEW
            ),
            Err(SigningError::ScopeMismatch(_))
        ));
    }

    #[test]
    fn unsigned_payload_ignores_body() {
        let uri: Uri = "http://127.0.0.1:8080/v5/iot/p/batchtask-files"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("multipart/form-data; boundary=x"),
        );
        let now = at("2024-01-02T03:04:05Z");
        let signed = HuaweiSigner::standard(HuaweiCredentials::new(AK, SK))
            .sign(&Method::POST, &uri, &headers, Payload::Unsigned, now)
            .unwrap();
        assert_eq!(signed.content_sha256, Some(UNSIGNED_PAYLOAD));
        assert!(signed.authorization.contains("x-sdk-content-sha256"));
        verify_as_server(
            &Method::POST,
            &uri,
            headers,
            b"any body at all",
            signed,
            SK,
            now,
        )
        .unwrap();
    }

    #[test]
    fn parse_rejects_other_schemes_and_garbage() {
        assert!(matches!(
            HuaweiAuthorization::parse("Bearer abc"),
            Err(SigningError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            HuaweiAuthorization::parse("SDK-HMAC-SHA256 Access=AK, Signature=00"),
            Err(SigningError::MalformedAuthorization(_))
        ));
        assert!(matches!(
            HuaweiAuthorization::parse(
                "V11-HMAC-SHA256 Credential=AK/20240102, SignedHeaders=host, Signature=00"
            ),
            Err(SigningError::MalformedAuthorization(_))
        ));
    }

    #[test]
    fn host_predicate_matches_sdk_default() {
        assert!(!sdk_default_uses_derived(
            "iotda.cn-north-4.myhuaweicloud.com"
        ));
        assert!(sdk_default_uses_derived(
            "abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com"
        ));
        assert!(sdk_default_uses_derived("127.0.0.1:18080"));
        assert_eq!(
            region_from_host("abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com"),
            Some("cn-north-4")
        );
        let signer = HuaweiSigner::for_host(
            HuaweiCredentials::new(AK, SK),
            "abc123.st1.iotda-app.ap-southeast-1.myhuaweicloud.com",
            None,
            IOTDA_DERIVED_SERVICE,
        )
        .unwrap();
        assert_eq!(signer.algorithm(), HuaweiAlgorithm::Derived);
        assert_eq!(
            HuaweiSigner::for_host(HuaweiCredentials::new(AK, SK), "localhost:1", None, "iotdm")
                .unwrap_err(),
            SigningError::MissingRegion
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let credentials = HuaweiCredentials::new(AK, SK);
        let text = format!("{:?}", HuaweiSigner::standard(credentials));
        assert!(!text.contains(SK));
        let parsed = HuaweiAuthorization::parse(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=abcdef",
        )
        .unwrap();
        assert!(!format!("{parsed:?}").contains("abcdef"));
    }
}
