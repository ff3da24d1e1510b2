//! The secrets role (durable): values every replica must agree on without coordination, and token
//! ids that may be used once.

use async_trait::async_trait;

use crate::BackendResult;

/// Shared secrets and single-use token ids. All methods are atomic across replicas.
#[async_trait]
pub trait Secrets: Send + Sync + 'static {
    /// The secret stored under `name`, storing `candidate` first when there is
    /// none. Atomic: racing callers (any replica) all get the first stored
    /// value, so replicas agree on e.g. the page-token HMAC key without
    /// coordination. Secrets are never replaced or removed.
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>>;

    /// Records the first use of a single-use token id until `expires_at_ms`
    /// (ms since epoch): `true` the first time, `false` for every later call
    /// until it expires. Atomic across replicas.
    async fn use_token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool>;
}
