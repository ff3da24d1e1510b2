//! Checking bearer tokens: the gateway's side of auth.
//!
//! [`TokenVerifier`] caches the key set it fetched from the `Auth` service (`GetKeySet`). The
//! algorithm a token is checked with comes from the key named by the token's `kid`, never from the
//! token header, so `alg: none` or an HMAC token keyed with our public key cannot pass. A token
//! naming an unknown `kid` (a key created after the last fetch) triggers one refresh of the key set,
//! at most one per [`MIN_REFRESH_INTERVAL`], so garbage tokens cannot hammer the auth service.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use switchboard_common::ErrorCode;
use switchboard_proto::auth_client::AuthClient;
use switchboard_proto::{GetKeySetRequest, KeySet};
use tonic::transport::Channel;

use crate::tokens::TokenClaims;

/// Least time between two key-set fetches.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// How long a `GetKeySet` call may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a verified token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The API client the token belongs to (`sub`).
    pub client_id: String,
    /// Expiry, seconds since epoch (`exp`).
    pub expires_at: i64,
    /// Unique token id (`jti`), for audit logs.
    pub jti: String,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The token is malformed, forged, expired or not meant for us; the text is safe to return.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The key set could not be obtained from the auth service.
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

impl VerifyError {
    /// The shared error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// One verification key, with the algorithm pinned to it.
struct VerifyingKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// A parsed key set.
struct KeyState {
    keys: HashMap<String, VerifyingKey>,
    validation_template: Validation,
}

/// Verifies access tokens against the auth service's key set. Cheap to share behind an `Arc`.
pub struct TokenVerifier {
    /// Where key sets come from; `None` for a fixed key set.
    client: Option<AuthClient<Channel>>,
    /// The key set in use; std lock, never held across an await.
    state: RwLock<Option<Arc<KeyState>>>,
    /// Time of the last fetch attempt. A tokio mutex because it is held across the `GetKeySet`
    /// call: concurrent misses wait for that one fetch instead of starting their own.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// Least time between two fetches ([`MIN_REFRESH_INTERVAL`] unless overridden).
    min_refresh_interval: Duration,
    /// `GetKeySet` calls made so far.
    fetches: AtomicU64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("remote", &self.client.is_some())
            .field("key_set_fetches", &self.key_set_fetches())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier that fetches the key set from the auth service on first use.
    pub fn new(client: AuthClient<Channel>) -> Self {
        Self::with_parts(Some(client), None)
    }

    /// A verifier with a fixed key set that never refreshes (tests, tools).
    pub fn from_key_set(key_set: &KeySet) -> Result<Self, VerifyError> {
        Ok(Self::with_parts(None, Some(Arc::new(parse_key_set(key_set)?))))
    }

    fn with_parts(client: Option<AuthClient<Channel>>, state: Option<Arc<KeyState>>) -> Self {
        Self {
            client,
            state: RwLock::new(state),
            refresh: tokio::sync::Mutex::new(None),
            min_refresh_interval: MIN_REFRESH_INTERVAL,
            fetches: AtomicU64::new(0),
        }
    }

    /// Overrides the least time between two key-set fetches (default [`MIN_REFRESH_INTERVAL`]).
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// How many times the key set was fetched from the auth service.
    pub fn key_set_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Loads the key set if none is loaded yet (a readiness check for the gateway).
    pub async fn ensure_loaded(&self) -> Result<(), VerifyError> {
        if self.current().is_none() {
            self.refresh(None).await?;
        }
        Ok(())
    }

