//! `PUT /sessionPermissions` (UpdateSessionPermissions): each item's base64
//! permissions file is sent to the session's host, where the agent validates
//! and applies it.

use axum::{Extension, Json, extract::State};

use crate::auth::Caller;
use base64::Engine as _;
use switchboard_proto::{SessionState, SetPermissionsCommand, host_command::Action};

use crate::{
    AppState,
    error::Result,
    extract::ApiJson,
    model::{
        UpdateSessionPermissionsRequestData, UpdateSessionPermissionsResponse,
        UpdateSessionPermissionsSuccessfulResponse, UpdateSessionPermissionsUnsuccessfulResponse,
    },
    routes::{check_batch, lookup_sessions, request_id, send_command},
};

pub use switchboard_proto::contract::{PERMISSIONS_FILE_MAX_BYTES as MAX_PERMISSIONS_BYTES, SESSION_NOT_FOUND};

/// Decodes and bounds a base64 permissions file; `Err` is the FailureReason.
pub fn decode_permissions(encoded: Option<&str>) -> Result<Vec<u8>, String> {
    let encoded = encoded.map(str::trim).filter(|e| !e.is_empty()).ok_or("PermissionsFile is required")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "PermissionsFile is not valid base64".to_owned())?;
    if bytes.len() > MAX_PERMISSIONS_BYTES {
        return Err(format!("PermissionsFile must be at most {MAX_PERMISSIONS_BYTES} bytes"));
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err("PermissionsFile must be a UTF-8 text file".into());
    }
    Ok(bytes)
}

/// `PUT /sessionPermissions`.
pub async fn update_session_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(items): ApiJson<Vec<UpdateSessionPermissionsRequestData>>,
) -> Result<Json<UpdateSessionPermissionsResponse>> {
    check_batch(items.len(), state.config.max_batch, "session")?;
    let request_id = request_id();
    let ids = items.iter().filter_map(|item| item.session_id.clone()).filter(|id| !id.is_empty()).collect();
    let sessions = lookup_sessions(&state, ids).await?;
    super::require_owners(&caller, &sessions)?;
    let jobs = items.into_iter().map(|item| {
        let (state, sessions) = (&state, &sessions);
        async move {
            let session_id = item.session_id.clone().unwrap_or_default();
            let outcome = async {
                if session_id.is_empty() {
                    return Err("SessionId is required".to_owned());
                }
                let owner = item.owner.as_deref().filter(|o| !o.is_empty()).ok_or("Owner is required")?;
                let permissions = decode_permissions(item.permissions_file.as_deref())?;
                let (session, _) = sessions
                    .get(&session_id)
                    .filter(|(s, _)| s.owner == owner && s.state() != SessionState::Deleted)
                    .ok_or(SESSION_NOT_FOUND)?;
                if session.state() != SessionState::Ready || session.server_id.is_empty() {
                    return Err(format!(
                        "The session is not ready (state {})",
                        crate::convert::session_state_name(session.state())
                    ));
                }
                let command = SetPermissionsCommand { session_id: session_id.clone(), permissions_file: permissions };
                send_command(state, &session.server_id, Action::SetPermissions(command)).await.map(|_| ())
            }
            .await;
            (session_id, outcome)
        }
    });
    let outcomes = futures::future::join_all(jobs).await;
    let mut response = UpdateSessionPermissionsResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for (session_id, outcome) in outcomes {
        match outcome {
            Ok(()) => response.successful_list.push(UpdateSessionPermissionsSuccessfulResponse { session_id }),
            Err(failure_reason) => response
                .unsuccessful_list
                .push(UpdateSessionPermissionsUnsuccessfulResponse { session_id, failure_reason }),
        }
    }
    tracing::info!(%request_id, updated = response.successful_list.len(), refused = response.unsuccessful_list.len(), "updateSessionPermissions");
    Ok(Json(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_files_are_decoded_and_bounded() {
        assert_eq!(decode_permissions(Some("W3Blcm1pc3Npb25zXQ==")).unwrap(), b"[permissions]");
        assert_eq!(decode_permissions(None).unwrap_err(), "PermissionsFile is required");
        assert_eq!(decode_permissions(Some(" ")).unwrap_err(), "PermissionsFile is required");
        assert_eq!(decode_permissions(Some("%%")).unwrap_err(), "PermissionsFile is not valid base64");
        let big = base64::engine::general_purpose::STANDARD.encode(vec![b'a'; MAX_PERMISSIONS_BYTES + 1]);
        assert_eq!(decode_permissions(Some(&big)).unwrap_err(), "PermissionsFile must be at most 65536 bytes");
        let binary = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]);
        assert_eq!(decode_permissions(Some(&binary)).unwrap_err(), "PermissionsFile must be a UTF-8 text file");
    }
}
