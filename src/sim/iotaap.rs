//! IoTaaP simulator.

use axum::Router;

use super::{SharedState, SimConfig, SimState, VendorAdmin};

/// IoTaaP state.
#[derive(Debug, Default)]
pub struct IotaapState {}

impl IotaapState {
    /// Builds the initial state.
    pub fn new(_config: &SimConfig) -> Self {
        Self::default()
    }
}

impl VendorAdmin for IotaapState {
    fn snapshot(&self, _sim: &SimState) -> serde_json::Value {
        serde_json::json!({})
    }

    fn expire_tokens(&self, _sim: &SimState) {}
}

/// The IoTaaP routes.
pub fn routes(_config: &SimConfig) -> Router<SharedState> {
    Router::new()
}
