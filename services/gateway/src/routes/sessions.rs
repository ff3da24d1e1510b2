//! `createSessions`, `describeSessions` and `deleteSessions`.
//!
//! Each response carries a fresh `RequestId` (a UUID), also passed to the
//! backing services and logged so one request can be followed end to end.
//!
//! `createSessions` takes an optional `Idempotency-Key` header (our addition):
//! the gateway checks it and passes it to placement with the calling client's
//! id and a SHA-256 of the body; placement keeps the record (a retry gets the
//! first answer, 409 while the first runs, 422 for another body).

use std::collections::HashMap;

use axum::{Extension, Json, body::Bytes, extract::State};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use switchboard_common::time::now_ms;
use switchboard_proto::contract::{IDEMPOTENCY_KEY_INVALID, is_valid_idempotency_key};
use switchboard_proto::{
    CreateSessionsRequest, DeleteSessionItem, DeleteSessionsRequest, GetSessionsRequest, KeyValue, ListSessionsRequest,
    QueuePlace, ServerRecord, SessionRecord, SessionState, create_session_outcome::Outcome,
};

use crate::{
    AppState,
    auth::Caller,
    convert,
    error::{ApiError, Result},
    extract::{ApiJson, ApiJsonWithBytes, OptionalApiJson},
    model::{
        CreateSessionRequestData, CreateSessionsResponse, DeleteSessionRequestData, DeleteSessionSuccessfulResponse,
        DeleteSessionUnsuccessfulResponse, DeleteSessionsResponse, DescribeSessionsRequestData,
        DescribeSessionsResponse, Session, UnsuccessfulCreateSessionRequestData,
    },
    routes::{MAX_RESULTS, check_batch, page_size, request_id},
};

/// The header that makes a createSessions retry safe.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The request's `Idempotency-Key`, checked (sent once, 1 to 255 printable ASCII characters); `None`
/// when absent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::BadRequest("Idempotency-Key may be sent only once".into()));
    }
    match value.to_str() {
        Ok(key) if is_valid_idempotency_key(key) => Ok(Some(key.to_owned())),
        _ => Err(ApiError::BadRequest(IDEMPOTENCY_KEY_INVALID.into())),
    }
}

/// The idempotency fields of placement's request: the key, the body's SHA-256 and the client the key
/// belongs to; empty without a key. The hash runs off the async workers: a body of up to
/// `max_body_bytes` (1 MiB) takes milliseconds.
async fn idempotency_fields(key: Option<String>, body: Bytes, caller: &Caller) -> Result<(String, Vec<u8>, String)> {
    let Some(key) = key else { return Ok(Default::default()) };
    let digest = tokio::task::spawn_blocking(move || Sha256::digest(&body).to_vec())
        .await
        .map_err(|error| ApiError::Internal(format!("hashing the body: {error}")))?;
    Ok((key, digest, caller.client_id.clone()))
}

/// `POST /createSessions`. Items failing JSON-level checks (type string,
/// client count, base64) are answered here and never reach placement. An
/// owner-restricted client is refused (403) if any item names another owner.
/// With an `Idempotency-Key`, placement is asked even when no item passed
/// those checks, so the key records this request's body.
pub async fn create_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJsonWithBytes(items, body): ApiJsonWithBytes<Vec<CreateSessionRequestData>>,
) -> Result<Json<CreateSessionsResponse>> {
    let key = idempotency_key(&headers)?;
    check_batch(items.len(), state.config.max_batch, "session")?;
    for item in &items {
        caller.require_owner(item.owner.as_deref().unwrap_or_default())?;
    }
    let request_id = request_id();
    let mut verdicts: Vec<Result<(), String>> = Vec::with_capacity(items.len());
    let mut specs = Vec::new();
    for item in &items {
        match convert::create_spec(item) {
            Ok(spec) => {
                specs.push(spec);
                verdicts.push(Ok(()));
            }
            Err(reason) => verdicts.push(Err(reason)),
        }
    }
    let sent = specs.len();
    let mut outcomes = if specs.is_empty() && key.is_none() {
        Vec::new()
    } else {
        let (idempotency_key, body_sha256, client_id) = idempotency_fields(key, body, &caller).await?;
        let request =
            CreateSessionsRequest { request_id: request_id.clone(), specs, idempotency_key, body_sha256, client_id };
        state.upstreams.placement.clone().create_sessions(request).await?.into_inner().outcomes
    };
    if outcomes.len() != sent {
        return Err(ApiError::Internal(format!("placement answered {} outcomes for {sent} items", outcomes.len())));
    }
    let mut outcomes = outcomes.drain(..);
    let mut response = CreateSessionsResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for (item, verdict) in items.into_iter().zip(verdicts) {
        let failure = match verdict {
            Err(reason) => reason,
            Ok(()) => match outcomes.next().and_then(|o| o.outcome) {
                Some(Outcome::Session(record)) => {
                    response.successful_list.push(convert::session(&record, None));
                    continue;
                }
                Some(Outcome::FailureReason(reason)) => reason,
                None => return Err(ApiError::Internal("placement answered an empty outcome".into())),
            },
        };
        response
            .unsuccessful_list
            .push(UnsuccessfulCreateSessionRequestData { create_session_request_data: item, failure_reason: failure });
    }
    tracing::info!(
        %request_id,
        created = response.successful_list.len(),
        refused = response.unsuccessful_list.len(),
        "createSessions"
    );
    Ok(Json(response))
}

