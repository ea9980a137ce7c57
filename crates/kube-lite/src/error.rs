//! API errors rendered as `metav1.Status` objects, plus the library's own error type.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::ResourceType;

/// An error returned to an API client as a `Status` object with the standard reason.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason such as `NotFound` or `Invalid`.
    pub reason: &'static str,
    /// Human-readable message, worded like the real apiserver's.
    pub message: String,
    /// Optional `details` (name, group, kind, causes).
    pub details: Option<Value>,
}

/// Result type of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

impl ApiError {
    /// A plain error with a code, reason and message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a named object of a known resource.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", rt.qualified()),
            )
        }
    }

    /// 404 for a path that names no known resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.qualified()),
            )
        }
    }

    /// 409 Conflict on a named object.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    rt.qualified()
                ),
            )
        }
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with `details.causes`.
    pub fn invalid(rt: &ResourceType, name: &str, message: String, causes: Vec<Value>) -> Self {
        Self {
            details: Some(
                json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}),
            ),
            ..Self::new(422, "Invalid", message)
        }
    }

    /// 422 Invalid for a single field, worded like the apiserver's field errors.
    pub fn invalid_field(rt: &ResourceType, name: &str, field: &str, detail: &str) -> Self {
        let kind = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        Self::invalid(
            rt,
            name,
            format!("{kind} \"{name}\" is invalid: {field}: {detail}"),
            vec![json!({"reason": "FieldValueInvalid", "message": detail, "field": field})],
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    /// 410 Expired (too old resourceVersion).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// Reason conventionally paired with an HTTP code, for injected faults.
    pub fn from_code(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Self::new(code, reason, message)
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}

/// Errors of the kube-lite library API (starting, stopping, persisting the server).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound (retryable: the port may become free).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address that was requested.
        addr: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The state file could not be read or written (not retryable).
    #[error("state file {path}: {message}")]
    State {
        /// Path of the state file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A kube client for the server could not be built (not retryable).
    #[error("cannot build a kube client: {0}")]
    Client(String),
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Bind { .. })
    }
}
