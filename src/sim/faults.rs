//! Fault injection and call counting, as an axum middleware on both listeners.
//!
//! Every request to a vendor route passes through [`count_calls`] (outer layer: counts by
//! vendor, method, matched route template and final status) and [`inject_faults`] (inner
//! route layer: applies the first matching [`FaultRule`]). Admin calls under `/_sim/` are
//! neither counted nor faulted.
//!
//! A rule matches on vendor, HTTP method and a path glob (`*` matches any run of characters,
//! including `/`), and fires on the matching calls after the first `after` ones, for at most
//! `count` calls, each with probability `rate` (drawn from the seeded generator). Actions:
//!
//! | action (YAML/JSON) | effect |
//! |---|---|
//! | `{error: {status: 500, code: "...", message: "..."}}` | that status, body in the vendor's error shape |
//! | `{throttle: {retry_after_secs: 2}}` | 429 + `Retry-After` (ThingSpace WSO2 900800, IoTDA APIGW.0308, OBS SlowDown) |
//! | `flow_control` | IoTDA's 403 `IOTDA.021101` (other vendors: as `throttle` with 1 s) |
//! | `{latency: {ms: 250}}` | delays the call, then serves it normally (latency rules add up) |
//! | `{reset: {after_bytes: 1024}}` | reads that much of the request body, then drops the connection without a complete response |

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::errors::vendor_error;
use super::fleet::glob_match;
use super::{SharedState, Vendor};

/// What a fault rule does to a matching call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status; `code`/`message` default to the vendor's usual ones.
    Error {
        status: u16,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
    /// 429 Too Many Requests with `Retry-After`.
    Throttle {
        #[serde(default = "one")]
        retry_after_secs: u64,
    },
    /// IoTDA flow control: 403 `IOTDA.021101`.
    FlowControl,
    /// Delay the call by `ms` milliseconds (virtual-clock independent: real time).
    Latency { ms: u64 },
    /// Read `after_bytes` of the request body, then break the connection.
    Reset {
        #[serde(default)]
        after_bytes: u64,
    },
}

fn one() -> u64 {
    1
}

/// One fault rule. Unset conditions match everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Assigned by the injector; ignored on input.
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// HTTP method, case-insensitive.
    #[serde(default)]
    pub method: Option<String>,
    /// Glob on the request path (`*` matches anything, `?` one character).
    #[serde(default)]
    pub path: Option<String>,
    /// Let this many matching calls through before firing.
    #[serde(default)]
    pub after: u64,
    /// Fire at most this many times (unlimited when absent).
    #[serde(default)]
    pub count: Option<u64>,
    /// Probability of firing per matching call (1.0 when absent).
    #[serde(default)]
    pub rate: Option<f64>,
    pub action: FaultAction,
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    seen: u64,
    fired: u64,
}

/// The active fault rules and the seeded generator behind `rate`.
#[derive(Debug)]
pub struct FaultInjector {
    rules: Mutex<Vec<ActiveRule>>,
    next_id: AtomicU64,
    rng: Mutex<StdRng>,
}

/// The fault decisions for one call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultDecision {
    /// Total delay from latency rules.
    pub delay: Duration,
    /// The action that replaces the normal response, if any.
    pub action: Option<FaultAction>,
}

impl FaultInjector {
    /// An injector with `rules` active, using `seed` for rates.
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let injector = Self {
            rules: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        };
        injector.add(rules);
        injector
    }

    /// Adds rules (their ids are assigned here) and returns them.
    pub fn add(&self, rules: Vec<FaultRule>) -> Vec<FaultRule> {
        let mut active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules
            .into_iter()
            .map(|mut rule| {
                rule.id = self.next_id.fetch_add(1, Ordering::Relaxed);
                active.push(ActiveRule {
                    rule: rule.clone(),
                    seen: 0,
                    fired: 0,
                });
                rule
            })
            .collect()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Removes one rule; returns whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        let mut active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let before = active.len();
        active.retain(|r| r.rule.id != id);
        active.len() != before
    }

    /// The active rules with how often each matched and fired.
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        let active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        active
            .iter()
            .map(|r| {
                let mut value = serde_json::to_value(&r.rule).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("seen".into(), r.seen.into());
                    object.insert("fired".into(), r.fired.into());
                }
                value
            })
            .collect()
    }

    /// Decides what happens to one call. Latency rules add up; the first other rule that
    /// fires replaces the response.
    pub fn decide(&self, vendor: Vendor, method: &str, path: &str) -> FaultDecision {
        let mut decision = FaultDecision::default();
        let mut active = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if active.is_empty() {
            return decision;
        }
        for entry in active.iter_mut() {
            let rule = &entry.rule;
            if rule.vendor.is_some_and(|v| v != vendor)
                || rule
                    .method
                    .as_deref()
                    .is_some_and(|m| !m.eq_ignore_ascii_case(method))
                || rule.path.as_deref().is_some_and(|p| !glob_match(p, path))
            {
                continue;
            }
            let is_latency = matches!(rule.action, FaultAction::Latency { .. });
            if decision.action.is_some() && !is_latency {
                continue;
            }
            entry.seen += 1;
            if entry.seen <= rule.after || rule.count.is_some_and(|c| entry.fired >= c) {
                continue;
            }
            if let Some(rate) = rule.rate {
                let draw: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
                if draw >= rate {
                    continue;
                }
            }
            entry.fired += 1;
            match &rule.action {
                FaultAction::Latency { ms } => decision.delay += Duration::from_millis(*ms),
                action => decision.action = Some(action.clone()),
            }
        }
        active.retain(|r| r.rule.count.is_none_or(|c| r.fired < c));
        decision
    }
}

