//! FirmwarePackage as a Terraform-style resource: finalizer first, then look up, adopt or
//! register; record the external ID the moment the vendor returns it; delete (or orphan) on
//! deletion; re-create when a provider drift check finds it gone.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::context::{Context, now};
use super::error::ControllerError;
use super::vendors::read_secret;
use crate::api::condition_types::READY;
use crate::api::{
    ArtifactStatus, DeletionPolicy, EXTERNAL_NAME_ANNOTATION, FirmwarePackage,
    FirmwarePackageStatus, OtaProvider, PackageAtProvider, Vendor, find_condition,
};
use crate::artifact::{ArtifactRequest, SpooledArtifact};
use crate::reconcile::{Outcome, apply_outcome};
use crate::vendor::{
    ArtifactFile, DeleteOutcome, PackageSpec, PackageVendorSpec, RegisteredPackage, VendorClient,
};

/// The kind, for metrics and logs.
pub const KIND: &str = "FirmwarePackage";
/// Finalizer that keeps a FirmwarePackage until its vendor package is deleted (or orphaned).
pub const FINALIZER: &str = "otaplane.io/package-cleanup";
/// Annotation that lets a package be deleted while campaigns still use it.
pub const FORCE_DELETE_ANNOTATION: &str = "otaplane.io/force-delete";

/// Reconciles one FirmwarePackage.
pub async fn reconcile(
    package: Arc<FirmwarePackage>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let namespace = package
        .namespace()
        .ok_or(ControllerError::MissingMetadata("namespace"))?;
    let api: Api<FirmwarePackage> = Api::namespaced(ctx.kube.clone(), &namespace);
    finalizer(&api, FINALIZER, package, |event| async {
        match event {
            FinalizerEvent::Apply(package) => apply(package, &ctx).await,
            FinalizerEvent::Cleanup(package) => cleanup(package, &ctx).await,
        }
    })
    .await
    .map_err(ControllerError::from)
}

/// Everything `apply` needs once the provider has been dereferenced and validated.
struct Resolved {
    provider: Arc<OtaProvider>,
    vendor: Vendor,
    spec: PackageSpec,
}

async fn apply(package: Arc<FirmwarePackage>, ctx: &Context) -> Result<Action, ControllerError> {
    let generation = package.metadata.generation;
    let last = package.status.clone().unwrap_or_default();
    let mut status = last.clone();
    status.observed_generation = generation;
    let result = sync(&package, ctx, &mut status).await;
    let (outcome, result) = match result {
        Ok((outcome, action)) => (outcome, Ok(action)),
        Err(err) if err.is_retryable() => (
            Outcome::Retrying {
                reason: err.reason().into(),
                message: err.to_string(),
            },
            Err(err),
        ),
        Err(err) => (
            Outcome::Stalled {
                reason: err.reason().into(),
                message: err.to_string(),
            },
            Ok(Action::await_change()),
        ),
    };
    apply_outcome(&mut status.conditions, &outcome, generation, &now());
    if last != status {
        ctx.write_status(&*package, &status).await?;
        if let Outcome::Stalled { reason, message } = &outcome {
            ctx.event(
                &*package,
                EventType::Warning,
                "Failed",
                format!("{reason}: {message}"),
            )
            .await;
        }
    }
    result
}

