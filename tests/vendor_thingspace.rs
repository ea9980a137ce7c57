//! The ThingSpace client against the simulator over loopback: upload, lookup, a campaign to its
//! end, session expiry, a wrong password that is never retried, cancels of finished campaigns
//! that count as done, and an unknown campaign ID that reads as not found.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use otaplane::{
    sim::{self, SimConfig},
    vendor::{
        CallObserver, PackageSpec, PackageVendorSpec, RolloutSpec, VendorError,
        thingspace::ThingSpaceClient,
    },
};

mod support;

/// Counts attempts per endpoint.
#[derive(Default)]
struct Calls(Mutex<BTreeMap<&'static str, usize>>);

impl Calls {
    fn count(&self, endpoint: &str) -> usize {
        self.0.lock().unwrap().get(endpoint).copied().unwrap_or(0)
    }
}

impl CallObserver for Calls {
    fn on_attempt(&self, _: &'static str, endpoint: &'static str, _: Option<u16>) {
        *self.0.lock().unwrap().entry(endpoint).or_default() += 1;
    }
}

fn client(sim: &sim::SimHandle, password: &str, calls: &Arc<Calls>) -> ThingSpaceClient {
    support::thingspace(sim, password).with_observer(calls.clone())
}

fn package() -> PackageSpec {
    PackageSpec {
        namespace: "default".into(),
        name: "tracker-fw".into(),
        version: "2.1.0".into(),
        description: None,
        vendor: PackageVendorSpec::ThingSpace {
            make: "Acme".into(),
            model: "Tracker-X1".into(),
            local_target_path: "/VZWFOTA/tracker.bin".into(),
        },
    }
}

async fn start_sim() -> sim::SimHandle {
    sim::start(SimConfig {
        time_scale: 3600.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_file_is_uploaded_once_found_again_and_rolled_out() {
    let sim = start_sim().await;
    let calls = Arc::new(Calls::default());
    let client = client(&sim, "demo-password", &calls);
    client.authenticate().await.unwrap();

    assert_eq!(client.find_package(&package()).await.unwrap(), None);
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), vec![0x5a; 300 * 1024]).unwrap();
    let registered = client
        .register_package(&package(), image.path(), 300 * 1024)
        .await
        .unwrap();
    assert_eq!(
        registered.external_id,
        "configfile-Acme_Tracker-X1_tracker.bin"
    );
    assert_eq!(registered.version, "2.1.0");
    assert_eq!(
        client.find_package(&package()).await.unwrap(),
        Some(registered.clone())
    );
    assert_eq!(calls.count("oauth2_token"), 1, "the token is reused");
    assert_eq!(calls.count("session_login"), 1, "the session is reused");

    let devices: Vec<String> = (0..5).map(|i| format!("99001390783557{i}")).collect();
    let rollout = RolloutSpec {
        name: "otaplane-0123456789ab-w0".into(),
        devices: devices.clone(),
        end_date: None,
        download_windows: Vec::new(),
        install_windows: Vec::new(),
        retry: None,
        gateway_mode: false,
    };
    let campaign = client.start_rollout(&registered, &rollout).await.unwrap();
    assert_eq!(
        client.find_rollout(&rollout.name).await.unwrap(),
        Some(campaign.clone())
    );

    let mut progress = client.rollout_progress(&campaign, &devices).await.unwrap();
    for _ in 0..100 {
        if progress.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress = client.rollout_progress(&campaign, &devices).await.unwrap();
    }
    assert!(progress.is_finished(), "{progress:?}");
    assert_eq!(progress.tally.total(), 5);
    assert_eq!(progress.tally.succeeded, 5, "{progress:?}");
}

#[tokio::test]
async fn a_wrong_password_is_tried_once_and_never_again() {
    let sim = start_sim().await;
    let calls = Arc::new(Calls::default());
    let rejected = client(&sim, "not-the-password", &calls);
    for _ in 0..3 {
        let err = rejected.authenticate().await.unwrap_err();
        assert!(matches!(err, VendorError::Authentication { .. }), "{err}");
        assert!(!err.is_retryable());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("not-the-password"), "{shown}");
        assert!(shown.contains("demo-user"), "{shown}");
    }
    assert_eq!(
        calls.count("session_login"),
        1,
        "5 failed logins lock the user: one only"
    );

    // With the Secret fixed (a new client), the same user can still log in: it was not locked.
    let fixed = client(&sim, "demo-password", &Arc::new(Calls::default()));
    fixed.authenticate().await.unwrap();
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_and_the_call_goes_through() {
    let sim = start_sim().await;
    let calls = Arc::new(Calls::default());
    let client = client(&sim, "demo-password", &calls);
    client.list_packages().await.unwrap();
    let expired = reqwest::Client::new()
        .post(format!(
            "{}/_sim/expire-tokens?vendor=thingspace",
            sim.base_url
        ))
        .send()
        .await
        .unwrap();
    assert!(expired.status().is_success(), "{}", expired.status());
    client.list_packages().await.unwrap();
    assert_eq!(calls.count("session_login"), 2);
}

#[tokio::test]
async fn a_campaign_can_be_cancelled() {
    let sim = start_sim().await;
    let client = client(&sim, "demo-password", &Arc::new(Calls::default()));
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), b"fw").unwrap();
    let registered = client
        .register_package(&package(), image.path(), 2)
        .await
        .unwrap();
    let devices = vec!["990013907835573".to_string()];
    let rollout = RolloutSpec {
        name: "otaplane-cancel-w0".into(),
        devices: devices.clone(),
        end_date: Some("2099-01-01".into()),
        download_windows: vec![(1, 4)],
        install_windows: Vec::new(),
        retry: None,
        gateway_mode: false,
    };
    let campaign = client.start_rollout(&registered, &rollout).await.unwrap();
    client.cancel_rollout(&campaign).await.unwrap();
    let progress = client.rollout_progress(&campaign, &devices).await.unwrap();
    assert!(
        matches!(
            progress.vendor_status.as_str(),
            "CampaignCancelled" | "CampaignAborted"
        ),
        "{progress:?}"
    );
    assert!(progress.is_finished(), "{progress:?}");

    // ThingSpace refuses a second cancel ("already cancelled"): there is nothing left to stop.
    client.cancel_rollout(&campaign).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_campaign_that_already_ended_counts_as_done() {
    let sim = start_sim().await;
    let client = client(&sim, "demo-password", &Arc::new(Calls::default()));
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), b"fw").unwrap();
    let registered = client
        .register_package(&package(), image.path(), 2)
        .await
        .unwrap();
    let devices = vec!["990013907835574".to_string()];
    let rollout = RolloutSpec {
        name: "otaplane-ended-w0".into(),
        devices: devices.clone(),
        end_date: None,
        download_windows: Vec::new(),
        install_windows: Vec::new(),
        retry: None,
        gateway_mode: false,
    };
    let campaign = client.start_rollout(&registered, &rollout).await.unwrap();
    let mut progress = client.rollout_progress(&campaign, &devices).await.unwrap();
    for _ in 0..100 {
        if progress.vendor_status == "CampaignEnded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress = client.rollout_progress(&campaign, &devices).await.unwrap();
    }
    assert_eq!(progress.vendor_status, "CampaignEnded", "{progress:?}");

    client.cancel_rollout(&campaign).await.unwrap();
    let after = client.rollout_progress(&campaign, &devices).await.unwrap();
    assert_eq!(after.vendor_status, "CampaignEnded", "{after:?}");
    assert_eq!(
        after.tally.succeeded, 1,
        "the upgrade stays done: {after:?}"
    );
}

#[tokio::test]
async fn a_campaign_id_thingspace_does_not_know_is_not_found() {
    let sim = start_sim().await;
    let client = client(&sim, "demo-password", &Arc::new(Calls::default()));
    let unknown = "6f1c2b8e-0d4a-4c55-9a57-3f1e2d4c5b6a";
    let devices = vec!["990013907835575".to_string()];

    let err = client
        .rollout_progress(unknown, &devices)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("Invalid upgradeId"), "{err}");

    // Nothing of an unknown campaign is left to stop.
    client.cancel_rollout(unknown).await.unwrap();

    // A malformed ID is still a refusal, not a missing campaign.
    let err = client
        .rollout_progress("not-a-uuid", &devices)
        .await
        .unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    assert_eq!(err.status(), Some(400), "{err}");
}
