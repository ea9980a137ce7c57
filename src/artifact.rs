//! Fetching firmware artifacts: one streaming pass over HTTP(S) that hashes (SHA-256), counts and
//! spools the image to a temporary file, stopping as soon as it grows past its size limit, and
//! refusing addresses the policy forbids (link-local and cloud metadata by default). Nothing is
//! held in memory beyond one network chunk; nothing reaches a vendor before the checksum matched.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{HeaderMap, HeaderName, HeaderValue},
};
use sha2::{Digest, Sha256};
use std::io::Write;

/// Addresses refused unless explicitly allowed: IPv4 link-local (which holds the cloud metadata
/// services at 169.254.169.254) and the AWS IPv6 metadata address.
const DENIED_BY_DEFAULT: [&str; 2] = ["169.254.0.0/16", "fd00:ec2::254/128"];

/// Most redirects followed for one artifact.
const MAX_REDIRECTS: usize = 5;

/// Network chunks queued for the hashing and spooling thread. Chunks are at most a few hundred
/// KiB, so the queue bounds memory to a few MiB while absorbing jitter between the two sides.
const SPOOLER_DEPTH: usize = 16;

/// Write buffer of the spool file: large writes, few system calls.
const SPOOL_WRITE_BUFFER: usize = 1024 * 1024;

/// What may be fetched, from where, and where it is spooled.
#[derive(Clone, Debug)]
pub struct ArtifactPolicy {
    /// Networks reachable even though the defaults deny them (for example a registry on a
    /// link-local address).
    pub allowed_cidrs: Vec<IpNet>,
    /// Directory for spool files. Unset: the system temporary directory.
    pub spool_dir: Option<PathBuf>,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Longest pause between two chunks of the body before the fetch fails.
    pub read_timeout: Duration,
}

