//! DCV connection tokens: what `GetSessionConnectionData` hands a client and the DCV server checks with
//! the broker (`auth-token-verifier` → `POST /agent/validate-authentication-token` on the agent port).
//!
//! A connection token is a JWT signed (EdDSA) with the auth service's signing keys, which live in the
//! store, so any session-store replica verifies it without calling auth. It is valid only for the
//! session it names, only while that session exists with the owner it names, only until it expires, and —
//! when single use is on — only once ([`Secrets::use_token_once`](switchboard_store::Secrets::use_token_once), atomic across replicas). The audience
//! [`CONNECTION_TOKEN_AUDIENCE`] differs from API access tokens', so neither kind passes for the other.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use switchboard_common::claims::{CONNECTION_TOKEN_AUDIENCE, ConnectionTokenClaims};
use switchboard_proto::SessionState;

use switchboard_store::{Backend, BackendError, SigningKeyRecord};

/// Longest token accepted.
pub const MAX_TOKEN_CHARS: usize = 4096;

/// Clock skew tolerated on `exp`, in seconds.
pub const LEEWAY_SECONDS: u64 = 10;

/// How long loaded verification keys are used before the store is read again.
const KEYS_TTL: Duration = Duration::from_secs(60);

/// Least time between two key reloads caused by unknown `kid`s.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Why a connection token was refused; the text goes into `<message>`.
pub type Refusal = &'static str;

/// Verification keys by `kid`.
type KeySet = Arc<HashMap<String, DecodingKey>>;

/// Verifies connection tokens against the signing keys in the store.
pub struct ConnectionTokenVerifier {
    backend: Arc<dyn Backend>,
    issuer: String,
    single_use: bool,
    /// Keys by `kid` and when they were loaded; std lock, never held across an await.
    keys: RwLock<Option<(Instant, KeySet)>>,
    /// When the last reload for an unknown `kid` happened; held across the reload.
    reload: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ConnectionTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTokenVerifier")
            .field("issuer", &self.issuer)
            .field("single_use", &self.single_use)
            .finish_non_exhaustive()
    }
}

impl ConnectionTokenVerifier {
    /// A verifier expecting tokens from `issuer`; with `single_use`, each token passes once.
    pub fn new(backend: Arc<dyn Backend>, issuer: String, single_use: bool) -> Self {
        Self { backend, issuer, single_use, keys: RwLock::new(None), reload: tokio::sync::Mutex::new(None) }
    }

    /// Checks `token` for `session_id`; returns the user to log in.
    pub async fn verify(&self, session_id: &str, token: &str) -> Result<String, Refusal> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS || session_id.is_empty() {
            return Err("missing or malformed token");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        let kid = header.kid.ok_or("token has no key id")?;
        // The algorithm is pinned: every signing key is Ed25519; the header cannot choose another.
        if header.alg != Algorithm::EdDSA {
            return Err("token algorithm not accepted");
        }
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[CONNECTION_TOKEN_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<ConnectionTokenClaims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer | jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "token not issued for dcv connections"
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "token signature invalid",
                _ => "invalid token",
            })?
            .claims;
        if claims.dcv_session_id != session_id {
            return Err("token not issued for this session");
        }
        if claims.dcv_session_user.is_empty() || claims.jti.is_empty() {
            return Err("invalid token");
        }
        let sessions = self.backend.get_sessions(&[session_id.to_owned()]).await.map_err(unavailable)?;
        let Some(session) = sessions.into_iter().next().filter(|s| s.state() != SessionState::Deleted) else {
            return Err("session not found");
        };
        if session.owner != claims.dcv_session_owner {
            return Err("token not issued for this session's owner");
        }
        if self.single_use {
            let expires_ms = (claims.exp + LEEWAY_SECONDS as i64) * 1000;
            if !self.backend.use_token_once(&claims.jti, expires_ms).await.map_err(unavailable)? {
                return Err("token already used");
            }
        }
        Ok(claims.dcv_session_user)
    }

    /// The verification key `kid`, reloading the stored keys when they are stale or (rate-limited) when
    /// the `kid` is unknown.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Refusal> {
        let cached = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((loaded, keys)) = &cached
            && loaded.elapsed() < KEYS_TTL
            && let Some(key) = keys.get(kid)
        {
            return Ok(key.clone());
        }
        let mut last_reload = self.reload.lock().await;
        let fresh = cached.as_ref().is_some_and(|(loaded, _)| loaded.elapsed() < KEYS_TTL);
        if fresh && last_reload.is_some_and(|at| at.elapsed() < MIN_RELOAD_INTERVAL) {
            return Err("token signed by an unknown key");
        }
        *last_reload = Some(Instant::now());
        let records = self.backend.list_signing_keys().await.map_err(unavailable)?;
        let keys = Arc::new(decoding_keys(&records));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), keys.clone()));
        keys.get(kid).cloned().ok_or("token signed by an unknown key")
    }
}

fn unavailable(error: BackendError) -> Refusal {
    tracing::warn!(%error, "connection token check could not read the store");
    "broker storage unavailable"
}

/// Ed25519 verification keys by `kid`, from the stored public JWKs.
fn decoding_keys(records: &[SigningKeyRecord]) -> HashMap<String, DecodingKey> {
    records
        .iter()
        .filter(|record| record.algorithm == "EdDSA")
        .filter_map(|record| {
            let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk_json).ok()?;
            let x = jwk.get("x")?.as_str()?;
            if URL_SAFE_NO_PAD.decode(x).ok()?.len() != 32 {
                return None;
            }
            Some((record.kid.clone(), DecodingKey::from_ed_components(x).ok()?))
        })
        .collect()
}
