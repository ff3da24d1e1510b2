//! Agent authentication, owned by session-store because the agent port is here.
//!
//! - [`statements`]: software statements (generate, parse, check), the credential an operator hands to
//!   agents so they can register themselves;
//! - [`clients`]: agent clients (RFC 7591 style registration with a statement, the `Basic` credentials every
//!   `Connect` carries, and their check);
//! - [`connection_tokens`]: the claims of DCV connection tokens and their verification for the DCV server's
//!   `auth-token-verifier` (`POST /agent/validate-authentication-token`, served in `agent_link::verifier`).
//!
//! Secrets (statement secrets, client secrets) are 256-bit random values; only their SHA-256 is stored, and
//! comparisons are constant time. Every record lives in the [`crate::backend::Backend`], so any replica
//! registers and authenticates any agent, and the auth service's admin commands see the same records.

pub mod clients;
pub mod connection_tokens;
pub mod statements;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use switchboard_common::ErrorCode;

use crate::backend::BackendError;

/// Bytes of randomness in every statement and client secret.
pub const SECRET_BYTES: usize = 32;

/// Why an agent (or an admin call about agents) was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentAuthError {
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

impl AgentAuthError {
    /// The shared error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Backend(error) => error.code(),
        }
    }
}

impl From<AgentAuthError> for tonic::Status {
    fn from(error: AgentAuthError) -> Self {
        match error {
            AgentAuthError::Backend(error) => crate::service::backend_status(error),
            other => other.code().status(other.to_string()),
        }
    }
}

/// A fresh 256-bit secret, base64url.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret, as stored.
pub(crate) fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether `secret` hashes to `stored`, in constant time.
pub(crate) fn secret_matches(stored: &[u8], secret: &str) -> bool {
    let presented = Sha256::digest(secret.as_bytes());
    stored.len() == presented.len() && bool::from(presented.ct_eq(stored))
}
