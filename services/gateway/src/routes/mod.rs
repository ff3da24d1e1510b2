//! The HTTP routes and the layers around them.
//!
//! - [`token`]: `POST /oauth2/token` and `GET /.well-known/jwks.json` (no bearer token needed).
//! - [`sessions`]: `POST /createSessions`, `/describeSessions`, `/deleteSessions`.
//! - [`permissions`]: `PUT /sessionPermissions`.
//! - [`connection`]: `GET /sessionConnectionData/{sessionId}/{user}`.
//! - [`screenshots`]: `POST /getSessionScreenshots`.
//! - [`servers`]: `POST /describeServers`, `/openServers`, `/closeServers`.
//! - [`spec`]: `GET /dcv-session-manager-api.yaml`, the served OpenAPI document (no auth).
//! - [`health`]: `GET /health`, `/health/live`, `/health/ready` (no auth).

pub mod connection;
pub mod events;
pub mod health;
pub mod permissions;
pub mod placement;
pub mod screenshots;
pub mod servers;
pub mod sessions;
pub mod spec;
pub mod token;
pub mod webhooks;

use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post, put},
};
use tower::ServiceBuilder;

use crate::{
    AppState,
    auth::require_bearer,
    error::{ApiError, Result},
    limits::limit_headers,
};
/// Largest `MaxResults` (and default page size) of describeSessions and describeServers.
pub const MAX_RESULTS: u32 = 1000;

/// A fresh request id (a UUID), returned as `RequestId` and logged.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Refuses an empty batch or one larger than `max`.
pub fn check_batch(len: usize, max: usize, what: &str) -> Result<()> {
    if len == 0 {
        return Err(ApiError::BadRequest(format!("The request must contain at least one {what}")));
    }
    if len > max {
        return Err(ApiError::BadRequest(format!("The request may contain at most {max} {what}s")));
    }
    Ok(())
}

/// The page size for a `MaxResults`: 1..=1000, default 1000.
pub fn page_size(max_results: Option<i64>) -> Result<u32> {
    match max_results {
        None => Ok(MAX_RESULTS),
        Some(n) if (1..=i64::from(MAX_RESULTS)).contains(&n) => Ok(n as u32),
        Some(_) => Err(ApiError::BadRequest(format!("MaxResults must be between 1 and {MAX_RESULTS}"))),
    }
}

/// Every authenticated route; each must have a row in [`crate::scope::OPERATIONS`] (a unit test
/// checks it).
pub const API_PATHS: &[&str] = &[
    "/createSessions",
    "/describeSessions",
    "/deleteSessions",
    "/sessionPermissions",
    "/sessionConnectionData/{session_id}/{user}",
    "/getSessionScreenshots",
    "/describeServers",
    "/openServers",
    "/closeServers",
    "/explainPlacement",
    "/events",
    "/registerWebhook",
    "/describeWebhooks",
    "/unregisterWebhook",
];

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
        .route("/sessionPermissions", put(permissions::update_session_permissions))
        .route("/sessionConnectionData/{session_id}/{user}", get(connection::get_session_connection_data))
        .route("/getSessionScreenshots", post(screenshots::get_session_screenshots))
        .route("/describeServers", post(servers::describe_servers))
        .route("/openServers", post(servers::open_servers))
        .route("/closeServers", post(servers::close_servers))
        .route("/explainPlacement", post(placement::explain_placement))
        .route("/events", get(events::events))
        .route("/registerWebhook", post(webhooks::register_webhook))
        .route("/describeWebhooks", post(webhooks::describe_webhooks))
        .route("/unregisterWebhook", post(webhooks::unregister_webhook))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_bearer));
    Router::new()
        .merge(api)
        .route("/oauth2/token", post(token::issue_token))
        .route(spec::PATH, get(spec::served_spec))
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
                .timeout(config.request_timeout()),
        )
        .layer(middleware::from_fn_with_state(state.clone(), limit_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(middleware::from_fn(crate::metrics::record))
        .layer(middleware::from_fn(crate::metrics::trace))
        .with_state(state)
}

/// Sessions by id with their servers (unknown ids are absent).
/// Refuses the whole request when an owner-restricted caller names a session of another owner (the
/// sessions as [`lookup_sessions`] found them).
pub fn require_owners(
    caller: &crate::auth::Caller,
    sessions: &std::collections::HashMap<
        String,
        (switchboard_proto::SessionRecord, Option<switchboard_proto::ServerRecord>),
    >,
) -> Result<()> {
    match sessions.values().find(|(session, _)| !caller.may_act_for(&session.owner)) {
        Some((session, _)) => {
            Err(ApiError::Forbidden(format!("The API client may not access session \"{}\"", session.id)))
        }
        None => Ok(()),
    }
}

/// The sessions with these ids (and their servers), by id.
pub async fn lookup_sessions(
    state: &AppState,
    ids: Vec<String>,
) -> Result<
    std::collections::HashMap<String, (switchboard_proto::SessionRecord, Option<switchboard_proto::ServerRecord>)>,
> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let page = state
        .upstreams
        .store
        .clone()
        .get_sessions(switchboard_proto::GetSessionsRequest { session_ids: ids, with_queue_places: false })
        .await?
        .into_inner();
    let servers: std::collections::HashMap<String, switchboard_proto::ServerRecord> =
        page.servers.into_iter().map(|s| (s.id.clone(), s)).collect();
    Ok(page
        .sessions
        .into_iter()
        .map(|session| {
            let server = servers.get(&session.server_id).cloned();
            (session.id.clone(), (session, server))
        })
        .collect())
}

/// Sends one command to a host's agent through session-store (routed to the
/// replica owning the agent stream). `Err` is the item's failure text: the
/// agent's error, or why the command could not be delivered.
pub async fn send_command(
    state: &AppState,
    server_id: &str,
    action: switchboard_proto::host_command::Action,
) -> Result<switchboard_proto::CommandResult, String> {
    let request = switchboard_proto::SendCommandRequest {
        server_id: server_id.to_owned(),
        command: Some(switchboard_proto::HostCommand {
            command_id: String::new(),
            action: Some(action),
            traceparent: String::new(),
        }),
        timeout_ms: u32::try_from(state.config.command_timeout().as_millis()).unwrap_or(u32::MAX),
    };
    match state.upstreams.store.clone().send_command(request).await {
        Ok(result) => {
            let result = result.into_inner();
            if result.error.is_empty() { Ok(result) } else { Err(result.error) }
        }
        Err(status) => {
            tracing::warn!(%server_id, code = ?status.code(), message = status.message(), "host command failed");
            Err(match switchboard_common::ErrorCode::from_grpc(status.code()) {
                switchboard_common::ErrorCode::Timeout => "The DCV server did not answer in time".to_owned(),
                _ => "The DCV server cannot be reached".to_owned(),
            })
        }
    }
}
