//! End-to-end tests of the ThingSpace simulator over loopback HTTP.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use otaplane::sim::{self, SimConfig, SimHandle};
use reqwest::{Client, StatusCode, multipart};
use serde_json::{Value, json};

const ACC: &str = "0000123456-00001";

fn config() -> SimConfig {
    let mut config = SimConfig::from_yaml(
        r#"
time_scale: 0
start_time: 2024-06-01T10:00:00Z
fleet:
  timing: {queue_secs: 60, download_secs: 60, install_secs: 60, jitter: 0.5}
  rules:
    - device: "1111*"
      behaviour: {fails: {reason: RovaClientDownloadFailed}}
    - device: "2222*"
      behaviour: {rejects: {reason: "Invalid device IMEI."}}
    - device: "3333*"
      behaviour: offline
thingspace:
  accounts:
    - {name: "0000123456-00001", client_id: cid, client_secret: csecret, username: user1, password: pass1}
    - {name: "0000999999-00001", client_id: cid2, client_secret: csecret2, username: user2, password: pass2}
"#,
    )
    .unwrap();
    config.seed = 3;
    config.thingspace.token_lifetime_secs = 100 * 86_400;
    config.thingspace.session_idle_secs = 100 * 86_400;
    config
}

/// The configuration with ThingSpace's real token and session lifetimes.
fn auth_config() -> SimConfig {
    let mut config = config();
    config.thingspace.token_lifetime_secs = 3600;
    config.thingspace.session_idle_secs = 1200;
    config
}

struct Ts {
    sim: SimHandle,
    http: Client,
    token: String,
    session: String,
}

