//! Bearer-token authentication of API routes.
//!
//! [`require_bearer`] guards every API route except `/oauth2/token` and
//! `/health*`. The token check sits behind [`TokenCheck`] so router tests can
//! use a fake; production uses `switchboard_auth::verify::TokenVerifier`,
//! which verifies JWTs locally against the auth service's key set.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use switchboard_auth::verify::{TokenVerifier, VerifyError};
use switchboard_common::ErrorCode;

use crate::{AppState, error::ApiError};

/// Who made an authenticated request; added to the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API client id the token was issued to.
    pub client_id: String,
}

/// Checks a bearer token.
#[async_trait::async_trait]
pub trait TokenCheck: Send + Sync + 'static {
    /// The caller for a valid token; `ApiError::Unauthenticated` for a bad
    /// one, an upstream error when verification is impossible right now.
    async fn verify(&self, bearer_token: &str) -> Result<Caller, ApiError>;
}

#[async_trait::async_trait]
impl TokenCheck for TokenVerifier {
    async fn verify(&self, bearer_token: &str) -> Result<Caller, ApiError> {
        match TokenVerifier::verify(self, bearer_token).await {
            Ok(claims) => Ok(Caller { client_id: claims.client_id }),
            Err(VerifyError::Unauthenticated(reason)) => Err(ApiError::Unauthenticated(capitalise(reason))),
            Err(error @ VerifyError::Unavailable(_)) => {
                tracing::warn!(%error, "token verification unavailable");
                debug_assert_eq!(error.code(), ErrorCode::Unavailable);
                Err(ApiError::Upstream(tonic::Status::unavailable("token verification unavailable")))
            }
        }
    }
}

/// The production token check for an auth client.
pub fn token_verifier(
    client: switchboard_proto::auth_client::AuthClient<tonic::transport::Channel>,
) -> Arc<dyn TokenCheck> {
    Arc::new(TokenVerifier::new(client))
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Middleware: rejects requests without a valid bearer token.
pub async fn require_bearer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(header) = request.headers().get(http::header::AUTHORIZATION) else {
        return ApiError::Unauthenticated("No authorization header".into()).into_response();
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return ApiError::Unauthenticated("Authorization header must be \"Bearer <access token>\"".into())
            .into_response();
    };
    match state.tokens.verify(token).await {
        Ok(caller) => {
            tracing::debug!(client_id = %caller.client_id, "authenticated request");
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}
