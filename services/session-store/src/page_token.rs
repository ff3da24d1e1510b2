//! Page tokens (`NextToken` of describeSessions / describeServers): opaque to
//! clients, stable, tamper-evident and valid on every replica.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`
//! where the payload is `v1:<kind>:<after id>`. The key is one shared secret
//! in the [`Backend`] ([`Backend::shared_secret`]): the first replica to need
//! it stores a random 256-bit key atomically, every other replica reads the
//! same one, so a token issued by one replica verifies on all of them. The
//! same position always yields the same token (stable); changing any byte
//! breaks the MAC (tamper-evident).

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::Sha256;
use tokio::sync::OnceCell;

use switchboard_store::{Backend, BackendError};

/// Name of the shared secret holding the HMAC key.
pub const SECRET_NAME: &str = "page-token-hmac-v1";
/// Longest token accepted (ids are bounded, so real tokens are far shorter).
pub const MAX_TOKEN_CHARS: usize = 2048;

/// What a token pages through; a token of one kind is refused for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// describeSessions.
    Sessions,
    /// describeServers.
    Servers,
}

impl PageKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::Servers => "servers",
        }
    }
}

/// Why a token was refused (the message clients see).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid NextToken")]
pub struct InvalidToken;

/// Signs and verifies page tokens with the cluster's shared key.
pub struct PageTokens {
    backend: Arc<dyn Backend>,
    key: OnceCell<Vec<u8>>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokens").field("key", &"[redacted]").finish()
    }
}

impl PageTokens {
    /// Tokens keyed by the shared secret in `backend` (read on first use).
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend, key: OnceCell::new() }
    }

    async fn key(&self) -> Result<&[u8], BackendError> {
        let key = self
            .key
            .get_or_try_init(|| async {
                let mut candidate = vec![0u8; 32];
                rand::rng().fill(candidate.as_mut_slice());
                self.backend.shared_secret(SECRET_NAME, candidate).await
            })
            .await?;
        Ok(key.as_slice())
    }

    fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(payload);
        mac
    }

    /// The token for the page after `after_id`.
    pub async fn sign(&self, kind: PageKind, after_id: &str) -> Result<String, BackendError> {
        let key = self.key().await?;
        let payload = format!("v1:{}:{after_id}", kind.tag());
        let tag = Self::mac(key, payload.as_bytes()).finalize().into_bytes();
        Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag)))
    }

    /// The `after_id` a token stands for; `Ok(Err(InvalidToken))` when it does
    /// not verify, `Err` when the key cannot be read.
    pub async fn verify(&self, kind: PageKind, token: &str) -> Result<Result<String, InvalidToken>, BackendError> {
        let key = self.key().await?;
        Ok(Self::check(key, kind, token))
    }

    fn check(key: &[u8], kind: PageKind, token: &str) -> Result<String, InvalidToken> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(InvalidToken);
        }
        let (payload, tag) = token.split_once('.').ok_or(InvalidToken)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| InvalidToken)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| InvalidToken)?;
        Self::mac(key, &payload).verify_slice(&tag).map_err(|_| InvalidToken)?;
        let payload = String::from_utf8(payload).map_err(|_| InvalidToken)?;
        let rest = payload.strip_prefix("v1:").ok_or(InvalidToken)?;
        let after_id = rest.strip_prefix(kind.tag()).and_then(|r| r.strip_prefix(':')).ok_or(InvalidToken)?;
        Ok(after_id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::embedded::EmbeddedBackend;

    fn backend() -> Arc<dyn Backend> {
        Arc::new(EmbeddedBackend::in_memory().unwrap())
    }

    #[tokio::test]
    async fn tokens_round_trip_and_are_stable() {
        let tokens = PageTokens::new(backend());
        let token = tokens.sign(PageKind::Sessions, "abc-123").await.unwrap();
        assert_eq!(tokens.sign(PageKind::Sessions, "abc-123").await.unwrap(), token, "same position, same token");
        assert_eq!(tokens.verify(PageKind::Sessions, &token).await.unwrap(), Ok("abc-123".to_owned()));
        assert!(!token.contains("abc-123"), "opaque: the id is not readable as is");
    }

    #[tokio::test]
    async fn tokens_verify_on_every_replica_sharing_the_backend() {
        let shared = backend();
        let (first, second) = (PageTokens::new(shared.clone()), PageTokens::new(shared));
        let token = first.sign(PageKind::Servers, "host-9").await.unwrap();
        assert_eq!(second.verify(PageKind::Servers, &token).await.unwrap(), Ok("host-9".to_owned()));
        let stranger = PageTokens::new(backend());
        assert_eq!(stranger.verify(PageKind::Servers, &token).await.unwrap(), Err(InvalidToken), "other cluster");
    }

    #[tokio::test]
    async fn tampered_or_foreign_tokens_are_refused() {
        let tokens = PageTokens::new(backend());
        let token = tokens.sign(PageKind::Sessions, "s-1").await.unwrap();
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("v1:sessions:s-0");
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
            payload.to_owned(),
            String::new(),
            "%%%.%%%".to_owned(),
            "a".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            assert_eq!(tokens.verify(PageKind::Sessions, &bad).await.unwrap(), Err(InvalidToken), "{bad}");
        }
        assert_eq!(tokens.verify(PageKind::Servers, &token).await.unwrap(), Err(InvalidToken), "kind is bound");
    }
}
