//! Liveness and readiness, without authentication.

use axum::{Json, extract::State, response::IntoResponse};
use http::StatusCode;
use serde_json::json;

use crate::AppState;

/// The process is up.
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// The gateway takes traffic: not once shutdown started (so load balancers stop sending requests while
/// in-flight ones drain), nor while an upstream it needs is unreachable ([`crate::readiness`]: three
/// failed health checks in a row; two passed ones bring it back).
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting down" })));
    }
    let unreachable = state.readiness.unreachable();
    if !unreachable.is_empty() {
        let body = json!({ "status": "upstreams unreachable", "unreachable": unreachable });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}
