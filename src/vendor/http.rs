//! The HTTP policy every vendor client shares: timeouts, retries with exponential backoff and
//! jitter for connection failures, 429 and 5xx (honouring `Retry-After`, and each vendor's own
//! flow-control codes), no retry for other 4xx, and a client-side rate limit per provider.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Client, RequestBuilder, Response, StatusCode, header::HeaderMap};

use super::error::{Secret, VendorError, redact};

/// Largest error body read from a vendor; the rest is ignored.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Timeouts and retry limits.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request (uploads use [`HttpPolicy::upload_timeout`]).
    pub request_timeout: Duration,
    /// Time allowed for one upload request.
    pub upload_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: usize,
    /// First backoff delay.
    pub min_backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured within one call; a longer one ends the call with a
    /// retryable error so the controller requeues instead of holding a worker.
    pub max_retry_after: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(30 * 60),
            max_attempts: 5,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Calls per second and burst for one provider (from `OtaProvider.spec.rateLimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained calls per second.
    pub per_second: NonZeroU32,
    /// Calls allowed at once after a quiet period.
    pub burst: NonZeroU32,
}

/// How one vendor spells its errors.
pub trait ErrorDialect: Send + Sync {
    /// The vendor's name, for messages.
    fn vendor(&self) -> &'static str;
    /// The vendor's error code and message from an error response body.
    fn parse(&self, status: u16, body: &[u8]) -> (Option<String>, String);
    /// Whether an error that is neither 429 nor 5xx is the vendor's way of saying "slow down"
    /// (IoTDA answers 403 with `IOTDA.021101`).
    fn is_flow_control(&self, _status: u16, _code: Option<&str>) -> bool {
        false
    }
}

/// What happened on each call, for metrics and tests.
pub trait CallObserver: Send + Sync {
    /// A response arrived (`status`) or the call failed without one (`None`).
    fn on_attempt(&self, vendor: &'static str, endpoint: &'static str, status: Option<u16>);
    /// A failed attempt will be retried after `delay`.
    fn on_retry(&self, _vendor: &'static str, _endpoint: &'static str, _delay: Duration) {}
}

/// An HTTP client for one vendor account with the shared policy applied.
#[derive(Clone)]
pub struct VendorHttp {
    client: Client,
    policy: HttpPolicy,
    dialect: Arc<dyn ErrorDialect>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    observer: Option<Arc<dyn CallObserver>>,
    secrets: Arc<Vec<Secret>>,
}

impl VendorHttp {
    /// A client for one account. `secrets` are redacted from every vendor message.
    pub fn new(
        dialect: Arc<dyn ErrorDialect>,
        policy: HttpPolicy,
        rate_limit: Option<RateLimitConfig>,
        secrets: Vec<Secret>,
    ) -> Result<Self, VendorError> {
        let client = Client::builder()
            .connect_timeout(policy.connect_timeout)
            .build()
            .map_err(|err| VendorError::Config {
                vendor: dialect.vendor(),
                reason: format!("HTTP client: {err}"),
            })?;
        let limiter = rate_limit.map(|limit| {
            Arc::new(RateLimiter::direct(
                Quota::per_second(limit.per_second).allow_burst(limit.burst),
            ))
        });
        Ok(Self {
            client,
            policy,
            dialect,
            limiter,
            observer: None,
            secrets: Arc::new(secrets),
        })
    }

    /// Reports every attempt and retry to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The vendor's name.
    pub fn vendor(&self) -> &'static str {
        self.dialect.vendor()
    }

    /// The policy in force.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Removes the account's secrets from `text`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    /// Sends the request `build` makes (it is called again for every attempt, so streamed bodies
    /// can be reopened), retrying what the policy says is transient. Returns the first 2xx
    /// response; any other outcome is a [`VendorError`].
    pub async fn send<B>(&self, endpoint: &'static str, build: B) -> Result<Response, VendorError>
    where
        B: Fn(&Client) -> Result<RequestBuilder, VendorError>,
    {
        self.send_with_timeout(endpoint, self.policy.request_timeout, build)
            .await
    }

    /// [`VendorHttp::send`] for uploads, with the longer upload timeout.
    pub async fn send_upload<B>(
        &self,
        endpoint: &'static str,
        build: B,
    ) -> Result<Response, VendorError>
    where
        B: Fn(&Client) -> Result<RequestBuilder, VendorError>,
    {
        self.send_with_timeout(endpoint, self.policy.upload_timeout, build)
            .await
    }

    /// One upload attempt with a body that cannot be replayed (a live stream): the same limits,
    /// timeout and error classification as [`VendorHttp::send_upload`], but no retry. The
    /// caller retries from a replayable source.
    pub async fn send_once<B>(
        &self,
        endpoint: &'static str,
        build: B,
    ) -> Result<Response, VendorError>
    where
        B: FnOnce(&Client) -> RequestBuilder,
    {
        let once = std::sync::Mutex::new(Some(build));
        let build = |client: &Client| {
            let build = once
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .ok_or_else(|| VendorError::Config {
                    vendor: self.vendor(),
                    reason: format!("{endpoint}: a one-shot request was sent twice"),
                })?;
            Ok(build(client))
        };
        self.attempt(endpoint, self.policy.upload_timeout, &build)
            .await
    }

    async fn send_with_timeout<B>(
        &self,
        endpoint: &'static str,
        timeout: Duration,
        build: B,
    ) -> Result<Response, VendorError>
    where
        B: Fn(&Client) -> Result<RequestBuilder, VendorError>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_max_times(self.policy.max_attempts.saturating_sub(1))
            .with_jitter();
        let max_retry_after = self.policy.max_retry_after;
        (|| self.attempt(endpoint, timeout, &build))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|err: &VendorError| {
                err.is_retryable() && err.retry_after().is_none_or(|wait| wait <= max_retry_after)
            })
            .adjust(|err: &VendorError, delay| match (err.retry_after(), delay) {
                (Some(wait), Some(_)) => Some(wait),
                (_, delay) => delay,
            })
            .notify(|err: &VendorError, delay| {
                tracing::warn!(vendor = self.vendor(), endpoint, error = %err, ?delay, "retrying vendor call");
                if let Some(observer) = &self.observer {
                    observer.on_retry(self.vendor(), endpoint, delay);
                }
            })
            .await
    }

    async fn attempt<B>(
        &self,
        endpoint: &'static str,
        timeout: Duration,
        build: &B,
    ) -> Result<Response, VendorError>
    where
        B: Fn(&Client) -> Result<RequestBuilder, VendorError>,
    {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let request = build(&self.client)?.timeout(timeout);
        let vendor = self.vendor();
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                self.observe(endpoint, None);
                return Err(VendorError::Network {
                    vendor,
                    endpoint,
                    reason: self.redact(&describe(&err)),
                });
            }
        };
        let status = response.status();
        self.observe(endpoint, Some(status.as_u16()));
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = read_bounded(response).await;
        let (code, message) = self.dialect.parse(status.as_u16(), &body);
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || self
                .dialect
                .is_flow_control(status.as_u16(), code.as_deref());
        Err(VendorError::Api {
            vendor,
            endpoint,
            status: status.as_u16(),
            code,
            message: self.redact(&message),
            retryable,
            retry_after,
        })
    }

    fn observe(&self, endpoint: &'static str, status: Option<u16>) {
        if let Some(observer) = &self.observer {
            observer.on_attempt(self.vendor(), endpoint, status);
        }
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error response.
async fn read_bounded(mut response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// A reqwest error and its causes, without the URL.
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "could not connect".to_string()
    } else if err.is_body() {
        "sending the body failed".to_string()
    } else if err.is_decode() {
        "reading the response failed".to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
