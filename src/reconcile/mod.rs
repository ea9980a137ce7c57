//! Decisions: given a resource's spec, its last status, the current time and what the vendor
//! reports, what to do next and what the new status is.
//!
//! This layer is pure: it never touches Kubernetes or the network, never reads the clock (the
//! time is an input) and draws no random numbers. The controllers load the inputs, call the
//! decision, apply its actions through the vendor clients and write the status it returns.
//! The pipeline for a campaign is: validate the spec (plan the waves, parse thresholds and
//! durations, check the package's vendor), fold the vendor's observations into the waves, then
//! decide the phase, the actions, the events and when to look again.

pub mod campaign;
pub mod conditions;
pub mod resource;
pub mod waves;

pub use campaign::{
    Action, CampaignInput, CancelReason, Decision, Event, EventType, ObservedCounts,
    ObservedFailure, PackageReadiness, PollIntervals, WaveObservation, decide, reasons,
};
pub use conditions::{ConditionStatus, DesiredCondition, set_condition};
pub use resource::{Outcome, apply_outcome};
pub use waves::{FailureThreshold, max_failures, plan_waves, wave_name};

/// A spec the decision cannot act on; retrying does not help until the user edits something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The campaign lists no devices, or more than [`crate::api::MAX_DEVICES`].
    #[error("{0}")]
    Devices(String),
    /// `strategy.waves` cannot be turned into waves.
    #[error("strategy.waves: {0}")]
    Waves(String),
    /// `strategy.maxFailures` is neither a count nor a percentage.
    #[error("strategy.maxFailures: {0}")]
    MaxFailures(String),
    /// A duration field cannot be read.
    #[error("{field}: {message}")]
    Duration {
        /// The field, for example `strategy.soakTime`.
        field: &'static str,
        /// Why it cannot be read.
        message: String,
    },
    /// The package belongs to another vendor than the campaign's vendor options.
    #[error("{0}")]
    VendorMismatch(String),
}

impl SpecError {
    /// Spec errors are never fixed by retrying: the user must change the spec.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The condition reason reported for this error (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::Devices(_) => "InvalidDevices",
            SpecError::Waves(_) => "InvalidWaves",
            SpecError::MaxFailures(_) => "InvalidMaxFailures",
            SpecError::Duration { .. } => "InvalidDuration",
            SpecError::VendorMismatch(_) => "VendorMismatch",
        }
    }
}
