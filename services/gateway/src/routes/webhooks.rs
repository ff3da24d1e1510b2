//! `POST /registerWebhook`, `POST /describeWebhooks`, `POST /unregisterWebhook` (additions): webhook
//! subscriptions, kept and delivered by session-store (docs/saas.md, *Webhooks*). Full-access clients only
//! (the scope table): a subscription sees every event of the fleet.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use switchboard_common::time::rfc3339_ms;
use switchboard_proto::event_json::{ApiEvent, api_event};
use switchboard_proto::{ListWebhooksRequest, RegisterWebhookRequest, UnregisterWebhookRequest};

use crate::{AppState, error::Result, extract::ApiJson, routes::request_id};

/// Most event types one subscription names.
const MAX_EVENT_TYPES: usize = 16;

/// The body of `registerWebhook`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterWebhookBody {
    /// The https URL to POST events to.
    url: String,
    /// Event types to deliver (default: every type).
    #[serde(default)]
    event_types: Vec<String>,
}

/// The answer of `registerWebhook`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterWebhookAnswer {
    request_id: String,
    id: String,
    /// The signing secret: shown only in this answer.
    secret: String,
}

/// `POST /registerWebhook`.
pub async fn register_webhook(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterWebhookBody>,
) -> Result<Json<RegisterWebhookAnswer>> {
    if body.event_types.len() > MAX_EVENT_TYPES {
        return Err(crate::error::ApiError::BadRequest(format!("At most {MAX_EVENT_TYPES} EventTypes")));
    }
    let request = RegisterWebhookRequest { url: body.url, event_types: body.event_types };
    let answer = state.upstreams.store.clone().register_webhook(request).await?.into_inner();
    Ok(Json(RegisterWebhookAnswer { request_id: request_id(), id: answer.id, secret: answer.secret }))
}

/// The body of `unregisterWebhook`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UnregisterWebhookBody {
    id: String,
}

/// The answer of `unregisterWebhook`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnregisterWebhookAnswer {
    request_id: String,
    /// Whether it existed.
    removed: bool,
}

/// `POST /unregisterWebhook`.
pub async fn unregister_webhook(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UnregisterWebhookBody>,
) -> Result<Json<UnregisterWebhookAnswer>> {
    let request = UnregisterWebhookRequest { id: body.id };
    let removed = state.upstreams.store.clone().unregister_webhook(request).await?.into_inner().removed;
    Ok(Json(UnregisterWebhookAnswer { request_id: request_id(), removed }))
}

/// One subscription as `describeWebhooks` shows it (never its secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WebhookView {
    id: String,
    url: String,
    event_types: Vec<String>,
    creation_time: Option<String>,
    /// Events delivered.
    delivered: u64,
    /// The last event delivered or given up on.
    cursor: String,
    /// Failed attempts at the next event.
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_time: Option<String>,
    /// Events given up on, newest first.
    dead_letters: Vec<DeadLetterView>,
}

/// An event given up on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterView {
    event: Option<ApiEvent>,
    attempts: u32,
    last_error: String,
    failed_time: Option<String>,
}

/// The answer of `describeWebhooks`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeWebhooksAnswer {
    request_id: String,
    webhooks: Vec<WebhookView>,
}

/// `POST /describeWebhooks` (the body is optional and empty).
pub async fn describe_webhooks(State(state): State<AppState>) -> Result<Json<DescribeWebhooksAnswer>> {
    let listed = state.upstreams.store.clone().list_webhooks(ListWebhooksRequest {}).await?.into_inner();
    let webhooks = listed
        .webhooks
        .into_iter()
        .filter_map(|status| {
            let webhook = status.webhook?;
            let dead_letters = status
                .dead_letters
                .iter()
                .map(|letter| DeadLetterView {
                    event: letter.event.as_ref().map(api_event),
                    attempts: letter.attempts,
                    last_error: letter.last_error.clone(),
                    failed_time: rfc3339_ms(letter.failed_unix_ms),
                })
                .collect();
            Some(WebhookView {
                creation_time: rfc3339_ms(webhook.created_unix_ms),
                last_error: (!webhook.last_error.is_empty()).then_some(webhook.last_error),
                last_attempt_time: rfc3339_ms(webhook.last_attempt_unix_ms),
                next_attempt_time: rfc3339_ms(webhook.next_attempt_unix_ms),
                id: webhook.id,
                url: webhook.url,
                event_types: webhook.event_types,
                delivered: webhook.delivered,
                cursor: webhook.cursor,
                attempts: webhook.attempts,
                dead_letters,
            })
        })
        .collect();
    Ok(Json(DescribeWebhooksAnswer { request_id: request_id(), webhooks }))
}
