//! `POST /explainPlacement` — an addition beyond the DCV Session Manager API.
//!
//! Validates a `Requirements` expression and dry-runs it against the current
//! fleet (placement's view, synced first): which servers would take such a
//! session now, best first, and how many were passed over for each reason.
//! Needs a bearer token like every API route. Body (PascalCase like the API,
//! unknown fields refused):
//!
//! ```json
//! { "Requirements": "tag:gpu = 'a100'", "Type": "VIRTUAL", "Owner": "alice", "DcvGlEnabled": false,
//!   "AutorunFile": "app.bat", "MaxServers": 100 }
//! ```
//!
//! Answer: `{ "RequestId", "Valid", "Error", "ErrorColumn", "TotalServers",
//! "MatchingCount", "MatchingServers": [ids], "Rejections": { reason: count },
//! "Explanation" }`. An invalid expression is a 200 with `Valid: false` and
//! the column-precise error, the same text CreateSessions would give.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use switchboard_proto::{self as pb, ExplainPlacementRequest};

use crate::{
    AppState,
    error::{ApiError, Result},
    extract::ApiJson,
};

/// The request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExplainPlacementBody {
    /// The expression (empty or missing: every server matches).
    #[serde(default)]
    pub requirements: Option<String>,
    /// `CONSOLE` or `VIRTUAL` (default `VIRTUAL`).
    #[serde(rename = "Type", default)]
    pub session_type: Option<String>,
    /// Owner (accepted for the shape of a create item; the per-user limit is
    /// checked at reservation time, not in a dry run).
    #[serde(default)]
    pub owner: Option<String>,
    /// Hardware OpenGL (virtual sessions on Linux only).
    #[serde(default)]
    pub dcv_gl_enabled: Option<bool>,
    /// Most matching server ids returned (default 100, at most 1000).
    #[serde(default)]
    pub max_servers: Option<u32>,
    /// AutorunFile (a console session with one needs a Windows host).
    #[serde(default)]
    pub autorun_file: Option<String>,
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExplainPlacementAnswer {
    /// Id of this request.
    pub request_id: String,
    /// Whether the expression is valid.
    pub valid: bool,
    /// Why not (with its column); absent when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 1-based column of the error, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_column: Option<u32>,
    /// Servers known.
    pub total_servers: u32,
    /// Servers that could take the session now.
    pub matching_count: u32,
    /// Their ids, best first (up to `MaxServers`).
    pub matching_servers: Vec<String>,
    /// Servers passed over, by reason.
    pub rejections: BTreeMap<String, u32>,
    /// The one-line explanation placement would give.
    pub explanation: String,
}

/// `POST /explainPlacement`.
pub async fn explain_placement(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ExplainPlacementBody>,
) -> Result<Json<ExplainPlacementAnswer>> {
    let session_type = match body.session_type.as_deref() {
        None => pb::SessionType::Virtual,
        Some(text) if text.eq_ignore_ascii_case("CONSOLE") => pb::SessionType::Console,
        Some(text) if text.eq_ignore_ascii_case("VIRTUAL") => pb::SessionType::Virtual,
        Some(text) => {
            let shown: String = text.chars().take(64).collect();
            return Err(ApiError::BadRequest(format!(
                "Invalid session type \"{shown}\": Type must be CONSOLE or VIRTUAL"
            )));
        }
    };
    let request = ExplainPlacementRequest {
        requirements: body.requirements.unwrap_or_default(),
        r#type: session_type as i32,
        owner: body.owner.unwrap_or_default(),
        dcv_gl_enabled: body.dcv_gl_enabled.unwrap_or(false),
        max_servers: body.max_servers.unwrap_or(0),
        autorun_file: body.autorun_file.unwrap_or_default(),
    };
    let answer = state.upstreams.placement.clone().explain_placement(request).await?.into_inner();
    Ok(Json(ExplainPlacementAnswer {
        request_id: uuid::Uuid::new_v4().to_string(),
        valid: answer.valid,
        error: (!answer.error.is_empty()).then_some(answer.error),
        error_column: (answer.error_column > 0).then_some(answer.error_column),
        total_servers: answer.total_servers,
        matching_count: answer.matching_count,
        matching_servers: answer.matching_servers,
        rejections: answer.rejections.into_iter().collect(),
        explanation: answer.explanation,
    }))
}
