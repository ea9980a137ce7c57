//! End-to-end tests of the IoTaaP simulator over loopback HTTP.

use std::time::Duration;

use jiff::SignedDuration;
use otaplane::sim::{self, SimConfig, SimHandle};
use reqwest::{Client, StatusCode, multipart};
use serde_json::{Value, json};

const DEVICE: &str = "5e1a5ecbe2ac3a3bdb45fc01";
const DEVICE_TOKEN: &str = "HlQeS1oKcVYx";
const SECOND_DEVICE: &str = "5e1a5ecbe2ac3a3bdb45fc02";

struct Iot {
    sim: SimHandle,
    http: Client,
    jwt: String,
}

impl Iot {
    async fn start() -> Self {
        let config = SimConfig::from_yaml(
            r#"
time_scale: 0
start_time: 2024-06-01T10:00:00Z
fleet:
  timing: {queue_secs: 60, download_secs: 60, install_secs: 60, jitter: 0.2}
"#,
        )
        .unwrap();
        let sim = sim::start(config).await.unwrap();
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let login: Value = http
            .post(format!("{}/auth/login", sim.iotaap_url()))
            .json(&json!({"email": "demo@iotaap.local", "password": "demo-password", "rememberMe": "false"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwt = login["token"].as_str().unwrap().to_owned();
        assert_eq!(
            login["user"],
            json!({"id": "5e10fc5e77ba18070312e171", "role": "user"})
        );
        Self { sim, http, jwt }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.iotaap_url())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.jwt)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn deploy(
        &self,
        fields: &[(&str, &str)],
        firmware: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut form = multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        if let Some(bytes) = firmware {
            form = form.part(
                "firmware",
                multipart::Part::bytes(bytes).file_name("firmware.bin"),
            );
        }
        let response = self
            .http
            .post(self.url("/ota/device"))
            .bearer_auth(&self.jwt)
            .multipart(form)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn advance(&self, secs: i64) {
        self.sim
            .state
            .clock
            .advance(SignedDuration::from_secs(secs));
    }
}

#[tokio::test]
async fn login_issues_a_thirty_day_hs256_jwt_and_bad_tokens_get_plain_unauthorized() {
    let iot = Iot::start().await;
    let parts: Vec<&str> = iot.jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine;
    let decode = |p: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode(parts[0])["alg"], "HS256");
    let claims = decode(parts[1]);
    assert_eq!(claims["id"], "5e10fc5e77ba18070312e171");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2_592_000
    );

    let wrong = iot
        .http
        .post(iot.url("/auth/login"))
        .json(&json!({"email": "demo@iotaap.local", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        json!({"error": "Login or password is wrong"})
    );

    for auth in [
        None,
        Some("garbage"),
        Some(&format!("{}x", iot.jwt) as &str),
    ] {
        let mut request = iot.http.get(iot.url("/devices"));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.text().await.unwrap(), "Unauthorized");
    }

    iot.advance(30 * 86_400);
    let response = iot
        .http
        .get(iot.url("/devices"))
        .bearer_auth(&iot.jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "expired after 30 days"
    );
}

#[tokio::test]
async fn expire_tokens_revokes_issued_jwts() {
    let iot = Iot::start().await;
    assert_eq!(iot.get("/devices").await.0, StatusCode::OK);
    let response = iot
        .http
        .post(format!(
            "{}/expire-tokens?vendor=iotaap",
            iot.sim.admin_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(iot.get("/devices").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn devices_list_with_datatables_paging_and_tokens() {
    let iot = Iot::start().await;
    let (status, body) = iot
        .get("/devices?offset=1&limit=1&draw=warp&order_dir=asc")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recordsTotal"], 3);
    assert_eq!(body["recordsFiltered"], 3);
    assert_eq!(body["draw"], "warp");
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["_id"], SECOND_DEVICE);
    assert_eq!(devices[0]["token"], "FSouSAJRiJ3v");
    assert_eq!(devices[0]["owner"], "5e10fc5e77ba18070312e171");
    assert_eq!(devices[0]["__v"], 0);

    let (_, filtered) = iot.get("/devices?search_value=warp").await;
    assert_eq!(filtered["recordsFiltered"], 1);
    assert_eq!(filtered["recordsTotal"], 3);
    let (_, desc) = iot.get("/devices?order_dir=desc").await;
    assert_eq!(desc["devices"][0]["_id"], "5e1a5ecbe2ac3a3bdb45fc03");

    let (status, device) = iot.get(&format!("/devices/{DEVICE}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device["token"], DEVICE_TOKEN);
    let (status, body) = iot.get("/devices/5e1a5ecbe2ac3a3bdb45ffff").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"message": "No such device"}))
    );

    let created = iot
        .http
        .post(iot.url("/devices"))
        .bearer_auth(&iot.jwt)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"].as_str().unwrap().len(), 10);
    assert_eq!(created["token"].as_str().unwrap().len(), 12);
    assert_eq!(created["_id"].as_str().unwrap().len(), 24);
    assert_eq!(iot.get("/devices").await.1["recordsTotal"], 4);
}

#[tokio::test]
async fn deploy_validates_fields_and_device_token() {
    let iot = Iot::start().await;
    let firmware = Some(b"\xe9firmware".to_vec());
    let all = [
        ("device", DEVICE),
        ("token", DEVICE_TOKEN),
        ("version", "1.2.7"),
    ];
    for missing in ["device", "token", "version"] {
        let fields: Vec<(&str, &str)> =
            all.iter().copied().filter(|(n, _)| *n != missing).collect();
        let (status, body) = iot.deploy(&fields, firmware.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], format!("{missing} is a mandatory field"));
    }
    let (status, body) = iot.deploy(&all, None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("No file uploaded"))
    );
    let (status, body) = iot
        .deploy(
            &[("device", "xyz"), ("token", DEVICE_TOKEN), ("version", "1")],
            firmware.clone(),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Device ID is not valid"))
    );
    let (status, body) = iot
        .deploy(
            &[
                ("device", "5e1a5ecbe2ac3a3bdb45ffff"),
                ("token", DEVICE_TOKEN),
                ("version", "1"),
            ],
            firmware.clone(),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("No such device"))
    );
    let (status, _) = iot
        .deploy(
            &[
                ("device", DEVICE),
                ("token", "FSouSAJRiJ3v"),
                ("version", "1"),
            ],
            firmware.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "token of another device");
    let (status, body) = iot.deploy(&all, firmware).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({"message": "Firmware successfully deployed"}));
}

