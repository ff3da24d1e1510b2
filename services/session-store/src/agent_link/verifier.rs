//! The DCV server's external authenticator on the agent port: `POST /agent/validate-authentication-token`.
//!
//! A DCV server configured with `auth-token-verifier = "https://broker:8445/agent/validate-authentication-token"`
//! posts the form fields `sessionId`, `authenticationToken` and `clientAddress` when a client connects, and
//! expects `<auth result="yes"><username>USER</username></auth>` or
//! `<auth result="no"><message>…</message></auth>`. Every answer is a 200 with that XML, bad input included:
//! the DCV server only reads the result. The token checks are in
//! [`crate::connection_tokens`].

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;

use crate::connection_tokens::ConnectionTokenVerifier;

/// The verifier's path, as the DCV documentation configures it.
pub const PATH: &str = "/agent/validate-authentication-token";

/// Largest form accepted.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest `clientAddress` logged.
const MAX_ADDRESS_CHARS: usize = 128;

/// The form the DCV server posts.
#[derive(Debug, Default, Deserialize)]
struct VerifyForm {
    #[serde(rename = "sessionId", default)]
    session_id: String,
    #[serde(rename = "authenticationToken", default)]
    authentication_token: String,
    #[serde(rename = "clientAddress", default)]
    client_address: String,
}

/// The route, to merge into the agent port's router.
pub fn router(verifier: Arc<ConnectionTokenVerifier>) -> Router {
    Router::new().route(PATH, post(validate)).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(verifier)
}

async fn validate(
    State(verifier): State<Arc<ConnectionTokenVerifier>>,
    form: Result<Form<VerifyForm>, FormRejection>,
) -> impl IntoResponse {
    let body = match form {
        Err(_) => no("malformed request"),
        Ok(Form(form)) => {
            let address: String = form.client_address.chars().take(MAX_ADDRESS_CHARS).collect();
            match verifier.verify(&form.session_id, &form.authentication_token).await {
                Ok(user) => {
                    tracing::info!(session_id = %form.session_id, user = %user, client_address = %address, "dcv connection token accepted");
                    yes(&user)
                }
                Err(reason) => {
                    let session_id: String = form.session_id.chars().take(MAX_ADDRESS_CHARS).collect();
                    tracing::info!(%session_id, client_address = %address, reason, "dcv connection token refused");
                    no(reason)
                }
            }
        }
    };
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body)
}

fn yes(user: &str) -> String {
    format!(r#"<auth result="yes"><username>{}</username></auth>"#, escape(user))
}

fn no(message: &str) -> String {
    format!(r#"<auth result="no"><message>{}</message></auth>"#, escape(message))
}

/// XML text escaping.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_the_dcv_xml_and_escaped() {
        assert_eq!(yes("alice"), r#"<auth result="yes"><username>alice</username></auth>"#);
        assert_eq!(no("a<b & 'c'"), r#"<auth result="no"><message>a&lt;b &amp; &apos;c&apos;</message></auth>"#);
    }
}
