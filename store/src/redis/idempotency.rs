//! [`Idempotency`] for [`RedisBackend`]: one hash per record, `P idempotency:{scope key}` with `body`,
//! `done` and `answer`, expiring by Redis' own `PEXPIRE` (claim TTL, then the key's TTL). Each step is
//! one script, so concurrent claims on any number of replicas see exactly one `CLAIMED`.

use std::time::Duration;

use async_trait::async_trait;

use super::{RedisBackend, reply};
use crate::idempotency::ttl_ms;
use crate::{BackendError, BackendResult, Idempotency, IdempotencyClaim};

fn unexpected(script: &str, word: &str) -> BackendError {
    BackendError::Corrupt(format!("unexpected {script} script status {word}"))
}

#[async_trait]
impl Idempotency for RedisBackend {
    async fn claim_idempotency_key(
        &self,
        scope_key: &str,
        body_sha256: &[u8],
        claim_ttl: Duration,
    ) -> BackendResult<IdempotencyClaim> {
        let mut invocation = self.invoke(&self.scripts.idempotency_claim);
        invocation.arg(scope_key).arg(body_sha256).arg(ttl_ms(claim_ttl));
        let (word, rest) = reply::status(self.run(&invocation).await?)?;
        match (word.as_str(), rest.as_slice()) {
            ("CLAIMED", []) => Ok(IdempotencyClaim::Claimed),
            ("INPROGRESS", []) => Ok(IdempotencyClaim::InProgress),
            ("MISMATCH", []) => Ok(IdempotencyClaim::Mismatch),
            ("DONE", [answer]) => Ok(IdempotencyClaim::Done(reply::bytes(answer)?.to_vec())),
            _ => Err(unexpected("idempotency_claim", &word)),
        }
    }

    async fn complete_idempotency_key(&self, scope_key: &str, answer: Vec<u8>, ttl: Duration) -> BackendResult<bool> {
        let mut invocation = self.invoke(&self.scripts.idempotency_complete);
        invocation.arg(scope_key).arg(answer).arg(ttl_ms(ttl));
        match reply::text(&self.run(&invocation).await?)?.as_str() {
            "OK" => Ok(true),
            "GONE" => Ok(false),
            other => Err(unexpected("idempotency_complete", other)),
        }
    }

    async fn release_idempotency_key(&self, scope_key: &str) -> BackendResult<()> {
        let mut invocation = self.invoke(&self.scripts.idempotency_release);
        invocation.arg(scope_key);
        match reply::text(&self.run(&invocation).await?)?.as_str() {
            "OK" => Ok(()),
            other => Err(unexpected("idempotency_release", other)),
        }
    }
}