/// Filters of a describeSessions request.
struct Filters {
    owner: Option<String>,
    tags: Vec<KeyValue>,
    /// Two different owners were asked for: nothing can match.
    contradictory: bool,
}

fn parse_filters(request: &DescribeSessionsRequestData) -> Result<Filters> {
    let mut filters = Filters { owner: None, tags: Vec::new(), contradictory: false };
    for filter in request.filters.iter().flatten() {
        if filter.key == "owner" {
            if filters.owner.as_ref().is_some_and(|owner| owner != &filter.value) {
                filters.contradictory = true;
            }
            filters.owner = Some(filter.value.clone());
        } else if let Some(key) = filter.key.strip_prefix("tag:").filter(|key| !key.is_empty()) {
            filters.tags.push(KeyValue { key: key.to_owned(), value: filter.value.clone() });
        } else {
            return Err(ApiError::BadRequest(format!(
                "Unsupported filter \"{}\": supported filters are owner and tag:<key>",
                filter.key
            )));
        }
    }
    Ok(filters)
}

fn matches(filters: &Filters, session: &SessionRecord, server: Option<&ServerRecord>) -> bool {
    let owner_ok = filters.owner.as_ref().is_none_or(|owner| owner == &session.owner);
    let tags_ok = filters.tags.iter().all(|wanted| {
        server.is_some_and(|server| server.tags.iter().any(|t| t.key == wanted.key && t.value == wanted.value))
    });
    owner_ok && tags_ok
}

/// `POST /describeSessions`. The body is optional. An owner-restricted
/// client sees only sessions of its owners (an owner filter outside them
/// matches nothing).
///
/// `NextToken` is made by session-store: opaque, stable, HMAC-signed with a
/// key every replica shares, so any gateway accepts any page's token and a
/// modified one is refused (`Invalid NextToken`). With `SessionIds`, every
/// match is returned in one page.
pub async fn describe_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OptionalApiJson(request): OptionalApiJson<DescribeSessionsRequestData>,
) -> Result<Json<DescribeSessionsResponse>> {
    let request_id = request_id();
    let page_size = page_size(request.max_results)?;
    let mut filters = parse_filters(&request)?;
    if let Some(allowed) = caller.allowed_owners() {
        match &filters.owner {
            Some(owner) if !allowed.contains(owner) => filters.contradictory = true,
            Some(_) => {}
            // One owner: let the store filter; several: filtered below.
            None if allowed.len() == 1 => filters.owner = allowed.iter().next().cloned(),
            None => {}
        }
    }
    let next_token = request.next_token.clone().filter(|token| !token.is_empty());
    let session_ids: Vec<String> = request.session_ids.clone().unwrap_or_default();
    let mut store = state.upstreams.store.clone();
    let (page, next_token) = if !session_ids.is_empty() {
        if session_ids.len() > MAX_RESULTS as usize {
            return Err(ApiError::BadRequest(format!("At most {MAX_RESULTS} SessionIds may be given")));
        }
        if next_token.is_some() {
            return Err(ApiError::BadRequest("NextToken cannot be combined with SessionIds".into()));
        }
        (store.get_sessions(GetSessionsRequest { session_ids, with_queue_places: true }).await?.into_inner(), None)
    } else if filters.contradictory {
        (Default::default(), None)
    } else {
        let list = ListSessionsRequest {
            owner: filters.owner.clone(),
            tags: filters.tags.clone(),
            page_size,
            after_id: String::new(),
            page_token: next_token.unwrap_or_default(),
            with_queue_places: true,
        };
        let page = store.list_sessions(list).await?.into_inner();
        let next = (!page.next_token.is_empty()).then(|| page.next_token.clone());
        (page, next)
    };
    let servers: HashMap<&str, &ServerRecord> = page.servers.iter().map(|s| (s.id.as_str(), s)).collect();
    let queue_places: HashMap<&str, &QueuePlace> =
        page.queue_places.iter().map(|place| (place.session_id.as_str(), place)).collect();
    let now = now_ms();
    let sessions: Vec<Session> = page
        .sessions
        .iter()
        .filter(|session| caller.may_act_for(&session.owner))
        .filter_map(|session| {
            let server = servers.get(session.server_id.as_str()).copied();
            matches(&filters, session, server).then(|| {
                let mut shown = convert::session(session, server);
                if let Some(place) = queue_places.get(session.id.as_str()) {
                    convert::queue_place(&mut shown, place, now);
                }
                shown
            })
        })
        .collect();
    tracing::debug!(%request_id, count = sessions.len(), "describeSessions");
    Ok(Json(DescribeSessionsResponse { request_id, sessions, next_token }))
}

