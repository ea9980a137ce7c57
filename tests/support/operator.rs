//! An end-to-end stage: kube-lite with the CRDs, the vendor simulator, an artifact server and
//! the operator running in-process against both. Shared by the operator tests and benchmarks.
#![allow(dead_code)]

use std::time::Duration;

use axum::{Router, routing::get};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::{ApiResource, Scope};
use kube::{Api, Discovery, Resource, ResourceExt};
use otaplane::api::{FirmwarePackage, OtaProvider, UpgradeCampaign, find_condition};
use otaplane::controller::{OperatorHandle, Settings};
use otaplane::reconcile::PollIntervals;
use otaplane::sim::{self, SimConfig, SimHandle};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{IOTDA_ACCESS_KEY, IOTDA_APP_ID, IOTDA_PROJECT, IOTDA_SECRET_KEY, quick_policy};

/// The namespace every test object lives in.
pub const NAMESPACE: &str = "default";

/// kube-lite, the simulator, an artifact server and (when started) the operator.
pub struct Stage {
    /// The API server stand-in.
    pub kube: kube_lite::Server,
    /// A client of it.
    pub client: kube::Client,
    /// The vendor simulator.
    pub sim: SimHandle,
    /// Base URL of the artifact server: `{artifacts}/fw-{n}.bin` serves
    /// [`firmware`]`(n, FIRMWARE_SIZE)`, `{artifacts}/fw-{n}-{size}.bin` [`firmware`]`(n, size)`.
    pub artifacts: String,
}

/// A deterministic firmware image of `size` bytes, different for each `seed`.
pub fn firmware(seed: u8, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i as u32).wrapping_mul(31).wrapping_add(seed as u32) % 251) as u8)
        .collect()
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A simulator for campaigns. Its clock runs `time_scale` times real time from today's
/// midnight (UTC), so ThingSpace accepts campaigns that start "today"; an upgrade takes about 8
/// virtual seconds (2 queued, 4 downloading, 2 installing, 25 % jitter).
pub fn campaign_sim_config(time_scale: f64) -> SimConfig {
    let mut config = SimConfig {
        time_scale,
        start_time: Some(
            jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .start_of_day()
                .expect("midnight exists")
                .timestamp(),
        ),
        ..SimConfig::default()
    };
    config.fleet.timing = otaplane::sim::fleet::UpgradeTiming {
        queue_secs: 2.0,
        download_secs: 4.0,
        install_secs: 2.0,
        jitter: 0.25,
    };
    config
}

/// Size of the images the artifact server serves.
pub const FIRMWARE_SIZE: usize = 256 << 10;

impl Stage {
    /// Starts kube-lite with the CRDs installed, the simulator with `config`, and the artifact
    /// server.
    pub async fn start_with(config: SimConfig) -> Stage {
        let kube = kube_lite::Server::start(kube_lite::Options::default())
            .await
            .expect("kube-lite starts");
        let client = kube.client().expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in otaplane::api::crds() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRD installs");
        }
        let sim = sim::start(config).await.expect("simulator starts");
        let app = Router::new().route(
            "/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>| async move {
                    let stem = file.trim_start_matches("fw-").trim_end_matches(".bin");
                    let (seed, size) = stem.split_once('-').unwrap_or((stem, ""));
                    firmware(
                        seed.parse().unwrap_or(0),
                        size.parse().unwrap_or(FIRMWARE_SIZE),
                    )
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let artifacts = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stage {
            kube,
            client,
            sim,
            artifacts,
        }
    }

    /// [`Stage::start_with`] the default simulator.
    pub async fn start() -> Stage {
        Self::start_with(SimConfig::default()).await
    }

