//! The gateway's one error type and how it becomes an HTTP response.
//!
//! Every error is a JSON body `{"error": "..."}` with the status from
//! [`ErrorCode::http_status`] (413 for an oversized body, which has no shared
//! code). Upstream gRPC failures keep their code, but only messages the
//! serving service marked public pass through (`switchboard_common::error`,
//! the one policy); anything else is logged and replaced by a generic text.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use switchboard_common::ErrorCode;

/// What can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or violates a limit.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials, but the client's scope does not cover the request.
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit refused the request; answered with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// Text for the caller.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after_seconds: u64,
    },
    /// The body exceeds the configured limit.
    #[error("Request body is too large")]
    PayloadTooLarge,
    /// No such route.
    #[error("Not found")]
    NotFound,
    /// A named resource does not exist (the text says which).
    #[error("{0}")]
    NotFoundWith(String),
    /// Route exists, method does not.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// The request took longer than the configured timeout.
    #[error("Request timed out")]
    Timeout,
    /// A backing service failed.
    #[error("upstream call failed: {}", .0.message())]
    Upstream(#[from] tonic::Status),
    /// A bug or an unexpected answer.
    #[error("{0}")]
    Internal(String),
    /// Serving HTTP failed (startup or listener errors).
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    /// TLS material was refused.
    #[error("tls: {0}")]
    Tls(#[from] switchboard_common::tls::TlsError),
}

/// Result alias for the gateway.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// The shared error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::InvalidArgument,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::PermissionDenied,
            Self::TooManyRequests { .. } => ErrorCode::ResourceExhausted,
            Self::PayloadTooLarge => ErrorCode::InvalidArgument,
            Self::NotFound | Self::NotFoundWith(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::InvalidArgument,
            Self::Timeout => ErrorCode::Timeout,
            Self::Upstream(status) => ErrorCode::from_grpc(status.code()),
            Self::Internal(_) | Self::Serve(_) | Self::Tls(_) => ErrorCode::Internal,
        }
    }

    /// HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => self.code().http_status(),
        }
    }

    /// The text API clients see.
    pub fn public_message(&self) -> String {
        match self {
            // Only texts the serving service marked as written for API clients pass on.
            Self::Upstream(status) => switchboard_common::error::public_message(status),
            Self::Internal(_) | Self::Serve(_) | Self::Tls(_) => "Internal error".into(),
            other => other.to_string(),
        }
    }
}

/// The JSON error body.
pub fn error_body(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unauthenticated(_) => crate::metrics::refused("unauthenticated"),
            Self::Forbidden(_) => crate::metrics::refused("forbidden"),
            Self::TooManyRequests { .. } => crate::metrics::refused("rate_limited"),
            _ => {}
        }
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_seconds, .. } => Some(*retry_after_seconds),
            _ => None,
        };
        let mut response = error_body(status, self.public_message());
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
