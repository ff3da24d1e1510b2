//! `describeServers`, `openServers` and `closeServers`.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use switchboard_common::time::rfc3339_ms;
use switchboard_proto::contract::DRAIN_TIMEOUT_MAX_SECONDS;
use switchboard_proto::{ListServersRequest, SetServerOpenOutcome, SetServersOpenRequest};

use crate::{
    AppState, convert,
    error::{ApiError, Result},
    extract::{ApiJson, OptionalApiJson},
    model::{
        CloseServerRequestData, CloseServerSuccessfulResponse, CloseServerUnsuccessfulResponse, CloseServersResponse,
        DescribeServersRequestData, DescribeServersResponse, OpenServerRequestData, OpenServerUnsuccessfulResponse,
        OpenServersResponse, ServerIdResponse,
    },
    routes::{check_batch, page_size, request_id},
};

/// FailureCode of an item without a `ServerId`.
const INVALID_REQUEST: &str = "INVALID_REQUEST";

/// `POST /describeServers`. The body is optional; `NextToken` is signed by
/// session-store and valid on every replica.
pub async fn describe_servers(
    State(state): State<AppState>,
    OptionalApiJson(request): OptionalApiJson<DescribeServersRequestData>,
) -> Result<Json<DescribeServersResponse>> {
    let request_id = request_id();
    let page_size = page_size(request.max_results)?;
    let server_ids = request.server_ids.unwrap_or_default();
    if server_ids.len() > crate::routes::MAX_RESULTS as usize {
        return Err(ApiError::BadRequest(format!("At most {} ServerIds may be given", crate::routes::MAX_RESULTS)));
    }
    let page_token = request.next_token.unwrap_or_default();
    let list = ListServersRequest { server_ids, page_size, after_id: String::new(), page_token };
    let page = state.upstreams.store.clone().list_servers(list).await?.into_inner();
    let servers = page.servers.iter().map(convert::server).collect();
    let next_token = (!page.next_token.is_empty()).then_some(page.next_token);
    tracing::debug!(%request_id, "describeServers");
    Ok(Json(DescribeServersResponse { request_id, servers, next_token }))
}

/// Runs SetServersOpen for the given ids (each non-empty), outcomes in order. `drain_timeout_seconds`
/// only matters when closing without force (`None`: session-store's setting).
async fn set_open(
    state: &AppState,
    ids: Vec<String>,
    open: bool,
    force: bool,
    drain_timeout_seconds: Option<u32>,
) -> Result<Vec<SetServerOpenOutcome>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sent = ids.len();
    let request = SetServersOpenRequest { server_ids: ids, open, force, drain_timeout_seconds };
    let outcomes = state.upstreams.store.clone().set_servers_open(request).await?.into_inner().outcomes;
    if outcomes.len() != sent {
        return Err(ApiError::Internal(format!("store answered {} outcomes for {sent} servers", outcomes.len())));
    }
    Ok(outcomes)
}

/// `POST /openServers`.
pub async fn open_servers(
    State(state): State<AppState>,
    ApiJson(items): ApiJson<Vec<OpenServerRequestData>>,
) -> Result<Json<OpenServersResponse>> {
    check_batch(items.len(), state.config.max_batch, "server")?;
    let request_id = request_id();
    let ids: Vec<String> = items.iter().filter_map(|i| i.server_id.clone().filter(|id| !id.is_empty())).collect();
    let mut outcomes = set_open(&state, ids, true, false, None).await?.into_iter();
    let mut response = OpenServersResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for item in items {
        let (code, reason) = match item.server_id.as_deref() {
            None | Some("") => (INVALID_REQUEST.to_owned(), "ServerId is required".to_owned()),
            Some(_) => {
                let outcome = outcomes.next().ok_or_else(|| ApiError::Internal("missing outcome".into()))?;
                if outcome.failure_code.is_empty() {
                    response.successful_list.push(ServerIdResponse { server_id: outcome.server_id });
                    continue;
                }
                (outcome.failure_code, outcome.failure_reason)
            }
        };
        response.unsuccessful_list.push(OpenServerUnsuccessfulResponse {
            open_server_request_data: item,
            failure_code: code,
            failure_reason: reason,
        });
    }
    tracing::info!(%request_id, opened = response.successful_list.len(), refused = response.unsuccessful_list.len(), "openServers");
    Ok(Json(response))
}

