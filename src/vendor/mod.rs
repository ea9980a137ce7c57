//! The vendor layer: clients for ThingSpace, IoTDA (with OBS) and IoTaaP behind one shared HTTP
//! policy. Vendor code never sees a custom resource type: callers pass plain values.

pub mod error;
pub mod http;

pub use error::{Secret, VendorError, redact};
pub use http::{CallObserver, ErrorDialect, HttpPolicy, RateLimitConfig, VendorHttp};
