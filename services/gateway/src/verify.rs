//! Checking bearer tokens: the gateway's side of auth.
//!
//! [`TokenVerifier`] caches the key set it fetched from the `Auth` service (`GetKeySet`): our own
//! signing keys plus the list of trusted external authorization servers, whose JWKS documents it
//! fetches itself. The algorithm a token is checked with comes from the key named by the token's
//! `kid` (pinned per key, or per external server), never from the token header, so `alg: none`,
//! an HMAC token keyed with a public key or an RSA/EC confusion cannot pass.
//!
//! Refreshes:
//! - the key set is re-fetched when older than [`VerifierConfig::key_set_max_age`] (so a rotated-in
//!   key is known before it signs, and an unregistered external server stops being trusted), and
//!   once when a token names an unknown `kid` or an unknown issuer;
//! - each external JWKS likewise, per server;
//! - at most one fetch per source per [`VerifierConfig::min_refresh_interval`], so garbage tokens
//!   cannot hammer the auth service or an identity provider. When a periodic refresh fails, the
//!   last good set stays in use (logged), so an auth outage does not stop the API.
//!
//! A token is routed by its (unverified) `iss`: our issuer → our keys; otherwise the external
//! servers registered with that issuer, or with none. Nothing unverified is trusted beyond routing.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use switchboard_common::ErrorCode;
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::auth_client::AuthClient;
use switchboard_proto::{AuthServerInfo, GetKeySetRequest, KeySet};

use switchboard_common::claims::TokenClaims;

/// Least time between two key-set fetches (default of [`VerifierConfig::min_refresh_interval`]).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Default of [`VerifierConfig::key_set_max_age`].
pub const KEY_SET_MAX_AGE: Duration = Duration::from_secs(30);

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Longest accepted bearer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest accepted JWKS document from an external server, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;

/// Most keys used from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 100;

/// How long a `GetKeySet` call or a JWKS download may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Refresh behaviour of a [`TokenVerifier`].
#[derive(Debug, Clone, Copy)]
pub struct VerifierConfig {
    /// Least time between two fetches of the same source.
    pub min_refresh_interval: Duration,
    /// Age after which a cached key set (ours or an external JWKS) is fetched again.
    pub key_set_max_age: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self { min_refresh_interval: MIN_REFRESH_INTERVAL, key_set_max_age: KEY_SET_MAX_AGE }
    }
}

/// Which issuer a verified token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Issued by this cluster's auth service to a registered API client.
    Internal,
    /// Issued by a registered external authorization server.
    External {
        /// The server's JWKS URL (its identity).
        url: String,
    },
}

/// Who a verified token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The API client the token belongs to (`sub`; for external tokens `sub`, else `client_id`,
    /// `azp` or `appid`).
    pub client_id: String,
    /// Expiry, seconds since epoch (`exp`).
    pub expires_at: i64,
    /// Unique token id (`jti`), for audit logs; may be empty for external tokens.
    pub jti: String,
    /// Who issued it.
    pub source: TokenSource,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The token is malformed, forged, expired or not meant for us; the text is safe to return.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The key set could not be obtained from the auth service (or an external server).
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

/// A parsed key set from the auth service.
struct KeyState {
    keys: HashMap<String, VerifyingKey>,
    validation_template: Validation,
    issuer: String,
    external: Vec<AuthServerInfo>,
    fetched_at: Instant,
}

/// The parsed keys of one external server.
struct ExternalKeys {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Instant,
}

/// Verifies access tokens against the auth service's key set. Cheap to share behind an `Arc`.
pub struct TokenVerifier {
    /// Where key sets come from; `None` for a fixed key set.
    client: Option<AuthClient<GrpcChannel>>,
    /// The key set in use; std lock, never held across an await.
    state: RwLock<Option<Arc<KeyState>>>,
    /// Time of the last fetch attempt. A tokio mutex because it is held across the `GetKeySet`
    /// call: concurrent misses wait for that one fetch instead of starting their own.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// External servers' keys by JWKS URL; std lock, never held across an await.
    external: RwLock<HashMap<String, Arc<ExternalKeys>>>,
    /// Last JWKS fetch attempt per URL; held across the download (one fetch at a time).
    external_attempts: tokio::sync::Mutex<HashMap<String, Instant>>,
    /// Downloads external JWKS documents.
    http: reqwest::Client,
    config: VerifierConfig,
    /// `GetKeySet` calls made so far.
    fetches: AtomicU64,
    /// JWKS downloads made so far.
    external_fetches: AtomicU64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("remote", &self.client.is_some())
            .field("key_set_fetches", &self.key_set_fetches())
            .field("jwks_fetches", &self.jwks_fetches())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier that fetches the key set from the auth service on first use.
    pub fn new(client: AuthClient<GrpcChannel>) -> Self {
        Self::with_parts(Some(client), None)
    }