/// Looks up, adopts or registers the package; updates `status` (artifact, atProvider) and
/// returns the outcome for the conditions.
async fn sync(
    package: &Arc<FirmwarePackage>,
    ctx: &Context,
    status: &mut FirmwarePackageStatus,
) -> Result<(Outcome, Action), ControllerError> {
    let resolved = match resolve(package, ctx)? {
        Ok(resolved) => resolved,
        Err(waiting) => return Ok(waiting),
    };
    let client = ctx
        .vendors
        .client_for(&ctx.kube, &resolved.provider)
        .await?;

    if let Some(external_id) = status
        .at_provider
        .as_ref()
        .and_then(|at| at.external_id.clone())
    {
        let drifted = ctx
            .drifted
            .lock()
            .expect("drift lock")
            .remove(&ObjectRef::from_obj(&**package));
        if !drifted {
            return Ok((available(&resolved, &external_id), Action::await_change()));
        }
        if client.get_package(&external_id).await?.is_some() {
            return Ok((available(&resolved, &external_id), Action::await_change()));
        }
        ctx.event(
            &**package,
            EventType::Warning,
            "DriftDetected",
            format!(
                "{} no longer has package {external_id}; registering it again",
                resolved.vendor
            ),
        )
        .await;
        status.at_provider = None;
        // Record the loss before re-creating: a crash from here on starts from a lookup.
        let mut lost = status.clone();
        apply_outcome(
            &mut lost.conditions,
            &Outcome::InProgress {
                reason: "DriftDetected".into(),
                message: format!("vendor package {external_id} disappeared; re-creating it"),
            },
            package.metadata.generation,
            &now(),
        );
        ctx.write_status(&**package, &lost).await?;
    }

    if let Some(external_name) = package.annotations().get(EXTERNAL_NAME_ANNOTATION) {
        let Some(found) = client.get_package(external_name).await? else {
            return Err(ControllerError::InvalidSpec {
                reason: "ExternalNameNotFound",
                message: format!(
                    "annotation {EXTERNAL_NAME_ANNOTATION}={external_name}: {} has no such package",
                    resolved.vendor
                ),
            });
        };
        return adopt(package, ctx, status, &resolved, found).await;
    }
    if let Some(found) = client.find_package(&resolved.spec).await? {
        return adopt(package, ctx, status, &resolved, found).await;
    }
    register(package, ctx, status, &resolved, &client).await
}

/// Dereferences and validates the provider. `Ok(Err(..))` is a wait (provider missing or not
/// Ready), not an error.
fn resolve(
    package: &FirmwarePackage,
    ctx: &Context,
) -> Result<Result<Resolved, (Outcome, Action)>, ControllerError> {
    let namespace = package.namespace().unwrap_or_default();
    let provider_name = &package.spec.provider_ref.name;
    let Some(provider) = ctx.provider(&namespace, provider_name) else {
        return Ok(Err((
            Outcome::Waiting {
                reason: "ProviderNotFound".into(),
                message: format!(
                    "OtaProvider {provider_name} does not exist in namespace {namespace}"
                ),
            },
            Action::await_change(),
        )));
    };
    let vendor = provider
        .spec
        .vendor()
        .ok_or_else(|| ControllerError::InvalidSpec {
            reason: "InvalidProvider",
            message: format!("OtaProvider {provider_name} sets no vendor block"),
        })?;
    let spec = package_spec(package, &provider, vendor)?;
    let ready = provider
        .status
        .as_ref()
        .and_then(|status| find_condition(&status.conditions, READY));
    if ready.is_none_or(|c| c.status != "True") {
        let why = ready
            .map(|c| format!(": {}: {}", c.reason, c.message))
            .unwrap_or_default();
        return Ok(Err((
            Outcome::Waiting {
                reason: "ProviderNotReady".into(),
                message: format!("OtaProvider {provider_name} is not Ready{why}"),
            },
            Action::await_change(),
        )));
    }
    Ok(Ok(Resolved {
        provider,
        vendor,
        spec,
    }))
}

/// The vendor-neutral package spec; a vendor block that does not match the provider's vendor
/// is a spec error.
pub(crate) fn package_spec(
    package: &FirmwarePackage,
    provider: &OtaProvider,
    vendor: Vendor,
) -> Result<PackageSpec, ControllerError> {
    let spec = &package.spec;
    let vendor_spec = match (vendor, &spec.thingspace, &spec.iotda, &spec.iotaap) {
        (Vendor::ThingSpace, Some(ts), None, None) => PackageVendorSpec::ThingSpace {
            make: ts.make.clone(),
            model: ts.model.clone(),
            local_target_path: ts.local_target_path.clone(),
        },
        (Vendor::Iotda, None, Some(iotda), None) => PackageVendorSpec::Iotda {
            product_id: iotda.product_id.clone(),
            app_id: iotda.app_id.clone().or_else(|| {
                provider
                    .spec
                    .iotda
                    .as_ref()
                    .and_then(|p| p.default_app_id.clone())
            }),
            package_type: iotda.package_type.as_str().to_string(),
            module_name: iotda.module_name.clone(),
            support_source_versions: iotda.support_source_versions.clone().unwrap_or_default(),
            custom_info: iotda.custom_info.clone(),
        },
        (Vendor::Iotaap, None, None, Some(_)) => PackageVendorSpec::Iotaap,
        _ => {
            return Err(ControllerError::InvalidSpec {
                reason: "VendorMismatch",
                message: format!(
                    "OtaProvider {} is a {vendor} account; set spec.{} on the package (and only that vendor block)",
                    spec.provider_ref.name,
                    match vendor {
                        Vendor::ThingSpace => "thingspace",
                        Vendor::Iotda => "iotda",
                        Vendor::Iotaap => "iotaap",
                    }
                ),
            });
        }
    };
    Ok(PackageSpec {
        namespace: package.namespace().unwrap_or_default(),
        name: package.name_any(),
        version: spec.version.clone(),
        description: spec.description.clone(),
        vendor: vendor_spec,
    })
}

