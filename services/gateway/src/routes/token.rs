//! `POST /oauth2/token`: the OAuth 2.0 client credentials grant.
//!
//! Credentials come from HTTP Basic (`client_id:client_password`, as the
//! original broker's clients send them) or, failing that, from the
//! `client_id`/`client_secret` form fields. `grant_type` may be in the query
//! string (as in the developer guide) or the form body. Errors use the OAuth
//! JSON shape (RFC 6749 §5.2), not the API's `{"error": "..."}` text.
//!
//! Rate limited per peer address and overall (`crate::limits`): 429 with `Retry-After` and the
//! OAuth error `slow_down`-style body `{"error": "rate_limited", ...}`, checked before anything
//! is parsed or any upstream call is made. The client secret is never logged.

use axum::{
    Form, Json,
    body::Bytes,
    extract::{FromRequest, Query, Request, State},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use switchboard_common::ErrorCode;
use switchboard_proto::IssueTokenRequest;

use crate::{AppState, error::ApiError, model::TokenResponse};

/// Parameters from the query string or the form body. `Debug` redacts the secret.
#[derive(Default, Deserialize)]
pub struct TokenParams {
    /// Must be `client_credentials`.
    grant_type: Option<String>,
    /// Client id, when not sent with HTTP Basic.
    client_id: Option<String>,
    /// Client secret, when not sent with HTTP Basic.
    client_secret: Option<String>,
}

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParams")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut response = (status, Json(json!({ "error": code, "error_description": description }))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"switchboard\""));
    }
    response
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// `Some(Ok((id, secret)))` for a usable Basic header, `Some(Err)` for a
/// malformed one, `None` when there is none.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|text| text.split_once(':').map(|(id, secret)| (id.to_owned(), secret.to_owned())));
    Some(parsed.ok_or(()))
}

/// Form parameters from the body; an empty body is allowed.
async fn body_params(request: Request, state: &AppState) -> Result<TokenParams, Response> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        return Form::<TokenParams>::from_request(request, state)
            .await
            .map(|Form(params)| params)
            .map_err(|_| invalid_request("malformed form body"));
    }
    let body = Bytes::from_request(request, state).await.map_err(|_| invalid_request("unreadable body"))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(TokenParams::default())
    } else {
        Err(invalid_request("Content-Type must be application/x-www-form-urlencoded"))
    }
}

/// `GET /.well-known/jwks.json`: the public keys that verify our access tokens (RFC 7517), for
/// resource servers that want to check tokens themselves. Public data; rate limited like the token
/// endpoint and cacheable for a minute (rotation publishes keys well before they sign).
pub async fn jwks(State(state): State<AppState>, request: Request) -> Response {
    if let Err(error) = state.limits.check_token(crate::limits::peer_address(&request)) {
        return error.into_response();
    }
    match state.upstreams.auth.clone().get_key_set(switchboard_proto::GetKeySetRequest {}).await {
        Ok(key_set) => {
            let mut response = key_set.into_inner().jwks_json.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
            response
        }
        Err(status) => ApiError::Upstream(status).into_response(),
    }
}

/// Exchanges client credentials for an access token.
pub async fn issue_token(State(state): State<AppState>, request: Request) -> Response {
    if let Err(ApiError::TooManyRequests { retry_after_seconds, .. }) =
        state.limits.check_token(crate::limits::peer_address(&request))
    {
        tracing::info!(peer = ?crate::limits::peer_address(&request), "token request rate limited");
        let mut response =
            oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many token requests; retry later");
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        return response;
    }
    let Ok(Query(query)) = Query::<TokenParams>::try_from_uri(request.uri()) else {
        return invalid_request("malformed query string");
    };
    let basic = basic_credentials(request.headers());
    let form = match body_params(request, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let Some(grant_type) = form.grant_type.or(query.grant_type) else {
        return invalid_request("grant_type is required");
    };
    if grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
    }
    let (client_id, client_secret) = match (basic, form.client_id, form.client_secret) {
        (Some(Ok(credentials)), _, _) => credentials,
        (Some(Err(())), _, _) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "malformed Basic credentials");
        }
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client credentials are required");
        }
    };
    let request = IssueTokenRequest { client_id: client_id.clone(), client_secret };
    match state.upstreams.auth.clone().issue_token(request).await {
        Ok(response) => {
            let issued = response.into_inner();
            tracing::info!(%client_id, "access token issued");
            let body = TokenResponse {
                access_token: issued.access_token,
                token_type: "Bearer".into(),
                expires_in: issued.expires_in_seconds,
            };
            let mut response = Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(status) => match ErrorCode::from_grpc(status.code()) {
            ErrorCode::Unauthenticated | ErrorCode::PermissionDenied | ErrorCode::NotFound => {
                tracing::info!(%client_id, "token refused: bad client credentials");
                oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
            }
            ErrorCode::InvalidArgument => invalid_request("invalid token request"),
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::ResourceExhausted => {
                oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again later")
            }
            _ => {
                tracing::warn!(code = ?status.code(), message = status.message(), "token issuance failed");
                oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_params_never_print_the_secret() {
        let params = TokenParams {
            grant_type: Some("client_credentials".into()),
            client_id: Some("id-1".into()),
            client_secret: Some("s3cr3t-value".into()),
        };
        let printed = format!("{params:?}");
        assert!(printed.contains("id-1") && printed.contains("[redacted]"), "{printed}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        let response =
            TokenResponse { access_token: "eyJ.secret.jwt".into(), token_type: "Bearer".into(), expires_in: 1 };
        assert!(!format!("{response:?}").contains("eyJ.secret.jwt"));
    }
}