    /// A verifier with a fixed key set that never refreshes it (tests, tools); the JWKS of the
    /// external servers it names are still fetched.
    pub fn from_key_set(key_set: &KeySet) -> Result<Self, VerifyError> {
        Ok(Self::with_parts(None, Some(Arc::new(parse_key_set(key_set)?))))
    }

    fn with_parts(client: Option<AuthClient<GrpcChannel>>, state: Option<Arc<KeyState>>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            client,
            state: RwLock::new(state),
            refresh: tokio::sync::Mutex::new(None),
            external: RwLock::new(HashMap::new()),
            external_attempts: tokio::sync::Mutex::new(HashMap::new()),
            http,
            config: VerifierConfig::default(),
            fetches: AtomicU64::new(0),
            external_fetches: AtomicU64::new(0),
        }
    }

    /// Overrides the refresh behaviour (default [`VerifierConfig::default`]).
    pub fn with_config(mut self, config: VerifierConfig) -> Self {
        self.config = config;
        self
    }

    /// Overrides the least time between two key-set fetches.
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.config.min_refresh_interval = interval;
        self
    }

    /// How many times the key set was fetched from the auth service.
    pub fn key_set_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// How many times an external JWKS document was downloaded.
    pub fn jwks_fetches(&self) -> u64 {
        self.external_fetches.load(Ordering::Relaxed)
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
        if bearer_token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Unauthenticated("access token too large"));
        }
        let header = jsonwebtoken::decode_header(bearer_token)
            .map_err(|_| VerifyError::Unauthenticated("malformed access token"))?;
        let kid = header.kid.as_deref().ok_or(VerifyError::Unauthenticated("access token has no key id"))?;
        let issuer = unverified_issuer(bearer_token)?;
        let mut state = self.fresh_state().await?;
        if issuer.as_deref().is_none_or(|issuer| issuer == state.issuer) {
            if !state.keys.contains_key(kid) {
                tracing::debug!(kid = %kid, "unknown token key id; refreshing key set");
                state = self.refresh(Some(&state)).await?;
            }
            let Some(key) = state.keys.get(kid) else {
                return Err(VerifyError::Unauthenticated("access token signed by an unknown key"));
            };
            check_algorithm(header.alg, key)?;
            let mut validation = state.validation_template.clone();
            validation.algorithms = vec![key.algorithm];
            let data = jsonwebtoken::decode::<TokenClaims>(bearer_token, &key.key, &validation)
                .map_err(|error| VerifyError::Unauthenticated(rejection_reason(error.kind())))?;
            return Ok(Claims {
                client_id: data.claims.sub,
                expires_at: data.claims.exp,
                jti: data.claims.jti,
                source: TokenSource::Internal,
            });
        }
        let issuer = issuer.unwrap_or_default();
        let mut candidates = external_candidates(&state, &issuer);
        if candidates.is_empty() {
            // Maybe a server registered since the last fetch.
            state = self.refresh(Some(&state)).await?;
            candidates = external_candidates(&state, &issuer);
        }
        if candidates.is_empty() {
            return Err(VerifyError::Unauthenticated("access token issuer is not trusted"));
        }
        let mut failure = VerifyError::Unauthenticated("access token signed by an unknown key");
        for server in candidates {
            match self.verify_external(&server, kid, header.alg, bearer_token).await {
                Ok(claims) => return Ok(claims),
                Err(error) => failure = error,
            }
        }
        Err(failure)
    }

    /// The cached key set, fetched first when missing and refreshed when older than the max age
    /// (a failed periodic refresh keeps the stale set).
    async fn fresh_state(&self) -> Result<Arc<KeyState>, VerifyError> {
        let Some(state) = self.current() else {
            return self.refresh(None).await;
        };
        if self.client.is_none() || state.fetched_at.elapsed() < self.config.key_set_max_age {
            return Ok(state);
        }
        match self.refresh(Some(&state)).await {
            Ok(fresh) => Ok(fresh),
            Err(error) => {
                tracing::warn!(%error, "key set refresh failed; using the cached key set");
                Ok(state)
            }
        }
    }

    async fn verify_external(
        &self,
        server: &AuthServerInfo,
        kid: &str,
        header_alg: Algorithm,
        bearer_token: &str,
    ) -> Result<Claims, VerifyError> {
        let mut keys = self.external_keys(server, None).await?;
        if !keys.keys.contains_key(kid) {
            tracing::debug!(kid = %kid, url = %server.url, "unknown key id; refreshing external key set");
            keys = self.external_keys(server, Some(&keys)).await?;
        }
        let Some(key) = keys.keys.get(kid) else {
            return Err(VerifyError::Unauthenticated("access token signed by an unknown key"));
        };
        check_algorithm(header_alg, key)?;
        let mut validation = Validation::new(key.algorithm);
        let mut required = vec!["exp"];
        if server.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&server.issuer]);
            required.push("iss");
        }
        if server.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&server.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let data = jsonwebtoken::decode::<ExternalClaims>(bearer_token, &key.key, &validation)
            .map_err(|error| VerifyError::Unauthenticated(rejection_reason(error.kind())))?;
        let claims = data.claims;
        let client_id = [claims.sub, claims.client_id, claims.azp, claims.appid]
            .into_iter()
            .flatten()
            .find(|id| !id.is_empty())
            .ok_or(VerifyError::Unauthenticated("access token names no client"))?;
        Ok(Claims {
            client_id,
            expires_at: claims.exp,
            jti: claims.jti.unwrap_or_default(),
            source: TokenSource::External { url: server.url.clone() },
        })
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
        if last_attempt.is_some_and(|at| at.elapsed() < self.config.min_refresh_interval) {
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
        tracing::debug!(keys = fresh.keys.len(), external = fresh.external.len(), "loaded token key set");
        // Forget the keys of servers no longer registered.
        self.external
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|url, _| fresh.external.iter().any(|server| &server.url == url));
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// The keys of an external server: cached, or downloaded when missing, older than the max age,
    /// or (with `seen`) when that copy lacked a key; at most one download per server per minimum
    /// refresh interval. A failed download keeps the cached copy when there is one.
    async fn external_keys(
        &self,
        server: &AuthServerInfo,
        seen: Option<&Arc<ExternalKeys>>,
    ) -> Result<Arc<ExternalKeys>, VerifyError> {
        let cached = || self.external.read().unwrap_or_else(|p| p.into_inner()).get(&server.url).cloned();
        if seen.is_none()
            && let Some(keys) = cached()
            && keys.fetched_at.elapsed() < self.config.key_set_max_age
        {
            return Ok(keys);
        }
        let mut attempts = self.external_attempts.lock().await;
        let current = cached();
        if let (Some(current), Some(seen)) = (&current, seen)
            && !Arc::ptr_eq(current, seen)
        {
            return Ok(current.clone());
        }
        if let Some(current) = &current
            && seen.is_none()
            && current.fetched_at.elapsed() < self.config.key_set_max_age
        {
            return Ok(current.clone());
        }
        if attempts.get(&server.url).is_some_and(|at| at.elapsed() < self.config.min_refresh_interval) {
            return current.ok_or_else(|| VerifyError::Unavailable("external key set not available".to_owned()));
        }
        attempts.insert(server.url.clone(), Instant::now());
        attempts.retain(|_, at| at.elapsed() < self.config.min_refresh_interval.max(Duration::from_secs(60)));
        self.external_fetches.fetch_add(1, Ordering::Relaxed);
        match self.download_jwks(&server.url).await {
            Ok(document) => {
                let fresh =
                    Arc::new(ExternalKeys { keys: parse_external_jwks(server, &document), fetched_at: Instant::now() });
                tracing::debug!(url = %server.url, keys = fresh.keys.len(), "loaded external key set");
                self.external.write().unwrap_or_else(|p| p.into_inner()).insert(server.url.clone(), fresh.clone());
                Ok(fresh)
            }
            Err(error) => {
                tracing::warn!(url = %server.url, %error, "external key set download failed");
                current.ok_or(error)
            }
        }
    }

    /// Downloads a JWKS document, at most [`MAX_JWKS_BYTES`].
    async fn download_jwks(&self, url: &str) -> Result<Vec<u8>, VerifyError> {
        let unavailable = |what: String| VerifyError::Unavailable(format!("external key set {url}: {what}"));
        let mut response = self.http.get(url).send().await.map_err(|error| unavailable(error.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| unavailable(error.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(unavailable(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The claims read from an external server's token.
#[derive(Deserialize)]
struct ExternalClaims {
    exp: i64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

/// The token's `iss`, read without verification, only to choose which keys to verify it with.
fn unverified_issuer(token: &str) -> Result<Option<String>, VerifyError> {
    #[derive(Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: Option<String>,
    }
    let malformed = || VerifyError::Unauthenticated("malformed access token");
    let payload = token.split('.').nth(1).ok_or_else(malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    let claims: Issuer = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    Ok(claims.iss)
}

fn external_candidates(state: &KeyState, issuer: &str) -> Vec<AuthServerInfo> {
    state.external.iter().filter(|server| server.issuer.is_empty() || server.issuer == issuer).cloned().collect()
}

fn check_algorithm(header_alg: Algorithm, key: &VerifyingKey) -> Result<(), VerifyError> {
    if header_alg == key.algorithm {
        Ok(())
    } else {
        Err(VerifyError::Unauthenticated("access token algorithm does not match its key"))
    }
}

/// The part of a JWK we use for our own keys; anything but an Ed25519 `EdDSA` key is skipped.
#[derive(Deserialize)]
struct OwnJwk {
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
struct OwnJwks {
    keys: Vec<OwnJwk>,
}

fn parse_key_set(key_set: &KeySet) -> Result<KeyState, VerifyError> {
    let jwks: OwnJwks = serde_json::from_str(&key_set.jwks_json)
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
    Ok(KeyState {
        keys,
        validation_template: validation,
        issuer: key_set.issuer.clone(),
        external: key_set.external_servers.clone(),
        fetched_at: Instant::now(),
    })
}

fn ed25519_key(jwk: &OwnJwk) -> Option<(String, DecodingKey)> {
    let pinned = jwk.kty == "OKP" && jwk.crv.as_deref() == Some("Ed25519") && jwk.alg.as_deref() == Some("EdDSA");
    let x = jwk.x.as_deref()?;
    if !pinned || URL_SAFE_NO_PAD.decode(x).ok()?.len() != 32 {
        return None;
    }
    Some((jwk.kid.clone()?, DecodingKey::from_ed_components(x).ok()?))
}

/// The usable keys of an external JWKS document. A key is used only if it has a `kid`, is meant
/// for signatures, and its algorithm is asymmetric and fits its key type: the server's pinned
/// algorithm, else the JWK's own `alg`, else the one its key type implies (RSA → RS256,
/// P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA). Symmetric (`oct`) keys are never used.
fn parse_external_jwks(server: &AuthServerInfo, document: &[u8]) -> HashMap<String, VerifyingKey> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let Ok(document) = serde_json::from_slice::<Document>(document) else {
        tracing::warn!(url = %server.url, "external key set is not a jwks document");
        return HashMap::new();
    };
    let pinned: Option<Algorithm> = (!server.algorithm.is_empty()).then(|| server.algorithm.parse().ok()).flatten();
    let mut keys = HashMap::new();
    for value in document.keys.into_iter().take(MAX_JWKS_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        if jwk.common.public_key_use.as_ref().is_some_and(|usage| *usage != PublicKeyUse::Signature) {
            continue;
        }
        let declared: Option<Algorithm> = jwk.common.key_algorithm.and_then(|alg| Algorithm::try_from(alg).ok());
        if jwk.common.key_algorithm.is_some() && declared.is_none() {
            continue;
        }
        let algorithm = match (pinned, declared) {
            (Some(pinned), Some(declared)) if pinned != declared => continue,
            (Some(pinned), _) => pinned,
            (None, Some(declared)) => declared,
            (None, None) => match implied_algorithm(&jwk.algorithm) {
                Some(algorithm) => algorithm,
                None => continue,
            },
        };
        if !fits(algorithm, &jwk.algorithm) {
            tracing::debug!(url = %server.url, kid = %kid, ?algorithm, "external key does not fit its algorithm; skipped");
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, VerifyingKey { algorithm, key });
        }
    }
    keys
}

fn implied_algorithm(parameters: &AlgorithmParameters) -> Option<Algorithm> {
    match parameters {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => Some(Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Whether `algorithm` is asymmetric and matches the key's type (and curve).
fn fits(algorithm: Algorithm, parameters: &AlgorithmParameters) -> bool {
    use Algorithm::*;
    match parameters {
        AlgorithmParameters::RSA(_) => matches!(algorithm, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => algorithm == ES256,
            EllipticCurve::P384 => algorithm == ES384,
            _ => false,
        },
        AlgorithmParameters::OctetKeyPair(okp) => okp.curve == EllipticCurve::Ed25519 && algorithm == EdDSA,
        _ => false,
    }
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
mod tests;
