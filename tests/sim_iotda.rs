//! End-to-end tests of the IoTDA simulator over loopback HTTP, with requests signed by
//! `otaplane::signing` (and OBS uploads signed the same way).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use otaplane::signing::huawei::{HuaweiCredentials, HuaweiSigner, IOTDA_DERIVED_SERVICE, Payload};
use otaplane::signing::obs::{Addressing, ObsScheme, ObsSigner};
use otaplane::signing::sha256_hex;
use otaplane::sim::fleet::DeviceKey;
use otaplane::sim::{self, SimConfig, SimHandle, Vendor};
use reqwest::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const PID: &str = "0123456789abcdef0123456789abcdef";
const AK: &str = "HPUAEXAMPLEAK0000001";
const SK: &str = "ExampleSecretKey0000000000000000000000000";
const INSTANCE_HOST: &str = "abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com";

fn config() -> SimConfig {
    SimConfig::from_yaml(
        r#"
time_scale: 0
fleet:
  timing: {queue_secs: 10, download_secs: 20, install_secs: 10, jitter: 0}
  rules:
    - device: "bad*"
      behaviour: {fails: {code: "7"}}
    - device: "off*"
      behaviour: offline
    - device: "slow*"
      behaviour: {slow: {factor: 100}}
    - device: "deny*"
      behaviour: {rejects: {}}
"#,
    )
    .unwrap()
}

struct Iotda {
    sim: SimHandle,
    http: Client,
    signer: HuaweiSigner,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or_default()
    }
}

