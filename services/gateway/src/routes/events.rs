//! `GET /events` (an addition): the event stream, as Server-Sent Events or as long-poll JSON pages.
//!
//! Both forms read session-store's `ReadEvents` from a cursor; what the caller sees is filtered here: by
//! `types`, and by the caller's scope (an owner-restricted client sees only events of its owners'
//! sessions, never server events). The cursor advances past filtered events too. See `docs/saas.md`,
//! *Events*.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, http::HeaderMap};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use switchboard_proto::contract::event_kind;
use switchboard_proto::event_json::api_event;
use switchboard_proto::{EventRecord, ReadEventsRequest, ReadEventsResponse};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::{AppState, routes::request_id};

/// Longest `wait` of a long poll, seconds.
pub const MAX_WAIT_SECONDS: u32 = 30;
/// `wait` when a long poll does not say, seconds.
const DEFAULT_WAIT_SECONDS: u32 = 20;
/// Most events per page or per read of a stream.
pub const MAX_LIMIT: u32 = 1000;
/// Events per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 100;
/// How long a stream's session-store read waits for an event before the stream checks in.
const STREAM_WAIT: Duration = Duration::from_secs(20);
/// How often an open stream re-checks its access token and the client's registration and scope.
const REVERIFY_EVERY: Duration = Duration::from_secs(60);

/// The query of `GET /events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The id of the last event the caller has; `0-0`: from the oldest kept; absent: only new events.
    /// A stream's `Last-Event-ID` header takes precedence.
    after: Option<String>,
    /// Long poll: seconds to wait for an event when there is none (0 to 30; default 20).
    wait: Option<u32>,
    /// Most events per page (1 to 1000; default 100).
    limit: Option<u32>,
    /// Comma-separated event types to keep (default: all).
    types: Option<String>,
}

/// A long-poll page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventsPage {
    request_id: String,
    /// The events, oldest first.
    events: Vec<switchboard_proto::event_json::ApiEvent>,
    /// Pass as `after` to get the events after these.
    cursor: String,
    /// Events after `after` were dropped (retention) before this read: re-read the state you follow.
    truncated: bool,
}

/// What a caller may see, and asked to see.
#[derive(Debug, Clone)]
struct Filter {
    /// `None`: every type.
    types: Option<BTreeSet<String>>,
    caller: Caller,
}

impl Filter {
    fn keeps(&self, event: &EventRecord) -> bool {
        let wanted = self.types.as_ref().is_none_or(|types| types.contains(&event.kind));
        let visible = match self.caller.allowed_owners() {
            None => true,
            Some(owners) => event_kind::is_session_event(&event.kind) && owners.contains(&event.owner),
        };
        wanted && visible
    }
}

/// The checked query: cursor, wait, limit and filter.
struct Checked {
    after: String,
    wait_seconds: u32,
    limit: u32,
    types: Option<BTreeSet<String>>,
}

