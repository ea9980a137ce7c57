//! UpgradeCampaign controller (being written).

use std::sync::Arc;

use kube::runtime::controller::{Action, Controller};

use super::context::Context;
use super::error::ControllerError;
use crate::api::UpgradeCampaign;

/// The kind, for metrics and logs.
pub const KIND: &str = "UpgradeCampaign";

/// Adds the campaign controller's watches.
pub fn configure(
    controller: Controller<UpgradeCampaign>,
    _client: &kube::Client,
    _namespace: Option<&str>,
    _ctx: &Arc<Context>,
) -> Controller<UpgradeCampaign> {
    controller
}

/// Reconciles one UpgradeCampaign.
pub async fn reconcile(
    _campaign: Arc<UpgradeCampaign>,
    _ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    Ok(Action::await_change())
}
