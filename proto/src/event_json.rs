//! The JSON form of an event ([`EventRecord`]) that both the event stream (`GET /events`) and webhook
//! deliveries carry: one shape, written here once (the served spec's `Event` schema describes it).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::contract::event_kind;
use crate::{EventRecord, SessionState};

/// The API name of a session state.
pub fn session_state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Creating => "CREATING",
        SessionState::Ready => "READY",
        SessionState::Deleting => "DELETING",
        SessionState::Deleted => "DELETED",
        SessionState::Unknown | SessionState::Unspecified => "UNKNOWN",
    }
}

/// RFC 3339 with milliseconds and `Z`, as the API writes times.
fn rfc3339_ms(unix_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One event as the API shows it; fields by type (docs/saas.md lists them).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ApiEvent {
    id: String,
    #[serde(rename = "Type")]
    kind: String,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    availability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailability_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reap_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reap_at: Option<String>,
}

/// `Some(text)` unless empty.
fn text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The API form of a stored event.
pub fn api_event(event: &EventRecord) -> ApiEvent {
    let state_name = |state: i32| {
        SessionState::try_from(state).ok().filter(|state| *state != SessionState::Unspecified).map(session_state_name)
    };
    let kind = event.kind.as_str();
    let session = event_kind::is_session_event(kind);
    let queued = kind == event_kind::QUEUE_ENQUEUED || kind == event_kind::QUEUE_POSITION;
    ApiEvent {
        id: event.id.clone(),
        kind: event.kind.clone(),
        time: rfc3339_ms(event.at_unix_ms),
        session_id: text(&event.session_id),
        owner: session.then(|| event.owner.clone()),
        server_id: text(&event.server_id),
        state: state_name(event.state),
        previous_state: (kind == event_kind::SESSION_STATE).then(|| state_name(event.previous_state)).flatten(),
        state_reason: (kind == event_kind::SESSION_STATE).then(|| text(&event.reason)).flatten(),
        availability: (!session).then(|| event.availability.clone()),
        unavailability_reason: (!session).then(|| text(&event.reason)).flatten(),
        queue_position: queued.then_some(event.queue_position),
        queue_class: queued.then(|| text(&event.detail)).flatten(),
        reap_reason: (kind == event_kind::SESSION_REAP_WARNING).then(|| text(&event.reason)).flatten(),
        reap_at: (kind == event_kind::SESSION_REAP_WARNING).then(|| text(&event.detail)).flatten(),
    }
}