fn available(resolved: &Resolved, external_id: &str) -> Outcome {
    Outcome::Ready {
        reason: "Available".into(),
        message: match resolved.vendor {
            Vendor::Iotaap => {
                "artifact verified; IoTaaP receives it per device when a campaign deploys it".into()
            }
            vendor => format!("registered with {vendor} as {external_id}"),
        },
    }
}

fn at_provider(found: &RegisteredPackage, vendor: Vendor, adopted: bool) -> PackageAtProvider {
    PackageAtProvider {
        external_id: Some(found.external_id.clone()),
        file_name: (vendor == Vendor::ThingSpace).then(|| found.external_id.clone()),
        package_id: (vendor == Vendor::Iotda).then(|| found.external_id.clone()),
        obs_bucket: found.obs_bucket.clone(),
        obs_object_key: found.obs_object_key.clone(),
        adopted: Some(adopted),
        registered_at: Some(now()),
    }
}

/// Takes over a package that already exists vendor-side, unless its checksum differs.
async fn adopt(
    package: &FirmwarePackage,
    ctx: &Context,
    status: &mut FirmwarePackageStatus,
    resolved: &Resolved,
    found: RegisteredPackage,
) -> Result<(Outcome, Action), ControllerError> {
    let expected = expected_sha256(package);
    if let (Some(vendor_sha), Some(expected)) = (&found.sha256, expected)
        && !vendor_sha.eq_ignore_ascii_case(expected)
    {
        return Err(ControllerError::InvalidSpec {
            reason: "Conflict",
            message: format!(
                "{} already has package {} for version {} with sha256 {vendor_sha}, but the artifact's sha256 is {expected}: \
                 delete the vendor package or use another version",
                resolved.vendor, found.external_id, package.spec.version
            ),
        });
    }
    status.at_provider = Some(at_provider(&found, resolved.vendor, true));
    ctx.write_status(package, status).await?;
    let checksum_note = if found.sha256.is_some() {
        "with the same checksum"
    } else {
        "the vendor keeps no checksum to compare"
    };
    ctx.event(
        package,
        EventType::Normal,
        "Adopted",
        format!(
            "adopted existing {} package {} ({checksum_note})",
            resolved.vendor, found.external_id
        ),
    )
    .await;
    Ok((
        available(resolved, &found.external_id),
        Action::await_change(),
    ))
}

