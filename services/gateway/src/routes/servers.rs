//! `describeServers`, `openServers` and `closeServers`.

use axum::{Json, extract::State};
use switchboard_proto::{ListServersRequest, SetServerOpenOutcome, SetServersOpenRequest};

use crate::{
    AppState, convert,
    error::{ApiError, Result},
    extract::{ApiJson, OptionalApiJson},
    model::{
        CloseServerRequestData, CloseServerUnsuccessfulResponse, CloseServersResponse, DescribeServersRequestData,
        DescribeServersResponse, OpenServerRequestData, OpenServerUnsuccessfulResponse, OpenServersResponse,
        ServerIdResponse,
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

/// Runs SetServersOpen for the given ids (each non-empty), outcomes in order.
async fn set_open(state: &AppState, ids: Vec<String>, open: bool, force: bool) -> Result<Vec<SetServerOpenOutcome>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sent = ids.len();
    let request = SetServersOpenRequest { server_ids: ids, open, force };
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
    let mut outcomes = set_open(&state, ids, true, false).await?.into_iter();
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

/// `POST /closeServers`. Without `Force` a server with sessions stays open.
pub async fn close_servers(
    State(state): State<AppState>,
    ApiJson(items): ApiJson<Vec<CloseServerRequestData>>,
) -> Result<Json<CloseServersResponse>> {
    check_batch(items.len(), state.config.max_batch, "server")?;
    let request_id = request_id();
    let valid = |item: &CloseServerRequestData, force: bool| {
        item.server_id.as_deref().is_some_and(|id| !id.is_empty()) && item.force.unwrap_or(false) == force
    };
    let ids = |force: bool| -> Vec<String> {
        items.iter().filter(|i| valid(i, force)).filter_map(|i| i.server_id.clone()).collect()
    };
    let mut gentle = set_open(&state, ids(false), false, false).await?.into_iter();
    let mut forced = set_open(&state, ids(true), false, true).await?.into_iter();
    let mut response = CloseServersResponse {
        request_id: request_id.clone(),
        successful_list: Vec::new(),
        unsuccessful_list: Vec::new(),
    };
    for item in items {
        let (code, reason) = match item.server_id.as_deref() {
            None | Some("") => (INVALID_REQUEST.to_owned(), "ServerId is required".to_owned()),
            Some(_) => {
                let outcomes = if item.force.unwrap_or(false) { &mut forced } else { &mut gentle };
                let outcome = outcomes.next().ok_or_else(|| ApiError::Internal("missing outcome".into()))?;
                if outcome.failure_code.is_empty() {
                    response.successful_list.push(ServerIdResponse { server_id: outcome.server_id });
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
    tracing::info!(%request_id, closed = response.successful_list.len(), refused = response.unsuccessful_list.len(), "closeServers");
    Ok(Json(response))
}
