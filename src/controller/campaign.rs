//! UpgradeCampaign: waves of vendor rollouts, driven by the pure state machine in
//! [`crate::reconcile::campaign`].
//!
//! Every reconcile runs one pipeline:
//! 1. **dereference**: the FirmwarePackage (from the cache) and its OtaProvider give the
//!    [`PackageReadiness`]; the vendor client is built only when a vendor call is needed.
//! 2. **observe**: one progress poll per wave the last status shows as started and unfinished
//!    (by its recorded vendor ID, or looked up by its deterministic name).
//! 3. **decide**: [`decide`], pure.
//! 4. **apply**: the decision's actions in order. Before a wave is started its intent (started,
//!    no vendor ID yet) is written to status, and its vendor ID is written as soon as the vendor
//!    answers, so a crash never starts a wave twice: a wave the status shows without a vendor ID
//!    is looked up by name (and adopted if found) before it is started again; a wave without
//!    that trace is started without a lookup. When an action fails the decision is dropped and
//!    retried with backoff; a terminal error (a vendor's 4xx, a spec the vendor refuses) also
//!    sets `Stalled` on the last written status before this reconcile's start.
//! 5. **status**: events, then the status when it changed, then a requeue with jitter.
//!
//! Deletion goes through the finalizer [`FINALIZER`]: running waves are cancelled vendor-side
//! before the object is released.

use std::ops::Range;
use std::sync::Arc;

use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::context::{Context, now, with_jitter};
use super::error::ControllerError;
use super::package::{artifact_file, artifact_request, package_spec};
use crate::api::condition_types::{READY, STALLED};
use crate::api::{
    CampaignPhase, FirmwarePackage, HourWindow, OtaProvider, UpgradeCampaign, UpgradeCampaignSpec,
    UpgradeCampaignStatus, Vendor, find_condition,
};
use crate::reconcile::{
    Action as WaveAction, CampaignInput, ConditionStatus, Decision, DesiredCondition, EventType,
    ObservedCounts, ObservedFailure, PackageReadiness, WaveObservation, decide, plan_waves,
    reasons, set_condition,
};
use crate::vendor::{
    CancelOutcome, PackageSpec, RegisteredPackage, RolloutProgress, RolloutSpec, VendorClient,
};

/// The kind, for metrics and logs.
pub const KIND: &str = "UpgradeCampaign";
/// Finalizer that keeps an UpgradeCampaign until its running waves are cancelled vendor-side.
pub const FINALIZER: &str = "otaplane.io/campaign-cleanup";

/// Adds the campaign controller's watches: a FirmwarePackage change re-queues every unfinished
/// campaign whose `spec.packageRef` names it (so a package becoming Ready starts its campaigns).
pub fn configure(
    controller: Controller<UpgradeCampaign>,
    client: &kube::Client,
    namespace: Option<&str>,
    ctx: &Arc<Context>,
) -> Controller<UpgradeCampaign> {
    let packages: Api<FirmwarePackage> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let campaigns = ctx.campaigns.clone();
    controller.watches(
        packages,
        watcher::Config::default().any_semantic(),
        move |package| {
            let namespace = package.namespace();
            let name = package.name_any();
            campaigns
                .state()
                .into_iter()
                .filter(|campaign| {
                    campaign.namespace() == namespace
                        && campaign.spec.package_ref.name == name
                        && !campaign
                            .status
                            .as_ref()
                            .and_then(|status| status.phase)
                            .is_some_and(CampaignPhase::is_terminal)
                })
                .map(|campaign| ObjectRef::from_obj(&*campaign))
                .collect::<Vec<_>>()
        },
    )
}

/// Reconciles one UpgradeCampaign.
pub async fn reconcile(
    campaign: Arc<UpgradeCampaign>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let namespace = campaign
        .namespace()
        .ok_or(ControllerError::MissingMetadata("namespace"))?;
    let api: Api<UpgradeCampaign> = Api::namespaced(ctx.kube.clone(), &namespace);
    finalizer(&api, FINALIZER, campaign, |event| async {
        match event {
            FinalizerEvent::Apply(campaign) => apply(campaign, ctx.clone()).await,
            FinalizerEvent::Cleanup(campaign) => cleanup(campaign, ctx.clone()).await,
        }
    })
    .await
    .map_err(ControllerError::from)
}

