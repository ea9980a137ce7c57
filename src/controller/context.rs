//! What every reconcile shares: the Kubernetes client, caches of the three kinds, vendor
//! clients, the artifact fetcher, metrics and the Events recorder.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

use super::Settings;
use super::error::ControllerError;
use super::metrics::Metrics;
use super::vendors::VendorClients;
use crate::api::{FirmwarePackage, OtaProvider, UpgradeCampaign};
use crate::artifact::ArtifactFetcher;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "otaplane";

/// Shared state of one controller scope (all namespaces, or one watched namespace).
pub struct Context {
    /// The Kubernetes client.
    pub kube: kube::Client,
    /// Operator settings.
    pub settings: Arc<Settings>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Fetches and verifies artifacts.
    pub fetcher: ArtifactFetcher,
    /// Vendor clients per provider.
    pub vendors: Arc<VendorClients>,
    /// Cache of OtaProviders.
    pub providers: Store<OtaProvider>,
    /// Cache of FirmwarePackages.
    pub packages: Store<FirmwarePackage>,
    /// Cache of UpgradeCampaigns.
    pub campaigns: Store<UpgradeCampaign>,
    /// Packages a provider drift check found missing vendor-side; their next reconcile
    /// confirms and re-creates them.
    pub drifted: Mutex<HashSet<ObjectRef<FirmwarePackage>>>,
    /// Triggers a package reconcile (drift).
    pub package_trigger: UnboundedSender<ObjectRef<FirmwarePackage>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context over the given caches.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kube: kube::Client,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        fetcher: ArtifactFetcher,
        vendors: Arc<VendorClients>,
        stores: (
            Store<OtaProvider>,
            Store<FirmwarePackage>,
            Store<UpgradeCampaign>,
        ),
        package_trigger: UnboundedSender<ObjectRef<FirmwarePackage>>,
    ) -> Self {
        let (providers, packages, campaigns) = stores;
        Self {
            kube,
            settings,
            metrics,
            recorder,
            fetcher,
            vendors,
            providers,
            packages,
            campaigns,
            drifted: Mutex::new(HashSet::new()),
            package_trigger,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The OtaProvider `name` in `namespace`, from the cache.
    pub fn provider(&self, namespace: &str, name: &str) -> Option<Arc<OtaProvider>> {
        self.providers.get(&ObjectRef::new(name).within(namespace))
    }

    /// The FirmwarePackage `name` in `namespace`, from the cache.
    pub fn package(&self, namespace: &str, name: &str) -> Option<Arc<FirmwarePackage>> {
        self.packages.get(&ObjectRef::new(name).within(namespace))
    }

    /// Writes `status` of `obj` with server-side apply under [`FIELD_MANAGER`]: the status
    /// becomes exactly this value (fields left out are removed).
    pub async fn write_status<K, S>(&self, obj: &K, status: &S) -> Result<(), ControllerError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        S: Serialize,
    {
        let namespace = obj
            .namespace()
            .ok_or(ControllerError::MissingMetadata("namespace"))?;
        let api: Api<K> = Api::namespaced(self.kube.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(())
    }

    /// Publishes an Event on `obj`. A failure to publish is logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        match type_ {
            EventType::Normal => tracing::info!(reason, note = %note, "event"),
            EventType::Warning => tracing::warn!(reason, note = %note, "event"),
        }
        // kube's recorder folds events with the same type, reason and action into one series
        // that keeps the first note. The action carries a digest of the note, so repeats of the
        // same message still fold while "wave 1 started" does not vanish into "wave 0 started".
        let digest = Sha256::digest(note.as_bytes());
        let event = Event {
            type_,
            reason: reason.to_string(),
            action: format!("{reason}-{}", hex::encode(&digest[..4])),
            note: Some(truncate(note, 1000)),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %err, reason, "publishing an Event failed");
        }
    }

    /// The requeue after a failed reconcile of the object `key`: exponential per object and per
    /// error class, honouring the vendor's `Retry-After`, with jitter.
    pub fn backoff(&self, key: String, err: &ControllerError) -> Action {
        let attempt = {
            let mut failures = self.failures.lock().expect("failures lock");
            let count = failures.entry(key).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let (base, cap) = match err {
            ControllerError::Kube(_) | ControllerError::Finalizer(_) => {
                (Duration::from_millis(500), Duration::from_secs(60))
            }
            ControllerError::Vendor(vendor) if vendor.status() == Some(429) => {
                (Duration::from_secs(5), Duration::from_secs(300))
            }
            ControllerError::Vendor(_) | ControllerError::Artifact(_) => {
                (Duration::from_secs(2), Duration::from_secs(300))
            }
            _ => (Duration::from_secs(30), Duration::from_secs(900)),
        };
        let exponential = base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(cap);
        let delay = err
            .retry_after()
            .map_or(exponential, |wait| wait.max(exponential));
        Action::requeue(with_jitter(delay))
    }

    /// Forgets the failure count of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().expect("failures lock").remove(key);
    }

    /// The resync requeue with jitter.
    pub fn resync(&self) -> Action {
        Action::requeue(with_jitter(self.settings.resync_interval))
    }
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// `delay` plus up to 10 % random jitter, so many objects do not requeue in lockstep.
pub fn with_jitter(delay: Duration) -> Duration {
    let spread = (delay.as_millis() as u64 / 10).max(1);
    delay + Duration::from_millis(rand::rng().random_range(0..spread))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