    /// Operator settings for tests: an ephemeral port, quick retries and polling.
    pub fn settings(&self) -> Settings {
        Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            http_policy: quick_policy(),
            resync_interval: Duration::from_secs(3),
            campaign_polling: PollIntervals {
                active: Duration::from_millis(200),
                idle: Duration::from_millis(500),
                waiting: Duration::from_millis(500),
            },
            shutdown_grace: Duration::from_secs(5),
            ..Settings::default()
        }
    }

    /// Starts the operator with [`Stage::settings`].
    pub async fn operator(&self) -> OperatorHandle {
        self.operator_with(self.settings()).await
    }

    /// Starts the operator with `settings`.
    pub async fn operator_with(&self, settings: Settings) -> OperatorHandle {
        otaplane::controller::start(settings, self.client.clone())
            .await
            .expect("operator starts")
    }

    /// Applies a multi-document YAML stream with server-side apply (like `kubectl apply
    /// --server-side`).
    pub async fn apply(&self, yaml: &str) {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .expect("discovery");
        for document in serde_saphyr::from_multiple::<serde_json::Value>(yaml).expect("YAML") {
            if document.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(document).expect("object");
            let types = object.types.clone().expect("apiVersion and kind");
            let gvk = kube::core::GroupVersionKind::try_from(&types).expect("gvk");
            let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("known kind");
            let api: Api<DynamicObject> = if capabilities.scope == Scope::Namespaced {
                Api::namespaced_with(
                    self.client.clone(),
                    object.namespace().as_deref().unwrap_or(NAMESPACE),
                    &resource,
                )
            } else {
                Api::all_with(self.client.clone(), &resource)
            };
            api.patch(
                &object.name_any(),
                &PatchParams::apply("e2e-test").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|err| panic!("applying {}: {err}", object.name_any()));
        }
    }

    /// Creates or replaces a Secret with string data.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": string_data,
        }))
        .unwrap();
        api.patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("Secret applies");
    }

    /// A ThingSpace provider `name` for the demo account, logging in with `password`.
    pub async fn thingspace_provider(&self, name: &str, password: &str) {
        self.secret(
            &format!("{name}-credentials"),
            &[
                ("appKey", "demo-client-id"),
                ("appSecret", "demo-client-secret"),
                ("username", "demo-user"),
                ("password", password),
            ],
        )
        .await;
        self.apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: OtaProvider
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  thingspace:
    accountName: "0000123456-00001"
    baseUrl: {base}/api
    credentialsRef: {{name: {name}-credentials}}
"#,
            base = self.sim.base_url
        ))
        .await;
    }

    /// An IoTDA provider `name` for the demo project and its OBS bucket `fw-bucket`.
    pub async fn iotda_provider(&self, name: &str) {
        self.iotda_provider_with_obs(name, "").await;
    }

    /// [`Stage::iotda_provider`] with extra fields in its `obs` block (`{field: value, ...}`
    /// flow-style entries, for example `partSizeMiB: 1`).
    pub async fn iotda_provider_with_obs(&self, name: &str, extra_obs_fields: &str) {
        self.secret(
            &format!("{name}-credentials"),
            &[
                ("accessKeyId", IOTDA_ACCESS_KEY),
                ("secretAccessKey", IOTDA_SECRET_KEY),
            ],
        )
        .await;
        self.apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: OtaProvider
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  iotda:
    endpoint: {base}
    projectId: {IOTDA_PROJECT}
    instanceId: inst-0001
    region: cn-north-4
    defaultAppId: {IOTDA_APP_ID}
    credentialsRef: {{name: {name}-credentials}}
    obs:
      endpoint: {obs}
      bucket: fw-bucket
      keyPrefix: otaplane/
      {extra_obs_fields}
"#,
            base = self.sim.base_url,
            obs = self.sim.obs_url,
        ))
        .await;
    }

    /// An IoTaaP provider `name` for the demo user.
    pub async fn iotaap_provider(&self, name: &str) {
        self.secret(
            &format!("{name}-credentials"),
            &[
                ("email", "demo@iotaap.local"),
                ("password", "demo-password"),
            ],
        )
        .await;
        self.apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: OtaProvider
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  iotaap:
    baseUrl: {base}/v1
    deviceUrl: {base}/v1
    credentialsRef: {{name: {name}-credentials}}
"#,
            base = self.sim.base_url
        ))
        .await;
    }

    /// A FirmwarePackage `name` of `provider` (whose vendor is `vendor`: `thingspace`, `iotda`
    /// or `iotaap`), version `version`, image [`firmware`]`(seed)` with its checksum.
    pub async fn package(&self, name: &str, provider: &str, vendor: &str, version: &str, seed: u8) {
        let block = match vendor {
            "thingspace" => {
                "thingspace: {make: Acme, model: Tracker-X1, localTargetPath: /VZWFOTA/fw.bin}"
                    .to_string()
            }
            "iotda" => "iotda: {productId: 5ba24f5ebbe8f56f5a14f605, packageType: firmwarePackage}"
                .to_string(),
            _ => "iotaap: {}".to_string(),
        };
        let checksum = sha256(&firmware(seed, FIRMWARE_SIZE));
        self.apply(&format!(
            r#"
apiVersion: otaplane.io/v1alpha1
kind: FirmwarePackage
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  providerRef: {{name: {provider}}}
  version: "{version}"
  artifact:
    url: {artifacts}/fw-{seed}.bin
    sha256: {checksum}
  {block}
"#,
            artifacts = self.artifacts
        ))
        .await;
    }

    /// The object `name` of kind `K`, if it exists.
    pub async fn get<K>(&self, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), NAMESPACE)
            .get_opt(name)
            .await
            .expect("get")
    }

    /// Polls `name` until `done` holds (at most `timeout`), returning the object; panics with
    /// the last object seen otherwise.
    pub async fn wait_for<K>(&self, name: &str, timeout: Duration, done: impl Fn(&K) -> bool) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = self.get::<K>(name).await;
            if let Some(object) = &last
                && done(object)
            {
                return object.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{name} did not get there within {timeout:?}; last seen: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the provider `name` reports Ready=True.
    pub async fn provider_ready(&self, name: &str) -> OtaProvider {
        self.wait_for::<OtaProvider>(name, Duration::from_secs(30), |p| {
            condition(p.status.as_ref().map(|s| &s.conditions[..]), "Ready") == Some("True")
        })
        .await
    }

    /// Waits until the package `name` reports Ready=True for its current generation.
    pub async fn package_ready(&self, name: &str) -> FirmwarePackage {
        self.wait_for::<FirmwarePackage>(name, Duration::from_secs(60), |p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.observed_generation) == p.metadata.generation
                && condition(status.map(|s| &s.conditions[..]), "Ready") == Some("True")
        })
        .await
    }

    /// The Events recorded for object `name`, as (reason, note) pairs.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        api.list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|event| {
                (
                    event.reason.unwrap_or_default(),
                    event.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Sum of simulator calls matching `method` whose route satisfies `route`.
    pub fn calls(&self, method: &str, route: impl Fn(&str) -> bool) -> u64 {
        self.sim
            .state
            .calls
            .snapshot()
            .iter()
            .filter(|call| call.method == method && route(&call.route))
            .map(|call| call.count)
            .sum()
    }

    /// Campaign `name`, once it exists.
    pub async fn campaign(&self, name: &str) -> Option<UpgradeCampaign> {
        self.get::<UpgradeCampaign>(name).await
    }
}

/// The status of condition `type_`, if present.
pub fn condition<'a>(
    conditions: Option<&'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
    type_: &str,
) -> Option<&'a str> {
    find_condition(conditions?, type_).map(|c| c.status.as_str())
}

/// The reason of condition `type_`, if present.
pub fn reason<'a>(
    conditions: Option<&'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
    type_: &str,
) -> Option<&'a str> {
    find_condition(conditions?, type_).map(|c| c.reason.as_str())
}

/// The ApiResource of a custom kind, for dynamic calls.
pub fn api_resource<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}
