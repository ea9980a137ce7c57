//! Error bodies in each vendor's own shape.
//!
//! Both the vendor modules and the fault injector build error responses through
//! [`vendor_error`], so an injected 500 looks exactly like a real one from that vendor:
//!
//! | vendor | body |
//! |---|---|
//! | ThingSpace, 401/403 and 429 | WSO2 gateway fault `{"fault":{"code":900901,"message":"...","description":"..."}}` |
//! | ThingSpace, others | `{"errorCode":"...","errorMessage":"..."}` |
//! | IoTDA | `{"error_code":"IOTDA.000006","error_msg":"..."}` (+ `request_id` for gateway `APIGW.*` codes) |
//! | OBS | S3 XML `<Error><Code/><Message/><RequestId/><HostId/></Error>` |
//! | IoTaaP, 401 | plain text `Unauthorized` |
//! | IoTaaP, others | `{"message":"..."}` |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Vendor;

/// An error from a vendor endpoint: status, vendor error code and message.
///
/// `code` is the vendor's own code (ThingSpace `errorCode` or WSO2 fault code, IoTDA
/// `error_code`, OBS `<Code>`); `None` picks the vendor's usual code for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorError {
    pub vendor: Vendor,
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: String,
}

impl VendorError {
    /// An error with the vendor's default code for `status`.
    pub fn new(vendor: Vendor, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            vendor,
            status,
            code: None,
            message: message.into(),
        }
    }

    /// Sets the vendor error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

impl IntoResponse for VendorError {
    fn into_response(self) -> Response {
        vendor_error(
            self.vendor,
            self.status,
            self.code.as_deref(),
            &self.message,
        )
    }
}

/// The code a vendor usually sends with `status` when no specific code is given.
pub fn default_code(vendor: Vendor, status: StatusCode) -> &'static str {
    match vendor {
        Vendor::ThingSpace => match status.as_u16() {
            401 => "900901",
            403 => "900908",
            429 => "900800",
            404 => "900906",
            _ => "INVALID_PARAMETER",
        },
        Vendor::Iotda => match status.as_u16() {
            400 => "IOTDA.000006",
            401 => "IOTDA.000002",
            403 => "IOTDA.021101",
            404 => "IOTDA.000007",
            413 => "IOTDA.000008",
            415 => "IOTDA.000008",
            429 => "APIGW.0308",
            _ => "IOTDA.000020",
        },
        Vendor::Obs => match status.as_u16() {
            400 => "InvalidArgument",
            403 => "AccessDenied",
            404 => "NoSuchKey",
            405 => "MethodNotAllowed",
            411 => "MissingContentLength",
            413 => "EntityTooLarge",
            429 | 503 => "SlowDown",
            _ => "InternalError",
        },
        Vendor::Iotaap => "",
    }
}

/// Builds an error response in `vendor`'s shape (see the module docs).
pub fn vendor_error(
    vendor: Vendor,
    status: StatusCode,
    code: Option<&str>,
    message: &str,
) -> Response {
    let code = code.unwrap_or_else(|| default_code(vendor, status));
    match vendor {
        Vendor::ThingSpace => {
            let gateway = matches!(status.as_u16(), 401 | 403 | 429)
                || code.starts_with("9008")
                || code.starts_with("9009");
            let body = if gateway {
                let numeric: serde_json::Value = code
                    .parse::<u64>()
                    .map(Into::into)
                    .unwrap_or_else(|_| code.into());
                json!({"fault": {"code": numeric, "message": message, "description": message}})
            } else {
                json!({"errorCode": code, "errorMessage": message})
            };
            (status, axum::Json(body)).into_response()
        }
        Vendor::Iotda => {
            let body = if code.starts_with("APIG") {
                json!({"error_code": code, "error_msg": message, "request_id": uuid::Uuid::new_v4().simple().to_string()})
            } else {
                json!({"error_code": code, "error_msg": message})
            };
            (status, axum::Json(body)).into_response()
        }
        Vendor::Obs => {
            let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId><HostId>otaplane-sim</HostId></Error>",
                xml_escape(code),
                xml_escape(message),
                request_id
            );
            let mut response = (status, xml).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                headers.insert("x-obs-request-id", value.clone());
                headers.insert("x-amz-request-id", value);
            }
            response
        }
        Vendor::Iotaap => {
            if status == StatusCode::UNAUTHORIZED {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "Unauthorized",
                )
                    .into_response()
            } else {
                (status, axum::Json(json!({"message": message}))).into_response()
            }
        }
    }
}

/// Escapes the five XML special characters.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Express.js's default 404 page, which IoTaaP returns for unknown routes.
pub fn express_not_found(method: &str, path: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {} {}</pre>\n</body>\n</html>\n",
        xml_escape(method),
        xml_escape(path)
    );
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::HeaderName::from_static("content-security-policy"),
                "default-src 'none'",
            ),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff",
            ),
        ],
        page,
    )
        .into_response()
}