/// How one closeServers item is sent to session-store: items of one kind go in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CloseKind {
    /// `Force`: closed at once.
    Forced,
    /// Without `Force`, with its `DrainTimeoutSeconds` (`None`: the store's default).
    Gentle(Option<u32>),
}

/// What is wrong with a closeServers item, if anything, else how it is sent.
fn close_kind(item: &CloseServerRequestData) -> std::result::Result<CloseKind, String> {
    if item.server_id.as_deref().is_none_or(str::is_empty) {
        return Err("ServerId is required".to_owned());
    }
    if item.force.unwrap_or(false) {
        return Ok(CloseKind::Forced);
    }
    match item.drain_timeout_seconds {
        None => Ok(CloseKind::Gentle(None)),
        Some(seconds) => u32::try_from(seconds)
            .ok()
            .filter(|seconds| *seconds <= DRAIN_TIMEOUT_MAX_SECONDS)
            .map(|seconds| CloseKind::Gentle(Some(seconds)))
            .ok_or_else(|| format!("DrainTimeoutSeconds must be between 0 and {DRAIN_TIMEOUT_MAX_SECONDS}")),
    }
}

/// `POST /closeServers`. With `Force` a server closes at once; without, a server with sessions is
/// refused or, given a drain timeout (the item's `DrainTimeoutSeconds` or session-store's default),
/// drains: a success that says `Draining` and until when.
pub async fn close_servers(
    State(state): State<AppState>,
    ApiJson(items): ApiJson<Vec<CloseServerRequestData>>,
) -> Result<Json<CloseServersResponse>> {
    check_batch(items.len(), state.config.max_batch, "server")?;
    let request_id = request_id();
    let kinds: Vec<_> = items.iter().map(close_kind).collect();
    // One call per kind (at most one per distinct DrainTimeoutSeconds), outcomes handed back in order.
    let mut groups: BTreeMap<CloseKind, Vec<String>> = BTreeMap::new();
    for (item, kind) in items.iter().zip(&kinds) {
        if let (Ok(kind), Some(id)) = (kind, &item.server_id) {
            groups.entry(*kind).or_default().push(id.clone());
        }
    }
    let mut outcomes = BTreeMap::new();
    for (kind, ids) in groups {
        let sent = match kind {
            CloseKind::Forced => set_open(&state, ids, false, true, None).await?,
            CloseKind::Gentle(timeout) => set_open(&state, ids, false, false, timeout).await?,
        };
        outcomes.insert(kind, sent.into_iter());
    }
    let mut response = CloseServersResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for (item, kind) in items.into_iter().zip(kinds) {
        let (code, reason) = match kind {
            Err(reason) => (INVALID_REQUEST.to_owned(), reason),
            Ok(kind) => {
                let outcome = outcomes
                    .get_mut(&kind)
                    .and_then(Iterator::next)
                    .ok_or_else(|| ApiError::Internal("missing outcome".into()))?;
                if outcome.failure_code.is_empty() {
                    let draining = outcome.drain_deadline_unix_ms > 0;
                    response.successful_list.push(CloseServerSuccessfulResponse {
                        server_id: outcome.server_id,
                        draining: draining.then_some(true),
                        drain_deadline: draining.then(|| rfc3339_ms(outcome.drain_deadline_unix_ms)).flatten(),
                    });
                    continue;
                }
                (outcome.failure_code, outcome.failure_reason)
            }
        };
        response.unsuccessful_list.push(CloseServerUnsuccessfulResponse {
            close_server_request_data: item,
            failure_code: code,
            failure_reason: reason,
        });
    }
    let draining = response.successful_list.iter().filter(|s| s.draining.is_some()).count();
    tracing::info!(%request_id, closed = response.successful_list.len() - draining, draining, refused = response.unsuccessful_list.len(), "closeServers");
    Ok(Json(response))
}