/// `POST /deleteSessions`. Store failure reasons (e.g. an unknown id) pass
/// through verbatim as `FailureReason`. An owner-restricted client is refused
/// (403) if any item names another owner; the store checks that each named
/// owner is the session's.
pub async fn delete_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(items): ApiJson<Vec<DeleteSessionRequestData>>,
) -> Result<Json<DeleteSessionsResponse>> {
    check_batch(items.len(), state.config.max_batch, "session")?;
    for item in &items {
        if let Some(owner) = item.owner.as_deref().filter(|owner| !owner.is_empty()) {
            caller.require_owner(owner)?;
        } else if caller.allowed_owners().is_some() {
            return Err(ApiError::Forbidden("An owner-restricted API client must give Owner on every item".into()));
        }
    }
    let request_id = request_id();
    let mut response = DeleteSessionsResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    // Items refused here keep their place: `None` marks one the store decides.
    let mut refused_here = Vec::with_capacity(items.len());
    let mut to_store = Vec::new();
    for item in items {
        let session_id = item.session_id.unwrap_or_default();
        let failure = match (session_id.is_empty(), item.owner.as_deref().unwrap_or_default()) {
            (true, _) => "SessionId is required",
            (false, "") => "Owner is required",
            (false, owner) => {
                let force = item.force.unwrap_or(false);
                to_store.push(DeleteSessionItem { session_id, owner: owner.to_owned(), force });
                refused_here.push(None);
                continue;
            }
        };
        refused_here.push(Some(DeleteSessionUnsuccessfulResponse { session_id, failure_reason: failure.into() }));
    }
    let sent = to_store.len();
    let outcomes = match sent {
        0 => Vec::new(),
        _ => {
            let request = DeleteSessionsRequest { items: to_store };
            state.upstreams.store.clone().delete_sessions(request).await?.into_inner().outcomes
        }
    };
    if outcomes.len() != sent {
        return Err(ApiError::Internal(format!("store answered {} outcomes for {sent} deletes", outcomes.len())));
    }
    let mut outcomes = outcomes.into_iter();
    for refused in refused_here {
        if let Some(refused) = refused {
            response.unsuccessful_list.push(refused);
            continue;
        }
        let Some(outcome) = outcomes.next() else { break };
        let state = outcome.state();
        if outcome.failure_reason.is_empty() && state != SessionState::Unspecified {
            response.successful_list.push(DeleteSessionSuccessfulResponse {
                session_id: outcome.session_id,
                state: convert::session_state_name(state).into(),
            });
        } else {
            let failure_reason = match outcome.failure_reason.is_empty() {
                true => "The session could not be deleted".into(),
                false => outcome.failure_reason,
            };
            response
                .unsuccessful_list
                .push(DeleteSessionUnsuccessfulResponse { session_id: outcome.session_id, failure_reason });
        }
    }
    tracing::info!(
        %request_id,
        deleting = response.successful_list.len(),
        refused = response.unsuccessful_list.len(),
        "deleteSessions"
    );
    Ok(Json(response))
}
