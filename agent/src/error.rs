//! The agent's one error enum, mapped to the shared [`ErrorCode`].

use switchboard_common::ErrorCode;

use crate::driver::DriverError;

/// Everything that can stop the agent or fail one of its operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `agent.conf`, a tag file or an option is invalid; fixing the file is the only remedy.
    #[error("configuration error: {0}")]
    Config(String),
    /// A file the configuration points at could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder that failed.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The DCV driver failed an operation.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The broker could not be reached or the stream broke; the link retries.
    #[error("broker link: {0}")]
    Link(String),
    /// The broker broke the agent protocol (for example no welcome first).
    #[error("broker protocol violation: {0}")]
    Protocol(String),
}

impl Error {
    /// The shared code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Config(_) => ErrorCode::InvalidArgument,
            Self::Io { .. } => ErrorCode::Internal,
            Self::Driver(error) => error.code(),
            Self::Link(_) => ErrorCode::Unavailable,
            Self::Protocol(_) => ErrorCode::Internal,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// Result alias of the agent crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