    /// Checks a bearer token (without the `Bearer ` prefix) and returns whose it is.
    pub async fn verify(&self, bearer_token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(bearer_token)
            .map_err(|_| VerifyError::Unauthenticated("malformed access token"))?;
        let kid = header.kid.as_deref().ok_or(VerifyError::Unauthenticated("access token has no key id"))?;
        let mut state = match self.current() {
            Some(state) => state,
            None => self.refresh(None).await?,
        };
        if !state.keys.contains_key(kid) {
            tracing::debug!(kid = %kid, "unknown token key id; refreshing key set");
            state = self.refresh(Some(&state)).await?;
        }
        let Some(key) = state.keys.get(kid) else {
            return Err(VerifyError::Unauthenticated("access token signed by an unknown key"));
        };
        if header.alg != key.algorithm {
            return Err(VerifyError::Unauthenticated("access token algorithm does not match its key"));
        }
        let mut validation = state.validation_template.clone();
        validation.algorithms = vec![key.algorithm];
        let data = jsonwebtoken::decode::<TokenClaims>(bearer_token, &key.key, &validation)
            .map_err(|error| VerifyError::Unauthenticated(rejection_reason(error.kind())))?;
        Ok(Claims { client_id: data.claims.sub, expires_at: data.claims.exp, jti: data.claims.jti })
    }

    fn current(&self) -> Option<Arc<KeyState>> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Fetches the key set unless another caller replaced `seen` meanwhile or the last attempt
    /// was less than the minimum refresh interval ago; returns the key set to use.
    async fn refresh(&self, seen: Option<&Arc<KeyState>>) -> Result<Arc<KeyState>, VerifyError> {
        let mut last_attempt = self.refresh.lock().await;
        let current = self.current();
        if let Some(current) = &current {
            let replaced = seen.is_none_or(|seen| !Arc::ptr_eq(seen, current));
            if replaced || self.client.is_none() {
                return Ok(current.clone());
            }
        }
        if last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return current.ok_or_else(|| VerifyError::Unavailable("key set not loaded yet".to_owned()));
        }
        let Some(client) = &self.client else {
            return Err(VerifyError::Unavailable("no key set".to_owned()));
        };
        *last_attempt = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut client = client.clone();
        let response = tokio::time::timeout(FETCH_TIMEOUT, client.get_key_set(GetKeySetRequest {}))
            .await
            .map_err(|_| VerifyError::Unavailable("key set fetch timed out".to_owned()))?
            .map_err(|status| VerifyError::Unavailable(format!("key set fetch failed: {}", status.code())))?;
        let fresh = Arc::new(parse_key_set(response.get_ref())?);
        tracing::debug!(keys = fresh.keys.len(), "loaded token key set");
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}

/// The part of a JWK we use; anything but an Ed25519 `EdDSA` key is skipped.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

fn parse_key_set(key_set: &KeySet) -> Result<KeyState, VerifyError> {
    let jwks: Jwks = serde_json::from_str(&key_set.jwks_json)
        .map_err(|error| VerifyError::Unavailable(format!("key set is not a jwks document: {error}")))?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        match ed25519_key(&jwk) {
            Some((kid, key)) => {
                keys.insert(kid, VerifyingKey { algorithm: Algorithm::EdDSA, key });
            }
            None => tracing::warn!(kid = ?jwk.kid, kty = %jwk.kty, "ignoring unsupported key in key set"),
        }
    }
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&key_set.issuer]);
    validation.set_audience(&[&key_set.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    Ok(KeyState { keys, validation_template: validation })
}

fn ed25519_key(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let pinned = jwk.kty == "OKP" && jwk.crv.as_deref() == Some("Ed25519") && jwk.alg.as_deref() == Some("EdDSA");
    let x = jwk.x.as_deref()?;
    if !pinned || URL_SAFE_NO_PAD.decode(x).ok()?.len() != 32 {
        return None;
    }
    Some((jwk.kid.clone()?, DecodingKey::from_ed_components(x).ok()?))
}

fn rejection_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "access token expired",
        ErrorKind::ImmatureSignature => "access token not yet valid",
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => "access token not issued for this service",
        ErrorKind::InvalidSignature => "access token signature invalid",
        _ => "invalid access token",
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
