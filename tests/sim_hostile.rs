//! Hostile input: the simulator answers malformed, oversized or mistyped requests with a
//! clear error status in the vendor's shape, never panics and never hangs.

use std::time::Duration;

use jiff::SignedDuration;
use otaplane::sim::{self, SimConfig, SimHandle};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACC: &str = "0000123456-00001";
const LIMIT: u64 = 1024 * 1024;

struct Hostile {
    sim: SimHandle,
    http: Client,
    token: String,
    session: String,
    jwt: String,
}

async fn start() -> Hostile {
    let mut config =
        SimConfig::from_yaml("time_scale: 0\nstart_time: 2024-06-01T10:00:00Z\n").unwrap();
    config.max_upload_bytes = LIMIT;
    let sim = sim::start(config).await.unwrap();
    let http = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let token: Value = http
        .post(format!("{}/ts/v1/oauth2/token", sim.thingspace_url()))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let session: Value = http
        .post(format!("{}/m2m/v1/session/login", sim.thingspace_url()))
        .bearer_auth(&token)
        .json(&json!({"username": "demo-user", "password": "demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["sessionToken"].as_str().unwrap().to_owned();
    let login: Value = http
        .post(format!("{}/auth/login", sim.iotaap_url()))
        .json(&json!({"email": "demo@iotaap.local", "password": "demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = login["token"].as_str().unwrap().to_owned();
    Hostile {
        sim,
        http,
        token,
        session,
        jwt,
    }
}

impl Hostile {
    fn upload_url(&self) -> String {
        format!("{}/fota/v2/files/{ACC}", self.sim.thingspace_url())
    }

    fn ts_post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .bearer_auth(&self.token)
            .header("VZ-M2M-Token", &self.session)
    }
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn malformed_multipart_gets_a_vendor_shaped_400() {
    let h = start().await;
    let garbage = "--XYZ\r\nContent-Disposition: form-data; name=\"make\"\r\n\r\nAcme\r\n--XYZ\r\nthis is not a header\r\n";
    let (status, body) = json_of(
        h.ts_post(&h.upload_url())
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body(garbage)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorCode"], "INVALID_PARAMETER");

    let response = h
        .http
        .post(format!("{}/ota/device", h.sim.iotaap_url()))
        .bearer_auth(&h.jwt)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(garbage)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn truncated_multipart_and_overlong_fields_are_rejected() {
    let h = start().await;
    let truncated = "--XYZ\r\nContent-Disposition: form-data; name=\"fileupload\"; filename=\"a.bin\"\r\n\r\nhalf of a file";
    let (status, body) = json_of(
        h.ts_post(&h.upload_url())
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body(truncated)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorCode"], "INVALID_PARAMETER");

    let form = reqwest::multipart::Form::new().text("make", "A".repeat(100_000));
    let (status, body) = json_of(
        h.ts_post(&h.upload_url())
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn wrong_content_types_get_415_in_the_vendor_shape() {
    let h = start().await;
    let (status, body) = json_of(
        h.ts_post(&h.upload_url())
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["errorCode"], "INVALID_PARAMETER");

    let (status, body) = json_of(
        h.ts_post(&format!(
            "{}/fota/v2/campaigns/files/{ACC}",
            h.sim.thingspace_url()
        ))
        .header("content-type", "text/plain")
        .body("fileName=x")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["errorMessage"], "Input binding error");

    let (status, body) = json_of(
        h.ts_post(&format!(
            "{}/fota/v2/campaigns/files/{ACC}",
            h.sim.thingspace_url()
        ))
        .header("content-type", "application/json")
        .body("{\"deviceList\": [1, 2")
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorMessage"], "Input binding error");

    let response = h
        .http
        .post(format!("{}/auth/login", h.sim.iotaap_url()))
        .header("content-type", "text/xml")
        .body("<login/>")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["message"].is_string());

    let response = h
        .http
        .post(format!("{}/ts/v1/oauth2/token", h.sim.thingspace_url()))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .header("content-type", "application/json")
        .body("{\"grant_type\":\"client_credentials\"}")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_without_hanging() {
    let h = start().await;
    let form = reqwest::multipart::Form::new()
        .text("fileVersion", "1")
        .text("make", "Acme")
        .text("model", "X1")
        .part(
            "fileupload",
            reqwest::multipart::Part::bytes(vec![0u8; 3 * LIMIT as usize]).file_name("big.bin"),
        );
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        h.ts_post(&h.upload_url()).multipart(form).send(),
    )
    .await
    .expect("no hang");
    match outcome {
        Ok(response) => {
            let (status, body) = json_of(response).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
            assert_eq!(body["errorCode"], "INVALID_PARAMETER");
        }
        Err(e) => panic!("expected a 413 response, got {e}"),
    }
    let state: Value = h
        .http
        .get(format!("{}/state", h.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["thingspace"]["files"], json!([]), "nothing stored");
}

#[tokio::test]
async fn huge_headers_and_garbage_requests_get_http_errors() {
    let h = start().await;
    let response = h
        .http
        .get(format!("{}/devices", h.sim.iotaap_url()))
        .header("x-huge", "a".repeat(512 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }

    let mut request = h.http.get(format!("{}/devices", h.sim.iotaap_url()));
    for i in 0..200 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    let mut stream = tokio::net::TcpStream::connect(h.sim.main_addr)
        .await
        .unwrap();
    stream
        .write_all(b"GARBAGE \x01\x02 NOT-HTTP\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("no hang")
        .ok();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );

    let response = h
        .http
        .get(format!("{}/devices", h.sim.iotaap_url()))
        .bearer_auth(&h.jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the server is still healthy"
    );
}

#[tokio::test]
async fn injected_reset_breaks_the_connection_mid_body() {
    let h = start().await;
    let rules: Value = h
        .http
        .post(format!("{}/faults", h.sim.admin_url()))
        .json(&json!({"add": [{"vendor": "thingspace", "method": "POST", "path": "/api/fota/v2/files/*", "count": 1,
                                "action": {"reset": {"after_bytes": 65536}}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules["faults"].as_array().unwrap().len(), 1);
    let upload = || {
        let form = reqwest::multipart::Form::new()
            .text("fileVersion", "1")
            .text("make", "Acme")
            .text("model", "X1")
            .part(
                "fileupload",
                reqwest::multipart::Part::bytes(vec![7u8; 512 * 1024]).file_name("fw.bin"),
            );
        h.ts_post(&h.upload_url()).multipart(form).send()
    };
    let first = tokio::time::timeout(Duration::from_secs(20), upload())
        .await
        .expect("no hang");
    match first {
        Err(_) => {}
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await;
            assert!(
                body.is_err(),
                "expected a broken response, got {status} with a complete body"
            );
        }
    }
    let second = upload().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK, "the rule fired once");
    let resets = h
        .sim
        .state
        .calls
        .snapshot()
        .into_iter()
        .filter(|c| c.status == 0 && c.route == "/api/fota/v2/files/{acc}")
        .count();
    assert_eq!(resets, 1);
}

#[tokio::test]
async fn injected_latency_delays_and_errors_use_vendor_shapes() {
    let h = start().await;
    h.http
        .post(format!("{}/faults", h.sim.admin_url()))
        .json(&json!({"add": [
            {"vendor": "iotaap", "path": "/v1/devices", "count": 1, "action": {"latency": {"ms": 300}}},
            {"vendor": "iotaap", "path": "/v1/devices", "after": 1, "count": 1, "action": {"error": {"status": 500}}},
            {"vendor": "iotda", "count": 1, "action": "flow_control"}
        ]}))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let response = h
        .http
        .get(format!("{}/devices", h.sim.iotaap_url()))
        .bearer_auth(&h.jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (status, body) = json_of(
        h.http
            .get(format!("{}/devices", h.sim.iotaap_url()))
            .bearer_auth(&h.jwt)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["message"].is_string());

    h.sim.state.clock.advance(SignedDuration::from_secs(1));
    let faults: Value = h
        .http
        .get(format!("{}/faults", h.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        faults["faults"].as_array().unwrap().len(),
        1,
        "spent rules are gone"
    );
    let cleared: Value = h
        .http
        .delete(format!("{}/faults", h.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["faults"], json!([]));
}

#[tokio::test]
async fn unknown_routes_answer_in_the_owning_vendors_style() {
    let h = start().await;
    let (status, body) = json_of(
        h.http
            .get(format!("{}/api/nowhere", h.sim.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["fault"]["code"], 900906);
    let (status, body) = json_of(
        h.http
            .get(format!("{}/v5/iot/nowhere/at/all", h.sim.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error_code"], "APIGW.0101");
    let response = h
        .http
        .get(format!("{}/", h.sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.text().await.unwrap().contains("Cannot GET /"));
}
