//! Vendor clients wired to the simulator's built-in demo accounts, shared by the end-to-end
//! tests and the benchmarks (`#[path]`-included there).
#![allow(dead_code)]

pub mod operator;

use std::time::Duration;

use otaplane::{
    sim::SimHandle,
    vendor::{
        HttpPolicy, Secret,
        iotaap::{IotaapClient, IotaapConfig},
        iotda::{IamLogin, IotdaClient, IotdaConfig, SigningChoice},
        obs::{ObsClient, ObsConfig},
        thingspace::{ThingSpaceClient, ThingSpaceConfig},
    },
};

/// The demo IoTDA / OBS access key (sdks.md's example).
pub const IOTDA_ACCESS_KEY: &str = "HPUAEXAMPLEAK0000001";
/// The demo IoTDA / OBS secret key.
pub const IOTDA_SECRET_KEY: &str = "ExampleSecretKey0000000000000000000000000";
/// The demo IoTDA project.
pub const IOTDA_PROJECT: &str = "0123456789abcdef0123456789abcdef";
/// The demo IoTDA resource space.
pub const IOTDA_APP_ID: &str = "61f7e74d036aca5be29e1ed4";

/// Short backoffs, so retry tests run quickly.
pub fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        upload_timeout: Duration::from_secs(600),
        ..HttpPolicy::default()
    }
}

/// The demo ThingSpace account, logging in with `password`.
pub fn thingspace(sim: &SimHandle, password: &str) -> ThingSpaceClient {
    thingspace_at(&sim.thingspace_url(), password)
}

/// The demo ThingSpace account of a simulator whose ThingSpace base URL (`http://HOST/api`)
/// is `base_url`, for a simulator in another process.
pub fn thingspace_at(base_url: &str, password: &str) -> ThingSpaceClient {
    ThingSpaceClient::new(
        ThingSpaceConfig {
            base_url: base_url.into(),
            account_name: "0000123456-00001".into(),
            app_key: Secret::new("demo-client-id"),
            app_secret: Secret::new("demo-client-secret"),
            username: "demo-user".into(),
            password: Secret::new(password),
        },
        quick_policy(),
        None,
    )
    .unwrap()
}

/// The demo IoTDA project with its OBS bucket `fw-bucket`, uploading in `part_size` parts.
pub fn iotda(
    sim: &SimHandle,
    signing: SigningChoice,
    part_size: u64,
    key_prefix: &str,
) -> IotdaClient {
    iotda_client(
        &sim.iotda_url(),
        &sim.obs_url,
        signing,
        part_size,
        key_prefix,
        None,
    )
}

/// [`iotda`] for a simulator in another process, reached at `iotda_url` and `obs_url`.
pub fn iotda_at(
    iotda_url: &str,
    obs_url: &str,
    signing: SigningChoice,
    part_size: u64,
    key_prefix: &str,
) -> IotdaClient {
    iotda_client(iotda_url, obs_url, signing, part_size, key_prefix, None)
}

fn iotda_client(
    iotda_url: &str,
    obs_url: &str,
    signing: SigningChoice,
    part_size: u64,
    key_prefix: &str,
    iam: Option<IamLogin>,
) -> IotdaClient {
    let obs = ObsClient::new(
        ObsConfig {
            endpoint: obs_url.into(),
            region: "cn-north-4".into(),
            bucket: "fw-bucket".into(),
            path_style: true,
            access_key_id: IOTDA_ACCESS_KEY.into(),
            secret_access_key: Secret::new(IOTDA_SECRET_KEY),
            part_size,
        },
        quick_policy(),
        None,
    )
    .unwrap();
    IotdaClient::new(
        IotdaConfig {
            endpoint: iotda_url.into(),
            project_id: IOTDA_PROJECT.into(),
            instance_id: Some("inst-0001".into()),
            region: "cn-north-4".into(),
            signing,
            access_key_id: IOTDA_ACCESS_KEY.into(),
            secret_access_key: Secret::new(IOTDA_SECRET_KEY),
            key_prefix: key_prefix.into(),
            iam,
        },
        obs,
        quick_policy(),
        None,
    )
    .unwrap()
}

/// The demo IoTDA project reached with the demo IAM user's password token instead of AK/SK
/// (OBS uploads still sign with the AK/SK).
pub fn iotda_with_iam(sim: &SimHandle, password: &str) -> IotdaClient {
    let iam = IamLogin {
        endpoint: sim.base_url.clone(),
        domain: "demo-account".into(),
        user: "demo-user".into(),
        password: Secret::new(password),
    };
    iotda_client(
        &sim.iotda_url(),
        &sim.obs_url,
        SigningChoice::Automatic,
        16 << 20,
        "",
        Some(iam),
    )
}

/// The demo IoTaaP user, logging in with `password`.
pub fn iotaap(sim: &SimHandle, password: &str) -> IotaapClient {
    IotaapClient::new(
        IotaapConfig {
            base_url: format!("{}/v1", sim.base_url),
            device_url: format!("{}/v1", sim.base_url),
            email: "demo@iotaap.local".into(),
            password: Secret::new(password),
            deploy_concurrency: 2,
        },
        quick_policy(),
        None,
    )
    .unwrap()
}