impl Ts {
    async fn start(config: SimConfig) -> Self {
        let sim = sim::start(config).await.unwrap();
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let token = oauth(&http, &sim, "cid", "csecret").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut ts = Self {
            sim,
            http,
            token,
            session: String::new(),
        };
        let login = ts.login("user1", "pass1").await;
        assert_eq!(login.0, StatusCode::OK, "{:?}", login.1);
        ts.session = login.1["sessionToken"].as_str().unwrap().to_owned();
        ts
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.thingspace_url())
    }

    fn fota(&self, path: &str) -> String {
        self.url(&format!("/fota/v2{path}"))
    }

    fn advance(&self, secs: i64) {
        self.sim
            .state
            .clock
            .advance(SignedDuration::from_secs(secs));
    }

    async fn login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/m2m/v1/session/login"))
            .bearer_auth(&self.token)
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, self.fota(path))
            .bearer_auth(&self.token)
            .header("VZ-M2M-Token", &self.session);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn upload(&self, file_name: &str, version: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let form = multipart::Form::new()
            .text("fileVersion", version.to_owned())
            .text("make", "Acme")
            .text("model", "X1")
            .text("localTargetPath", "/VZWFOTA/app.conf")
            .part(
                "fileupload",
                multipart::Part::bytes(bytes)
                    .file_name(file_name.to_owned())
                    .mime_str("application/octet-stream")
                    .unwrap(),
            );
        let response = self
            .http
            .post(self.fota(&format!("/files/{ACC}")))
            .bearer_auth(&self.token)
            .header("VZ-M2M-Token", &self.session)
            .multipart(form)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn schedule(&self, devices: &[&str], start: &str, end: &str) -> String {
        let (status, body) = self
            .upload("/home/ci/build/app.conf", "2.0", b"config".to_vec())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/campaigns/files/{ACC}"),
                Some(json!({
                    "campaignName": "rollout",
                    "fileName": "configfile-Acme_X1_app.conf",
                    "fileVersion": "2.0",
                    "distributionType": "HTTP",
                    "startDate": start,
                    "endDate": end,
                    "deviceList": devices,
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "CampaignRequestPending");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn campaign_status(&self, id: &str) -> String {
        let (status, body) = self.get(&format!("/campaigns/{ACC}/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["status"].as_str().unwrap().to_owned()
    }

    async fn devices(&self, id: &str) -> Vec<(String, String, String)> {
        let (status, body) = self
            .get(&format!(
                "/reports/{ACC}/campaigns/{id}/devices?lastSeenDeviceId=0"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["deviceList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["deviceId"].as_str().unwrap().to_owned(),
                    d["status"].as_str().unwrap().to_owned(),
                    d["resultReason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

async fn oauth(http: &Client, sim: &SimHandle, id: &str, secret: &str) -> Value {
    let response = http
        .post(format!("{}/ts/v1/oauth2/token", sim.thingspace_url()))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap();
    body["_status"] = status.into();
    body
}

fn now(ts: &Ts) -> Timestamp {
    ts.sim.state.now()
}

#[tokio::test]
async fn oauth_token_is_reused_within_its_hour_with_expires_in_counting_down() {
    let ts = Ts::start(auth_config()).await;
    ts.advance(600);
    let again = oauth(&ts.http, &ts.sim, "cid", "csecret").await;
    assert_eq!(again["access_token"], ts.token.as_str());
    assert_eq!(again["expires_in"], 3000);
    assert_eq!(again["token_type"], "Bearer");

    let bad = oauth(&ts.http, &ts.sim, "cid", "wrong").await;
    assert_eq!(bad["_status"], 401);
    assert_eq!(bad["error"], "invalid_client");

    ts.advance(3000);
    let (status, body) = ts.get(&format!("/files/{ACC}?distributionType=HTTP")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["fault"]["code"], 900901);
    let fresh = oauth(&ts.http, &ts.sim, "cid", "csecret").await;
    assert_ne!(fresh["access_token"], ts.token.as_str());
    assert_eq!(fresh["expires_in"], 3600);
}

#[tokio::test]
async fn fota_calls_need_bearer_and_session_of_the_account() {
    let ts = Ts::start(config()).await;
    let url = ts.fota(&format!("/files/{ACC}?distributionType=HTTP"));

    let response = ts
        .http
        .get(&url)
        .header("VZ-M2M-Token", &ts.session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900902);

    let response = ts
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .header("VZ-M2M-Token", &ts.session)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900901);

    let response = ts
        .http
        .get(&url)
        .bearer_auth(&ts.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errorCode"]
            .as_str()
            .unwrap()
            .ends_with("SessionToken.Missing")
    );

    let (status, body) = ts
        .get("/files/0000999999-00001?distributionType=HTTP")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorMessage"], "Inactive account");
}

#[tokio::test]
async fn sessions_expire_after_twenty_idle_minutes_and_logout_ends_them() {
    let ts = Ts::start(auth_config()).await;
    let path = format!("/files/{ACC}?distributionType=HTTP");
    ts.advance(19 * 60);
    assert_eq!(ts.get(&path).await.0, StatusCode::OK);
    ts.advance(19 * 60);
    assert_eq!(
        ts.get(&path).await.0,
        StatusCode::OK,
        "use refreshes the idle timer"
    );
    ts.advance(21 * 60);
    let (status, body) = ts.get(&path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errorCode"],
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
    );
    assert_eq!(body["errorMessage"], "The Session has expired.");

    let fresh = oauth(&ts.http, &ts.sim, "cid", "csecret").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ts = ts;
    ts.token = fresh;
    let (_, login) = ts.login("user1", "pass1").await;
    ts.session = login["sessionToken"].as_str().unwrap().to_owned();
    let response = ts
        .http
        .post(ts.url("/m2m/v1/session/logout"))
        .bearer_auth(&ts.token)
        .header("VZ-M2M-Token", &ts.session)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sessionToken"], ts.session.as_str());
    assert_eq!(ts.get(&path).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_user() {
    let ts = Ts::start(config()).await;
    for _ in 0..5 {
        let (status, body) = ts.login("user2", "wrong").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["errorCode"]
                .as_str()
                .unwrap()
                .starts_with("UnifiedWebService.")
        );
    }
    let (status, body) = ts.login("user2", "pass2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errorCode"].as_str().unwrap().ends_with("User.Locked"),
        "{body}"
    );
    assert_eq!(
        ts.login("user1", "pass1").await.0,
        StatusCode::OK,
        "other users unaffected"
    );
}

#[tokio::test]
async fn upload_generates_the_file_name_and_both_list_forms_work() {
    let ts = Ts::start(config()).await;
    let (status, body) = ts
        .upload("C:\\builds\\hello-world.txt", "1.0", b"hello".to_vec())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fileName"], "configfile-Acme_X1_hello-world.txt");
    assert_eq!(body["fileVersion"], "1.0");
    assert_eq!(body["distributionType"], "HTTP");
    assert_eq!(body["launchDate"], "2024-06-01");
    assert_eq!(body["localTargetPath"], "/VZWFOTA/app.conf");

    let (status, listed) = ts.get(&format!("/files/{ACC}?distributionType=HTTP")).await;
    assert_eq!(status, StatusCode::OK);
    let files = listed["AvailableFilesResponse"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["fileName"], "configfile-Acme_X1_hello-world.txt");
    let (_, by_path) = ts.get(&format!("/files/{ACC}/HTTP")).await;
    assert_eq!(by_path, listed);
    let (_, lwm2m) = ts
        .get(&format!("/files/{ACC}?distributionType=LWM2M"))
        .await;
    assert_eq!(lwm2m["AvailableFilesResponse"], json!([]));
    let (status, body) = ts.get(&format!("/files/{ACC}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "INVALID_PARAMETER");

    let state: Value = ts
        .http
        .get(format!("{}/state", ts.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = &state["thingspace"]["files"][0];
    assert_eq!(stored["size"], 5);
    assert_eq!(
        stored["sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );

    let mut bare = config();
    bare.thingspace.file_list_shape = otaplane::sim::config::FileListShape::Bare;
    let ts = Ts::start(bare).await;
    ts.upload("app.bin", "1.0", b"x".to_vec()).await;
    let (_, listed) = ts.get(&format!("/files/{ACC}?distributionType=HTTP")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn campaign_moves_through_its_lifecycle_and_devices_report_outcomes() {
    let ts = Ts::start(config()).await;
    let devices = [
        "990000000000001",
        "111100000000002",
        "222200000000003",
        "333300000000004",
    ];
    let id = ts.schedule(&devices, "2024-06-02", "2024-06-03").await;
    assert_eq!(ts.campaign_status(&id).await, "CampaignRequestPending");
    ts.advance(5);
    assert_eq!(ts.campaign_status(&id).await, "CampaignQueued");
    let report = ts.devices(&id).await;
    assert_eq!(report[0].1, "Accepted");
    assert_eq!(
        report[1],
        (
            "222200000000003".into(),
            "DeviceRejected".into(),
            "Invalid device IMEI.".into()
        )
    );

    let until_start = Timestamp::from_second(1_717_286_400)
        .unwrap()
        .duration_since(now(&ts));
    ts.advance(until_start.as_secs());
    assert_eq!(ts.campaign_status(&id).await, "CampaignScheduled");
    assert_eq!(ts.devices(&id).await[0].1, "UpgradePending");

    ts.advance(600);
    let report = ts.devices(&id).await;
    assert_eq!(
        report[3],
        (
            "990000000000001".into(),
            "UpgradeSuccess".into(),
            "DownloadInstallSucceeded".into()
        )
    );
    assert_eq!(
        report[0],
        (
            "111100000000002".into(),
            "UpgradeFailed".into(),
            "RovaClientDownloadFailed".into()
        )
    );
    assert_eq!(
        report[2].1, "UpgradePending",
        "offline device never reports"
    );
    assert_eq!(ts.campaign_status(&id).await, "CampaignScheduled");

    ts.advance(2 * 86_400);
    assert_eq!(ts.campaign_status(&id).await, "CampaignEnded");
    let report = ts.devices(&id).await;
    assert_eq!(
        report[2],
        (
            "333300000000004".into(),
            "UpgradeFailed".into(),
            "RovaClientDidNotReportStatus".into()
        )
    );

    let (_, history) = ts
        .get(&format!(
            "/reports/{ACC}/campaigns?campaignStatus=CampaignEnded"
        ))
        .await;
    assert_eq!(history["campaignList"][0]["id"], id.as_str());
    let (_, none) = ts
        .get(&format!(
            "/reports/{ACC}/campaigns?campaignStatus=CampaignScheduled"
        ))
        .await;
    assert_eq!(none["campaignList"], json!([]));

    let (_, device_history) = ts
        .get(&format!("/reports/{ACC}/devices/990000000000001"))
        .await;
    assert_eq!(device_history[0]["status"], "UpgradeSuccess");
    assert_eq!(device_history[0]["reason"], "success");

    let next = ts
        .schedule(&["990000000000001"], "2024-06-04", "2024-06-05")
        .await;
    ts.advance(86_400);
    assert_eq!(
        ts.devices(&next).await[0].1,
        "UpgradeSuccess",
        "already on 2.0"
    );
    assert_eq!(ts.campaign_status(&next).await, "CampaignEnded");
}

#[tokio::test]
async fn campaigns_end_as_soon_as_every_device_finished() {
    let ts = Ts::start(config()).await;
    let id = ts
        .schedule(
            &["990000000000011", "990000000000012"],
            "2024-06-01",
            "2024-06-08",
        )
        .await;
    ts.advance(5);
    assert_eq!(
        ts.campaign_status(&id).await,
        "CampaignScheduled",
        "start date is today"
    );
    ts.advance(600);
    assert_eq!(ts.campaign_status(&id).await, "CampaignEnded");
    let state: Value = ts
        .http
        .get(format!("{}/devices?vendor=thingspace", ts.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        state["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["version"] == "2.0")
    );
}

#[tokio::test]
async fn device_report_pages_by_a_thousand_in_imei_order() {
    let ts = Ts::start(config()).await;
    let devices: Vec<String> = (0..2500u64)
        .rev()
        .map(|i| format!("{}", 990_000_000_000_000 + i * 7))
        .collect();
    let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
    let id = ts.schedule(&refs, "2024-06-02", "2024-06-03").await;
    let mut seen = Vec::new();
    let mut last = "0".to_owned();
    loop {
        let (status, page) = ts
            .get(&format!(
                "/reports/{ACC}/campaigns/{id}/devices?lastSeenDeviceId={last}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["totalDevice"], 2500);
        assert_eq!(page["maxPageSize"], 1000);
        let items = page["deviceList"].as_array().unwrap();
        assert!(items.len() <= 1000);
        seen.extend(
            items
                .iter()
                .map(|d| d["deviceId"].as_str().unwrap().to_owned()),
        );
        last = page["lastSeenDeviceId"].as_str().unwrap().to_owned();
        if !page["hasMoreData"].as_bool().unwrap() {
            break;
        }
    }
    let mut expected = devices.clone();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn cancel_before_start_and_abort_after_start() {
    let ts = Ts::start(config()).await;
    let id = ts
        .schedule(&["990000000000021"], "2024-06-03", "2024-06-04")
        .await;
    let (status, body) = ts
        .call(
            reqwest::Method::DELETE,
            &format!("/campaigns/{ACC}/{id}"),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    assert_eq!(ts.campaign_status(&id).await, "CampaignCancelled");
    assert_eq!(ts.devices(&id).await[0].1, "CampaignCancelled");

    let slow = ["990000000000022", "990000000000023"];
    let id = ts.schedule(&slow, "2024-06-01", "2024-06-04").await;
    ts.advance(5);
    let first_done = ts
        .sim
        .state
        .fleet
        .devices(Some(otaplane::sim::Vendor::ThingSpace), Some(ACC), now(&ts))
        .len();
    assert!(first_done >= 2);
    ts.advance(20);
    let (status, _) = ts
        .call(
            reqwest::Method::DELETE,
            &format!("/campaigns/{ACC}/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ts.campaign_status(&id).await, "CampaignAborted");
    let report = ts.devices(&id).await;
    assert!(
        report
            .iter()
            .all(|d| d.1 == "CampaignAborted" && d.2 == "Campaign aborted by user."),
        "{report:?}"
    );
    let (status, body) = ts
        .call(
            reqwest::Method::DELETE,
            &format!("/campaigns/{ACC}/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn devices_can_be_added_and_removed_only_before_the_start() {
    let ts = Ts::start(config()).await;
    let id = ts
        .schedule(
            &["990000000000031", "990000000000032"],
            "2024-06-02",
            "2024-06-03",
        )
        .await;
    let path = format!("/campaigns/{ACC}/{id}");
    let (status, body) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"Type": "append", "deviceList": ["990000000000033"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["campaignId"], id.as_str());
    assert_eq!(body["accountName"], ACC);
    assert!(body["requestId"].is_string());
    let (status, _) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"addOrRemoveDevice": [{"type": "remove", "deviceList": ["990000000000031"]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<String> = ts.devices(&id).await.into_iter().map(|d| d.0).collect();
    assert_eq!(ids, ["990000000000032", "990000000000033"]);

    ts.advance(86_400);
    let (status, body) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"Type": "append", "deviceList": ["990000000000034"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "INVALID_PARAMETER");
}

#[tokio::test]
async fn dates_change_freely_before_the_start_and_only_extend_after() {
    let ts = Ts::start(config()).await;
    let id = ts
        .schedule(&["990000000000041"], "2024-06-02", "2024-06-03")
        .await;
    let path = format!("/campaigns/{ACC}/{id}/dates");
    let (status, body) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"startDate": "2024-06-05", "endDate": "2024-06-06", "downloadTimeWindowList": [{"startTime": 1, "endTime": 4}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["startDate"], "2024-06-05");
    assert_eq!(
        body["downloadTimeWindowList"],
        json!([{"startTime": 1, "endTime": 4}])
    );

    let until = Timestamp::from_second(1_717_547_400)
        .unwrap()
        .duration_since(now(&ts));
    ts.advance(until.as_secs());
    assert_eq!(ts.campaign_status(&id).await, "CampaignScheduled");
    assert_eq!(ts.devices(&id).await[0].1, "UpgradePending");
    let (status, _) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"startDate": "2024-06-05", "endDate": "2024-06-05", "downloadTimeWindowList": [{"startTime": 1, "endTime": 4}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "end must stay 24 h ahead");
    let (status, _) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"startDate": "2024-06-05", "endDate": "2024-06-09"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "windows cannot be removed");
    let (status, body) = ts
        .call(
            reqwest::Method::PUT,
            &path,
            Some(json!({"startDate": "2024-06-05", "endDate": "2024-06-09", "downloadTimeWindowList": [{"startTime": 1, "endTime": 4}, {"startTime": "20", "endTime": "24"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["endDate"], "2024-06-09");
    ts.advance(4 * 3600);
    assert_eq!(
        ts.devices(&id).await[0].1,
        "UpgradeSuccess",
        "devices start inside the 01-04 UTC window"
    );
}

#[tokio::test]
async fn invalid_requests_get_documented_errors() {
    let ts = Ts::start(config()).await;
    let (status, body) = ts.get(&format!("/campaigns/{ACC}/not-a-uuid")).await;
    assert_eq!(
        (status, body["errorMessage"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Invalid uuid"))
    );
    let (_, body) = ts
        .get(&format!(
            "/campaigns/{ACC}/60b5d639-ccdc-4db8-8824-069bd94c95bf"
        ))
        .await;
    assert_eq!(body["errorMessage"], "Invalid upgradeId");
    let (status, body) = ts
        .call(
            reqwest::Method::POST,
            &format!("/campaigns/files/{ACC}"),
            Some(json!({"fileName": "f", "fileVersion": "1", "distributionType": "HTTP", "startDate": "2024-06-02", "endDate": "2024-06-03", "deviceList": []})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorMessage"], "Device list is empty");
    let (status, body) = ts
        .call(
            reqwest::Method::POST,
            &format!("/campaigns/files/{ACC}"),
            Some(json!({"fileName": "unknown", "fileVersion": "1", "distributionType": "HTTP", "startDate": "2024-06-02", "endDate": "2024-06-03", "deviceList": ["990000000000051"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "validation is asynchronous");
    let id = body["id"].as_str().unwrap().to_owned();
    ts.advance(5);
    assert_eq!(ts.campaign_status(&id).await, "CampaignRequestFailed");

    let response = ts
        .http
        .get(format!("{}/nope", ts.sim.thingspace_url()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900906);
}

#[tokio::test]
async fn software_campaigns_check_prerequisites() {
    let ts = Ts::start(config()).await;
    ts.sim.state.fleet.upsert_device(
        otaplane::sim::fleet::DeviceSpec {
            vendor: otaplane::sim::Vendor::ThingSpace,
            account: ACC.into(),
            id: "990000000000062".into(),
            version: Some("0.5".into()),
            behaviour: None,
            token: None,
            name: None,
            device_type: None,
        },
        now(&ts),
    );
    let (_, software) = ts
        .get(&format!("/software/{ACC}?distributionType=HTTP"))
        .await;
    let name = software[0]["softwareName"].as_str().unwrap().to_owned();
    let (status, body) = ts
        .call(
            reqwest::Method::POST,
            &format!("/campaigns/software/{ACC}"),
            Some(json!({"softwareName": name, "softwareFrom": "1.0.0", "softwareTo": "1.1.0", "distributionType": "HTTP",
                        "startDate": "2024-06-01", "endDate": "2024-06-02", "deviceList": ["990000000000061", "990000000000062"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["softwareTo"], "1.1.0");
    let id = body["id"].as_str().unwrap().to_owned();
    ts.advance(3600);
    let report = ts.devices(&id).await;
    assert_eq!(report[0].1, "UpgradeSuccess");
    assert_eq!(report[1].1, "DeviceRejected");
    assert_eq!(
        report[1].2,
        "Current device software version does not meet software prerequisites."
    );
}

#[tokio::test]
async fn injected_throttling_uses_the_gateway_shape_and_calls_are_counted_by_route() {
    let ts = Ts::start(config()).await;
    let admin = ts.sim.admin_url();
    ts.http
        .post(format!("{admin}/reset-counts"))
        .send()
        .await
        .unwrap();
    let added: Value = ts
        .http
        .post(format!("{admin}/faults"))
        .json(&json!({"add": [{"vendor": "thingspace", "method": "GET", "path": "/api/fota/v2/files/*", "count": 1,
                                "action": {"throttle": {"retry_after_secs": 7}}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["added"].as_array().unwrap().len(), 1);
    let response = ts
        .http
        .get(ts.fota(&format!("/files/{ACC}?distributionType=HTTP")))
        .bearer_auth(&ts.token)
        .header("VZ-M2M-Token", &ts.session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fault"]["code"], 900800);
    assert_eq!(
        ts.get(&format!("/files/{ACC}?distributionType=HTTP"))
            .await
            .0,
        StatusCode::OK
    );

    let calls: Value = ts
        .http
        .get(format!("{admin}/calls?vendor=thingspace"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = calls["calls"].as_array().unwrap();
    let count = |status: u64| {
        rows.iter()
            .find(|r| {
                r["route"] == "/api/fota/v2/files/{acc}"
                    && r["method"] == "GET"
                    && r["status"] == status
            })
            .map(|r| r["count"].as_u64().unwrap())
    };
    assert_eq!(count(429), Some(1));
    assert_eq!(count(200), Some(1));
    assert_eq!(calls["total"], 2);
}

#[tokio::test]
async fn ten_thousand_devices_finish_when_virtual_time_passes() {
    let ts = Ts::start(config()).await;
    let devices: Vec<String> = (0..10_000u64)
        .map(|i| format!("{}", 880_000_000_000_000 + i))
        .collect();
    let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
    let id = ts.schedule(&refs, "2024-06-01", "2024-06-02").await;
    ts.advance(3600);
    assert_eq!(ts.campaign_status(&id).await, "CampaignEnded");
    let mut last = "0".to_owned();
    let mut succeeded = 0;
    loop {
        let (_, page) = ts
            .get(&format!(
                "/reports/{ACC}/campaigns/{id}/devices?lastSeenDeviceId={last}"
            ))
            .await;
        succeeded += page["deviceList"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "UpgradeSuccess")
            .count();
        last = page["lastSeenDeviceId"].as_str().unwrap().to_owned();
        if !page["hasMoreData"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(succeeded, 10_000);
}

#[tokio::test]
async fn admin_device_changes_apply_to_later_campaigns() {
    let ts = Ts::start(config()).await;
    let response = ts
        .http
        .post(format!("{}/devices", ts.sim.admin_url()))
        .json(&json!({"devices": [
            {"vendor": "thingspace", "account": ACC, "id": "770000000000001", "version": "2.0"},
            {"vendor": "thingspace", "account": ACC, "id": "770000000000002", "behaviour": {"rejects": {"reason": "Device not found."}}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["devices"][0]["version"], "2.0");
    let id = ts
        .schedule(
            &["770000000000001", "770000000000002"],
            "2024-06-01",
            "2024-06-02",
        )
        .await;
    ts.advance(5);
    let report = ts.devices(&id).await;
    assert_eq!(report[0].1, "UpgradeSuccess", "already on 2.0");
    assert_eq!(
        report[1],
        (
            "770000000000002".into(),
            "DeviceRejected".into(),
            "Device not found.".into()
        )
    );
}
