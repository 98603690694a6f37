//! API errors and their JSON form.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chordal_core::{LookupError, OpError};
use chordal_node::Error;
use serde_json::json;

/// An error answered as `{"error": message, "code": code}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (docs/http-api.md).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// One more field of the JSON body (412's current `version`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// A 400 with this code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Error> for ApiError {
    /// The HTTP status and code of each failure (docs/http-api.md).
    fn from(e: Error) -> ApiError {
        use StatusCode as S;
        let msg = e.to_string();
        if let Error::Op(OpError::PreconditionFailed { current }) = e {
            let mut error = ApiError::new(S::PRECONDITION_FAILED, "precondition_failed", msg);
            error.extra = Some(("version", json!(current.map(|v| v.to_text()))));
            return error;
        }
        let (status, code) = match e {
            Error::Op(OpError::Timeout | OpError::Lookup(LookupError::Timeout)) => {
                (S::GATEWAY_TIMEOUT, "timeout")
            }
            Error::Op(OpError::Overloaded | OpError::Lookup(LookupError::Overloaded)) => {
                (S::SERVICE_UNAVAILABLE, "overloaded")
            }
            Error::Op(OpError::Lookup(_)) => (S::SERVICE_UNAVAILABLE, "lookup_failed"),
            Error::Op(OpError::NotReady) => (S::SERVICE_UNAVAILABLE, "not_ready"),
            Error::Op(OpError::QuorumFailed { .. }) => (S::SERVICE_UNAVAILABLE, "quorum_failed"),
            Error::Op(OpError::QuorumUnavailable { .. }) => {
                (S::SERVICE_UNAVAILABLE, "quorum_unavailable")
            }
            Error::Op(OpError::StoreFailed) => (S::INSUFFICIENT_STORAGE, "insufficient_storage"),
            Error::Storage(_) => (S::INTERNAL_SERVER_ERROR, "storage_failed"),
            Error::Op(OpError::TooLarge { .. }) => (S::PAYLOAD_TOO_LARGE, "value_too_large"),
            Error::Op(OpError::UnexpectedAnswer) => (S::BAD_GATEWAY, "unexpected_answer"),
            Error::Op(OpError::NotAnInteger) => (S::CONFLICT, "not_an_integer"),
            Error::Op(OpError::NotAFloat) => (S::CONFLICT, "not_a_float"),
            Error::Op(OpError::Overflow) => (S::CONFLICT, "overflow"),
            _ => (S::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, msg)
    }
}

impl ApiError {
    /// The same error, with `code` for a payload over the limit (a
    /// published message is not a value).
    pub fn too_large_as(mut self, code: &'static str) -> ApiError {
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            self.code = code;
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "code": self.code});
        if let Some((name, value)) = self.extra {
            body[name] = value;
        }
        let body = Json(body);
        let mut response = (self.status, body).into_response();
        // Shed load: tell clients when to come back instead of at once.
        if self.code == "overloaded" || self.code == "not_ready" {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
