//! The crate's error type, turned into gRPC statuses only through `switchboard_common::error::to_status`.

use switchboard_common::{ErrorCode, ServiceError};
use switchboard_store::BackendError;

/// What can go wrong in session-store: serving, and answering a call.
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
    /// A setting is out of its range; the text names it and the bound.
    #[error("{0}")]
    Config(String),
    /// The agent port's TLS identity was refused.
    #[error(transparent)]
    Tls(#[from] switchboard_common::tls::TlsError),
    /// An internal caller broke the call's contract (a missing field, a bound the caller checks
    /// first). Its wording is for logs and the calling service, never for API clients.
    #[error("{0}")]
    Contract(String),
    /// An API client's request is not acceptable (a webhook URL that is not https, or that the SSRF guard
    /// refuses): the text is for the client.
    #[error("{0}")]
    InvalidRequest(String),
    /// A `NextToken` that this cluster did not sign (or that was changed): the caller's fault.
    #[error("{0}")]
    InvalidPageToken(String),
    /// The host's agent is not connected here or anywhere reachable.
    #[error("{0}")]
    HostUnreachable(String),
    /// The host's agent did not answer in time.
    #[error("{0}")]
    HostTimeout(String),
    /// An agent broke the stream protocol (no hello, a wrong first message, a missing server id).
    /// The text is for the agent's log.
    #[error("{0}")]
    AgentProtocol(String),
    /// This replica no longer owns the agent's stream (another claimed it, or the store refused the
    /// lease): the agent reconnects.
    #[error("{0}")]
    StreamSuperseded(String),
}

impl ServiceError for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Transport(_) | Self::AgentPort(_) | Self::HostUnreachable(_) | Self::StreamSuperseded(_) => {
                ErrorCode::Unavailable
            }
            Self::AgentProtocol(_) => ErrorCode::InvalidArgument,
            Self::Tls(_) => ErrorCode::Internal,
            Self::Backend(error) => error.error_code(),
            Self::Contract(_) | Self::InvalidPageToken(_) | Self::Config(_) | Self::InvalidRequest(_) => {
                ErrorCode::InvalidArgument
            }
            Self::HostTimeout(_) => ErrorCode::Timeout,
        }
    }

    fn is_public(&self) -> bool {
        match self {
            Self::Contract(_) | Self::AgentProtocol(_) => false,
            Self::Backend(error) => error.is_public(),
            _ => !self.error_code().is_server_side(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        switchboard_common::error::to_status(&error)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
