//! Verizon ThingSpace simulator.

use axum::Router;

use super::{SharedState, SimConfig, SimState, VendorAdmin};

/// ThingSpace state.
#[derive(Debug, Default)]
pub struct ThingSpaceState {}

impl ThingSpaceState {
    /// Builds the initial state.
    pub fn new(_config: &SimConfig) -> Self {
        Self::default()
    }
}

impl VendorAdmin for ThingSpaceState {
    fn snapshot(&self, _sim: &SimState) -> serde_json::Value {
        serde_json::json!({})
    }

    fn expire_tokens(&self, _sim: &SimState) {}
}

/// The ThingSpace routes.
pub fn routes(_config: &SimConfig) -> Router<SharedState> {
    Router::new()
}