fn check(query: EventsQuery, headers: &HeaderMap) -> Result<Checked> {
    let last_event_id = headers.get("last-event-id").map(|value| {
        value.to_str().map(str::to_owned).map_err(|_| ApiError::BadRequest("Last-Event-ID must be text".into()))
    });
    let after = match last_event_id {
        Some(id) => id?,
        None => query.after.unwrap_or_default(),
    };
    let valid_id = |id: &str| {
        id.split_once('-').is_some_and(|(ms, seq)| {
            [ms, seq]
                .iter()
                .all(|part| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    if !after.is_empty() && !valid_id(&after) {
        return Err(ApiError::BadRequest(
            "after (or Last-Event-ID) must be an event Id such as 1700000000000-0".into(),
        ));
    }
    let wait_seconds = query.wait.unwrap_or(DEFAULT_WAIT_SECONDS);
    if wait_seconds > MAX_WAIT_SECONDS {
        return Err(ApiError::BadRequest(format!("wait must be between 0 and {MAX_WAIT_SECONDS}")));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let types = match query.types {
        None => None,
        Some(list) => {
            let types: BTreeSet<String> = list.split(',').map(|kind| kind.trim().to_owned()).collect();
            if let Some(unknown) = types.iter().find(|kind| !event_kind::ALL.contains(&kind.as_str())) {
                return Err(ApiError::BadRequest(format!(
                    "Unknown event type {unknown:?}; the types are {}",
                    event_kind::ALL.join(", ")
                )));
            }
            Some(types)
        }
    };
    Ok(Checked { after, wait_seconds, limit, types })
}

/// Whether the caller asked for Server-Sent Events.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|part| part.trim().starts_with("text/event-stream")))
}

/// `GET /events`: a Server-Sent Events stream when the request accepts `text/event-stream`, else one
/// long-poll page.
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: std::result::Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response> {
    let Query(query) = query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let checked = check(query, &headers)?;
    let filter = Filter { types: checked.types.clone(), caller };
    if wants_stream(&headers) {
        let permit = state.limits.event_streams.clone().try_acquire_owned().map_err(|_| ApiError::TooManyRequests {
            message: "Too many event streams are open on this gateway; retry later".into(),
            retry_after_seconds: 5,
        })?;
        // The middleware checked it is there.
        let token = crate::auth::bearer_token(&headers).unwrap_or_default().to_owned();
        let stream = event_stream(state, filter, token, checked.after, checked.limit, permit);
        return Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response());
    }
    let read = ReadEventsRequest { after: checked.after, limit: checked.limit, wait_ms: checked.wait_seconds * 1000 };
    let answer = read_events(&state, read).await?;
    let events = answer.events.iter().filter(|event| filter.keeps(event)).map(api_event).collect();
    let page = EventsPage { request_id: request_id(), events, cursor: answer.cursor, truncated: answer.truncated };
    Ok(Json(page).into_response())
}

async fn read_events(state: &AppState, request: ReadEventsRequest) -> Result<ReadEventsResponse> {
    Ok(state.upstreams.store.clone().read_events(request).await?.into_inner())
}

/// Where a stream is.
struct StreamState {
    state: AppState,
    filter: Filter,
    token: String,
    cursor: String,
    limit: u32,
    reverify_at: Instant,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The SSE stream: each event as `id`/`event`/`data` (the JSON of [`ApiEvent`]), `truncated` when events
/// were dropped before the cursor, and an `error` event before the stream ends (token expired or
/// revoked, session-store unavailable, gateway shutting down); the client reconnects with
/// `Last-Event-ID`.
fn event_stream(
    state: AppState,
    filter: Filter,
    token: String,
    cursor: String,
    limit: u32,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    let start = StreamState {
        state,
        filter,
        token,
        cursor,
        limit,
        reverify_at: Instant::now() + REVERIFY_EVERY,
        done: false,
        _permit: permit,
    };
    stream::unfold(start, |mut at| async move {
        if at.done {
            return None;
        }
        let events = next_events(&mut at).await;
        Some((stream::iter(events.into_iter().map(Ok)), at))
    })
    .flatten()
}

/// The next SSE events of a stream (possibly none: the wait ended without any), setting `done` when the
/// stream must end after them.
async fn next_events(at: &mut StreamState) -> Vec<Event> {
    let closing =
        |message: &str| vec![Event::default().event("error").data(serde_json::json!({ "Error": message }).to_string())];
    if Instant::now() >= at.reverify_at {
        at.reverify_at = Instant::now() + REVERIFY_EVERY;
        match at.state.tokens.verify(&at.token).await {
            Ok(caller) if caller.scope == at.filter.caller.scope => {}
            Ok(_) => {
                at.done = true;
                return closing("The client's scope changed; reconnect");
            }
            Err(error) => {
                at.done = true;
                return closing(&error.to_string());
            }
        }
    }
    let read = ReadEventsRequest {
        after: at.cursor.clone(),
        limit: at.limit,
        wait_ms: u32::try_from(STREAM_WAIT.as_millis()).unwrap_or(u32::MAX),
    };
    let answer = tokio::select! {
        () = at.state.shutdown.cancelled() => {
            at.done = true;
            return closing("The gateway is shutting down; reconnect");
        }
        answer = read_events(&at.state, read) => answer,
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            at.done = true;
            tracing::info!(%error, "event stream ended: session-store read failed");
            return closing("Events are unavailable right now; reconnect");
        }
    };
    let mut out = Vec::new();
    if answer.truncated {
        let data = serde_json::json!({ "Cursor": at.cursor }).to_string();
        out.push(Event::default().event("truncated").data(data));
    }
    for event in answer.events.iter().filter(|event| at.filter.keeps(event)) {
        let json = serde_json::to_string(&api_event(event)).unwrap_or_default();
        out.push(Event::default().id(event.id.clone()).event(event.kind.clone()).data(json));
    }
    at.cursor = answer.cursor;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;
    use switchboard_proto::SessionState;

    fn event(kind: &str, owner: &str) -> EventRecord {
        EventRecord { id: "5-0".into(), kind: kind.into(), owner: owner.into(), ..Default::default() }
    }

    #[test]
    fn owner_restricted_callers_see_only_their_owners_sessions() {
        let mut scope = Scope::full();
        scope.allowed_owners = Some(["alice".to_owned()].into());
        let restricted = Filter { types: None, caller: Caller::with_scope("c", scope) };
        assert!(restricted.keeps(&event(event_kind::SESSION_STATE, "alice")));
        assert!(!restricted.keeps(&event(event_kind::SESSION_STATE, "bob")));
        assert!(!restricted.keeps(&event(event_kind::SERVER_AVAILABILITY, "")), "server events are not theirs");
        let full =
            Filter { types: Some([event_kind::SERVER_AVAILABILITY.to_owned()].into()), caller: Caller::full("c") };
        assert!(full.keeps(&event(event_kind::SERVER_AVAILABILITY, "")));
        assert!(!full.keeps(&event(event_kind::SESSION_STATE, "bob")), "types filter");
    }

    #[test]
    fn queries_are_bounded() {
        let headers = HeaderMap::new();
        let query = |after: &str| EventsQuery { after: Some(after.into()), ..Default::default() };
        assert!(check(query("1700000000000-0"), &headers).is_ok());
        assert!(check(query("latest"), &headers).is_err());
        assert!(check(EventsQuery { wait: Some(31), ..Default::default() }, &headers).is_err());
        assert!(check(EventsQuery { limit: Some(0), ..Default::default() }, &headers).is_err());
        assert!(
            check(EventsQuery { types: Some("session.state,nope".into()), ..Default::default() }, &headers).is_err()
        );
        let mut with_header = HeaderMap::new();
        with_header.insert("last-event-id", "7-1".parse().unwrap());
        assert_eq!(check(query("1-0"), &with_header).unwrap().after, "7-1", "Last-Event-ID wins");
    }

    #[test]
    fn events_show_the_fields_of_their_type() {
        let state = EventRecord {
            id: "1700000000000-0".into(),
            at_unix_ms: 1_700_000_000_000,
            kind: event_kind::SESSION_STATE.into(),
            session_id: "s1".into(),
            owner: "alice".into(),
            state: SessionState::Ready as i32,
            previous_state: SessionState::Creating as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(api_event(&state)).unwrap();
        assert_eq!(json["Type"], "session.state");
        assert_eq!(json["State"], "READY");
        assert_eq!(json["PreviousState"], "CREATING");
        assert_eq!(json["Time"], "2023-11-14T22:13:20.000Z");
        assert!(json.get("Availability").is_none());
        let server = EventRecord {
            kind: event_kind::SERVER_AVAILABILITY.into(),
            server_id: "h1".into(),
            availability: "UNAVAILABLE".into(),
            reason: "SERVER_CLOSED".into(),
            ..state
        };
        let json = serde_json::to_value(api_event(&server)).unwrap();
        assert_eq!(json["UnavailabilityReason"], "SERVER_CLOSED");
        assert!(json.get("Owner").is_none() && json.get("StateReason").is_none());
    }
}
