//! The error codes every service shares, and the one error-to-status policy.
//!
//! Each crate has its own `thiserror` enum implementing [`ServiceError`]: each
//! error maps to one [`ErrorCode`], and this module is the only place that
//! turns a code into a gRPC status or an HTTP status. [`to_status`] is the one
//! conversion of a service error into a `tonic::Status`: it owns logging and
//! redaction. Internal detail never reaches API clients:
//! - internal failures (bugs) are logged with their detail and answered with a
//!   generic text; unavailability and timeouts are logged and keep their text
//!   for the calling service (never marked public);
//! - client-side failures keep their text, which [`ServiceError`] types write
//!   for API clients, and are marked public ([`PUBLIC_MESSAGE_KEY`]); the
//!   gateway passes on a status text only when it carries that mark, so an
//!   ad-hoc `Status` built anywhere else never reaches an API client verbatim.

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or violates a limit.
    InvalidArgument,
    /// The caller is not authenticated.
    Unauthenticated,
    /// The caller may not do this.
    PermissionDenied,
    /// The thing does not exist.
    NotFound,
    /// The thing already exists.
    AlreadyExists,
    /// A concurrent write won; read again and retry.
    Conflict,
    /// Well-formed, but conflicts with an earlier request (an idempotency key reused with another body):
    /// retrying the same request cannot succeed.
    Unprocessable,
    /// Too many requests or a full queue.
    ResourceExhausted,
    /// A dependency is down; retrying later may work.
    Unavailable,
    /// Waited too long for a dependency or a host.
    Timeout,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorCode {
    /// The gRPC code for this error.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::Conflict => tonic::Code::Aborted,
            Self::Unprocessable => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The code for a gRPC status received from another service.
    pub fn from_grpc(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::InvalidArgument,
            tonic::Code::Unauthenticated => Self::Unauthenticated,
            tonic::Code::PermissionDenied => Self::PermissionDenied,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists => Self::AlreadyExists,
            tonic::Code::Aborted => Self::Conflict,
            tonic::Code::FailedPrecondition => Self::Unprocessable,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            tonic::Code::Unavailable | tonic::Code::Cancelled => Self::Unavailable,
            tonic::Code::DeadlineExceeded => Self::Timeout,
            _ => Self::Internal,
        }
    }

    /// The HTTP status for this error on the REST API.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            Self::InvalidArgument => http::StatusCode::BAD_REQUEST,
            Self::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => http::StatusCode::FORBIDDEN,
            Self::NotFound => http::StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::Conflict => http::StatusCode::CONFLICT,
            Self::Unprocessable => http::StatusCode::UNPROCESSABLE_ENTITY,
            Self::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A gRPC status with this code and message.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }

    /// Whether the failure is on the serving side (a 5xx): its detail is for logs, not callers.
    pub fn is_server_side(self) -> bool {
        matches!(self, Self::Internal | Self::Unavailable | Self::Timeout)
    }

    /// The text callers see when the detail is not theirs to read.
    pub fn generic_message(self) -> &'static str {
        match self {
            Self::InvalidArgument => "Invalid request",
            Self::Unauthenticated => "Unauthenticated",
            Self::PermissionDenied => "Forbidden",
            Self::NotFound => "Not found",
            Self::AlreadyExists => "Already exists",
            Self::Conflict => "Conflicting update; retry",
            Self::Unprocessable => "The request conflicts with an earlier one",
            Self::ResourceExhausted => "Too many requests",
            Self::Unavailable => "Service temporarily unavailable",
            Self::Timeout => "Timed out waiting for a backing service",
            Self::Internal => "Internal error",
        }
    }
}

/// gRPC metadata key marking a status whose message is written for API clients (see
/// [`to_status`] and [`public_message`]).
pub const PUBLIC_MESSAGE_KEY: &str = "x-switchboard-public-message";

/// An error of a Switchboard crate: it knows its [`ErrorCode`], and its `Display` text is written
/// for callers whenever the code is a client-side one.
pub trait ServiceError: std::error::Error {
    /// The shared code of this error.
    fn error_code(&self) -> ErrorCode;

    /// Whether the text is written for API clients. By default every client-side error's is; an
    /// error about the contract between two services (wording such as `page_size must be
    /// 1..=1000`) says no, so its text reaches the calling service but never an API client.
    fn is_public(&self) -> bool {
        !self.error_code().is_server_side()
    }
}

