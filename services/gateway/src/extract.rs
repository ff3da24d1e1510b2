//! JSON body extraction with API-shaped errors.
//!
//! axum's `Json` answers malformed input with plain-text bodies; the API
//! promises `{"error": "..."}` everywhere. [`ApiJson`] reads the body (within
//! the router's `DefaultBodyLimit`, 413 beyond it), parses it, and reports an
//! unknown field the way the original broker does: `Unrecognized field "X"`.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
};
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A required JSON body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A required JSON body, with the bytes it was parsed from (for a handler that hashes what was sent).
#[derive(Debug)]
pub struct ApiJsonWithBytes<T>(pub T, pub Bytes);

/// An optional JSON body: empty means `T::default()`.
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub T);

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!("Could not read the request body: {}", rejection.body_text()))
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiJsonWithBytes(value, _) = ApiJsonWithBytes::from_request(request, state).await?;
        Ok(Self(value))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJsonWithBytes<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("Request body is required".into()));
        }
        parse(&bytes).map(|value| Self(value, bytes))
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse(&bytes).map(Self)
    }
}

/// Parses a JSON document into `T` with API error messages.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| ApiError::BadRequest(format!("Malformed JSON: {error}")))?;
    T::deserialize(value).map_err(|error| ApiError::BadRequest(describe(&error)))
}

fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return format!("Unrecognized field \"{}\"", &rest[..end]);
    }
    format!("Invalid request: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CreateSessionRequestData, DescribeSessionsRequestData};

    fn message<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        parse::<T>(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn unknown_fields_are_named_like_the_original() {
        assert_eq!(
            message::<Vec<CreateSessionRequestData>>(r#"[{"Owner":"a","Foo":1}]"#),
            "Unrecognized field \"Foo\""
        );
        assert_eq!(
            message::<DescribeSessionsRequestData>(r#"{"Filters":[{"Key":"owner","Value":"a","X":1}]}"#),
            "Unrecognized field \"X\""
        );
    }

    #[test]
    fn malformed_and_mistyped_input_is_explained() {
        assert!(message::<Vec<CreateSessionRequestData>>("[{").starts_with("Malformed JSON"));
        assert!(message::<Vec<CreateSessionRequestData>>(r#"{"Owner":"a"}"#).starts_with("Invalid request"));
    }
}
