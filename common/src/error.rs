//! The error codes every service shares.
//!
//! Each crate has its own `thiserror` enum; each of those maps to one
//! [`ErrorCode`], and this module is the only place that turns a code into a
//! gRPC status or an HTTP status. Internal detail never reaches API clients:
//! [`ErrorCode::Internal`] carries a generic message at the edge.

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
            tonic::Code::Aborted | tonic::Code::FailedPrecondition => Self::Conflict,
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
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::from_grpc(code.grpc_code()), code);
        }
    }

    #[test]
    fn client_errors_are_4xx_and_server_errors_5xx() {
        assert_eq!(ErrorCode::InvalidArgument.http_status().as_u16(), 400);
        assert_eq!(ErrorCode::Unauthenticated.http_status().as_u16(), 401);
        assert_eq!(ErrorCode::ResourceExhausted.http_status().as_u16(), 429);
        assert_eq!(ErrorCode::Internal.http_status().as_u16(), 500);
    }
}
