//! API errors and their JSON form.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chordal_core::LookupError;
use chordal_node::NodeError;
use serde_json::json;

/// An error answered as `{"error": message, "code": code}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        match e {
            NodeError::Lookup(LookupError::Timeout) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
            }
            NodeError::Lookup(LookupError::Overloaded) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string())
            }
            NodeError::Lookup(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "lookup_failed",
                e.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.message, "code": self.code}));
        let mut response = (self.status, body).into_response();
        // Shed load: tell clients when to come back instead of at once.
        if self.code == "overloaded" {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
