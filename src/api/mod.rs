//! The custom resources: the public contract of otaplane.
//!
//! Three namespaced kinds in `otaplane.io/v1alpha1`: [`OtaProvider`] (a vendor account),
//! [`FirmwarePackage`] (an artifact registered with that vendor) and [`UpgradeCampaign`]
//! (a staged rollout of a package to devices). This module does no I/O.

// kube's derive takes one `printcolumn(...)` per column; clippy reads the repeated
// `type_ = "string"` inside them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod campaign;
pub mod common;
pub mod crd;
pub mod package;
pub mod provider;

pub use campaign::*;
pub use common::*;
pub use crd::{crds, crds_yaml};
pub use package::*;
pub use provider::*;
