//! The broker's REST API over HTTPS: one call, with the bearer token, JSON in and out.

use std::time::Duration;

use serde_json::Value;

use crate::auth::{Origin, TokenSource};
use crate::config::Settings;
use crate::error::{Error, Result};

/// A connection to one broker.
pub struct Broker {
    http: reqwest::Client,
    base: reqwest::Url,
    tokens: TokenSource,
    debug: bool,
}

/// Builds the HTTPS client: the CA bundle added to the usual roots, or no verification at all.
pub fn http_client(settings: &Settings) -> Result<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).timeout(Duration::from_secs(120));
    if let Some(path) = &settings.ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|error| Error::Configuration(format!("cannot read the CA bundle {}: {error}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| Error::Configuration(format!("invalid CA bundle {}: {error}", path.display())))?;
        if certificates.is_empty() {
            return Err(Error::Configuration(format!("no certificate in the CA bundle {}", path.display())));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if !settings.verify_ssl {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|error| Error::Configuration(format!("cannot set up HTTPS: {error}")))
}

impl Broker {
    /// A broker client for `settings`, caching tokens under `cache_dir`.
    pub fn new(settings: &Settings, cache_dir: Option<std::path::PathBuf>) -> Result<Self> {
        let base = reqwest::Url::parse(&format!("{}/", settings.broker_url))
            .map_err(|error| Error::Configuration(format!("invalid broker URL {}: {error}", settings.broker_url)))?;
        Ok(Self {
            http: http_client(settings)?,
            base,
            tokens: TokenSource::new(settings, cache_dir)?,
            debug: settings.debug,
        })
    }

    /// The URL of `segments` under the broker's base URL, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Calls `method` on the path `segments` with an optional JSON body; returns the JSON answer, parsed
    /// and as sent (whose key order the JSON output keeps). A cached token the broker refuses (401) is
    /// replaced once.
    pub async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<(Value, String)> {
        let url = self.url(segments);
        let (mut token, origin) = self.tokens.token(&self.http).await?;
        let mut retried = false;
        loop {
            if self.debug {
                eprintln!("dcvsm: {method} {url}");
                if let Some(body) = body {
                    eprintln!("dcvsm: request body {body}");
                }
            }
            let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(&token.0);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|error| Error::Other(format!("cannot reach the broker at {}: {error}", self.base)))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if self.debug {
                eprintln!("dcvsm: broker answered {}", status.as_u16());
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && origin == Origin::Cache && !retried {
                self.tokens.forget();
                token = self.tokens.fetch(&self.http).await?;
                retried = true;
                continue;
            }
            if !status.is_success() {
                return Err(Error::Service { what: "broker", status: status.as_u16(), message: error_text(&text) });
            }
            return match serde_json::from_str(&text) {
                Ok(value) => Ok((value, text)),
                Err(error) => Err(Error::Other(format!("the broker's answer is not JSON ({error}): {text}"))),
            };
        }
    }
}

/// The text of an API error: `{"error": "…"}` (Switchboard), `message` (others), else the body.
fn error_text(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|value| value.get(name)?.as_str().map(str::to_owned));
    field("error").or_else(|| field("message")).unwrap_or_else(|| body.trim().to_owned())
}
