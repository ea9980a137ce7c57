//! Huawei Cloud IoTDA simulator.

use axum::Router;
use serde::{Deserialize, Serialize};

use super::{SharedState, SimConfig, SimState, VendorAdmin};

/// Huawei Cloud IoTDA settings (the `iotda` section of the simulator configuration).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IotdaConfig {}

/// Huawei Cloud IoTDA state held in [`SimState`].
#[derive(Debug, Default)]
pub struct IotdaState {}

impl IotdaState {
    /// Builds the initial state from the configuration.
    pub fn new(_config: &SimConfig) -> Self {
        Self::default()
    }
}

impl VendorAdmin for IotdaState {
    fn snapshot(&self, _sim: &SimState) -> serde_json::Value {
        serde_json::json!({})
    }

    fn expire_tokens(&self, _sim: &SimState) {}
}

/// Start-up banner lines (identities only, never secrets).
pub fn describe(_config: &SimConfig) -> Vec<String> {
    Vec::new()
}

/// The Huawei Cloud IoTDA routes.
pub fn routes() -> Router<SharedState> {
    Router::new()
}
