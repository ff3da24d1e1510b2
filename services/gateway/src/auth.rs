//! Bearer-token authentication and authorization of API routes.
//!
//! [`require_bearer`] guards every API route except `/oauth2/token` and `/health*`: it verifies
//! the token ([`TokenCheck`]), checks the caller's scope against the operation's row in
//! [`crate::scope::OPERATIONS`], applies the per-client rate limit, and hands the [`Caller`] to
//! the handler (request extension), which enforces owner restrictions with
//! [`Caller::require_owner`] / [`Caller::may_act_for`].
//!
//! Production uses [`VerifiedTokens`]: [`crate::verify::TokenVerifier`] verifies JWTs
//! locally against the auth service's key set, and [`ClientPolicies`] looks up what the client
//! may do (and whether it still exists) with `Auth.GetClientPolicy`, cached for
//! `client_cache_ttl`. That cache time is the **revocation bound**: an unregistered client's
//! tokens are refused by every gateway replica at most `client_cache_ttl` after
//! `unregister-api-client` returns. Tokens of external authorization servers carry full scope;
//! revoking them is the identity provider's job (their lifetime).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::verify::{TokenSource, TokenVerifier, VerifierConfig, VerifyError};
use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use switchboard_common::ErrorCode;
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::{
    GetClientPolicyRequest, GetSessionsRequest, auth_client::AuthClient, session_store_client::SessionStoreClient,
};

use crate::{AppState, error::ApiError};

/// What a caller may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only [`crate::scope::Access::Read`] operations.
    pub read_only: bool,
    /// `Some`: only sessions of these owners, and no server operations.
    pub allowed_owners: Option<BTreeSet<String>>,
}

impl Scope {
    /// Everything.
    pub fn full() -> Self {
        Self::default()
    }
}

/// Who made an authenticated request; added to the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API client id the token was issued to.
    pub client_id: String,
    /// What it may do.
    pub scope: Scope,
}

impl Caller {
    /// A caller with full access.
    pub fn full(client_id: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), scope: Scope::full() }
    }

    /// A caller with `scope`.
    pub fn with_scope(client_id: impl Into<String>, scope: Scope) -> Self {
        Self { client_id: client_id.into(), scope }
    }

    /// Whether the caller may touch sessions of `owner`.
    pub fn may_act_for(&self, owner: &str) -> bool {
        self.scope.allowed_owners.as_ref().is_none_or(|owners| owners.contains(owner))
    }

    /// 403 unless the caller may touch sessions of `owner`.
    pub fn require_owner(&self, owner: &str) -> Result<(), ApiError> {
        if self.may_act_for(owner) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("The API client may not act for owner \"{owner}\"")))
        }
    }

    /// The owners the caller is restricted to, if any.
    pub fn allowed_owners(&self) -> Option<&BTreeSet<String>> {
        self.scope.allowed_owners.as_ref()
    }

    /// For operations naming sessions by id (connection data, permissions, screenshots): 403
    /// unless every named session that exists belongs to an owner the caller may act for. Ids
    /// that do not exist pass (the operation reports them itself). One `GetSessions` call, and
    /// none for callers without an owner restriction. Owners never change, so checking first
    /// and acting after is safe.
    pub async fn require_session_owners(
        &self,
        store: &mut SessionStoreClient<GrpcChannel>,
        session_ids: &[String],
    ) -> Result<(), ApiError> {
        if self.allowed_owners().is_none() || session_ids.is_empty() {
            return Ok(());
        }
        let request = GetSessionsRequest { session_ids: session_ids.to_vec(), with_queue_places: false };
        let page = store.get_sessions(request).await?.into_inner();
        match page.sessions.iter().find(|session| !self.may_act_for(&session.owner)) {
            Some(session) => {
                Err(ApiError::Forbidden(format!("The API client may not access session \"{}\"", session.id)))
            }
            None => Ok(()),
        }
    }
}

/// Checks a bearer token.
#[async_trait::async_trait]
pub trait TokenCheck: Send + Sync + 'static {
    /// The caller for a valid token; `ApiError::Unauthenticated` for a bad
    /// one, an upstream error when verification is impossible right now.
    async fn verify(&self, bearer_token: &str) -> Result<Caller, ApiError>;
}

/// A client's policy as cached by a gateway.
#[derive(Debug, Clone)]
struct CachedPolicy {
    fetched_at: Instant,
    /// `None`: the client does not exist (unregistered).
    scope: Option<Scope>,
}

/// Most clients whose policy one gateway caches; beyond it, expired entries are dropped first,
/// then everything (the next requests re-fetch).
pub const MAX_CACHED_POLICIES: usize = 10_000;

/// `Auth.GetClientPolicy` answers, cached per client for `ttl` (the revocation bound).
pub struct ClientPolicies {
    auth: AuthClient<GrpcChannel>,
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedPolicy>>,
}

