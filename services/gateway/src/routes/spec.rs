//! `GET /dcv-session-manager-api.yaml`: the served OpenAPI document (see
//! [`crate::spec`]). No authentication, like the health routes.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::error::ApiError;

/// Where the document is served.
pub const PATH: &str = "/dcv-session-manager-api.yaml";

/// Serves the merged YAML.
pub async fn served_spec() -> Response {
    match crate::spec::served_yaml() {
        Ok(yaml) => {
            let mut response = yaml.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            response
        }
        Err(error) => ApiError::Internal(error).into_response(),
    }
}
