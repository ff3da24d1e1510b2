//! The crate's error type.

use switchboard_common::ErrorCode;

use crate::backend::BackendError;

/// What can stop the session-store from serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A gRPC server failed (bind, TLS setup, serve).
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The agent port failed (bind, serve).
    #[error("agent port: {0}")]
    AgentPort(#[from] std::io::Error),
    /// The agent port's TLS identity was refused.
    #[error(transparent)]
    Tls(#[from] switchboard_common::tls::TlsError),
}

impl Error {
    /// The shared error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Transport(_) | Self::AgentPort(_) => ErrorCode::Unavailable,
            Self::Tls(_) => ErrorCode::Internal,
            Self::Backend(error) => error.code(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
