//! OtaProvider: exchange the credentials with the vendor, report `Ready`, and run the
//! per-provider drift check of its FirmwarePackages (one list call per resync).

use std::collections::HashSet;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::context::{Context, now};
use super::error::ControllerError;
use crate::api::condition_types::READY;
use crate::api::{FirmwarePackage, OtaProvider, find_condition};
use crate::reconcile::{Outcome, apply_outcome};
use crate::vendor::VendorClient;

/// The kind, for metrics and logs.
pub const KIND: &str = "OtaProvider";

/// Reconciles one OtaProvider.
pub async fn reconcile(
    provider: Arc<OtaProvider>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let namespace = provider
        .namespace()
        .ok_or(ControllerError::MissingMetadata("namespace"))?;
    let name = provider.name_any();
    if provider.metadata.deletion_timestamp.is_some() {
        ctx.vendors.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let generation = provider.metadata.generation;
    let last = provider.status.clone().unwrap_or_default();
    let mut status = last.clone();
    status.vendor = provider.spec.vendor();
    status.observed_generation = generation;
    let was_ready = find_condition(&last.conditions, READY).is_some_and(|c| c.status == "True");

    let authenticated = match ctx.vendors.client_for(&ctx.kube, &provider).await {
        Ok(client) => client
            .authenticate()
            .await
            .map(|()| client)
            .map_err(Into::into),
        Err(err) => Err(err),
    };
    let (outcome, result) = match authenticated {
        Ok(client) => {
            if !was_ready || status.authenticated_at.is_none() {
                status.authenticated_at = Some(now());
            }
            check_drift(&provider, &client, &ctx).await;
            let vendor = status
                .vendor
                .map_or_else(|| "the vendor".to_string(), |v| v.to_string());
            (
                Outcome::Ready {
                    reason: "Authenticated".into(),
                    message: format!("{vendor} accepted the credentials"),
                },
                Ok(ctx.resync()),
            )
        }
        Err(err) if err.is_retryable() => (
            Outcome::Retrying {
                reason: err.reason().into(),
                message: err.to_string(),
            },
            Err(err),
        ),
        Err(err) => {
            let outcome = Outcome::Stalled {
                reason: err.reason().into(),
                message: err.to_string(),
            };
            // Terminal: backed off per object (30 s doubling up to 15 min). A rejected
            // ThingSpace login is not even retried vendor-side until the Secret changes.
            (outcome, Err(err))
        }
    };
    apply_outcome(&mut status.conditions, &outcome, generation, &now());
    if last != status {
        ctx.write_status(&*provider, &status).await?;
        let is_ready = matches!(outcome, Outcome::Ready { .. });
        if is_ready && !was_ready {
            ctx.event(
                &*provider,
                EventType::Normal,
                "Authenticated",
                outcome.message().to_string(),
            )
            .await;
        } else if let Outcome::Stalled { reason, message } = &outcome {
            ctx.event(&*provider, EventType::Warning, reason, message.clone())
                .await;
        }
    }
    result
}

/// Lists the vendor's packages once and flags every FirmwarePackage of this provider whose
/// recorded external ID is missing; each flagged package is re-queued to confirm and re-create.
async fn check_drift(provider: &OtaProvider, client: &VendorClient, ctx: &Context) {
    if matches!(client, VendorClient::Iotaap(_)) {
        return;
    }
    let namespace = provider.namespace().unwrap_or_default();
    let name = provider.name_any();
    // Read the cache before listing: every external ID recorded now was registered before the
    // list call, so a package registered meanwhile is never mistaken for drift.
    let recorded: Vec<(ObjectRef<FirmwarePackage>, String)> = ctx
        .packages
        .state()
        .into_iter()
        .filter(|pkg| {
            pkg.namespace().as_deref() == Some(namespace.as_str())
                && pkg.spec.provider_ref.name == name
                && pkg.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|pkg| {
            let external_id = pkg
                .status
                .as_ref()?
                .at_provider
                .as_ref()?
                .external_id
                .clone()?;
            Some((ObjectRef::from_obj(&*pkg), external_id))
        })
        .collect();
    if recorded.is_empty() {
        return;
    }
    let listed = match client.list_packages().await {
        Ok(listed) => listed,
        Err(err) => {
            tracing::warn!(provider = %name, error = %err, "drift check: listing vendor packages failed");
            return;
        }
    };
    let present: HashSet<&str> = listed.iter().map(|p| p.external_id.as_str()).collect();
    for (reference, external_id) in recorded {
        if !present.contains(external_id.as_str()) {
            tracing::info!(package = %reference, %external_id, "drift check: vendor package missing");
            ctx.drifted
                .lock()
                .expect("drift lock")
                .insert(reference.clone());
            // A closed channel means the package controller is shutting down.
            let _ = ctx.package_trigger.send(reference);
        }
    }
}
