//! The enrolment role (durable): software statements and agent clients, and the logic over them.
//!
//! - [`statements`]: software statements (generate, parse, check), the credential an operator hands
//!   to agents so they can register themselves;
//! - [`clients`]: agent clients (RFC 7591 style registration with a statement, the `Basic`
//!   credentials every agent stream carries, and their check).
//!
//! Secrets (statement secrets, client secrets) are 256-bit random values; only their SHA-256 is
//! stored, and comparisons are constant time (`switchboard_common::secret`). Every record lives in
//! the store, so any session-store replica registers and authenticates any agent, and the auth
//! service's admin commands see the same records.

pub mod clients;
pub mod statements;

use async_trait::async_trait;
use switchboard_common::{ErrorCode, ServiceError};
use switchboard_proto::{AgentClientRecord, SoftwareStatementRecord};

use crate::{BackendError, BackendResult};

/// Why an agent (or an admin call about agents) was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// Missing, malformed or wrong credentials (or statement); the text is safe to return.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed (another server id).
    #[error("{0}")]
    PermissionDenied(String),
    /// A request field is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named record does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ServiceError for EnrolmentError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Backend(error) => error.error_code(),
        }
    }
}

impl From<EnrolmentError> for tonic::Status {
    fn from(error: EnrolmentError) -> Self {
        switchboard_common::error::to_status(&error)
    }
}

/// Software statements and agent clients (durable). All methods are atomic.
#[async_trait]
pub trait Enrolment: Send + Sync + 'static {
    /// Stores a new software statement; `AlreadyExists` if the id is taken.
    async fn insert_software_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()>;

    /// Reads one software statement (with its current `active` state).
    async fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>>;

    /// Every software statement, oldest first (`issued_at`, then id).
    async fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>>;

    /// Deactivates a statement for good (idempotent); `false` if unknown.
    async fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool>;

    /// Atomically: if the client's `software_statement_id` names an active
    /// statement, stores the client (its `server_id` is ignored: clients
    /// start unbound). `NotFound` if the statement is missing or inactive,
    /// `AlreadyExists` if the client id is taken.
    async fn register_agent_client(&self, client: AgentClientRecord) -> BackendResult<()>;

    /// Reads one agent client, with the server id it is bound to.
    async fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>>;

    /// Every agent client, in id order, with their bound server ids.
    async fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>>;

    /// Removes an agent client and its server binding (the server id may be
    /// bound again by another client); returns whether it existed.
    async fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool>;

    /// Atomically binds an agent client to a server id at its first hello,
    /// or checks the binding afterwards. `Ok` if the client is (now) bound to
    /// `server_id`; `Conflict` if the client is bound to another server id
    /// or the server id is bound to another client; `NotFound` if the client
    /// does not exist (unregistered).
    async fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()>;
}