/// The one conversion of a service error into a gRPC status. Internal errors are logged here, with
/// their detail, and answered with [`ErrorCode::generic_message`]; unavailability and timeouts are
/// logged and keep their text for the calling service (an agent, another service) but are never
/// marked public; client-side errors keep their text and are marked public when
/// [`ServiceError::is_public`].
pub fn to_status<E: ServiceError + ?Sized>(error: &E) -> tonic::Status {
    let code = error.error_code();
    match code {
        ErrorCode::Internal => {
            tracing::error!(error = %error, "request failed");
            code.status(code.generic_message())
        }
        ErrorCode::Unavailable | ErrorCode::Timeout => {
            tracing::warn!(error = %error, "dependency failed");
            code.status(error.to_string())
        }
        _ if error.is_public() => public_status(code, error.to_string()),
        _ => {
            tracing::debug!(error = %error, "request refused");
            code.status(error.to_string())
        }
    }
}

/// A client-side status whose message is written for API clients, marked so the gateway passes it
/// on ([`public_message`]). Services get it from [`to_status`]; test doubles of a service build it
/// here.
pub fn public_status(code: ErrorCode, message: impl Into<String>) -> tonic::Status {
    let mut status = code.status(message);
    status.metadata_mut().insert(PUBLIC_MESSAGE_KEY, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// The text of a status received from another service that an API client may read: its message
/// when [`to_status`] marked it public, else the generic text of its code.
pub fn public_message(status: &tonic::Status) -> String {
    let code = ErrorCode::from_grpc(status.code());
    if !code.is_server_side() && status.metadata().contains_key(PUBLIC_MESSAGE_KEY) {
        status.message().to_owned()
    } else {
        code.generic_message().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_round_trip_keeps_the_code() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::Conflict,
            ErrorCode::Unprocessable,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_grpc(code.grpc_code()), code);
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Failure {
        code: ErrorCode,
        text: &'static str,
    }

    impl ServiceError for Failure {
        fn error_code(&self) -> ErrorCode {
            self.code
        }
    }

    #[test]
    fn only_client_errors_keep_their_text_and_only_marked_texts_reach_api_clients() {
        let refused = to_status(&Failure { code: ErrorCode::InvalidArgument, text: "MaxResults must be 1..1000" });
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(public_message(&refused), "MaxResults must be 1..1000");

        let broken = to_status(&Failure { code: ErrorCode::Internal, text: "redis said ERR at key sb:s:1" });
        assert_eq!(broken.message(), "Internal error");
        assert_eq!(public_message(&broken), "Internal error");
        let down = to_status(&Failure { code: ErrorCode::Unavailable, text: "connection refused 10.0.0.7:6379" });
        assert_eq!(down.message(), "connection refused 10.0.0.7:6379", "the calling service may log it");
        assert_eq!(public_message(&down), "Service temporarily unavailable", "API clients never see it");

        // A contract error keeps its text for the calling service, but it is not public.
        #[derive(Debug, thiserror::Error)]
        #[error("page_size must be 1..=1000")]
        struct Contract;
        impl ServiceError for Contract {
            fn error_code(&self) -> ErrorCode {
                ErrorCode::InvalidArgument
            }
            fn is_public(&self) -> bool {
                false
            }
        }
        let contract = to_status(&Contract);
        assert_eq!((contract.code(), contract.message()), (tonic::Code::InvalidArgument, "page_size must be 1..=1000"));
        assert_eq!(public_message(&contract), "Invalid request");

        // A status built by hand, not through the policy, never passes its wording on.
        let ad_hoc = tonic::Status::invalid_argument("page_size must be 1..=1000");
        assert_eq!(public_message(&ad_hoc), "Invalid request");
    }

    #[test]
    fn client_errors_are_4xx_and_server_errors_5xx() {
        assert_eq!(ErrorCode::InvalidArgument.http_status().as_u16(), 400);
        assert_eq!(ErrorCode::Unauthenticated.http_status().as_u16(), 401);
        assert_eq!(ErrorCode::ResourceExhausted.http_status().as_u16(), 429);
        assert_eq!(ErrorCode::Conflict.http_status().as_u16(), 409);
        assert_eq!(ErrorCode::Unprocessable.http_status().as_u16(), 422);
        assert_eq!(ErrorCode::Internal.http_status().as_u16(), 500);
    }
}
