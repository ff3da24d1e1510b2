//! `GET /sessionConnectionData/{sessionId}/{user}` (GetSessionConnectionData):
//! the session with its server, plus a connection token signed by the auth
//! service for that user (claims `dcvSessionId`, `dcvSessionOwner`,
//! `dcvSessionUser`, `exp`, `iat`, `jti`; audience `dcv-connection`).
//!
//! The server's `DefaultDnsName` is the one registered for it with `register-server-dns-mappings`
//! (`ExternalDnsName`, else `InternalDnsName`) when a mapping names it.
//!
//! Clients build `https://{Ip}:{Port}{WebUrlPath}?authToken={ConnectionToken}#{SessionId}`
//! (or the same with `dcv://` for the native client) from the answer.

use axum::{
    Extension, Json,
    extract::{Path, State, rejection::PathRejection},
};
use switchboard_proto::{IssueConnectionTokenRequest, SessionState};

use crate::auth::Caller;

use crate::{
    AppState, convert,
    error::{ApiError, Result},
    model::GetSessionConnectionDataResponse,
    routes::lookup_sessions,
};

/// Longest accepted session id or user name, in characters.
pub const MAX_CHARS: usize = 256;
pub use switchboard_proto::contract::SESSION_NOT_FOUND;

/// `GET /sessionConnectionData/{sessionId}/{user}`.
pub async fn get_session_connection_data(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<GetSessionConnectionDataResponse>> {
    let Path((session_id, user)) = path.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    for (name, value) in [("sessionId", &session_id), ("user", &user)] {
        if value.trim().is_empty() || value.chars().count() > MAX_CHARS {
            return Err(ApiError::BadRequest(format!("{name} must be 1 to {MAX_CHARS} characters")));
        }
    }
    let sessions = lookup_sessions(&state, vec![session_id.clone()]).await?;
    super::require_owners(&caller, &sessions)?;
    let Some((session, server)) = sessions.get(&session_id).filter(|(s, _)| s.state() != SessionState::Deleted) else {
        return Err(ApiError::NotFoundWith(SESSION_NOT_FOUND.into()));
    };
    if session.state() != SessionState::Ready || server.is_none() {
        return Err(ApiError::BadRequest(format!(
            "The session is not ready (state {})",
            convert::session_state_name(session.state())
        )));
    }
    let request = IssueConnectionTokenRequest {
        session_id: session.id.clone(),
        session_owner: session.owner.clone(),
        user: user.clone(),
    };
    let issued = state.upstreams.auth.clone().issue_connection_token(request).await?.into_inner();
    // A registered DNS mapping gives the server's name: the external one when the mapping has it.
    let mut server = server.clone();
    if let Some(record) = server.as_mut()
        && let Some(names) = state.upstreams.server_dns_names(&record.id).await?
    {
        record.default_dns_name =
            if names.external_dns_name.is_empty() { names.internal_dns_name } else { names.external_dns_name };
    }
    tracing::info!(%session_id, %user, "connection token issued");
    Ok(Json(GetSessionConnectionDataResponse {
        session: convert::session(session, server.as_ref()),
        connection_token: issued.connection_token,
    }))
}
