//! What can go wrong in a backend, and its [`ErrorCode`](switchboard_common::ErrorCode).

/// What can go wrong in a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No record with this key.
    #[error("not found: {0}")]
    NotFound(String),
    /// A record with this key exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The record changed since it was read (compare-and-set failed).
    #[error("revision conflict on {0}")]
    Conflict(String),
    /// The backend cannot be reached or failed to answer.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("corrupt record {0}")]
    Corrupt(String),
    /// A fenced write was refused: the writer's agent-stream ownership is no
    /// longer current (or, for an unowned write, a live owner exists).
    #[error("fenced off: {0}")]
    Fenced(String),
    /// The call's arguments are out of bounds (e.g. too many ids).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl BackendError {
    /// The shared error code for this failure.
    pub fn code(&self) -> switchboard_common::ErrorCode {
        use switchboard_common::ErrorCode;
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Fenced(_) => ErrorCode::Conflict,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
        }
    }
}

/// Result alias for backend calls.
pub type BackendResult<T> = Result<T, BackendError>;

impl switchboard_common::error::ServiceError for BackendError {
    fn error_code(&self) -> switchboard_common::ErrorCode {
        self.code()
    }

    /// Backend wording names keys and internals: never for API clients.
    fn is_public(&self) -> bool {
        false
    }
}
