//! `/metrics`, `/healthz` and `/readyz` on one HTTP listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

/// Readiness of this replica.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the replica ready (caches filled, or standing by for the lease) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the replica is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves the three endpoints on `listener` until dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Served { metrics, health });
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(error = %err, "health and metrics server stopped");
    }
}

async fn metrics_text(State(served): State<Served>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics.encode(),
    )
}

async fn readyz(State(served): State<Served>) -> impl IntoResponse {
    if served.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}
