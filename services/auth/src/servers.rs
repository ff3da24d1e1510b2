//! Trusted external authorization servers (`register-auth-server`): identity providers such as
//! Cognito, Azure AD or Keycloak whose access tokens the API accepts besides our own.
//!
//! Each is stored in the shared [`Backend`] by its JWKS URL, with an optional pinned algorithm,
//! issuer and audience, so every auth replica lists the same set and every gateway learns it with
//! the key set ([`switchboard_proto::KeySet::external_servers`]). Gateways fetch the JWKS documents
//! themselves ([`crate::verify`]).

use reqwest::Url;
use switchboard_proto::AuthServerInfo;
use switchboard_store::{ApiRegistry, AuthServerRecord, BackendError};

use crate::{Error, Result};

/// Longest accepted JWKS URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Longest accepted issuer or audience.
pub const MAX_CLAIM_CHARS: usize = 1024;

/// Algorithms an external server's keys may be pinned to: asymmetric only (a JWKS publishes public
/// keys; an HMAC secret in a JWKS would let anyone forge tokens).
pub const ALGORITHMS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Whether `url` may be fetched as a JWKS: `https`, or plain `http` to a loopback host only
/// (local identity providers and tests). No credentials or fragment in the URL.
pub fn validate_url(url: &str) -> Result<Url> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(Error::InvalidArgument(format!("url must be at most {MAX_URL_CHARS} characters")));
    }
    let parsed = Url::parse(url).map_err(|error| Error::InvalidArgument(format!("url is not a valid URL: {error}")))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(Error::InvalidArgument("url must be https (http only for localhost)".to_owned())),
    }
    if parsed.host().is_none() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::InvalidArgument("url must name a host and carry no credentials".to_owned()));
    }
    if parsed.fragment().is_some() {
        return Err(Error::InvalidArgument("url must not have a fragment".to_owned()));
    }
    Ok(parsed)
}

fn validate_claim(name: &str, value: &str) -> Result<()> {
    if value.chars().count() > MAX_CLAIM_CHARS || value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{name} must be printable and at most {MAX_CLAIM_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks a registration and returns the record to store.
pub fn record(info: &AuthServerInfo, now_ms: i64) -> Result<AuthServerRecord> {
    validate_url(&info.url)?;
    if !info.algorithm.is_empty() && !ALGORITHMS.contains(&info.algorithm.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "algorithm {:?} is not supported; use one of {}",
            info.algorithm,
            ALGORITHMS.join(", ")
        )));
    }
    validate_claim("issuer", &info.issuer)?;
    validate_claim("audience", &info.audience)?;
    Ok(AuthServerRecord {
        url: info.url.clone(),
        algorithm: info.algorithm.clone(),
        issuer: info.issuer.clone(),
        audience: info.audience.clone(),
        created_unix_ms: now_ms,
    })
}

/// The wire shape of a stored server.
pub fn info(record: AuthServerRecord) -> AuthServerInfo {
    AuthServerInfo {
        url: record.url,
        algorithm: record.algorithm,
        issuer: record.issuer,
        audience: record.audience,
        created_unix_ms: record.created_unix_ms,
    }
}

/// Trusts `info` (replacing an earlier registration of the same URL).
pub async fn register(backend: &dyn ApiRegistry, info: &AuthServerInfo) -> Result<()> {
    let record = record(info, switchboard_common::time::now_ms())?;
    backend.put_auth_server(record.clone()).await?;
    tracing::info!(url = %record.url, algorithm = %record.algorithm, issuer = %record.issuer, "registered auth server");
    Ok(())
}

/// Every trusted server, in URL order.
pub async fn list(backend: &dyn ApiRegistry) -> Result<Vec<AuthServerInfo>> {
    Ok(backend.list_auth_servers().await?.into_iter().map(info).collect())
}

/// Stops trusting the server registered with `url`.
pub async fn unregister(backend: &dyn ApiRegistry, url: &str) -> Result<()> {
    match backend.remove_auth_server(url).await {
        Ok(true) => {
            tracing::info!(url = %url, "unregistered auth server");
            Ok(())
        }
        Ok(false) | Err(BackendError::NotFound(_)) => Err(Error::AuthServerNotFound),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        for good in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/k",
            "http://[::1]:9/k",
        ] {
            assert!(validate_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://idp.example.com/jwks",
            "ftp://127.0.0.1/jwks",
            "file:///etc/passwd",
            "https://user:pw@idp.example.com/jwks",
            "https://idp.example.com/jwks#x",
            "not a url",
            "",
        ] {
            assert!(matches!(validate_url(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
        assert!(validate_url(&format!("https://a.example/{}", "x".repeat(MAX_URL_CHARS))).is_err());
    }

    #[test]
    fn symmetric_and_unknown_algorithms_are_refused() {
        let info = |algorithm: &str| AuthServerInfo {
            url: "https://idp/jwks".into(),
            algorithm: algorithm.into(),
            ..Default::default()
        };
        for good in ["", "RS256", "ES256", "EdDSA", "PS512"] {
            assert!(record(&info(good), 1).is_ok(), "{good}");
        }
        for bad in ["HS256", "none", "rs256", "ES512"] {
            assert!(record(&info(bad), 1).is_err(), "{bad}");
        }
        let control = AuthServerInfo { issuer: "a\nb".into(), ..info("") };
        assert!(record(&control, 1).is_err());
    }
}