/// One row of the call counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CallKey {
    pub vendor: Vendor,
    pub method: String,
    /// The matched route template (e.g. `/api/fota/v2/files/{acc}`), or `<unmatched>`.
    pub route: String,
    /// Final HTTP status; 0 when the connection was reset by a fault.
    pub status: u16,
}

/// Counts of vendor calls by vendor, method, route template and status.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<CallKey, u64>>,
}

/// A call-count row as the admin API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallCount {
    pub vendor: Vendor,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub count: u64,
}

impl CallCounter {
    /// Adds one call.
    pub fn record(&self, key: CallKey) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// All rows, sorted by vendor, method, route and status.
    pub fn snapshot(&self) -> Vec<CallCount> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, count)| CallCount {
                vendor: k.vendor,
                method: k.method.clone(),
                route: k.route.clone(),
                status: k.status,
                count: *count,
            })
            .collect()
    }

    /// Total calls matching the filters (any status).
    pub fn total(&self, vendor: Option<Vendor>, method: Option<&str>, route: Option<&str>) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, _)| vendor.is_none_or(|v| k.vendor == v))
            .filter(|(k, _)| method.is_none_or(|m| k.method.eq_ignore_ascii_case(m)))
            .filter(|(k, _)| route.is_none_or(|r| k.route == r))
            .map(|(_, c)| *c)
            .sum()
    }

    /// Forgets every count.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Which listener a middleware instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// ThingSpace, IoTDA, IoTaaP and admin, told apart by path prefix.
    Main,
    /// OBS only.
    Obs,
}

/// The vendor a request belongs to, or `None` for the admin API.
pub fn vendor_for(listener: Listener, path: &str) -> Option<Vendor> {
    match listener {
        Listener::Obs => Some(Vendor::Obs),
        Listener::Main => {
            if path == "/_sim" || path.starts_with("/_sim/") {
                None
            } else if path.starts_with("/api/") || path == "/api" {
                Some(Vendor::ThingSpace)
            } else if path.starts_with("/v5/") || path.starts_with("/v3/") {
                Some(Vendor::Iotda)
            } else {
                Some(Vendor::Iotaap)
            }
        }
    }
}

/// Response extension naming the route template a response came from.
#[derive(Debug, Clone)]
struct RouteTemplate(String);

/// Response extension marking a response whose connection is reset on purpose.
#[derive(Debug, Clone, Copy)]
struct ResetMarker;

/// Outer layer: counts every vendor call by vendor, method, route template and status.
pub async fn count_calls(
    State((state, listener)): State<(SharedState, Listener)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(vendor) = vendor_for(listener, request.uri().path()) else {
        return next.run(request).await;
    };
    let method = request.method().to_string();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or_else(|| "<unmatched>".to_owned(), |r| r.0.clone());
    let status = if response.extensions().get::<ResetMarker>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    state.calls.record(CallKey {
        vendor,
        method,
        route,
        status,
    });
    response
}

/// Inner route layer: records the matched route template and applies fault rules.
pub async fn inject_faults(
    State((state, listener)): State<(SharedState, Listener)>,
    request: Request,
    next: Next,
) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let Some(vendor) = vendor_for(listener, &path) else {
        return next.run(request).await;
    };
    let decision = state
        .faults
        .decide(vendor, request.method().as_str(), &path);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let mut response = match decision.action {
        None => next.run(request).await,
        Some(action) => fault_response(vendor, action, request, next).await,
    };
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    response
}

async fn fault_response(
    vendor: Vendor,
    action: FaultAction,
    request: Request,
    next: Next,
) -> Response {
    match action {
        FaultAction::Latency { .. } => next.run(request).await,
        FaultAction::Error {
            status,
            code,
            message,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = message.unwrap_or_else(|| default_message(vendor, status));
            vendor_error(vendor, status, code.as_deref(), &message)
        }
        FaultAction::Throttle { retry_after_secs } => throttled(vendor, retry_after_secs),
        FaultAction::FlowControl => {
            if vendor == Vendor::Iotda {
                vendor_error(
                    vendor,
                    StatusCode::FORBIDDEN,
                    Some("IOTDA.021101"),
                    "The request rate limit has been reached.",
                )
            } else {
                throttled(vendor, 1)
            }
        }
        FaultAction::Reset { after_bytes } => reset_connection(request, after_bytes).await,
    }
}