impl ClientPolicies {
    /// Policies from `auth`, each trusted for `ttl`.
    pub fn new(auth: AuthClient<GrpcChannel>, ttl: Duration) -> Self {
        Self { auth, ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The scope of `client_id`, `None` once it is unregistered. Fails closed: when the auth
    /// service cannot answer and the cached answer is too old, the request fails (503).
    pub async fn scope(&self, client_id: &str) -> Result<Option<Scope>, ApiError> {
        if let Some(cached) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(client_id)
            && cached.fetched_at.elapsed() < self.ttl
        {
            return Ok(cached.scope.clone());
        }
        let request = GetClientPolicyRequest { client_id: client_id.to_owned() };
        let policy = tokio::time::timeout(Duration::from_secs(5), self.auth.clone().get_client_policy(request))
            .await
            .map_err(|_| ApiError::Upstream(tonic::Status::unavailable("client policy lookup timed out")))??
            .into_inner();
        let scope = policy.exists.then(|| Scope {
            read_only: policy.read_only,
            allowed_owners: (!policy.allowed_owners.is_empty()).then(|| policy.allowed_owners.into_iter().collect()),
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_POLICIES {
            cache.retain(|_, entry| entry.fetched_at.elapsed() < self.ttl);
            if cache.len() >= MAX_CACHED_POLICIES {
                cache.clear();
            }
        }
        cache.insert(client_id.to_owned(), CachedPolicy { fetched_at: Instant::now(), scope: scope.clone() });
        Ok(scope)
    }
}

/// The production token check: signature and claims ([`TokenVerifier`]), then the client's
/// current policy ([`ClientPolicies`]) for tokens we issued.
pub struct VerifiedTokens {
    /// Signature and claims.
    pub verifier: TokenVerifier,
    /// Existence and scope of our API clients.
    pub policies: ClientPolicies,
}

#[async_trait::async_trait]
impl TokenCheck for VerifiedTokens {
    async fn verify(&self, bearer_token: &str) -> Result<Caller, ApiError> {
        let claims = match self.verifier.verify(bearer_token).await {
            Ok(claims) => claims,
            Err(VerifyError::Unauthenticated(reason)) => return Err(ApiError::Unauthenticated(capitalise(reason))),
            Err(error @ VerifyError::Unavailable(_)) => {
                tracing::warn!(%error, "token verification unavailable");
                debug_assert_eq!(error.code(), ErrorCode::Unavailable);
                return Err(ApiError::Upstream(tonic::Status::unavailable("token verification unavailable")));
            }
        };
        match claims.source {
            TokenSource::External { url } => {
                tracing::debug!(client_id = %claims.client_id, issuer_jwks = %url, "external token accepted");
                Ok(Caller::full(claims.client_id))
            }
            TokenSource::Internal => match self.policies.scope(&claims.client_id).await? {
                Some(scope) => Ok(Caller::with_scope(claims.client_id, scope)),
                None => {
                    tracing::info!(client_id = %claims.client_id, jti = %claims.jti, "token of an unregistered client refused");
                    Err(ApiError::Unauthenticated("The API client of this access token is no longer registered".into()))
                }
            },
        }
    }
}

/// The production token check for an auth client.
pub fn token_verifier(
    client: AuthClient<GrpcChannel>,
    verifier: VerifierConfig,
    client_cache_ttl: Duration,
) -> Arc<dyn TokenCheck> {
    Arc::new(VerifiedTokens {
        verifier: TokenVerifier::new(client.clone()).with_config(verifier),
        policies: ClientPolicies::new(client, client_cache_ttl),
    })
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The token of an `Authorization: Bearer <token>` header, `None` without one (or with another scheme).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Middleware: rejects requests without a valid bearer token (401), outside the caller's scope
/// (403) or over the caller's rate limit (429).
pub async fn require_bearer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !request.headers().contains_key(http::header::AUTHORIZATION) {
        return ApiError::Unauthenticated("No authorization header".into()).into_response();
    }
    let Some(token) = bearer_token(request.headers()) else {
        return ApiError::Unauthenticated("Authorization header must be \"Bearer <access token>\"".into())
            .into_response();
    };
    let caller = match state.tokens.verify(token).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = crate::scope::authorize(&caller, request.extensions().get::<MatchedPath>()) {
        tracing::info!(client_id = %caller.client_id, path = %request.uri().path(), "request outside the client's scope");
        return error.into_response();
    }
    if let Err(error) = state.limits.check_client(&caller.client_id) {
        return error.into_response();
    }
    tracing::debug!(client_id = %caller.client_id, "authenticated request");
    request.extensions_mut().insert(caller);
    next.run(request).await
}
