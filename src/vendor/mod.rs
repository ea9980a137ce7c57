//! The vendor layer: clients for ThingSpace, IoTDA (with OBS) and IoTaaP behind one shared HTTP
//! policy ([`http`]) and one entry point ([`VendorClient`]). Vendor code never sees a custom
//! resource type: callers pass plain values.

pub mod client;
pub mod error;
pub mod http;
pub mod iotaap;
pub mod iotda;
pub mod obs;
pub mod thingspace;
pub mod types;

pub use client::{ArtifactFile, CancelOutcome, VendorClient};
pub use error::{Secret, VendorError, redact};
pub use http::{CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp};
pub use types::*;