/// One reconcile's working state: the campaign, what was last written, and the lazily built
/// vendor side.
struct Run {
    campaign: Arc<UpgradeCampaign>,
    ctx: Arc<Context>,
    target: Option<Target>,
    vendor: Option<VendorSide>,
    /// The status as stored now (updated by every write of this reconcile).
    written: Option<UpgradeCampaignStatus>,
    /// Whether the decision's events were already published.
    events_published: bool,
    /// Waves that the observation looked up by name and the vendor does not have.
    searched: Vec<usize>,
}

/// The package and provider a campaign resolved to.
struct Target {
    package: Arc<FirmwarePackage>,
    provider: Arc<OtaProvider>,
    vendor: Vendor,
}

/// What vendor calls need: the client and the vendor-neutral package.
struct VendorSide {
    client: VendorClient,
    spec: PackageSpec,
    registered: RegisteredPackage,
}

impl Run {
    fn new(campaign: Arc<UpgradeCampaign>, ctx: Arc<Context>, target: Option<Target>) -> Self {
        Self {
            written: campaign.status.clone(),
            campaign,
            ctx,
            target,
            vendor: None,
            events_published: false,
            searched: Vec::new(),
        }
    }

    /// The vendor side, built on first use; `None` when the package or its provider is gone.
    async fn vendor(&mut self) -> Result<Option<&VendorSide>, ControllerError> {
        if self.vendor.is_none() {
            let Some(target) = &self.target else {
                return Ok(None);
            };
            let client = self
                .ctx
                .vendors
                .client_for(&self.ctx.kube, &target.provider)
                .await?;
            let spec = package_spec(&target.package, &target.provider, target.vendor)?;
            let registered = registered_package(&target.package);
            self.vendor = Some(VendorSide {
                client,
                spec,
                registered,
            });
        }
        Ok(self.vendor.as_ref())
    }

    /// The device ranges of the campaign's waves, as the decision plans them.
    fn waves(&self) -> Option<Vec<Range<usize>>> {
        let spec = &self.campaign.spec;
        plan_waves(
            spec.devices.len(),
            spec.strategy.as_ref().and_then(|s| s.waves.as_ref()),
        )
        .ok()
    }

