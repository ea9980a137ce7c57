//! otaplane: declarative IoT firmware over-the-air updates on Kubernetes.
//!
//! Layers, each with its own error type, data flowing one way:
//! - [`api`]: the custom resource types, the public contract (no I/O).
//! - [`reconcile`]: pure decisions, e.g. the staged-rollout state machine (no Kubernetes, no
//!   network, no clock).
//! - [`vendor`]: clients for ThingSpace, IoTDA (with OBS) and IoTaaP behind one HTTP policy;
//!   never sees a custom resource type. [`signing`] holds the Huawei and OBS request signing
//!   both the clients and the simulator use.
//! - [`artifact`]: streaming fetch of firmware images (hash, size limit, URL policy, spool);
//!   [`pipeline`] uploads while downloading.
//! - [`sim`]: the vendor simulator behind `otaplane sim`.
//! - [`dev`]: `otaplane dev`, the API server stand-in, simulator, artifact server and operator
//!   in one process, with the demo manifests of `examples/dev/`.
pub mod api;
pub mod artifact;
pub mod controller;
pub mod dev;
pub mod pipeline;
pub mod reconcile;
pub mod signing;
pub mod sim;
pub mod streams;
pub mod vendor;
