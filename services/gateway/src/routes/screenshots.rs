//! `POST /getSessionScreenshots`: a screenshot command per item, run by the
//! session's host. Sizes default to the configured 160x100; the agent never
//! returns an image larger than the session's display.

use axum::{Extension, Json, extract::State};

use crate::auth::Caller;
use base64::Engine as _;
use switchboard_proto::{
    CommandErrorKind, ScreenshotCommand, SessionState, command_result::Payload, host_command::Action,
};

use crate::{
    AppState,
    error::Result,
    extract::ApiJson,
    model::{
        GetSessionScreenshotRequestData, GetSessionScreenshotSuccessfulResponse,
        GetSessionScreenshotUnsuccessfulResponse, GetSessionScreenshotsResponse, SessionScreenshot,
        SessionScreenshotImage,
    },
    routes::{check_batch, lookup_sessions, request_id},
};

/// The API's text for an unknown session (defined once, in the contract).
pub use switchboard_proto::contract::SCREENSHOT_SESSION_NOT_FOUND as SESSION_NOT_FOUND;
/// Largest accepted MaxWidth / MaxHeight.
pub const MAX_DIMENSION: i64 = 16_384;

/// The size asked for, with the configured defaults; `Err` is the FailureReason.
pub fn dimensions(item: &GetSessionScreenshotRequestData, default: (u32, u32)) -> Result<(u32, u32), String> {
    let one = |value: Option<i64>, name: &str, default: u32| match value {
        None => Ok(default),
        Some(n) if (1..=MAX_DIMENSION).contains(&n) => Ok(n as u32),
        Some(n) if n < 1 => Err(format!("{name} must be greater than 0")),
        Some(_) => Err(format!("{name} must be at most {MAX_DIMENSION}")),
    };
    Ok((one(item.max_width, "MaxWidth", default.0)?, one(item.max_height, "MaxHeight", default.1)?))
}

/// `POST /getSessionScreenshots`.
pub async fn get_session_screenshots(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(items): ApiJson<Vec<GetSessionScreenshotRequestData>>,
) -> Result<Json<GetSessionScreenshotsResponse>> {
    check_batch(items.len(), state.config.max_batch, "session")?;
    let request_id = request_id();
    let ids = items.iter().filter_map(|item| item.session_id.clone()).filter(|id| !id.is_empty()).collect();
    let sessions = lookup_sessions(&state, ids).await?;
    super::require_owners(&caller, &sessions)?;
    let config = state.config.clone();
    let jobs = items.into_iter().map(|item| {
        let (state, sessions, config) = (&state, &sessions, &config);
        async move {
            let outcome = async {
                let session_id =
                    item.session_id.as_deref().filter(|id| !id.is_empty()).ok_or("SessionId is required")?;
                let (width, height) =
                    dimensions(&item, (config.session_screenshot_max_width, config.session_screenshot_max_height))?;
                let (session, _) = sessions
                    .get(session_id)
                    .filter(|(s, _)| s.state() != SessionState::Deleted)
                    .ok_or(SESSION_NOT_FOUND)?;
                if session.state() != SessionState::Ready || session.server_id.is_empty() {
                    return Err(format!(
                        "The session is not ready (state {})",
                        crate::convert::session_state_name(session.state())
                    ));
                }
                let command = ScreenshotCommand {
                    session_id: session_id.to_owned(),
                    max_width: width,
                    max_height: height,
                    format: config.session_screenshot_format.clone(),
                };
                let request = switchboard_proto::SendCommandRequest {
                    server_id: session.server_id.clone(),
                    command: Some(switchboard_proto::HostCommand {
                        command_id: String::new(),
                        action: Some(Action::Screenshot(command)),
                        traceparent: String::new(),
                    }),
                    timeout_ms: u32::try_from(config.command_timeout().as_millis()).unwrap_or(u32::MAX),
                };
                let result = match state.upstreams.store.clone().send_command(request).await {
                    Ok(result) => result.into_inner(),
                    Err(status) => {
                        tracing::warn!(%session_id, code = ?status.code(), "screenshot command failed");
                        return Err("The DCV server cannot be reached".to_owned());
                    }
                };
                if result.error_kind() == CommandErrorKind::SessionNotFound {
                    return Err(SESSION_NOT_FOUND.to_owned());
                }
                if !result.error.is_empty() {
                    return Err(result.error);
                }
                let Some(Payload::Screenshot(shot)) = result.payload else {
                    return Err("The DCV server answered without an image".to_owned());
                };
                let images = shot
                    .images
                    .into_iter()
                    .map(|image| SessionScreenshotImage {
                        format: image.format,
                        data: base64::engine::general_purpose::STANDARD.encode(image.data),
                        creation_time: switchboard_common::time::rfc3339_ms(image.creation_time_unix_ms),
                        primary: image.primary,
                    })
                    .collect();
                Ok(SessionScreenshot { session_id: session_id.to_owned(), images })
            }
            .await;
            (item, outcome)
        }
    });
    let outcomes = futures::future::join_all(jobs).await;
    let mut response = GetSessionScreenshotsResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for (item, outcome) in outcomes {
        match outcome {
            Ok(session_screenshot) => {
                response.successful_list.push(GetSessionScreenshotSuccessfulResponse { session_screenshot })
            }
            Err(failure_reason) => response.unsuccessful_list.push(GetSessionScreenshotUnsuccessfulResponse {
                get_session_screenshot_request_data: item,
                failure_reason,
            }),
        }
    }
    tracing::info!(%request_id, taken = response.successful_list.len(), refused = response.unsuccessful_list.len(), "getSessionScreenshots");
    Ok(Json(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_to_the_config_and_must_be_positive() {
        let item = |w, h| GetSessionScreenshotRequestData { session_id: Some("s".into()), max_width: w, max_height: h };
        assert_eq!(dimensions(&item(None, None), (160, 100)), Ok((160, 100)));
        assert_eq!(dimensions(&item(Some(640), None), (160, 100)), Ok((640, 100)));
        assert_eq!(dimensions(&item(Some(0), None), (160, 100)).unwrap_err(), "MaxWidth must be greater than 0");
        assert_eq!(dimensions(&item(None, Some(-3)), (160, 100)).unwrap_err(), "MaxHeight must be greater than 0");
        assert_eq!(
            dimensions(&item(Some(MAX_DIMENSION + 1), None), (1, 1)).unwrap_err(),
            "MaxWidth must be at most 16384"
        );
    }
}