/// Fetches, verifies and registers the artifact; records the external ID at once.
async fn register(
    package: &FirmwarePackage,
    ctx: &Context,
    status: &mut FirmwarePackageStatus,
    resolved: &Resolved,
    client: &VendorClient,
) -> Result<(Outcome, Action), ControllerError> {
    let uploading = Outcome::InProgress {
        reason: "Uploading".into(),
        message: format!(
            "fetching {} and registering it with {}",
            crate::artifact::redact_url(&package.spec.artifact.url),
            resolved.vendor
        ),
    };
    let mut progress = status.clone();
    if apply_outcome(
        &mut progress.conditions,
        &uploading,
        package.metadata.generation,
        &now(),
    ) || progress != *status
    {
        ctx.write_status(package, &progress).await?;
        *status = progress;
    }
    let request = artifact_request(package, ctx).await?;
    // ThingSpace and IoTDA upload while the image downloads; IoTaaP only verifies it.
    let (artifact, registered) = match client {
        VendorClient::ThingSpace(thingspace) => {
            crate::pipeline::fetch_and_register_thingspace(
                &ctx.fetcher,
                &request,
                thingspace,
                &resolved.spec,
            )
            .await?
        }
        VendorClient::Iotda(iotda) => {
            crate::pipeline::fetch_and_register_iotda(
                &ctx.fetcher,
                &request,
                iotda,
                &resolved.spec,
                artifact_file_name(&request.url),
            )
            .await?
        }
        VendorClient::Iotaap(_) => {
            let artifact = ctx.fetcher.fetch(&request).await?;
            let registered = client
                .register_package(&resolved.spec, artifact_file(&artifact, &request.url))
                .await?;
            (artifact, registered)
        }
    };
    status.artifact = Some(ArtifactStatus {
        sha256: artifact.sha256().to_string(),
        size: i64::try_from(artifact.size()).unwrap_or(i64::MAX),
    });
    status.at_provider = Some(at_provider(&registered, resolved.vendor, false));
    // The external ID is written before anything else can fail.
    ctx.write_status(package, status).await?;
    if resolved.vendor != Vendor::Iotaap {
        ctx.metrics
            .artifact_bytes_uploaded
            .get_or_create(&super::metrics::VendorLabels {
                vendor: resolved.vendor.as_str(),
            })
            .inc_by(artifact.size());
        ctx.event(
            package,
            EventType::Normal,
            "Uploaded",
            format!(
                "uploaded {} bytes (sha256 {}) to {}",
                artifact.size(),
                artifact.sha256(),
                resolved.vendor
            ),
        )
        .await;
        ctx.event(
            package,
            EventType::Normal,
            "Registered",
            format!(
                "registered with {} as {}",
                resolved.vendor, registered.external_id
            ),
        )
        .await;
    } else {
        ctx.event(
            package,
            EventType::Normal,
            "Verified",
            format!(
                "artifact verified: {} bytes, sha256 {}",
                artifact.size(),
                artifact.sha256()
            ),
        )
        .await;
    }
    Ok((
        available(resolved, &registered.external_id),
        Action::await_change(),
    ))
}

/// The SHA-256 the package's artifact must have: the spec's, else the one measured at fetch.
fn expected_sha256(package: &FirmwarePackage) -> Option<&str> {
    package.spec.artifact.sha256.as_deref().or_else(|| {
        package
            .status
            .as_ref()
            .and_then(|status| status.artifact.as_ref())
            .map(|artifact| artifact.sha256.as_str())
    })
}

/// The fetch request of the package's artifact, with headers from its Secret.
pub async fn artifact_request(
    package: &FirmwarePackage,
    ctx: &Context,
) -> Result<ArtifactRequest, ControllerError> {
    let artifact = &package.spec.artifact;
    let mut headers = Vec::new();
    if let Some(reference) = &artifact.headers_secret_ref {
        let namespace = package.namespace().unwrap_or_default();
        let secret = read_secret(&ctx.kube, &namespace, &reference.name).await?;
        headers.extend(
            secret
                .pairs()
                .map(|(name, value)| (name.to_string(), value.expose().to_string())),
        );
    }
    Ok(ArtifactRequest {
        url: artifact.url.clone(),
        expected_sha256: artifact.sha256.clone(),
        headers,
        max_size_bytes: artifact.max_size_bytes(),
    })
}

/// The spooled artifact as the vendor layer takes it; the file name is the URL's last segment.
pub fn artifact_file<'a>(artifact: &'a SpooledArtifact, url: &'a str) -> ArtifactFile<'a> {
    ArtifactFile {
        path: artifact.path(),
        sha256: artifact.sha256(),
        size: artifact.size(),
        file_name: artifact_file_name(url),
    }
}

/// The name an artifact is registered under: the last segment of its URL's path, or
/// `firmware.bin` when the path ends in `/`.
pub fn artifact_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/')
        .next()
        .filter(|segment| !segment.is_empty())
        .unwrap_or("firmware.bin")
}