    fn devices(&self, waves: &[Range<usize>], index: usize) -> Vec<String> {
        waves
            .get(index)
            .and_then(|range| self.campaign.spec.devices.get(range.clone()))
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Polls every wave the last status shows as started and unfinished, once each.
    async fn observe(&mut self) -> Result<Vec<WaveObservation>, ControllerError> {
        let running: Vec<(usize, String, Option<String>)> = self
            .campaign
            .status
            .iter()
            .flat_map(|status| status.waves.iter())
            .filter(|wave| wave.completed_at.is_none())
            .map(|wave| {
                (
                    wave.index as usize,
                    wave.name.clone(),
                    wave.vendor_id.clone(),
                )
            })
            .collect();
        let Some(waves) = self.waves().filter(|_| !running.is_empty()) else {
            return Ok(Vec::new());
        };
        let mut observations = Vec::with_capacity(running.len());
        for (index, name, vendor_id) in running {
            if index >= waves.len() {
                continue;
            }
            let devices = self.devices(&waves, index);
            let Some(vendor) = self.vendor().await? else {
                // Without the package or provider there is no one to ask: counts stay as last seen.
                return Ok(Vec::new());
            };
            let vendor_id = match vendor_id {
                Some(id) => Some(id),
                None => vendor.client.find_rollout(&vendor.spec, &name).await?,
            };
            let Some(vendor_id) = vendor_id else {
                self.searched.push(index);
                observations.push(WaveObservation {
                    index,
                    ..WaveObservation::default()
                });
                continue;
            };
            match vendor
                .client
                .rollout_progress(&vendor.spec, &vendor_id, &devices)
                .await
            {
                Ok(progress) => observations.push(observation(index, vendor_id, progress)),
                Err(err) if err.is_not_found() => observations.push(WaveObservation {
                    index,
                    vendor_id: Some(vendor_id),
                    ..WaveObservation::default()
                }),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(observations)
    }

    /// Applies the decision's actions in order; records and writes each started wave at once.
    async fn act(&mut self, decision: &mut Decision) -> Result<(), ControllerError> {
        for action in decision.actions.clone() {
            match action {
                WaveAction::StartWave {
                    index,
                    name,
                    devices,
                } => {
                    let vendor_id = self.start_recorded(decision, index, &name, devices).await?;
                    decision.record_vendor_id(index, vendor_id);
                    self.commit(decision).await?;
                }
                WaveAction::StopWave {
                    index,
                    name,
                    vendor_id,
                } => {
                    self.cancel_wave(index, &name, Some(vendor_id), "stop")
                        .await?;
                }
                WaveAction::CancelWave {
                    index,
                    name,
                    vendor_id,
                    ..
                } => {
                    self.cancel_wave(index, &name, vendor_id, "cancel").await?;
                }
            }
        }
        Ok(())
    }

    /// Starts wave `index` so that a crash can never start it twice: the intent (the wave
    /// started, no vendor ID yet) is written to status before the vendor is asked. The rollout
    /// is looked up by name first only when an earlier attempt may have reached the vendor
    /// without its ID being recorded:
    /// - the stored status shows the wave started without a vendor ID (a crash or a failed call
    ///   after the intent was written), unless this reconcile's observation already searched
    ///   for it and found nothing;
    /// - or the stored status is `Stalled`: after a refused start the intent is withdrawn, and
    ///   retries while stalled write none (each retry would otherwise write the status twice and
    ///   re-trigger itself), so a retry that the vendor accepted leaves no trace but the lookup.
    ///
    /// A terminal failure withdraws the intent: the campaign shows the last status it had
    /// before this start, with `Stalled` (see [`Run::fail`]). A retryable one keeps it, and the
    /// next attempt looks the rollout up.
    async fn start_recorded(
        &mut self,
        decision: &Decision,
        index: usize,
        name: &str,
        devices: Range<usize>,
    ) -> Result<String, ControllerError> {
        let stored = self.written.as_ref();
        let interrupted = stored.is_some_and(|status| {
            status
                .waves
                .iter()
                .any(|wave| wave.index as usize == index && wave.vendor_id.is_none())
        });
        let stalled = stored.is_some_and(|status| {
            find_condition(&status.conditions, STALLED).is_some_and(|c| c.status == "True")
        });
        let look_up = (interrupted && !self.searched.contains(&index)) || stalled;
        // IoTaaP finds nothing by name (its deploys are idempotent): an intent would buy nothing.
        let idempotent = self
            .target
            .as_ref()
            .is_some_and(|target| target.vendor == Vendor::Iotaap);
        let before_intent = self.written.clone();
        if !interrupted && !stalled && !idempotent {
            self.write_status(decision).await?;
        }
        match self.start_wave(name, devices, look_up).await {
            Ok(vendor_id) => Ok(vendor_id),
            Err(err) => {
                if !err.is_retryable() {
                    self.written = before_intent;
                }
                Err(err)
            }
        }
    }

    /// Writes the decision's status when it differs from the stored one, without publishing its
    /// events. A wave's intent (started, vendor ID not yet known) is written this way: its
    /// events go out once the vendor accepted the start.
    async fn write_status(&mut self, decision: &Decision) -> Result<(), ControllerError> {
        if decision.status_changed(self.written.as_ref()) {
            self.ctx
                .write_status(&*self.campaign, &decision.status)
                .await?;
            self.written = Some(decision.status.clone());
        }
        Ok(())
    }

    /// Starts the wave's rollout and returns its ID; with `look_up`, first adopts the rollout
    /// called `name` if the vendor has one.
    async fn start_wave(
        &mut self,
        name: &str,
        devices: Range<usize>,
        look_up: bool,
    ) -> Result<String, ControllerError> {
        let rollout = rollout_spec(&self.campaign.spec, name, devices)?;
        let artifact_package = self
            .target
            .as_ref()
            .filter(|target| target.vendor == Vendor::Iotaap)
            .map(|target| target.package.clone());
        let Some(vendor) = self.vendor().await? else {
            return Err(ControllerError::InvalidSpec {
                reason: "PackageNotFound",
                message: format!(
                    "FirmwarePackage {} or its OtaProvider no longer exists",
                    self.campaign.spec.package_ref.name
                ),
            });
        };
        let found = if look_up {
            vendor.client.find_rollout(&vendor.spec, name).await?
        } else {
            None
        };
        if let Some(found) = found {
            self.event(
                KubeEventType::Normal,
                reasons::WAVE_ADOPTED,
                format!("adopted the existing vendor rollout {found} named {name}"),
            )
            .await;
            return Ok(found);
        }
        let Some(package) = artifact_package else {
            return Ok(vendor
                .client
                .start_rollout(&vendor.spec, &vendor.registered, &rollout, None)
                .await?);
        };
        // IoTaaP uploads the image per device: fetch it again, held to the checksum measured
        // when the package was verified.
        let mut request = artifact_request(&package, &self.ctx).await?;
        if request.expected_sha256.is_none() {
            request.expected_sha256 = package
                .status
                .as_ref()
                .and_then(|status| status.artifact.as_ref())
                .map(|artifact| artifact.sha256.clone());
        }
        let artifact = self.ctx.fetcher.fetch(&request).await?;
        let vendor = self
            .vendor()
            .await?
            .expect("the vendor side was just built");
        Ok(vendor
            .client
            .start_rollout(
                &vendor.spec,
                &vendor.registered,
                &rollout,
                Some(artifact_file(&artifact, &request.url)),
            )
            .await?)
    }

    /// Stops or cancels (`verb`) a wave's rollout, found by name when its ID was never recorded.
    /// Where the vendor cannot stop anything (IoTaaP), an event says so.
    async fn cancel_wave(
        &mut self,
        index: usize,
        name: &str,
        vendor_id: Option<String>,
        verb: &str,
    ) -> Result<(), ControllerError> {
        let Some(vendor) = self.vendor().await? else {
            let package = self.campaign.spec.package_ref.name.clone();
            self.event(
                KubeEventType::Warning,
                "CancelImpossible",
                format!(
                    "cannot {verb} wave {index} ({name}) vendor-side: FirmwarePackage {package} or its OtaProvider no longer exists"
                ),
            )
            .await;
            return Ok(());
        };
        let vendor_id = match vendor_id {
            Some(id) => Some(id),
            None => vendor.client.find_rollout(&vendor.spec, name).await?,
        };
        let Some(vendor_id) = vendor_id else {
            return Ok(());
        };
        if self.cancel(&vendor_id).await? == CancelOutcome::NotSupported {
            let vendor = self.vendor_name();
            self.event(
                KubeEventType::Normal,
                "CancelNotSupported",
                format!(
                    "{vendor} cannot {verb} a rollout: devices of wave {index} that were already offered the image may still install it"
                ),
            )
            .await;
        }
        Ok(())
    }

    /// Stops what has not finished in a rollout. A rollout that is gone counts as done; the
    /// vendor clients already count a refusal because the rollout finished as done.
    async fn cancel(&mut self, vendor_id: &str) -> Result<CancelOutcome, ControllerError> {
        let Some(vendor) = self.vendor().await? else {
            return Ok(CancelOutcome::NotSupported);
        };
        match vendor.client.cancel_rollout(vendor_id).await {
            Ok(outcome) => Ok(outcome),
            Err(err) if err.is_not_found() => Ok(CancelOutcome::Cancelled),
            Err(err) => Err(err.into()),
        }
    }

    /// Publishes the decision's events (once) and writes its status when it differs from the
    /// stored one.
    async fn commit(&mut self, decision: &Decision) -> Result<(), ControllerError> {
        self.publish(decision).await;
        self.write_status(decision).await
    }

    /// Publishes the decision's events, once per reconcile.
    async fn publish(&mut self, decision: &Decision) {
        if self.events_published {
            return;
        }
        self.events_published = true;
        for event in &decision.events {
            let type_ = match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            };
            self.event(type_, event.reason, event.message.clone()).await;
        }
    }

    /// After a failed observation or action: a retryable error is returned for backoff as is;
    /// a terminal one is also shown as `Stalled` on the stored status (and in a Warning event),
    /// written once per reason so that a message that varies cannot cause a write loop.
    async fn fail(&mut self, err: ControllerError) -> ControllerError {
        if err.is_retryable() {
            return err;
        }
        let mut status = self.written.clone().unwrap_or_default();
        let shown = find_condition(&status.conditions, STALLED)
            .is_some_and(|c| c.status == "True" && c.reason == err.reason());
        if shown {
            return err;
        }
        let generation = self.campaign.metadata.generation;
        status.observed_generation = generation;
        status.phase.get_or_insert(CampaignPhase::Pending);
        let message = err.to_string();
        set_condition(
            &mut status.conditions,
            DesiredCondition::new(STALLED, ConditionStatus::True, err.reason(), &message),
            generation,
            &now(),
        );
        if find_condition(&status.conditions, READY).is_none_or(|c| c.status != "True") {
            set_condition(
                &mut status.conditions,
                DesiredCondition::new(READY, ConditionStatus::False, err.reason(), &message),
                generation,
                &now(),
            );
        }
        if let Err(write) = self.ctx.write_status(&*self.campaign, &status).await {
            return write;
        }
        self.written = Some(status);
        self.event(
            KubeEventType::Warning,
            err.reason(),
            format!("{}: {message}", err.reason()),
        )
        .await;
        err
    }

    async fn event(&self, type_: KubeEventType, reason: &str, note: String) {
        self.ctx.event(&*self.campaign, type_, reason, note).await;
    }

    fn vendor_name(&self) -> String {
        self.target.as_ref().map_or_else(
            || "the vendor".to_string(),
            |target| target.vendor.to_string(),
        )
    }
}

/// The normal path: observe, decide, act, write.
async fn apply(
    campaign: Arc<UpgradeCampaign>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let campaign = freshest(campaign, &ctx).await?;
    let (readiness, target) = dereference(&campaign, &ctx);
    let mut run = Run::new(campaign.clone(), ctx.clone(), target);
    let observations = match run.observe().await {
        Ok(observations) => observations,
        Err(err) => return Err(run.fail(err).await),
    };
    let mut decision = decide_now(&campaign, &ctx, readiness, &observations, false);
    if let Err(err) = run.act(&mut decision).await {
        return Err(run.fail(err).await);
    }
    run.commit(&decision).await?;
    Ok(match decision.requeue_after {
        Some(after) => Action::requeue(with_jitter(after)),
        None => Action::await_change(),
    })
}

/// The campaign as the API server has it now, when the cached copy shows an unfinished wave
/// without a vendor ID. The cache can lag behind this operator's own last writes (a wave's
/// intent, then its ID), and a wave without an ID costs a vendor lookup by name; one read from
/// the API server is cheaper, and only this case pays it.
async fn freshest(
    campaign: Arc<UpgradeCampaign>,
    ctx: &Context,
) -> Result<Arc<UpgradeCampaign>, ControllerError> {
    let unrecorded = campaign.status.as_ref().is_some_and(|status| {
        status
            .waves
            .iter()
            .any(|wave| wave.completed_at.is_none() && wave.vendor_id.is_none())
    });
    let Some(namespace) = campaign.namespace().filter(|_| unrecorded) else {
        return Ok(campaign);
    };
    let api: Api<UpgradeCampaign> = Api::namespaced(ctx.kube.clone(), &namespace);
    Ok(match api.get_opt(&campaign.name_any()).await? {
        Some(fresh) if fresh.metadata.uid == campaign.metadata.uid => Arc::new(fresh),
        _ => campaign,
    })
}

/// Deletion: cancel every unfinished wave vendor-side, then let the finalizer go.
async fn cleanup(
    campaign: Arc<UpgradeCampaign>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let (readiness, target) = dereference(&campaign, &ctx);
    let mut run = Run::new(campaign.clone(), ctx.clone(), target);
    let mut decision = decide_now(&campaign, &ctx, readiness, &[], true);
    if let Err(err) = run.act(&mut decision).await {
        return Err(run.fail(err).await);
    }
    run.publish(&decision).await;
    debug_assert!(decision.finalize, "a deleting decision always finalizes");
    Ok(Action::await_change())
}

/// The pure decision for `campaign` at the current time.
fn decide_now(
    campaign: &UpgradeCampaign,
    ctx: &Context,
    package: PackageReadiness,
    observations: &[WaveObservation],
    deleting: bool,
) -> Decision {
    decide(&CampaignInput {
        spec: &campaign.spec,
        generation: campaign.metadata.generation,
        uid: campaign.metadata.uid.as_deref().unwrap_or_default(),
        deleting,
        status: campaign.status.as_ref(),
        now: jiff::Timestamp::now(),
        package,
        observations,
        polling: ctx.settings.campaign_polling,
    })
}

/// Loads the package and its provider from the caches and says whether the package can be
/// rolled out.
fn dereference(campaign: &UpgradeCampaign, ctx: &Context) -> (PackageReadiness, Option<Target>) {
    let namespace = campaign.namespace().unwrap_or_default();
    let package_name = &campaign.spec.package_ref.name;
    let Some(package) = ctx.package(&namespace, package_name) else {
        return (PackageReadiness::Missing, None);
    };
    let provider_name = &package.spec.provider_ref.name;
    let Some(provider) = ctx.provider(&namespace, provider_name) else {
        return (
            PackageReadiness::NotReady {
                reason: format!("its OtaProvider {provider_name} does not exist"),
            },
            None,
        );
    };
    let Some(vendor) = provider.spec.vendor() else {
        return (
            PackageReadiness::NotReady {
                reason: format!("its OtaProvider {provider_name} sets no vendor block"),
            },
            None,
        );
    };
    let readiness = readiness(&package, vendor);
    let target = Target {
        package,
        provider,
        vendor,
    };
    (readiness, Some(target))
}

/// Whether `package`, registered with a `vendor` account, can be rolled out: Ready, with the
/// vendor's identifier recorded.
fn readiness(package: &FirmwarePackage, vendor: Vendor) -> PackageReadiness {
    let status = package.status.as_ref();
    let ready = status.and_then(|status| find_condition(&status.conditions, READY));
    let registered = status
        .and_then(|status| status.at_provider.as_ref())
        .and_then(|at| at.external_id.as_ref())
        .is_some();
    match ready {
        Some(condition) if condition.status == "True" && registered => PackageReadiness::Ready {
            vendor,
            version: package.spec.version.clone(),
        },
        Some(condition) if condition.status == "True" => PackageReadiness::NotReady {
            reason: "it records no vendor identifier".to_string(),
        },
        Some(condition) => PackageReadiness::NotReady {
            reason: format!("{}: {}", condition.reason, condition.message),
        },
        None => PackageReadiness::NotReady {
            reason: "it has not been reconciled yet".to_string(),
        },
    }
}

/// The package as the vendor registered it, from `status.atProvider`.
fn registered_package(package: &FirmwarePackage) -> RegisteredPackage {
    let status = package.status.as_ref();
    let at = status.and_then(|status| status.at_provider.as_ref());
    RegisteredPackage {
        external_id: at.and_then(|at| at.external_id.clone()).unwrap_or_default(),
        version: package.spec.version.clone(),
        sha256: status
            .and_then(|status| status.artifact.as_ref())
            .map(|artifact| artifact.sha256.clone()),
        obs_bucket: at.and_then(|at| at.obs_bucket.clone()),
        obs_object_key: at.and_then(|at| at.obs_object_key.clone()),
    }
}

/// One wave as the vendor layer takes it.
fn rollout_spec(
    spec: &UpgradeCampaignSpec,
    name: &str,
    devices: Range<usize>,
) -> Result<RolloutSpec, ControllerError> {
    let count = spec.devices.len();
    let devices = spec
        .devices
        .get(devices.clone())
        .ok_or_else(|| ControllerError::InvalidSpec {
            reason: "InvalidDevices",
            message: format!(
                "wave {name} covers devices {devices:?}, but the campaign lists {count}"
            ),
        })?
        .to_vec();
    let hours = |windows: Option<&Vec<HourWindow>>| -> Vec<(u8, u8)> {
        windows
            .map(|windows| {
                windows
                    .iter()
                    .map(|window| (hour(window.start_hour), hour(window.end_hour)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let thingspace = spec.thingspace.as_ref();
    let iotda = spec.iotda.as_ref();
    Ok(RolloutSpec {
        name: name.to_string(),
        devices,
        end_date: spec
            .schedule
            .as_ref()
            .and_then(|schedule| schedule.end_at.as_ref())
            .map(|end| end.0.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()),
        download_windows: hours(thingspace.and_then(|ts| ts.download_time_windows.as_ref())),
        install_windows: hours(thingspace.and_then(|ts| ts.install_time_windows.as_ref())),
        retry: iotda
            .and_then(|options| Some((options.retry_count?, options.retry_interval_minutes?))),
        gateway_mode: iotda
            .and_then(|options| options.gateway_mode)
            .unwrap_or(false),
    })
}

/// An hour of the day as the vendor takes it (the schema keeps it within 0..=24).
fn hour(value: i32) -> u8 {
    u8::try_from(value.clamp(0, 24)).unwrap_or(0)
}

/// A progress poll as the decision reads it.
fn observation(index: usize, vendor_id: String, progress: RolloutProgress) -> WaveObservation {
    let tally = progress.tally;
    WaveObservation {
        index,
        exists: true,
        vendor_id: Some(vendor_id),
        counts: ObservedCounts {
            pending: tally.pending,
            in_progress: tally.in_progress,
            succeeded: tally.succeeded,
            failed: tally.failed,
            cancelled: tally.cancelled,
            skipped: tally.skipped,
        },
        failed_devices: progress
            .failures
            .into_iter()
            .map(|(device, reason)| ObservedFailure { device, reason })
            .collect(),
        unfinished_sample: progress.unfinished_sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArtifactStatus, FirmwarePackageStatus, PackageAtProvider};
    use crate::api::{
        IotdaCampaignOptions, LocalObjectReference, Schedule, ThingSpaceCampaignOptions,
    };
    use crate::vendor::Tally;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn spec() -> UpgradeCampaignSpec {
        UpgradeCampaignSpec {
            package_ref: LocalObjectReference::new("fw"),
            devices: (0..10).map(|i| format!("dev-{i}")).collect(),
            ..UpgradeCampaignSpec::default()
        }
    }

    #[test]
    fn a_rollout_takes_its_wave_s_devices_the_end_date_and_the_vendor_options() {
        let mut spec = spec();
        spec.schedule = Some(Schedule {
            start_at: None,
            end_at: Some(Time("2026-12-31T23:30:00Z".parse().unwrap())),
        });
        spec.thingspace = Some(ThingSpaceCampaignOptions {
            download_time_windows: Some(vec![HourWindow {
                start_hour: 1,
                end_hour: 5,
            }]),
            install_time_windows: None,
        });
        let rollout = rollout_spec(&spec, "otaplane-abc-w1", 4..7).unwrap();
        assert_eq!(rollout.name, "otaplane-abc-w1");
        assert_eq!(rollout.devices, ["dev-4", "dev-5", "dev-6"]);
        assert_eq!(rollout.end_date.as_deref(), Some("2026-12-31"));
        assert_eq!(rollout.download_windows, [(1, 5)]);
        assert!(rollout.install_windows.is_empty());
        assert_eq!(rollout.retry, None);
        assert!(!rollout.gateway_mode);
    }

    #[test]
    fn iotda_options_become_retry_policy_and_gateway_mode() {
        let mut spec = spec();
        spec.iotda = Some(IotdaCampaignOptions {
            retry_count: Some(2),
            retry_interval_minutes: Some(30),
            gateway_mode: Some(true),
        });
        let rollout = rollout_spec(&spec, "w", 0..10).unwrap();
        assert_eq!(rollout.retry, Some((2, 30)));
        assert!(rollout.gateway_mode);
        assert_eq!(rollout.end_date, None);
    }

    #[test]
    fn a_range_beyond_the_device_list_is_a_spec_error() {
        let err = rollout_spec(&spec(), "w", 8..12).unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.reason(), "InvalidDevices");
    }

    fn package(ready: Option<(&str, &str)>, external_id: Option<&str>) -> FirmwarePackage {
        let mut package = FirmwarePackage::new(
            "fw",
            crate::api::FirmwarePackageSpec {
                version: "2.0.0".into(),
                ..crate::api::FirmwarePackageSpec::default()
            },
        );
        package.status = Some(FirmwarePackageStatus {
            conditions: ready
                .map(|(status, reason)| Condition {
                    type_: READY.into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: "details".into(),
                    observed_generation: Some(1),
                    last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                })
                .into_iter()
                .collect(),
            artifact: Some(ArtifactStatus {
                sha256: "ab".repeat(32),
                size: 3,
            }),
            at_provider: Some(PackageAtProvider {
                external_id: external_id.map(str::to_owned),
                obs_object_key: Some("otaplane/fw.bin".into()),
                ..PackageAtProvider::default()
            }),
            ..FirmwarePackageStatus::default()
        });
        package
    }

    #[test]
    fn only_a_ready_registered_package_can_be_rolled_out() {
        assert_eq!(
            readiness(
                &package(Some(("True", "Available")), Some("pkg-1")),
                Vendor::Iotda
            ),
            PackageReadiness::Ready {
                vendor: Vendor::Iotda,
                version: "2.0.0".into()
            }
        );
        assert_eq!(
            readiness(&package(Some(("False", "Uploading")), None), Vendor::Iotda),
            PackageReadiness::NotReady {
                reason: "Uploading: details".into()
            }
        );
        assert!(matches!(
            readiness(&package(Some(("True", "Available")), None), Vendor::Iotda),
            PackageReadiness::NotReady { .. }
        ));
        assert!(matches!(
            readiness(&package(None, None), Vendor::Iotda),
            PackageReadiness::NotReady { .. }
        ));
    }

    #[test]
    fn the_registered_package_comes_from_status() {
        let registered = registered_package(&package(Some(("True", "Available")), Some("pkg-1")));
        assert_eq!(registered.external_id, "pkg-1");
        assert_eq!(registered.version, "2.0.0");
        assert_eq!(registered.sha256, Some("ab".repeat(32)));
        assert_eq!(
            registered.obs_object_key.as_deref(),
            Some("otaplane/fw.bin")
        );
    }

    #[test]
    fn progress_maps_every_bucket_and_the_samples() {
        let progress = RolloutProgress {
            tally: Tally {
                pending: 1,
                in_progress: 2,
                succeeded: 3,
                failed: 4,
                cancelled: 5,
                skipped: 6,
            },
            failures: vec![("dev-1".into(), "RovaClientDownloadFailed".into())],
            unfinished_sample: vec!["dev-2".into()],
            vendor_status: "CampaignScheduled".into(),
        };
        let seen = observation(2, "id-2".into(), progress);
        assert_eq!(seen.index, 2);
        assert!(seen.exists);
        assert_eq!(seen.vendor_id.as_deref(), Some("id-2"));
        assert_eq!(
            seen.counts,
            ObservedCounts {
                pending: 1,
                in_progress: 2,
                succeeded: 3,
                failed: 4,
                cancelled: 5,
                skipped: 6,
            }
        );
        assert_eq!(
            seen.failed_devices,
            [ObservedFailure {
                device: "dev-1".into(),
                reason: "RovaClientDownloadFailed".into()
            }]
        );
        assert_eq!(seen.unfinished_sample, ["dev-2"]);
    }
}