impl Iotda {
    async fn start(config: SimConfig) -> Self {
        let sim = sim::start(config).await.unwrap();
        let http = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            sim,
            http,
            signer: HuaweiSigner::standard(HuaweiCredentials::new(AK, SK)),
        }
    }

    fn advance(&self, secs: i64) {
        self.sim
            .state
            .clock
            .advance(SignedDuration::from_secs(secs));
    }

    /// A signed call to `P{path}` (`P` = `/v5/iot/{project_id}`).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(
            &self.signer,
            method,
            &format!("/v5/iot/{PID}{path}"),
            body,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await
    }

    async fn call_with(
        &self,
        signer: &HuaweiSigner,
        method: Method,
        path: &str,
        body: Option<Value>,
        mut headers: HeaderMap,
        signed_at: Timestamp,
    ) -> Reply {
        let url = format!("{}{path}", self.sim.iotda_url());
        let uri: http::Uri = url.parse().unwrap();
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signed = signer
            .sign(&method, &uri, &headers, Payload::Bytes(&bytes), signed_at)
            .unwrap();
        for (name, value) in signed.into_header_pairs().unwrap() {
            headers.insert(name, value);
        }
        self.send(method, &url, headers, bytes).await
    }

    async fn send(&self, method: Method, url: &str, headers: HeaderMap, body: Vec<u8>) -> Reply {
        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Uploads `content` to OBS with an AWS V2 signature (path-style).
    async fn upload(&self, bucket: &str, key: &str, content: &[u8]) {
        let url = format!("{}/{bucket}/{key}", self.sim.obs_url);
        let uri: http::Uri = url.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let signer = ObsSigner::new(HuaweiCredentials::new(AK, SK), ObsScheme::AwsV2);
        for (name, value) in signer
            .sign(
                &Method::PUT,
                &uri,
                &headers,
                Addressing::PathStyle,
                Timestamp::now(),
            )
            .unwrap()
        {
            headers.insert(name, value);
        }
        let response = self
            .http
            .put(&url)
            .headers(headers)
            .body(content.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
    }

    async fn create_package(&self, version: &str, key: &str, content: &[u8]) -> Value {
        self.upload("fw-bucket", key, content).await;
        let reply = self
            .call(
                Method::POST,
                "/ota-upgrades/packages",
                Some(json!({
                    "app_id": "app1", "package_type": "firmwarePackage", "product_id": "prod1",
                    "version": version,
                    "file_location": {"obs_location": {"region_name": "cn-north-4", "bucket_name": "fw-bucket",
                        "object_key": key, "sign": sha256_hex(content)}}
                })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    async fn create_task(
        &self,
        name: &str,
        package_id: &str,
        targets: &[&str],
        extra: Value,
    ) -> Reply {
        let mut body = json!({
            "task_name": name, "task_type": "firmwareUpgrade", "targets": targets,
            "document": {"package_ids": [package_id]},
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        self.call(Method::POST, "/batchtasks", Some(body)).await
    }

    async fn show(&self, task_id: &str, query: &str) -> Value {
        let reply = self
            .call(Method::GET, &format!("/batchtasks/{task_id}{query}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    fn version(&self, device: &str) -> String {
        let now = self.sim.state.now();
        self.sim
            .state
            .fleet
            .version_at(&DeviceKey::new(Vendor::Iotda, PID, device), now)
    }
}

fn progress(show: &Value) -> (String, Value) {
    let task = &show["batchtask"];
    let progress = task["task_progress"].clone();
    let sum: u64 = [
        "processing",
        "success",
        "fail",
        "waitting",
        "fail_wait_retry",
        "stopped",
        "removed",
    ]
    .iter()
    .map(|k| progress[k].as_u64().unwrap())
    .sum();
    assert_eq!(
        sum,
        progress["total"].as_u64().unwrap(),
        "counters add up: {progress}"
    );
    (task["status"].as_str().unwrap().to_owned(), progress)
}

#[tokio::test]
async fn package_and_task_lifecycle_with_mixed_devices() {
    let iotda = Iotda::start(config()).await;
    let firmware = b"firmware 2.0.0 image".as_slice();
    let package = iotda
        .create_package("2.0.0", "fw/2.0.0.bin", firmware)
        .await;
    let package_id = package["package_id"].as_str().unwrap().to_owned();
    assert_eq!(package_id.len(), 24);
    assert_eq!(
        package["file_location"]["obs_location"]["sign"],
        sha256_hex(firmware)
    );

    let listed = iotda
        .call(
            Method::GET,
            "/ota-upgrades/packages?package_type=firmwarePackage",
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["page"]["count"], 1);
    assert_eq!(listed.body["packages"][0]["package_id"], package_id);
    assert!(
        listed.body["packages"][0].get("file_location").is_none(),
        "list items carry no file_location"
    );
    let shown = iotda
        .call(
            Method::GET,
            &format!("/ota-upgrades/packages/{package_id}"),
            None,
        )
        .await;
    assert_eq!(
        shown.body["file_location"]["obs_location"]["object_key"],
        "fw/2.0.0.bin"
    );
    assert!(shown.headers.contains_key("x-request-id"));

    let created = iotda
        .create_task(
            "fw_2_0_0_rollout",
            &package_id,
            &["ok-1", "ok-2", "bad-1", "off-1"],
            json!({"task_policy": {"retry_count": 1, "retry_interval": 1}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status"], "Initializing");
    assert_eq!(created.body["task_progress"]["total"], 4);
    assert_eq!(created.body["task_progress"]["waitting"], 4);
    let task_id = created.body["task_id"].as_str().unwrap().to_owned();

    iotda.advance(5);
    let (status, counts) = progress(&iotda.show(&task_id, "").await);
    assert_eq!(status, "Waitting");
    assert_eq!(counts["waitting"], 4);
    iotda.advance(15);
    let (status, counts) = progress(&iotda.show(&task_id, "").await);
    assert_eq!(status, "Processing");
    assert_eq!(counts["processing"], 3, "the offline device stays Waitting");

    iotda.advance(30);
    let show = iotda.show(&task_id, "").await;
    let (status, counts) = progress(&show);
    assert_eq!(status, "Processing");
    assert_eq!(
        (
            counts["success"].as_u64(),
            counts["fail_wait_retry"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        iotda.version("ok-1"),
        "2.0.0",
        "a successful device runs the package version"
    );
    assert_eq!(iotda.version("bad-1"), "1.0.0");

    iotda.advance(52 * 3600);
    let show = iotda.show(&task_id, "").await;
    let (status, counts) = progress(&show);
    assert_eq!(status, "PartialSuccess");
    assert_eq!(
        (counts["success"].as_u64(), counts["fail"].as_u64()),
        (Some(2), Some(2))
    );

    let failed = iotda.show(&task_id, "?task_detail_status=Fail").await;
    assert_eq!(failed["page"]["count"], 2);
    let details = failed["task_details"].as_array().unwrap();
    let bad = details.iter().find(|d| d["target"] == "bad-1").unwrap();
    assert_eq!(bad["error"]["error_code"], "7");
    assert_eq!(bad["error"]["error_msg"], "package verification failed");
    let offline = details.iter().find(|d| d["target"] == "off-1").unwrap();
    assert_eq!(
        offline["error"]["error_msg"],
        "Waiting for the device online timeout"
    );
    let one = iotda.show(&task_id, "?target=ok-2").await;
    assert_eq!(one["task_details"].as_array().unwrap().len(), 1);
    assert_eq!(one["task_details"][0]["status"], "Success");

    let listed = iotda
        .call(Method::GET, "/batchtasks?task_type=firmwareUpgrade", None)
        .await;
    assert_eq!(listed.body["batchtasks"][0]["task_id"], task_id);
    assert_eq!(listed.body["batchtasks"][0]["status"], "PartialSuccess");
    let filtered = iotda
        .call(
            Method::GET,
            "/batchtasks?task_type=firmwareUpgrade&status=Processing",
            None,
        )
        .await;
    assert_eq!(filtered.body["page"]["count"], 0);

    let retried = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{task_id}/retry"),
            Some(json!({"targets": ["ok-1", "bad-1"]})),
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    let results = retried.body["targets"].as_array().unwrap();
    assert_eq!(
        results[0]["status"], "failure",
        "a successful sub-task cannot be retried"
    );
    assert_eq!(results[0]["error_code"], "IOTDA.014219");
    assert_eq!(results[1]["status"], "success");
    let (status, _) = progress(&iotda.show(&task_id, "").await);
    assert_eq!(status, "Processing");
    iotda.advance(300);
    let (status, counts) = progress(&iotda.show(&task_id, "").await);
    assert_eq!(status, "PartialSuccess");
    assert_eq!(counts["fail"], 2);

    let deleted = iotda
        .call(Method::DELETE, &format!("/batchtasks/{task_id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = iotda
        .call(Method::GET, &format!("/batchtasks/{task_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.code().starts_with("IOTDA."));

    let deleted = iotda
        .call(
            Method::DELETE,
            &format!("/ota-upgrades/packages/{package_id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(
        iotda
            .sim
            .state
            .obs
            .object("fw-bucket", "fw/2.0.0.bin")
            .is_some(),
        "the OBS object stays"
    );
    let gone = iotda
        .call(
            Method::DELETE,
            &format!("/ota-upgrades/packages/{package_id}"),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stop_confirm_and_state_rules() {
    let iotda = Iotda::start(config()).await;
    let package = iotda
        .create_package("3.0.0", "fw/3.0.0.bin", b"three")
        .await;
    let package_id = package["package_id"].as_str().unwrap();

    let slow = iotda
        .create_task("slow_rollout", package_id, &["slow-1", "slow-2"], json!({}))
        .await;
    let slow_id = slow.body["task_id"].as_str().unwrap().to_owned();
    let early_retry = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{slow_id}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        early_retry.status,
        StatusCode::BAD_REQUEST,
        "retry is refused while Initializing"
    );
    let busy_delete = iotda
        .call(Method::DELETE, &format!("/batchtasks/{slow_id}"), None)
        .await;
    assert_eq!(
        busy_delete.status,
        StatusCode::BAD_REQUEST,
        "a running task cannot be deleted"
    );

    iotda.advance(60);
    let (status, _) = progress(&iotda.show(&slow_id, "").await);
    assert_eq!(status, "Waitting");
    iotda.advance(1000);
    let (status, counts) = progress(&iotda.show(&slow_id, "").await);
    assert_eq!(
        (status.as_str(), counts["processing"].as_u64()),
        ("Processing", Some(2))
    );

    let stopped = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{slow_id}/stop"),
            Some(json!({})),
        )
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.body);
    assert_eq!(stopped.body["targets"].as_array().unwrap().len(), 2);
    let (status, counts) = progress(&iotda.show(&slow_id, "").await);
    assert_eq!(
        (status.as_str(), counts["stopped"].as_u64()),
        ("Stopping", Some(2))
    );
    let again = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{slow_id}/stop"),
            Some(json!({})),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    iotda.advance(5);
    let (status, _) = progress(&iotda.show(&slow_id, "").await);
    assert_eq!(status, "Stopped");
    iotda.advance(100_000);
    assert_eq!(
        iotda.version("slow-1"),
        "1.0.0",
        "a stopped upgrade never completes"
    );
    let retry = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{slow_id}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        retry.status,
        StatusCode::BAD_REQUEST,
        "a Stopped task cannot be retried"
    );
    let deleted = iotda
        .call(Method::DELETE, &format!("/batchtasks/{slow_id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let confirm = iotda
        .create_task(
            "confirm_rollout",
            package_id,
            &["c-1", "c-2"],
            json!({"need_confirm": true}),
        )
        .await;
    assert_eq!(confirm.status, StatusCode::CREATED);
    let confirm_id = confirm.body["task_id"].as_str().unwrap().to_owned();
    iotda.advance(3600);
    let (status, counts) = progress(&iotda.show(&confirm_id, "").await);
    assert_eq!(
        (status.as_str(), counts["waitting"].as_u64()),
        ("Waitting", Some(2))
    );
    let confirmed = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{confirm_id}/confirm"),
            Some(json!({"targets": ["c-1", "nobody"]})),
        )
        .await;
    assert_eq!(confirmed.body["targets"][0]["status"], "success");
    assert_eq!(confirmed.body["targets"][1]["status"], "failure");
    iotda.advance(60);
    let show = iotda.show(&confirm_id, "?task_detail_status=Success").await;
    assert_eq!(show["task_details"][0]["target"], "c-1");
    let (status, _) = progress(&show);
    assert_eq!(status, "Processing", "c-2 still waits for confirmation");
    let all = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{confirm_id}/confirm"),
            None,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    iotda.advance(60);
    let (status, _) = progress(&iotda.show(&confirm_id, "").await);
    assert_eq!(status, "Success");

    let plain = iotda
        .create_task("plain", package_id, &["p-1"], json!({}))
        .await;
    let plain_id = plain.body["task_id"].as_str().unwrap();
    let refused = iotda
        .call(
            Method::POST,
            &format!("/batchtasks/{plain_id}/confirm"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "confirm needs need_confirm=true"
    );

    let scheduled_at = iotda.sim.state.now() + SignedDuration::from_hours(2);
    let scheduled = iotda
        .create_task(
            "scheduled",
            package_id,
            &["s-1"],
            json!({"task_policy": {"schedule_time": scheduled_at.strftime("%Y%m%dT%H%M%SZ").to_string()}}),
        )
        .await;
    let scheduled_id = scheduled.body["task_id"].as_str().unwrap();
    iotda.advance(3600);
    let (status, _) = progress(&iotda.show(scheduled_id, "").await);
    assert_eq!(status, "Waitting", "nothing runs before schedule_time");
    iotda.advance(3700);
    let (status, _) = progress(&iotda.show(scheduled_id, "").await);
    assert_eq!(status, "Success");
}

#[tokio::test]
async fn old_document_form_rejecting_devices_and_validation_errors() {
    let iotda = Iotda::start(config()).await;
    let package = iotda.create_package("4.0.0", "fw/4.0.0.bin", b"four").await;
    let package_id = package["package_id"].as_str().unwrap();

    let old_form = iotda
        .call(
            Method::POST,
            "/batchtasks",
            Some(json!({"task_name": "old_form", "task_type": "firmwareUpgrade", "targets": ["deny-1"],
                "document": {"package_id": package_id}})),
        )
        .await;
    assert_eq!(old_form.status, StatusCode::CREATED, "{}", old_form.body);
    iotda.advance(10);
    let (status, _) = progress(
        &iotda
            .show(old_form.body["task_id"].as_str().unwrap(), "")
            .await,
    );
    assert_eq!(status, "Fail", "a rejecting device fails the task");

    let dash = iotda
        .create_task("fw-2", package_id, &["d-1"], json!({}))
        .await;
    assert_eq!(
        (dash.status, dash.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let no_type = iotda
        .call(Method::GET, "/ota-upgrades/packages", None)
        .await;
    assert_eq!(
        (no_type.status, no_type.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let no_task_type = iotda.call(Method::GET, "/batchtasks", None).await;
    assert_eq!(no_task_type.status, StatusCode::BAD_REQUEST);
    let big_limit = iotda
        .call(
            Method::GET,
            "/ota-upgrades/packages?package_type=firmwarePackage&limit=51",
            None,
        )
        .await;
    assert_eq!(
        (big_limit.status, big_limit.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000017")
    );
    let half_policy = iotda
        .create_task(
            "half_policy",
            package_id,
            &["d-1"],
            json!({"task_policy": {"retry_count": 2}}),
        )
        .await;
    assert_eq!(half_policy.status, StatusCode::BAD_REQUEST);
    let too_many: Vec<String> = (0..30_001).map(|i| format!("d{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let huge = iotda
        .create_task("huge", package_id, &too_many, json!({}))
        .await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST);
    let unknown_package = iotda
        .create_task("nopkg", "ffffffffffffffffffffff00", &["d-1"], json!({}))
        .await;
    assert_eq!(unknown_package.status, StatusCode::BAD_REQUEST);
    let not_json = iotda
        .send(
            Method::POST,
            &format!("{}/v5/iot/{PID}/batchtasks", iotda.sim.iotda_url()),
            HeaderMap::new(),
            b"{".to_vec(),
        )
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::UNAUTHORIZED,
        "unsigned requests are refused first"
    );

    iotda.upload("fw-bucket", "fw/5.0.0.bin", b"five").await;
    let package_body = |sign: &str, key: &str| {
        json!({"app_id": "app1", "package_type": "firmwarePackage", "product_id": "prod1", "version": "5.0.0",
            "file_location": {"obs_location": {"region_name": "cn-north-4", "bucket_name": "fw-bucket",
                "object_key": key, "sign": sign}}})
    };
    let mismatch = iotda
        .call(
            Method::POST,
            "/ota-upgrades/packages",
            Some(package_body(&"0".repeat(64), "fw/5.0.0.bin")),
        )
        .await;
    assert_eq!(
        (mismatch.status, mismatch.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let missing = iotda
        .call(
            Method::POST,
            "/ota-upgrades/packages",
            Some(package_body(&sha256_hex(b"five"), "fw/none.bin")),
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::BAD_REQUEST,
        "the OBS object must exist"
    );
    let ok = iotda
        .call(
            Method::POST,
            "/ota-upgrades/packages",
            Some(package_body(&sha256_hex(b"five"), "fw/5.0.0.bin")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let duplicate = iotda
        .call(
            Method::POST,
            "/ota-upgrades/packages",
            Some(package_body(&sha256_hex(b"five"), "fw/5.0.0.bin")),
        )
        .await;
    assert_eq!(
        duplicate.status,
        StatusCode::BAD_REQUEST,
        "same product and version twice"
    );
    let unknown = iotda
        .call(
            Method::GET,
            "/ota-upgrades/packages/ffffffffffffffffffffff00",
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let url = format!("{}/v5/iot/{PID}/batchtasks", iotda.sim.iotda_url());
    let uri: http::Uri = url.parse().unwrap();
    let signed_send = |content_type: &'static str, body: Vec<u8>| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let signed = iotda
            .signer
            .sign(
                &Method::POST,
                &uri,
                &headers,
                Payload::Bytes(&body),
                Timestamp::now(),
            )
            .unwrap();
        for (name, value) in signed.into_header_pairs().unwrap() {
            headers.insert(name, value);
        }
        iotda.send(Method::POST, &url, headers, body)
    };
    let text = signed_send("text/plain", b"task_name=x".to_vec()).await;
    assert_eq!(
        (text.status, text.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000008")
    );
    let broken = signed_send("application/json", b"{\"task_name\": ".to_vec()).await;
    assert_eq!(
        (broken.status, broken.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000008")
    );
    let oversized = signed_send("application/json", vec![b' '; 13 * 1024 * 1024]).await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn signatures_skew_algorithms_and_iam_tokens() {
    let iotda = Iotda::start(config()).await;
    let list = "/ota-upgrades/packages?package_type=firmwarePackage";
    let path = format!("/v5/iot/{PID}{list}");

    let wrong_secret = HuaweiSigner::standard(HuaweiCredentials::new(AK, "not-the-secret"));
    let bad = iotda
        .call_with(
            &wrong_secret,
            Method::GET,
            &path,
            None,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNAUTHORIZED, "APIGW.0301")
    );
    assert!(bad.body["request_id"].is_string());

    let old = Timestamp::now() - SignedDuration::from_mins(20);
    let skewed = iotda
        .call_with(
            &iotda.signer,
            Method::GET,
            &path,
            None,
            HeaderMap::new(),
            old,
        )
        .await;
    assert_eq!(
        (skewed.status, skewed.code()),
        (StatusCode::UNAUTHORIZED, "APIGW.0303")
    );

    let derived = HuaweiSigner::derived(
        HuaweiCredentials::new(AK, SK),
        "cn-north-4",
        IOTDA_DERIVED_SERVICE,
    );
    let v11 = iotda
        .call_with(
            &derived,
            Method::GET,
            &path,
            None,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(
        v11.status,
        StatusCode::OK,
        "V11 is accepted on 127.0.0.1: {}",
        v11.body
    );

    let mut instance = HeaderMap::new();
    instance.insert(HOST, HeaderValue::from_static(INSTANCE_HOST));
    let wrong_algorithm = iotda
        .call_with(
            &iotda.signer,
            Method::GET,
            &path,
            None,
            instance.clone(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(
        (wrong_algorithm.status, wrong_algorithm.code()),
        (StatusCode::UNAUTHORIZED, "IOTDA.000002")
    );
    let right_algorithm = iotda
        .call_with(
            &derived,
            Method::GET,
            &path,
            None,
            instance,
            Timestamp::now(),
        )
        .await;
    assert_eq!(
        right_algorithm.status,
        StatusCode::OK,
        "{}",
        right_algorithm.body
    );
    let other_service = HuaweiSigner::derived(HuaweiCredentials::new(AK, SK), "cn-north-4", "ecs");
    let wrong_scope = iotda
        .call_with(
            &other_service,
            Method::GET,
            &path,
            None,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(wrong_scope.status, StatusCode::UNAUTHORIZED);

    let tokens_url = format!("{}/v3/auth/tokens?nocatalog=true", iotda.sim.iotda_url());
    let login = |password: &str| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "demo-user", "password": password, "domain": {"name": "demo-account"}}}},
            "scope": {"project": {"name": "cn-north-4"}}}})
    };
    let mut json_headers = HeaderMap::new();
    json_headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf8"),
    );
    let refused = iotda
        .send(
            Method::POST,
            &tokens_url,
            json_headers.clone(),
            serde_json::to_vec(&login("wrong")).unwrap(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let issued = iotda
        .send(
            Method::POST,
            &tokens_url,
            json_headers,
            serde_json::to_vec(&login("demo-password")).unwrap(),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    assert_eq!(issued.body["token"]["project"]["id"], PID);
    let token = issued.headers["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(token.len() > 1000, "IAM tokens are long opaque strings");

    let mut with_token = HeaderMap::new();
    with_token.insert("x-auth-token", HeaderValue::from_str(&token).unwrap());
    let url = format!("{}{path}", iotda.sim.iotda_url());
    let listed = iotda
        .send(Method::GET, &url, with_token.clone(), Vec::new())
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let expired = iotda
        .http
        .post(format!(
            "{}/expire-tokens?vendor=iotda",
            iotda.sim.admin_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::OK);
    let stale = iotda.send(Method::GET, &url, with_token, Vec::new()).await;
    assert_eq!(
        (stale.status, stale.code()),
        (StatusCode::UNAUTHORIZED, "APIGW.0301")
    );

    let other_project = iotda
        .call_with(
            &iotda.signer,
            Method::GET,
            "/v5/iot/ffffffffffffffffffffffffffffffff/batchtasks?task_type=firmwareUpgrade",
            None,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(other_project.status, StatusCode::FORBIDDEN);

    let projects = iotda
        .call_with(
            &iotda.signer,
            Method::GET,
            "/v3/projects?name=cn-north-4",
            None,
            HeaderMap::new(),
            Timestamp::now(),
        )
        .await;
    assert_eq!(projects.status, StatusCode::OK, "{}", projects.body);
    assert_eq!(
        projects.body["projects"][0]["id"], PID,
        "the SDKs' project lookup finds the project"
    );
}

#[tokio::test]
async fn ten_thousand_device_task_pages_through_details() {
    let iotda = Iotda::start(config()).await;
    let package = iotda.create_package("9.0.0", "fw/9.0.0.bin", b"nine").await;
    let package_id = package["package_id"].as_str().unwrap();
    let devices: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 10 == 0 {
                format!("bad-{i:05}")
            } else {
                format!("dev-{i:05}")
            }
        })
        .collect();
    let targets: Vec<&str> = devices.iter().map(String::as_str).collect();
    let created = iotda
        .create_task("fleet_wide", package_id, &targets, json!({}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let task_id = created.body["task_id"].as_str().unwrap().to_owned();

    iotda.advance(100);
    let first = iotda.show(&task_id, "?limit=50").await;
    let (status, counts) = progress(&first);
    assert_eq!(status, "PartialSuccess");
    assert_eq!(
        (counts["success"].as_u64(), counts["fail"].as_u64()),
        (Some(9_000), Some(1_000))
    );
    assert_eq!(first["page"]["count"], 10_000);
    let details = first["task_details"].as_array().unwrap();
    assert_eq!(details.len(), 50);
    assert_eq!(
        details[0]["target"], "bad-00000",
        "details follow the target order"
    );
    let marker = first["page"]["marker"].as_str().unwrap();
    let second = iotda
        .show(&task_id, &format!("?limit=50&marker={marker}"))
        .await;
    assert_eq!(second["task_details"][0]["target"], "bad-00050");
    let skipped = iotda
        .show(&task_id, &format!("?limit=1&marker={marker}&offset=2"))
        .await;
    assert_eq!(skipped["task_details"][0]["target"], "dev-00052");
    let failures = iotda
        .show(&task_id, "?task_detail_status=Fail&limit=50")
        .await;
    assert_eq!(failures["page"]["count"], 1_000);
    assert_eq!(iotda.version("dev-09999"), "9.0.0");
}

#[tokio::test]
async fn admin_state_exposes_packages_tasks_objects_and_call_counts() {
    let iotda = Iotda::start(config()).await;
    let package = iotda.create_package("6.0.0", "fw/6.0.0.bin", b"six").await;
    let package_id = package["package_id"].as_str().unwrap();
    let task = iotda
        .create_task("admin_view", package_id, &["a-1", "bad-2"], json!({}))
        .await;
    iotda.advance(100);

    let state: Value = iotda
        .http
        .get(format!("{}/state", iotda.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = &state["iotda"]["projects"][0];
    assert_eq!(project["project_id"], PID);
    assert_eq!(project["packages"][0]["package_id"], package_id);
    let admin_task = &project["tasks"][0];
    assert_eq!(admin_task["task_id"], task.body["task_id"]);
    assert_eq!(admin_task["status"], "PartialSuccess");
    assert_eq!(admin_task["task_progress"]["success"], 1);
    let objects = state["obs"]["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o["key"] == "fw/6.0.0.bin" && o["sha256"] == sha256_hex(b"six"))
    );

    let creates = iotda.sim.state.calls.total(
        Some(Vendor::Iotda),
        Some("POST"),
        Some("/v5/iot/{project_id}/batchtasks"),
    );
    assert_eq!(creates, 1, "each vendor call is counted once by route");
}