impl Default for ArtifactPolicy {
    fn default() -> Self {
        Self {
            allowed_cidrs: Vec::new(),
            spool_dir: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl ArtifactPolicy {
    /// Whether the policy lets otaplane connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allowed_cidrs.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        !DENIED_BY_DEFAULT
            .iter()
            .map(|net| net.parse::<IpNet>().expect("built-in networks parse"))
            .any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One artifact to fetch.
#[derive(Clone)]
pub struct ArtifactRequest {
    /// The `http`/`https` URL.
    pub url: String,
    /// Expected SHA-256, lowercase hex; the fetch fails on a mismatch.
    pub expected_sha256: Option<String>,
    /// Extra request headers (from the package's `headersSecretRef`); never logged.
    pub headers: Vec<(String, String)>,
    /// Largest accepted size in bytes.
    pub max_size_bytes: u64,
}

impl std::fmt::Debug for ArtifactRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactRequest")
            .field("url", &redact_url(&self.url))
            .field("expected_sha256", &self.expected_sha256)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| (name, "<redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("max_size_bytes", &self.max_size_bytes)
            .finish()
    }
}

/// Why an artifact could not be fetched. [`ArtifactError::is_retryable`] says whether trying
/// again can help; the other errors need the spec, the Secret or the artifact server fixed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The URL does not parse or has no host. Terminal.
    #[error("artifact URL {url} is invalid: {reason}")]
    InvalidUrl {
        /// The URL, with credentials and query removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only http and https are fetched. Terminal.
    #[error("artifact URL scheme {scheme:?} is not allowed: use http or https")]
    SchemeNotAllowed {
        /// The refused scheme.
        scheme: String,
    },
    /// The host resolves to an address the policy denies (link-local, cloud metadata). Terminal.
    #[error("artifact host {host} resolves to {address}, which the artifact policy does not allow")]
    AddressNotAllowed {
        /// The host name.
        host: String,
        /// The refused address.
        address: IpAddr,
    },
    /// A header from the headers Secret is not a valid HTTP header. Terminal.
    #[error("artifact header {name:?} from the headers Secret is not a valid HTTP header")]
    InvalidHeader {
        /// The header name (never the value).
        name: String,
    },
    /// The server answered with an error status. Retryable for 408, 429 and 5xx.
    #[error("artifact server answered {status} for {url}")]
    Status {
        /// The URL, with credentials and query removed.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The connection failed or timed out. Retryable.
    #[error("fetching artifact {url} failed: {reason}")]
    Network {
        /// The URL, with credentials and query removed.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The artifact grew past its limit; the fetch stopped there. Terminal.
    #[error("artifact is larger than its limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The artifact's SHA-256 differs from `artifact.sha256`. Terminal.
    #[error("artifact checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The checksum the spec asked for.
        expected: String,
        /// The checksum of what the server sent.
        actual: String,
    },
    /// The spool file could not be written. Retryable (the disk may free up).
    #[error("spooling the artifact to {dir} failed: {source}")]
    Spool {
        /// The spool directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ArtifactError {
    /// Whether trying again later can succeed without a change to the spec or the Secret.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArtifactError::Status { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            ArtifactError::Network { .. } | ArtifactError::Spool { .. } => true,
            ArtifactError::InvalidUrl { .. }
            | ArtifactError::SchemeNotAllowed { .. }
            | ArtifactError::AddressNotAllowed { .. }
            | ArtifactError::InvalidHeader { .. }
            | ArtifactError::TooLarge { .. }
            | ArtifactError::ChecksumMismatch { .. } => false,
        }
    }

    /// A short machine-readable reason, for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ArtifactError::InvalidUrl { .. } => "InvalidArtifactURL",
            ArtifactError::SchemeNotAllowed { .. } => "ArtifactSchemeNotAllowed",
            ArtifactError::AddressNotAllowed { .. } => "ArtifactAddressNotAllowed",
            ArtifactError::InvalidHeader { .. } => "InvalidArtifactHeader",
            ArtifactError::Status { .. } => "ArtifactFetchFailed",
            ArtifactError::Network { .. } => "ArtifactFetchFailed",
            ArtifactError::TooLarge { .. } => "ArtifactTooLarge",
            ArtifactError::ChecksumMismatch { .. } => "ChecksumMismatch",
            ArtifactError::Spool { .. } => "ArtifactSpoolFailed",
        }
    }
}

/// A verified artifact on local disk. The spool file is deleted when this is dropped.
#[derive(Debug)]
pub struct SpooledArtifact {
    path: tempfile::TempPath,
    sha256: String,
    size: u64,
}

impl SpooledArtifact {
    /// The spool file, for uploads that re-read it (retries, multipart parts).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the content, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Size of the content in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Fetches artifacts under one [`ArtifactPolicy`]. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ArtifactFetcher {
    client: reqwest::Client,
    policy: Arc<ArtifactPolicy>,
}

impl ArtifactFetcher {
    /// A fetcher whose connections obey `policy`: every resolved address and every redirect
    /// target is checked before connecting.
    pub fn new(policy: ArtifactPolicy) -> Self {
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.read_timeout)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match check_url(attempt.url(), &redirect_policy) {
                    Ok(()) => attempt.follow(),
                    Err(ArtifactError::SchemeNotAllowed { scheme }) => {
                        attempt.error(PolicyRefusal::Scheme(scheme))
                    }
                    Err(ArtifactError::AddressNotAllowed { host, address }) => {
                        attempt.error(PolicyRefusal::Address { host, address })
                    }
                    Err(other) => attempt.error(other.to_string()),
                }
            }))
            .build()
            .expect("the artifact HTTP client builds");
        Self { client, policy }
    }

    /// Streams `request.url` to a spool file, hashing and counting in the same pass.
    /// The result is returned only when the size is within the limit and the checksum matches.
    pub async fn fetch(&self, request: &ArtifactRequest) -> Result<SpooledArtifact, ArtifactError> {
        self.fetch_inner(request, None).await
    }

    /// [`ArtifactFetcher::fetch`] that also sends every chunk to `tee` as it arrives, so an
    /// upload can run while the download does (one pass over the network). The last chunk is
    /// held back until the checksum matched: on a mismatch (or any failure) `tee` gets an error
    /// instead, so a consumer that forwards it as a request body never completes the upload.
    /// A closed `tee` (the upload gave up) does not stop the fetch: the spool file is still
    /// written for a retry.
    pub async fn fetch_teed(
        &self,
        request: &ArtifactRequest,
        tee: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<SpooledArtifact, ArtifactError> {
        let result = self.fetch_inner(request, Some(&tee)).await;
        if let Err(err) = &result {
            // Ignored when the consumer is gone: there is nobody left to tell.
            let _ = tee.send(Err(std::io::Error::other(err.to_string()))).await;
        }
        result
    }

    async fn fetch_inner(
        &self,
        request: &ArtifactRequest,
        tee: Option<&tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>>,
    ) -> Result<SpooledArtifact, ArtifactError> {
        let url = Url::parse(&request.url).map_err(|err| ArtifactError::InvalidUrl {
            url: redact_url(&request.url),
            reason: err.to_string(),
        })?;
        check_url(&url, &self.policy)?;
        let headers = header_map(&request.headers)?;
        let shown_url = redact_url(&request.url);
        let network = |err: reqwest::Error| ArtifactError::Network {
            url: shown_url.clone(),
            reason: describe_reqwest_error(&err),
        };

        let mut response = self
            .client
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|err| policy_error(&err).unwrap_or_else(|| network(err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ArtifactError::Status {
                url: shown_url,
                status: status.as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|announced| announced > request.max_size_bytes)
        {
            return Err(ArtifactError::TooLarge {
                limit: request.max_size_bytes,
            });
        }

        let spool_dir = self
            .policy
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let spool_error = |source| ArtifactError::Spool {
            dir: spool_dir.display().to_string(),
            source,
        };
        let spool = tempfile::Builder::new()
            .prefix("otaplane-artifact-")
            .tempfile_in(&spool_dir)
            .map_err(spool_error)?;
        let (file, path) = spool.into_parts();
        let (to_spooler, chunks) = tokio::sync::mpsc::channel(SPOOLER_DEPTH);
        let spooler = tokio::task::spawn_blocking(move || hash_and_spool(chunks, file));
        let mut size: u64 = 0;
        let mut tee = tee.cloned();
        let mut held_back: Option<bytes::Bytes> = None;
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            size += chunk.len() as u64;
            if size > request.max_size_bytes {
                return Err(ArtifactError::TooLarge {
                    limit: request.max_size_bytes,
                });
            }
            if to_spooler.send(chunk.clone()).await.is_err() {
                // The spooler stopped on a write error; joining it below reports that error.
                break;
            }
            if let (Some(sender), Some(previous)) = (&tee, held_back.replace(chunk))
                && sender.send(Ok(previous)).await.is_err()
            {
                tee = None;
            }
        }
        drop(to_spooler);
        let sha256 = spooler
            .await
            .map_err(|join| spool_error(std::io::Error::other(join.to_string())))?
            .map_err(spool_error)?;

        if let Some(expected) = &request.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ArtifactError::ChecksumMismatch {
                expected: expected.clone(),
                actual: sha256,
            });
        }
        if let (Some(sender), Some(last)) = (&tee, held_back) {
            // Ignored when the consumer is gone: it retries from the spool file.
            let _ = sender.send(Ok(last)).await;
        }
        Ok(SpooledArtifact { path, sha256, size })
    }
}

