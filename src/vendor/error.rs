//! The vendor layer's error type and the secret wrapper that keeps credentials out of text.

use std::time::Duration;

/// A credential: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for building a request. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Replaces every occurrence of the given secrets in `text` with `<redacted>`. Vendors sometimes
/// echo what they were sent (ThingSpace echoes callback passwords), so every message that leaves
/// the vendor layer goes through this.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut shown = text.to_string();
    for secret in secrets {
        // Very short values would blank out ordinary words; they cannot be told apart from text.
        if secret.expose().len() >= 4 {
            shown = shown.replace(secret.expose(), "<redacted>");
        }
    }
    shown
}

/// What went wrong talking to a vendor. Each variant says whether retrying can help
/// ([`VendorError::is_retryable`]); the reconcile layer turns the rest into `Stalled`.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// The vendor answered with an error status. Retryable for 429, 5xx and the vendor's
    /// flow-control codes (decided by the vendor client), terminal otherwise.
    #[error("{vendor} {endpoint}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        /// The vendor, for example `IoTDA`.
        vendor: &'static str,
        /// The operation, for example `create_ota_package`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The vendor's error code (`IOTDA.000006`, `INVALID_PARAMETER`, `900901`, ...).
        code: Option<String>,
        /// The vendor's message, with secrets redacted.
        message: String,
        /// Whether the same call may succeed later.
        retryable: bool,
        /// How long the vendor asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The vendor says the object does not exist, with a status other than 404 (ThingSpace
    /// answers 400 "Invalid upgradeId" for an unknown campaign). Terminal; callers treat it
    /// as [`VendorError::is_not_found`], like a 404 [`VendorError::Api`].
    #[error("{vendor} {endpoint}: not found (HTTP {status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    NotFound {
        /// The vendor.
        vendor: &'static str,
        /// The operation.
        endpoint: &'static str,
        /// The HTTP status the vendor really sent.
        status: u16,
        /// The vendor's error code.
        code: Option<String>,
        /// The vendor's message, with secrets redacted.
        message: String,
    },
    /// The vendor rejected the credentials. Terminal until the Secret changes: retrying a bad
    /// password can lock the account.
    #[error("{vendor}: credentials rejected: {message}")]
    Authentication {
        /// The vendor.
        vendor: &'static str,
        /// The vendor's message, with secrets redacted.
        message: String,
    },
    /// No answer: connection refused or reset, timeout. Retryable.
    #[error("{vendor} {endpoint}: {reason}")]
    Network {
        /// The vendor.
        vendor: &'static str,
        /// The operation.
        endpoint: &'static str,
        /// What happened, without URLs or credentials.
        reason: String,
    },
    /// The vendor answered 2xx with a body we cannot read. Terminal: retrying gets the same body.
    #[error("{vendor} {endpoint}: unexpected response: {reason}")]
    Decode {
        /// The vendor.
        vendor: &'static str,
        /// The operation.
        endpoint: &'static str,
        /// What did not parse.
        reason: String,
    },
    /// The provider configuration cannot work (bad URL, missing Secret key). Terminal.
    #[error("{vendor}: {reason}")]
    Config {
        /// The vendor.
        vendor: &'static str,
        /// What is wrong, naming the field or Secret key.
        reason: String,
    },
    /// A local file (the spooled artifact) could not be read. Retryable.
    #[error("{vendor} {endpoint}: reading the artifact failed: {reason}")]
    Io {
        /// The vendor.
        vendor: &'static str,
        /// The operation.
        endpoint: &'static str,
        /// The I/O error.
        reason: String,
    },
}

impl VendorError {
    /// Whether the same call may succeed later without a change to spec or Secret.
    pub fn is_retryable(&self) -> bool {
        match self {
            VendorError::Api { retryable, .. } => *retryable,
            VendorError::Network { .. } | VendorError::Io { .. } => true,
            VendorError::NotFound { .. }
            | VendorError::Authentication { .. }
            | VendorError::Decode { .. }
            | VendorError::Config { .. } => false,
        }
    }

    /// The wait the vendor asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            VendorError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            VendorError::Api { status, .. } | VendorError::NotFound { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the vendor said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            VendorError::NotFound { .. } | VendorError::Api { status: 404, .. }
        )
    }

    /// A short machine-readable reason, for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VendorError::Api { status: 429, .. } => "VendorThrottled",
            VendorError::Api { status, .. } if *status >= 500 => "VendorUnavailable",
            VendorError::Api { .. } | VendorError::NotFound { .. } => "VendorRejected",
            VendorError::Authentication { .. } => "AuthenticationFailed",
            VendorError::Network { .. } => "VendorUnreachable",
            VendorError::Decode { .. } => "VendorProtocolError",
            VendorError::Config { .. } => "InvalidProviderConfig",
            VendorError::Io { .. } => "ArtifactReadFailed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let secret = Secret::new("hunter2-password");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2-password");
    }

    #[test]
    fn redaction_removes_echoed_secrets() {
        let secrets = [Secret::new("hunter2-password"), Secret::new("ab")];
        assert_eq!(
            redact("login for ops with hunter2-password failed (ab)", &secrets),
            "login for ops with <redacted> failed (ab)"
        );
    }

    #[test]
    fn api_errors_say_what_the_vendor_said() {
        let err = VendorError::Api {
            vendor: "IoTDA",
            endpoint: "create_ota_package",
            status: 400,
            code: Some("IOTDA.000006".into()),
            message: "Invalid input data.".into(),
            retryable: false,
            retry_after: None,
        };
        assert_eq!(
            err.to_string(),
            "IoTDA create_ota_package: HTTP 400 IOTDA.000006: Invalid input data."
        );
        assert!(!err.is_retryable());
        assert_eq!(err.reason(), "VendorRejected");
    }
}
