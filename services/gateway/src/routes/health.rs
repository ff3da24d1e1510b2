//! Liveness and readiness, without authentication.

use axum::{Json, extract::State, response::IntoResponse};
use http::StatusCode;
use serde_json::json;

use crate::AppState;

/// The process is up.
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The gateway takes traffic: false once shutdown started, so load balancers
/// stop sending requests while in-flight ones drain.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting down" })));
    }
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}
