//! Huawei OBS simulator.

use axum::Router;
use serde::{Deserialize, Serialize};

use super::{SharedState, SimConfig, SimState, VendorAdmin};

/// Huawei OBS settings (the `obs` section of the simulator configuration).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObsConfig {}

/// Huawei OBS state held in [`SimState`].
#[derive(Debug, Default)]
pub struct ObsState {}

impl ObsState {
    /// Builds the initial state from the configuration.
    pub fn new(_config: &SimConfig) -> Self {
        Self::default()
    }
}

impl VendorAdmin for ObsState {
    fn snapshot(&self, _sim: &SimState) -> serde_json::Value {
        serde_json::json!({})
    }

    fn expire_tokens(&self, _sim: &SimState) {}
}

/// Start-up banner lines (identities only, never secrets).
pub fn describe(_config: &SimConfig) -> Vec<String> {
    Vec::new()
}

/// The Huawei OBS routes.
pub fn routes() -> Router<SharedState> {
    Router::new()
}