#[tokio::test]
async fn deployed_firmware_is_served_to_the_device_and_flashed_on_the_fleet_clock() {
    let iot = Iot::start().await;
    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _) = iot
        .deploy(
            &[
                ("device", DEVICE),
                ("token", DEVICE_TOKEN),
                ("version", "1.2.7"),
            ],
            Some(image.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let latest: Value = iot
        .http
        .get(iot.url(&format!("/ota/device/latest/{DEVICE}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest, json!({"ver": "1.2.7"}));
    let missing = iot
        .http
        .get(iot.url(&format!("/ota/device/latest/{SECOND_DEVICE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["message"],
        "No such device"
    );

    let download = iot
        .http
        .get(iot.url(&format!("/ota/device/download/{DEVICE}{DEVICE_TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-length"],
        image.len().to_string().as_str()
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), image.as_slice());
    let wrong = iot
        .http
        .get(iot.url(&format!("/ota/device/download/{DEVICE}FSouSAJRiJ3v")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);

    let (_, otas) = iot.get("/ota/device?draw=1&search_value=HlQeS1").await;
    assert_eq!(otas["recordsTotal"], 1);
    assert_eq!(otas["recordsFiltered"], 1);
    let record = &otas["otas"][0];
    assert_eq!(record["device"], DEVICE);
    assert_eq!(record["version"], "1.2.7");
    assert_eq!(
        record["path"],
        format!("ota/device/{DEVICE}{DEVICE_TOKEN}/firmware.bin")
    );
    assert_eq!(record["last_updated"], "2024-06-01T10:00:00.000Z");

    let (_, device) = iot.get(&format!("/devices/{DEVICE}")).await;
    assert_eq!(device["last_contact"], Value::Null);
    iot.advance(3600);
    let (_, device) = iot.get(&format!("/devices/{DEVICE}")).await;
    assert!(
        device["last_contact"].is_string(),
        "the device reported back after flashing"
    );
    let state: Value = iot
        .http
        .get(format!("{}/state", iot.sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = state["iotaap"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == DEVICE)
        .unwrap()
        .clone();
    assert_eq!(entry["version"], "1.2.7");
    assert_eq!(entry["progress"]["state"], "succeeded");

    let (status, _) = iot
        .deploy(
            &[
                ("device", DEVICE),
                ("token", DEVICE_TOKEN),
                ("version", "1.2.8"),
            ],
            Some(b"new".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, otas) = iot.get("/ota/device").await;
    assert_eq!(otas["recordsTotal"], 1, "only the latest record per device");
    assert_eq!(otas["otas"][0]["version"], "1.2.8");
}

#[tokio::test]
async fn unknown_routes_get_express_html_404() {
    let iot = Iot::start().await;
    let response = iot.http.get(iot.url("")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<pre>Cannot GET /v1</pre>")
    );
    let response = iot
        .http
        .delete(iot.url("/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Cannot DELETE /v1/auth/login")
    );
}
