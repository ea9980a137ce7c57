//! Request signing for the vendor APIs, shared by the vendor clients (signers) and the simulator
//! (verifiers). Everything here is pure: no I/O, the current time is always passed in.
//!
//! - [`huawei`]: Huawei Cloud API-gateway AK/SK signatures (`SDK-HMAC-SHA256` and the derived
//!   `V11-HMAC-SHA256`) used by IoTDA.
//! - [`obs`]: Huawei OBS / S3 signatures (AWS V2, OBS native, AWS SigV4).

pub mod huawei;
pub mod obs;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Why a request could not be signed or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// A header the scheme needs is absent (for example `X-Sdk-Date` or a signed header).
    #[error("missing header {0}")]
    MissingHeader(String),
    /// The `Authorization` header does not have the scheme's shape.
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(&'static str),
    /// The `Authorization` header names an algorithm this module does not implement.
    #[error("unsupported signing algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// A request time header could not be parsed.
    #[error("malformed request time {0:?}")]
    MalformedDate(String),
    /// The request time is further from the verifier's clock than allowed.
    #[error("request time is {skew_seconds}s away from the server time (limit {limit_seconds}s)")]
    ClockSkew {
        /// Absolute difference in seconds.
        skew_seconds: i64,
        /// Allowed difference in seconds.
        limit_seconds: i64,
    },
    /// The credential scope (date, region, service) does not fit the request.
    #[error("credential scope mismatch: {0}")]
    ScopeMismatch(String),
    /// The recomputed signature differs from the one sent.
    #[error("signature does not match")]
    SignatureMismatch,
    /// Derived signing needs a region id and none was configured or found in the host.
    #[error("derived signing needs a region id")]
    MissingRegion,
    /// A header value is not valid visible ASCII / UTF-8.
    #[error("header {0} has a value that is not valid text")]
    InvalidHeaderValue(String),
}

impl SigningError {
    /// Whether repeating the operation (after re-signing with a fresh time) can succeed.
    /// Only clock skew is transient; everything else is a configuration or protocol error.
    pub fn is_retryable(&self) -> bool {
        match self {
            SigningError::ClockSkew { .. } => true,
            SigningError::MissingHeader(_)
            | SigningError::MalformedAuthorization(_)
            | SigningError::UnsupportedAlgorithm(_)
            | SigningError::MalformedDate(_)
            | SigningError::ScopeMismatch(_)
            | SigningError::SignatureMismatch
            | SigningError::MissingRegion
            | SigningError::InvalidHeaderValue(_) => false,
        }
    }
}

/// RFC 3986 unreserved characters are kept, everything else becomes `%XX` (uppercase).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes everything except `A-Za-z0-9-_.~`.
pub(crate) fn encode_unreserved(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Percent-decodes `text` (invalid UTF-8 is replaced, `+` stays a plus).
pub(crate) fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two byte strings.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// `k=v` pairs re-encoded with the unreserved set, sorted by key then value, joined by `&`:
/// the canonical query of both Huawei AK/SK signing and SigV4.
pub(crate) fn canonical_query_from_pairs(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> String {
    let mut pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(key, value)| (encode_unreserved(&key), encode_unreserved(&value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical header block (`name:value\n` per header, names lowercased and sorted, values
/// trimmed) and the `;`-joined signed header names, shared by Huawei AK/SK and SigV4.
pub(crate) fn canonical_headers(signed_headers: &[(String, String)]) -> (String, String) {
    let mut headers: Vec<(String, &str)> = signed_headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let block = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let names = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, names)
}

/// Splits a raw query string into percent-decoded `(key, value)` pairs; a key without `=` has an
/// empty value and empty segments are dropped.
pub(crate) fn decode_query_pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    raw_query
        .unwrap_or_default()
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((key, value)) => (percent_decode(key), percent_decode(value)),
            None => (percent_decode(segment), String::new()),
        })
        .collect()
}

/// All values of header `name` joined by `,`, each trimmed, as a string.
pub(crate) fn header_text(
    headers: &http::HeaderMap,
    name: &str,
) -> Result<Option<String>, SigningError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut joined = Vec::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| SigningError::InvalidHeaderValue(name.to_string()))?;
        joined.push(text.trim().to_string());
    }
    Ok(Some(joined.join(",")))
}

/// Checks that `request_time` is within `max_skew` of `now`.
pub(crate) fn check_skew(
    request_time: jiff::Timestamp,
    now: jiff::Timestamp,
    max_skew: jiff::SignedDuration,
) -> Result<(), SigningError> {
    let skew = now.duration_since(request_time).abs();
    if skew > max_skew.abs() {
        return Err(SigningError::ClockSkew {
            skew_seconds: skew.as_secs(),
            limit_seconds: max_skew.abs().as_secs(),
        });
    }
    Ok(())
}

/// Authority of `uri` without the scheme's default port (what HTTP clients send as `Host`).
pub fn host_without_default_port(uri: &http::Uri) -> Option<String> {
    let authority = uri.authority()?;
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    match (authority.port_u16(), default_port) {
        (Some(port), Some(default)) if port == default => Some(authority.host().to_string()),
        _ => Some(authority.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_encoding_keeps_only_rfc3986_unreserved() {
        assert_eq!(encode_unreserved("my app/1~x"), "my%20app%2F1~x");
        assert_eq!(encode_unreserved("a-b_c.d"), "a-b_c.d");
        assert_eq!(encode_unreserved("é+"), "%C3%A9%2B");
    }

    #[test]
    fn query_pairs_are_decoded() {
        let pairs = decode_query_pairs(Some("b=2&a&c=x%20y&"));
        assert_eq!(
            pairs,
            vec![
                ("b".into(), "2".into()),
                ("a".into(), String::new()),
                ("c".into(), "x y".into())
            ]
        );
    }

    #[test]
    fn skew_outside_limit_is_retryable_error() {
        let now: jiff::Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let late = now + jiff::SignedDuration::from_mins(16);
        let err = check_skew(late, now, jiff::SignedDuration::from_mins(15)).unwrap_err();
        assert!(err.is_retryable());
        assert!(
            check_skew(
                now + jiff::SignedDuration::from_mins(14),
                now,
                jiff::SignedDuration::from_mins(15)
            )
            .is_ok()
        );
    }

    #[test]
    fn host_drops_only_default_ports() {
        let uri: http::Uri = "https://iotda.cn-north-4.myhuaweicloud.com:443/v5"
            .parse()
            .unwrap();
        assert_eq!(
            host_without_default_port(&uri).unwrap(),
            "iotda.cn-north-4.myhuaweicloud.com"
        );
        let uri: http::Uri = "http://127.0.0.1:18080/v5".parse().unwrap();
        assert_eq!(host_without_default_port(&uri).unwrap(), "127.0.0.1:18080");
    }
}
