//! Idempotent CreateSessions: a request carrying an `Idempotency-Key` runs once per (API client, key).
//!
//! Before anything is created, the key is claimed in the store's [`Idempotency`] role (atomic: of any
//! number of concurrent requests on any replicas, one wins). The winner runs the request and stores its
//! encoded answer for `idempotency_ttl_seconds`; a retry with the same body gets that answer (the same
//! session ids) and creates nothing; a retry while the winner still runs is refused with
//! [`Error::IdempotencyInProgress`] (409 at the API), a reuse with another body with
//! [`Error::IdempotencyMismatch`] (422). A claim lives [`CLAIM_TTL`], so a replica dying mid-request
//! blocks its key only that long. When the request failed as a whole, or its sessions could not be
//! recorded, nothing exists to answer with: the claim is released so a retry runs again.
//!
//! The claimed request runs in a task of its own (`service.rs`), so a caller giving up mid-request
//! cannot leave recorded sessions without a stored answer. Known limit: a request still running after
//! [`CLAIM_TTL`] (a session-store answering a write that slowly) loses its claim, and a retry then
//! runs again; its answer is not stored.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use switchboard_proto::contract::is_valid_idempotency_key;
use switchboard_proto::{CreateSessionsRequest, CreateSessionsResponse, create_session_outcome::Outcome};
use switchboard_store::idempotency::scope_key;
use switchboard_store::{Idempotency, IdempotencyClaim};

use crate::{Error, Result};

/// How long a claim holds its key while its request runs: far above a CreateSessions call's duration
/// (validation, a fleet sync, one store write), short enough that a crashed replica's key frees soon.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Length of a SHA-256 digest, the body hash the gateway sends.
const SHA256_LEN: usize = 32;

/// The idempotency records of CreateSessions, over the store's role.
#[derive(Clone)]
pub struct IdempotencyKeys {
    store: Arc<dyn Idempotency>,
    /// How long an answer is kept (`idempotency_ttl_seconds`).
    ttl: Duration,
}

impl std::fmt::Debug for IdempotencyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyKeys").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// What a request carrying a key does.
#[derive(Debug)]
pub enum Begin {
    /// Runs: this request holds the key; finish with [`IdempotencyKeys::complete`] or
    /// [`IdempotencyKeys::release`].
    Run(Claim),
    /// Creates nothing: the first request's answer.
    Answer(CreateSessionsResponse),
}

/// A held key.
#[derive(Debug)]
pub struct Claim {
    scope_key: String,
}

impl IdempotencyKeys {
    /// Records in `store`, answers kept `ttl`.
    pub fn new(store: Arc<dyn Idempotency>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// Claims the request's key: `None` when it carries none (it runs as always).
    pub async fn begin(&self, request: &CreateSessionsRequest) -> Result<Option<Begin>> {
        let key = request.idempotency_key.as_str();
        if key.is_empty() {
            return Ok(None);
        }
        if !is_valid_idempotency_key(key) {
            return Err(Error::IdempotencyKeyInvalid);
        }
        if request.client_id.is_empty() || request.body_sha256.len() != SHA256_LEN {
            return Err(Error::Contract("an idempotency key needs client_id and a 32-byte body_sha256".to_owned()));
        }
        let scope_key = scope_key(&request.client_id, key);
        match self.store.claim_idempotency_key(&scope_key, &request.body_sha256, CLAIM_TTL).await? {
            IdempotencyClaim::Claimed => Ok(Some(Begin::Run(Claim { scope_key }))),
            IdempotencyClaim::InProgress => Err(Error::IdempotencyInProgress),
            IdempotencyClaim::Mismatch => Err(Error::IdempotencyMismatch),
            IdempotencyClaim::Done(answer) => {
                let answer = CreateSessionsResponse::decode(answer.as_slice())
                    .map_err(|error| Error::Protocol(format!("stored idempotent answer: {error}")))?;
                tracing::info!(request_id = request.request_id, "idempotent retry answered with the stored answer");
                Ok(Some(Begin::Answer(answer)))
            }
        }
    }

    /// Stores `answer` for the key's TTL. A failure is logged, not returned: the sessions exist and the
    /// caller gets its answer; a retry after the claim expired would run again.
    pub async fn complete(&self, claim: Claim, answer: &CreateSessionsResponse) {
        match self.store.complete_idempotency_key(&claim.scope_key, stored(answer), self.ttl).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the idempotency claim expired before the answer was stored"),
            Err(error) => tracing::warn!(%error, "storing the idempotent answer failed"),
        }
    }

    /// Frees the key for a retry (nothing was created). A failure is logged: the claim then expires.
    pub async fn release(&self, claim: Claim) {
        if let Err(error) = self.store.release_idempotency_key(&claim.scope_key).await {
            tracing::warn!(%error, "releasing an idempotency claim failed; it expires by itself");
        }
    }
}

/// `answer` as stored: its sessions without their specs, which the API's answer does not show and which may
/// carry a 64 KB permissions file each, so a record stays a few hundred bytes per session.
fn stored(answer: &CreateSessionsResponse) -> Vec<u8> {
    let mut answer = answer.clone();
    for outcome in &mut answer.outcomes {
        if let Some(Outcome::Session(session)) = &mut outcome.outcome {
            session.spec = None;
        }
    }
    answer.encode_to_vec()
}
