//! The controller layer's error type.

use std::time::Duration;

use crate::artifact::ArtifactError;
use crate::vendor::VendorError;

/// Why a reconcile could not finish. [`ControllerError::is_retryable`] decides between a
/// requeue with backoff and a `Stalled` status that waits for the user.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The Kubernetes API failed (conflict, timeout, unavailable). Retryable.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A vendor call failed; retryable or terminal as the vendor layer classified it.
    #[error(transparent)]
    Vendor(#[from] VendorError),
    /// The artifact could not be fetched or verified.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A Secret the spec names is missing or lacks a key. Terminal until the Secret changes
    /// (the Secret watch re-queues the object then).
    #[error("{0}")]
    Credentials(String),
    /// The spec cannot be acted on. Terminal until the spec changes.
    #[error("{message}")]
    InvalidSpec {
        /// CamelCase reason for the condition.
        reason: &'static str,
        /// A sentence naming the field.
        message: String,
    },
    /// Deletion waits for something else to finish first (a running campaign). Retried.
    #[error("{0}")]
    DeletionBlocked(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The object has no name or namespace (never the case for objects read from the API).
    #[error("object without {0}")]
    MissingMetadata(&'static str),
}

impl ControllerError {
    /// Whether trying again later can succeed without a change to spec or Secret.
    pub fn is_retryable(&self) -> bool {
        match self {
            ControllerError::Kube(_)
            | ControllerError::Finalizer(_)
            | ControllerError::DeletionBlocked(_) => true,
            ControllerError::Vendor(err) => err.is_retryable(),
            ControllerError::Artifact(err) => err.is_retryable(),
            ControllerError::Credentials(_)
            | ControllerError::InvalidSpec { .. }
            | ControllerError::MissingMetadata(_) => false,
        }
    }

    /// A CamelCase reason for conditions and the `error_class` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ControllerError::Kube(_) => "KubernetesAPIError",
            ControllerError::Vendor(err) => err.reason(),
            ControllerError::Artifact(err) => err.reason(),
            ControllerError::Credentials(_) => "CredentialsInvalid",
            ControllerError::InvalidSpec { reason, .. } => reason,
            ControllerError::Finalizer(_) => "FinalizerFailed",
            ControllerError::DeletionBlocked(_) => "DeletionBlocked",
            ControllerError::MissingMetadata(_) => "InvalidObject",
        }
    }

    /// The wait the vendor asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ControllerError::Vendor(err) => err.retry_after(),
            _ => None,
        }
    }
}

/// A one-pass registration failed on the artifact or at the vendor: the same as either alone.
impl From<crate::pipeline::PipelineError> for ControllerError {
    fn from(err: crate::pipeline::PipelineError) -> Self {
        match err {
            crate::pipeline::PipelineError::Artifact(err) => ControllerError::Artifact(err),
            crate::pipeline::PipelineError::Vendor(err) => ControllerError::Vendor(err),
        }
    }
}

impl From<kube::runtime::finalizer::Error<ControllerError>> for ControllerError {
    fn from(err: kube::runtime::finalizer::Error<ControllerError>) -> Self {
        use kube::runtime::finalizer::Error;
        match err {
            Error::ApplyFailed(inner) | Error::CleanupFailed(inner) => inner,
            Error::AddFinalizer(err) | Error::RemoveFinalizer(err) => ControllerError::Kube(err),
            Error::UnnamedObject => ControllerError::MissingMetadata("name"),
            Error::InvalidFinalizer => ControllerError::Finalizer("invalid finalizer name".into()),
        }
    }
}