/// Runs on deletion: refuses while campaigns use the package, then deletes vendor-side (or
/// orphans) and lets the finalizer go.
async fn cleanup(package: Arc<FirmwarePackage>, ctx: &Context) -> Result<Action, ControllerError> {
    let namespace = package.namespace().unwrap_or_default();
    let name = package.name_any();
    let forced = package
        .annotations()
        .get(FORCE_DELETE_ANNOTATION)
        .is_some_and(|value| value == "true");
    let users: Vec<String> = ctx
        .campaigns
        .state()
        .iter()
        .filter(|campaign| {
            campaign.namespace().as_deref() == Some(namespace.as_str())
                && campaign.spec.package_ref.name == name
                && !campaign
                    .status
                    .as_ref()
                    .and_then(|status| status.phase)
                    .is_some_and(|phase| phase.is_terminal())
        })
        .map(|campaign| campaign.name_any())
        .collect();
    if !users.is_empty() && !forced {
        let message = format!(
            "deletion waits for UpgradeCampaign {} to finish or be deleted; to delete anyway, \
             annotate the package {FORCE_DELETE_ANNOTATION}=true",
            users.join(", ")
        );
        let mut status = package.status.clone().unwrap_or_default();
        if apply_outcome(
            &mut status.conditions,
            &Outcome::Waiting {
                reason: "DeletionBlocked".into(),
                message: message.clone(),
            },
            package.metadata.generation,
            &now(),
        ) {
            ctx.write_status(&*package, &status).await?;
            ctx.event(
                &*package,
                EventType::Warning,
                "DeletionBlocked",
                message.clone(),
            )
            .await;
        }
        return Err(ControllerError::DeletionBlocked(message));
    }
    if package.spec.deletion_policy() == DeletionPolicy::Orphan {
        if let Some(id) = recorded_id(&package) {
            ctx.event(
                &*package,
                EventType::Normal,
                "Orphaned",
                format!("deletionPolicy Orphan: vendor package {id} left in place"),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    let Some(provider) = ctx.provider(&namespace, &package.spec.provider_ref.name) else {
        if let Some(id) = recorded_id(&package) {
            ctx.event(
                &*package,
                EventType::Warning,
                "ProviderGone",
                format!(
                    "OtaProvider {} no longer exists, so vendor package {id} cannot be deleted: it stays vendor-side",
                    package.spec.provider_ref.name
                ),
            )
            .await;
        }
        return Ok(Action::await_change());
    };
    let Some(vendor) = provider.spec.vendor() else {
        return Ok(Action::await_change());
    };
    if vendor == Vendor::Iotaap {
        return Ok(Action::await_change());
    }
    let client = ctx.vendors.client_for(&ctx.kube, &provider).await?;
    let target = match recorded_id(&package) {
        Some(id) => Some(RegisteredPackage {
            external_id: id,
            ..RegisteredPackage::default()
        }),
        // Registered but killed before the ID was recorded: find it by its identity, and
        // delete it only if it carries our artifact's checksum.
        None => match package_spec(&package, &provider, vendor) {
            Ok(spec) => client.find_package(&spec).await?.filter(|found| {
                let ours = expected_sha256(&package);
                matches!((found.sha256.as_deref(), ours), (Some(a), Some(b)) if a == b)
            }),
            Err(_) => None,
        },
    };
    let Some(target) = target else {
        return Ok(Action::await_change());
    };
    match client.delete_package(&target).await? {
        DeleteOutcome::Deleted => {
            ctx.event(
                &*package,
                EventType::Normal,
                "Deleted",
                format!("deleted {vendor} package {}", target.external_id),
            )
            .await;
        }
        DeleteOutcome::AlreadyGone => {
            ctx.event(
                &*package,
                EventType::Normal,
                "Deleted",
                format!("{vendor} package {} was already gone", target.external_id),
            )
            .await;
        }
        DeleteOutcome::NotSupported => {
            ctx.event(
                &*package,
                EventType::Warning,
                "DeleteNotSupported",
                format!(
                    "{vendor} has no API to delete files: {} stays in the account; remove it in the {vendor} console if needed",
                    target.external_id
                ),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

fn recorded_id(package: &FirmwarePackage) -> Option<String> {
    package
        .status
        .as_ref()?
        .at_provider
        .as_ref()?
        .external_id
        .clone()
}
