//! otaplane: declarative IoT firmware over-the-air updates on Kubernetes.
//!
//! Layers: [`api`] holds the custom resource types (no I/O).
pub mod api;
pub mod artifact;
pub mod reconcile;
pub mod signing;
pub mod sim;
pub mod vendor;
