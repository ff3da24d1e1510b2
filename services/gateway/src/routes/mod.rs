//! The HTTP routes and the layers around them.
//!
//! - [`token`]: `POST /oauth2/token` and `GET /.well-known/jwks.json` (no bearer token needed).
//! - [`sessions`]: `POST /createSessions`, `/describeSessions`, `/deleteSessions`.
//! - [`health`]: `GET /health`, `/health/live`, `/health/ready` (no auth).

pub mod health;
pub mod sessions;
pub mod token;

use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use tower::ServiceBuilder;

use crate::{AppState, auth::require_bearer, error::ApiError, limits::limit_headers};

/// Every authenticated route; each must have a row in [`crate::scope::OPERATIONS`] (a unit test
/// checks it).
pub const API_PATHS: &[&str] = &["/createSessions", "/describeSessions", "/deleteSessions"];

/// The whole API. Every response body is JSON, errors included.
///
/// Every route of `api` is behind [`require_bearer`] (token, scope, per-client rate limit): add
/// new API routes to `api`, before its `route_layer`, and to [`API_PATHS`].
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let api = Router::new()
        .route("/createSessions", post(sessions::create_sessions))
        .route("/describeSessions", post(sessions::describe_sessions))
        .route("/deleteSessions", post(sessions::delete_sessions))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_bearer));
    Router::new()
        .merge(api)
        .route("/oauth2/token", post(token::issue_token))
        .route("/.well-known/jwks.json", get(token::jwks))
        .route("/health", get(health::live))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|error: BoxError| async move {
                    if error.is::<tower::timeout::error::Elapsed>() {
                        ApiError::Timeout
                    } else {
                        ApiError::Internal(error.to_string())
                    }
                }))
                .timeout(config.request_timeout),
        )
        .layer(middleware::from_fn_with_state(state.clone(), limit_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