fn throttled(vendor: Vendor, retry_after_secs: u64) -> Response {
    let message = match vendor {
        Vendor::Iotda => {
            "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second"
        }
        Vendor::ThingSpace => "Message throttled out",
        Vendor::Obs => "Please reduce your request rate.",
        Vendor::Iotaap => "Too many requests, please try again later.",
    };
    let mut response = vendor_error(vendor, StatusCode::TOO_MANY_REQUESTS, None, message);
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}

fn default_message(vendor: Vendor, status: StatusCode) -> String {
    match (vendor, status.as_u16()) {
        (Vendor::ThingSpace, 401) => "Invalid Credentials".into(),
        (Vendor::Iotda, 500) => "Internal server error.".into(),
        (Vendor::Iotaap, 500) => "Internal server error".into(),
        _ => status
            .canonical_reason()
            .unwrap_or("Injected fault")
            .to_owned(),
    }
}

/// Reads up to `after_bytes` of the request body, then answers with a response whose body
/// fails at once: hyper aborts the connection without completing the response, and the
/// kernel resets it if request bytes are still unread.
async fn reset_connection(request: Request, after_bytes: u64) -> Response {
    let mut stream = request.into_body().into_data_stream();
    let mut read = 0u64;
    while read < after_bytes {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
    drop(stream);
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by fault injection",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    response.extensions_mut().insert(ResetMarker);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: FaultAction) -> FaultRule {
        FaultRule {
            id: 0,
            vendor: Some(Vendor::ThingSpace),
            method: Some("post".into()),
            path: Some("/api/fota/v2/files/*".into()),
            after: 0,
            count: None,
            rate: None,
            action,
        }
    }

    #[test]
    fn rules_match_vendor_method_and_path_and_respect_after_and_count() {
        let error = FaultAction::Error {
            status: 500,
            code: None,
            message: None,
        };
        let injector = FaultInjector::new(
            vec![FaultRule {
                after: 1,
                count: Some(2),
                ..rule(error.clone())
            }],
            1,
        );
        let path = "/api/fota/v2/files/acc";
        assert_eq!(injector.decide(Vendor::Iotda, "POST", path).action, None);
        assert_eq!(
            injector.decide(Vendor::ThingSpace, "GET", path).action,
            None
        );
        assert_eq!(
            injector
                .decide(Vendor::ThingSpace, "POST", "/api/other")
                .action,
            None
        );
        assert_eq!(
            injector.decide(Vendor::ThingSpace, "POST", path).action,
            None,
            "after: 1"
        );
        assert_eq!(
            injector.decide(Vendor::ThingSpace, "POST", path).action,
            Some(error.clone())
        );
        assert_eq!(
            injector.decide(Vendor::ThingSpace, "POST", path).action,
            Some(error)
        );
        assert_eq!(
            injector.decide(Vendor::ThingSpace, "POST", path).action,
            None,
            "count: 2"
        );
        assert!(injector.snapshot().is_empty(), "spent rules are dropped");
    }

    #[test]
    fn latency_adds_up_and_rate_is_seeded() {
        let injector = FaultInjector::new(
            vec![
                rule(FaultAction::Latency { ms: 100 }),
                rule(FaultAction::Latency { ms: 50 }),
            ],
            1,
        );
        let decision = injector.decide(Vendor::ThingSpace, "POST", "/api/fota/v2/files/a");
        assert_eq!(decision.delay, Duration::from_millis(150));
        assert_eq!(decision.action, None);

        let fired = |seed| {
            let injector = FaultInjector::new(
                vec![FaultRule {
                    rate: Some(0.3),
                    ..rule(FaultAction::Throttle {
                        retry_after_secs: 1,
                    })
                }],
                seed,
            );
            (0..1000)
                .map(|_| {
                    injector
                        .decide(Vendor::ThingSpace, "POST", "/api/fota/v2/files/a")
                        .action
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        let first = fired(9);
        assert_eq!(first, fired(9));
        let count = first.iter().filter(|f| **f).count();
        assert!((200..400).contains(&count), "{count} of 1000 fired");
    }

    #[test]
    fn vendor_is_chosen_by_path_prefix() {
        assert_eq!(
            vendor_for(Listener::Main, "/api/ts/v1/oauth2/token"),
            Some(Vendor::ThingSpace)
        );
        assert_eq!(
            vendor_for(Listener::Main, "/v5/iot/p/batchtasks"),
            Some(Vendor::Iotda)
        );
        assert_eq!(
            vendor_for(Listener::Main, "/v3/auth/tokens"),
            Some(Vendor::Iotda)
        );
        assert_eq!(
            vendor_for(Listener::Main, "/v1/devices"),
            Some(Vendor::Iotaap)
        );
        assert_eq!(vendor_for(Listener::Main, "/_sim/state"), None);
        assert_eq!(vendor_for(Listener::Obs, "/_sim/state"), Some(Vendor::Obs));
    }
}
