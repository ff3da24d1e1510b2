//! The boundary between the agent and whatever runs sessions on the host.
//!
//! The link turns broker commands into calls on a [`DcvDriver`]; a driver knows nothing about the broker.
//! [`simulated::SimulatedDriver`] keeps sessions in memory; [`dcv::DcvCliDriver`] drives the host's DCV
//! server through the `dcv` command line, with init and autorun files confined by [`paths`].

pub mod dcv;
pub mod paths;
pub mod simulated;

use async_trait::async_trait;
use switchboard_common::ErrorCode;
use switchboard_proto::{CommandErrorKind, CreateSessionSpec, HostSession, ScreenshotImage};

/// Why a driver failed an operation. The text is sent to the broker as the command's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// No session with this id on the host.
    #[error("session not found: {0}")]
    SessionNotFound(String),
    /// A session with this id already exists on the host.
    #[error("session already exists: {0}")]
    SessionExists(String),
    /// The host already has its one console session.
    #[error("the host already has a console session")]
    ConsoleSessionExists,
    /// The host reached `max_virtual_sessions`.
    #[error("the host reached its limit of {0} virtual sessions")]
    VirtualSessionLimit(u32),
    /// The request cannot be served as asked (bad type, unknown format).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The driver does not support this yet.
    #[error("{0}")]
    Unsupported(String),
    /// The DCV server did not answer or failed.
    #[error("dcv server failure: {0}")]
    Dcv(String),
}

impl DriverError {
    /// The shared code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::SessionNotFound(_) => ErrorCode::NotFound,
            Self::SessionExists(_) => ErrorCode::AlreadyExists,
            Self::ConsoleSessionExists | Self::VirtualSessionLimit(_) => ErrorCode::ResourceExhausted,
            Self::InvalidRequest(_) | Self::Unsupported(_) => ErrorCode::InvalidArgument,
            Self::Dcv(_) => ErrorCode::Unavailable,
        }
    }

    /// The kind reported to the broker in `CommandResult.error_kind`.
    pub fn kind(&self) -> CommandErrorKind {
        match self {
            Self::SessionNotFound(_) => CommandErrorKind::SessionNotFound,
            Self::SessionExists(_) => CommandErrorKind::SessionExists,
            Self::ConsoleSessionExists | Self::VirtualSessionLimit(_) => CommandErrorKind::LimitReached,
            Self::InvalidRequest(_) => CommandErrorKind::InvalidRequest,
            Self::Unsupported(_) => CommandErrorKind::Unsupported,
            Self::Dcv(_) => CommandErrorKind::HostFailure,
        }
    }
}

/// Result alias of driver operations.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Runs sessions on one host. Implementations are shared by the link's concurrent command tasks.
#[async_trait]
pub trait DcvDriver: Send + Sync {
    /// Whether the DCV server answers; reported to the broker with every update.
    async fn health(&self) -> bool;

    /// The DCV server's version, reported in the hello.
    async fn version(&self) -> String;

    /// Every session on the host right now (the inventory the broker rebuilds its view from).
    async fn list_sessions(&self) -> Result<Vec<HostSession>>;

    /// Creates session `session_id` (chosen by the broker) as `spec` asks.
    async fn create_session(&self, session_id: &str, spec: &CreateSessionSpec) -> Result<HostSession>;

    /// Closes a session; [`DriverError::SessionNotFound`] when the host has no such session.
    async fn close_session(&self, session_id: &str) -> Result<()>;

    /// Replaces a session's DCV permissions file.
    async fn set_permissions(&self, session_id: &str, permissions: &[u8]) -> Result<()>;

    /// Screenshots of a session's displays, each at most `max_width` x `max_height` (0: no limit) in
    /// `format` (`png` or `jpeg`).
    async fn screenshot(
        &self,
        session_id: &str,
        max_width: u32,
        max_height: u32,
        format: &str,
    ) -> Result<Vec<ScreenshotImage>>;
}
