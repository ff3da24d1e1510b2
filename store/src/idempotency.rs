//! The idempotency role: one record per (API client, `Idempotency-Key`) of CreateSessions, so a retried
//! request is answered with the first request's answer instead of creating its sessions again.
//!
//! Placement owns the record's life: [`Idempotency::claim_idempotency_key`] before it creates anything
//! (exactly one of any number of concurrent claims wins, on any replica), then
//! [`Idempotency::complete_idempotency_key`] with the encoded answer, or
//! [`Idempotency::release_idempotency_key`] when nothing was created so a retry can run. A claim expires by
//! itself ([`Idempotency::claim_idempotency_key`]'s `claim_ttl`), so a replica dying mid-request blocks the
//! key only that long; an answer expires after the key's TTL. Backends key records by [`scope_key`], a
//! hash, so neither a client id nor a key appears in storage.

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::BackendResult;

/// What a claim of a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free (or expired): the caller runs the request, then completes or releases the key.
    Claimed,
    /// Another request with the key and the same body is still running.
    InProgress,
    /// A request with the key and the same body finished: its stored answer.
    Done(Vec<u8>),
    /// The key was used with a different body.
    Mismatch,
}

/// Idempotency records of CreateSessions. Every method is atomic.
#[async_trait]
pub trait Idempotency: Send + Sync + 'static {
    /// Claims `scope_key` (a [`scope_key`]) for a request whose body hashes to `body_sha256`: creates
    /// an in-progress record living `claim_ttl` when none is live, else reports what the live one holds.
    async fn claim_idempotency_key(
        &self,
        scope_key: &str,
        body_sha256: &[u8],
        claim_ttl: Duration,
    ) -> BackendResult<IdempotencyClaim>;

    /// Stores `answer` on the in-progress record of `scope_key`, kept `ttl` from now; `false` (nothing
    /// stored) when the record is gone (its claim expired) or already done.
    async fn complete_idempotency_key(&self, scope_key: &str, answer: Vec<u8>, ttl: Duration) -> BackendResult<bool>;

    /// Forgets the in-progress record of `scope_key` (a done one stays), so a retry runs again.
    async fn release_idempotency_key(&self, scope_key: &str) -> BackendResult<()>;
}

/// The storage key of `key` as sent by `client_id`: hex SHA-256 over both, length-prefixed so no two
/// pairs collide by concatenation. Two clients using one key get two records.
pub fn scope_key(client_id: &str, key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update((client_id.len() as u64).to_be_bytes());
    hash.update(client_id.as_bytes());
    hash.update(key.as_bytes());
    hash.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A duration in whole milliseconds, at least 1 (a zero TTL would mean "no expiry" to Redis).
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_separate_clients_and_keys() {
        assert_eq!(scope_key("a", "k"), scope_key("a", "k"));
        assert_ne!(scope_key("a", "k"), scope_key("b", "k"), "two clients, one key: two records");
        assert_ne!(scope_key("ab", "c"), scope_key("a", "bc"), "no collision by concatenation");
        assert_eq!(scope_key("a", "k").len(), 64);
    }
}