/// Hashes and writes the chunks of one artifact on a blocking thread, so that hashing (the
/// costliest step) and disk writes overlap with receiving the next chunks instead of
/// alternating with them. Returns the lowercase hex SHA-256 once the channel closes.
fn hash_and_spool(
    mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    file: std::fs::File,
) -> std::io::Result<String> {
    let mut writer = std::io::BufWriter::with_capacity(SPOOL_WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        writer.write_all(&chunk)?;
    }
    // No fsync: the spool is a scratch copy for upload retries, re-fetched after a crash.
    writer.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Refuses non-HTTP schemes and IP-literal hosts the policy denies (named hosts are checked at
/// resolution time by [`PolicyResolver`]).
fn check_url(url: &Url, policy: &ArtifactPolicy) -> Result<(), ArtifactError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ArtifactError::SchemeNotAllowed {
            scheme: url.scheme().to_string(),
        });
    }
    let literal = match url.host() {
        None => {
            return Err(ArtifactError::InvalidUrl {
                url: redact_url(url.as_str()),
                reason: "it has no host".into(),
            });
        }
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    match literal {
        Some(address) if !policy.permits(address) => Err(ArtifactError::AddressNotAllowed {
            host: url.host_str().unwrap_or_default().to_string(),
            address,
        }),
        _ => Ok(()),
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, ArtifactError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = || ArtifactError::InvalidHeader { name: name.clone() };
        let header_name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
        let mut header_value = HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// Shows a URL without user info and with its query (often a signed token) hidden.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            let had_query = url.query().is_some();
            // Both setters only fail for URLs that cannot have credentials; nothing to hide then.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            let mut shown = url.to_string();
            if had_query {
                shown.push_str("?<redacted>");
            }
            shown
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// The error text of a reqwest error and its causes, without URLs (they may carry credentials).
fn describe_reqwest_error(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "could not connect".to_string()
    } else if err.is_redirect() {
        "redirect refused".to_string()
    } else if err.is_body() || err.is_decode() {
        "the response body broke off".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A policy refusal raised inside the resolver or the redirect policy, recovered from the
/// reqwest error chain so it stays terminal.
fn policy_error(err: &reqwest::Error) -> Option<ArtifactError> {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<PolicyRefusal>() {
            return Some(match refusal {
                PolicyRefusal::Scheme(scheme) => ArtifactError::SchemeNotAllowed {
                    scheme: scheme.clone(),
                },
                PolicyRefusal::Address { host, address } => ArtifactError::AddressNotAllowed {
                    host: host.clone(),
                    address: *address,
                },
            });
        }
        source = cause.source();
    }
    None
}

/// Why the policy refused a connection, raised inside reqwest (resolver, redirects).
#[derive(Debug, thiserror::Error)]
enum PolicyRefusal {
    #[error("redirect to scheme {0:?} refused")]
    Scheme(String),
    #[error("{host} resolves to {address}, which the artifact policy does not allow")]
    Address { host: String, address: IpAddr },
}

/// Resolves with the system resolver, then refuses the whole name if any address is denied
/// (so a host with one public and one metadata address cannot be used to reach the latter).
struct PolicyResolver {
    policy: Arc<ArtifactPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(denied) = addresses.iter().find(|addr| !policy.permits(addr.ip())) {
                return Err(Box::new(PolicyRefusal::Address {
                    host,
                    address: denied.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_denied_by_default() {
        let policy = ArtifactPolicy::default();
        for denied in [
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(!policy.permits(denied.parse().unwrap()), "{denied}");
        }
        for allowed in ["127.0.0.1", "10.0.0.8", "93.184.216.34", "::1"] {
            assert!(policy.permits(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn an_allowed_cidr_reopens_a_denied_range() {
        let policy = ArtifactPolicy {
            allowed_cidrs: vec!["169.254.10.0/24".parse().unwrap()],
            ..ArtifactPolicy::default()
        };
        assert!(policy.permits("169.254.10.7".parse().unwrap()));
        assert!(!policy.permits("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            redact_url("https://user:hunter2@example.com/fw.bin?X-Amz-Signature=abc#x"),
            "https://example.com/fw.bin?<redacted>"
        );
        assert_eq!(
            redact_url("http://example.com/a.bin"),
            "http://example.com/a.bin"
        );
        assert_eq!(redact_url("not a url"), "<unparsable URL>");
    }

    #[test]
    fn the_debug_form_of_a_request_hides_header_values() {
        let request = ArtifactRequest {
            url: "https://token:s3cret@example.com/fw.bin".into(),
            expected_sha256: None,
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            max_size_bytes: 10,
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let status = |status| ArtifactError::Status {
            url: String::new(),
            status,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(403).is_retryable());
        assert!(
            !ArtifactError::ChecksumMismatch {
                expected: "a".into(),
                actual: "b".into()
            }
            .is_retryable()
        );
        assert!(!ArtifactError::TooLarge { limit: 1 }.is_retryable());
    }
}
