//! The shared vendor HTTP policy against a real server on loopback: what is retried, what is
//! not, how long it waits, and that secrets never leak into errors.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing,
};
use otaplane::vendor::{
    CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, Secret, VendorError, VendorHttp,
};

/// A JSON dialect in IoTDA's shape: `{"error_code","error_msg"}`, 403 IOTDA.021101 = slow down.
struct TestDialect;

impl ErrorDialect for TestDialect {
    fn vendor(&self) -> &'static str {
        "TestVendor"
    }

    fn parse(&self, _status: u16, body: &[u8]) -> (Option<String>, String) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        (
            json["error_code"].as_str().map(str::to_string),
            json["error_msg"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn is_flow_control(&self, status: u16, code: Option<&str>) -> bool {
        status == 403 && code == Some("IOTDA.021101")
    }
}

#[derive(Default)]
struct Recorder {
    statuses: Mutex<Vec<Option<u16>>>,
    delays: Mutex<Vec<Duration>>,
}

impl CallObserver for Recorder {
    fn on_attempt(&self, _: &'static str, _: &'static str, status: Option<u16>) {
        self.statuses.lock().unwrap().push(status);
    }

    fn on_retry(&self, _: &'static str, _: &'static str, delay: Duration) {
        self.delays.lock().unwrap().push(delay);
    }
}

/// Serves `/flaky`: the given failures in order, then 200.
async fn server(failures: Vec<(u16, Option<&'static str>, &'static str)>) -> String {
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(failures);
    let app = Router::new().route(
        "/flaky",
        routing::get(move || {
            let calls = calls.clone();
            let failures = failures.clone();
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                match failures.get(call) {
                    Some((status, retry_after, body)) => {
                        let mut headers = HeaderMap::new();
                        if let Some(wait) = retry_after {
                            headers.insert("retry-after", wait.parse().unwrap());
                        }
                        (StatusCode::from_u16(*status).unwrap(), headers, *body).into_response()
                    }
                    None => (StatusCode::OK, "done").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/flaky", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_attempts: 4,
        ..HttpPolicy::default()
    }
}

fn client(recorder: &Arc<Recorder>, rate_limit: Option<RateLimitConfig>) -> VendorHttp {
    VendorHttp::new(
        Arc::new(TestDialect),
        quick_policy(),
        rate_limit,
        vec![Secret::new("sk-very-secret")],
    )
    .unwrap()
    .with_observer(recorder.clone())
}

async fn fetch(http: &VendorHttp, url: &str) -> Result<String, VendorError> {
    let response = http.send("get_thing", |client| Ok(client.get(url))).await?;
    Ok(response.text().await.unwrap())
}

#[tokio::test]
async fn server_errors_are_retried_until_the_vendor_recovers() {
    let url = server(vec![(503, None, "{}"), (500, None, "{}")]).await;
    let recorder = Arc::new(Recorder::default());
    let body = fetch(&client(&recorder, None), &url).await.unwrap();
    assert_eq!(body, "done");
    assert_eq!(
        *recorder.statuses.lock().unwrap(),
        [Some(503), Some(500), Some(200)]
    );
}

#[tokio::test]
async fn a_client_error_is_returned_at_once_with_the_vendors_code() {
    let url = server(vec![(
        400,
        None,
        r#"{"error_code":"IOTDA.000006","error_msg":"Invalid input data."}"#,
    )])
    .await;
    let recorder = Arc::new(Recorder::default());
    let err = fetch(&client(&recorder, None), &url).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "TestVendor get_thing: HTTP 400 IOTDA.000006: Invalid input data."
    );
    assert_eq!(
        recorder.statuses.lock().unwrap().len(),
        1,
        "4xx is not retried"
    );
}

#[tokio::test]
async fn throttling_waits_as_long_as_retry_after_says() {
    let url = server(vec![(429, Some("1"), "{}")]).await;
    let recorder = Arc::new(Recorder::default());
    fetch(&client(&recorder, None), &url).await.unwrap();
    assert_eq!(*recorder.delays.lock().unwrap(), [Duration::from_secs(1)]);
}

#[tokio::test]
async fn the_vendors_flow_control_code_is_retried() {
    let url = server(vec![(
        403,
        None,
        r#"{"error_code":"IOTDA.021101","error_msg":"request rate limit"}"#,
    )])
    .await;
    let recorder = Arc::new(Recorder::default());
    fetch(&client(&recorder, None), &url).await.unwrap();
    assert_eq!(*recorder.statuses.lock().unwrap(), [Some(403), Some(200)]);
}

#[tokio::test]
async fn a_long_retry_after_ends_the_call_for_the_controller_to_requeue() {
    let url = server(vec![(429, Some("3600"), "{}")]).await;
    let recorder = Arc::new(Recorder::default());
    let err = fetch(&client(&recorder, None), &url).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(recorder.statuses.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_storm_gives_up_after_the_attempt_limit() {
    let url = server(vec![(502, None, "{}"); 10]).await;
    let recorder = Arc::new(Recorder::default());
    let err = fetch(&client(&recorder, None), &url).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        recorder.statuses.lock().unwrap().len(),
        4,
        "max_attempts bounds the calls"
    );
}

#[tokio::test]
async fn an_unreachable_vendor_is_a_retryable_network_error() {
    let recorder = Arc::new(Recorder::default());
    let err = fetch(&client(&recorder, None), "http://127.0.0.1:9/flaky")
        .await
        .unwrap_err();
    assert!(matches!(err, VendorError::Network { .. }), "{err}");
    assert_eq!(*recorder.statuses.lock().unwrap(), [None, None, None, None]);
}

#[tokio::test]
async fn echoed_secrets_are_redacted_from_vendor_messages() {
    let url = server(vec![(
        400,
        None,
        r#"{"error_code":"X","error_msg":"bad key sk-very-secret"}"#,
    )])
    .await;
    let recorder = Arc::new(Recorder::default());
    let err = fetch(&client(&recorder, None), &url).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sk-very-secret"), "{shown}");
    assert!(shown.contains("bad key <redacted>"), "{shown}");
}

#[tokio::test]
async fn the_rate_limit_spaces_calls_beyond_the_burst() {
    let url = server(vec![]).await;
    let recorder = Arc::new(Recorder::default());
    let limit = RateLimitConfig {
        per_second: 20.try_into().unwrap(),
        burst: 2.try_into().unwrap(),
    };
    let http = client(&recorder, Some(limit));
    let started = tokio::time::Instant::now();
    for _ in 0..6 {
        fetch(&http, &url).await.unwrap();
    }
    // 2 calls pass at once, the other 4 wait for a 50 ms token each. This checks the limiter is
    // engaged (a lower bound the limiter guarantees), not how fast anything runs.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}
