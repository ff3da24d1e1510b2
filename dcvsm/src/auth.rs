//! The access token: `DCV_SM_OAUTH2_TOKEN` as is, or an OAuth 2.0 client-credentials token from the
//! authorization server, cached on disk until shortly before it expires.
//!
//! The cache is one JSON file per (token URL, client id, client password) under
//! `$XDG_CACHE_HOME/dcvsm/` (`~/.cache/dcvsm/`; `%LOCALAPPDATA%\dcvsm\` on Windows), named by a SHA-256 of
//! the three so that no credential appears in a path; the folder is created `0700` and the file written
//! `0600` (atomically, through a temporary file). A token is reused until `min(60 s, lifetime / 10)`
//! before its expiry; a cached token the broker refuses is dropped and replaced once.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Secret, Settings};
use crate::error::{Error, Result};

/// Where a token came from (the caller retries a refused cached token once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `DCV_SM_OAUTH2_TOKEN`.
    Environment,
    /// The on-disk cache.
    Cache,
    /// A fresh token request.
    Fresh,
}

/// A cached token on disk.
#[derive(Serialize, Deserialize)]
struct CachedToken {
    access_token: String,
    /// Unix seconds after which the token is not reused.
    refresh_at: u64,
}

/// The authorization server's answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// The token endpoint: the configured authorization server URL (a base URL gets `/oauth2/token`), or the
/// broker's; `grant_type=client_credentials` is added to the query when missing.
pub fn token_url(settings: &Settings) -> Result<reqwest::Url> {
    let base = settings.auth_server_url.as_deref().unwrap_or(&settings.broker_url);
    let mut url = reqwest::Url::parse(base)
        .map_err(|error| Error::Configuration(format!("invalid authorization server URL {base}: {error}")))?;
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/oauth2/token");
    }
    if !url.query_pairs().any(|(key, _)| key == "grant_type") {
        url.query_pairs_mut().append_pair("grant_type", "client_credentials");
    }
    Ok(url)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

/// The cache folder, if the environment names a home.
pub fn cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |name: &str| env(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        non_empty("LOCALAPPDATA")
    } else {
        non_empty("XDG_CACHE_HOME").or_else(|| non_empty("HOME").map(|home| home.join(".cache")))
    };
    base.map(|dir| dir.join("dcvsm"))
}

/// Obtains and caches access tokens for one set of settings.
pub struct TokenSource {
    url: reqwest::Url,
    client_id: Option<String>,
    client_password: Option<Secret>,
    from_env: Option<Secret>,
    cache_file: Option<PathBuf>,
    debug: bool,
}

impl TokenSource {
    /// A token source for `settings`, caching under `cache_dir` when given.
    pub fn new(settings: &Settings, cache_dir: Option<PathBuf>) -> Result<Self> {
        let url = token_url(settings)?;
        let cache_file = match (&settings.client_id, &settings.client_password) {
            (Some(id), Some(password)) => cache_dir.map(|dir| {
                let mut hash = Sha256::new();
                for part in [url.as_str(), id.as_str(), password.0.as_str()] {
                    hash.update(part.as_bytes());
                    hash.update([0]);
                }
                let digest = hash.finalize();
                let name: String = digest[..16].iter().map(|byte| format!("{byte:02x}")).collect();
                dir.join(format!("token-{name}.json"))
            }),
            _ => None,
        };
        Ok(Self {
            url,
            client_id: settings.client_id.clone(),
            client_password: settings.client_password.clone(),
            from_env: settings.oauth2_token.clone(),
            cache_file,
            debug: settings.debug,
        })
    }

    /// Where tokens are cached, if anywhere.
    pub fn cache_file(&self) -> Option<&Path> {
        self.cache_file.as_deref()
    }

    fn debug(&self, message: &str) {
        if self.debug {
            eprintln!("dcvsm: {message}");
        }
    }

    /// A token: from the environment, the cache, or the authorization server.
    pub async fn token(&self, http: &reqwest::Client) -> Result<(Secret, Origin)> {
        if let Some(token) = &self.from_env {
            self.debug("using the access token of DCV_SM_OAUTH2_TOKEN");
            return Ok((token.clone(), Origin::Environment));
        }
        if let Some(cached) = self.read_cache() {
            self.debug(&format!("using the cached access token (reused until unix time {})", cached.refresh_at));
            return Ok((Secret(cached.access_token), Origin::Cache));
        }
        self.fetch(http).await.map(|token| (token, Origin::Fresh))
    }

    /// Forgets the cached token (the broker refused it).
    pub fn forget(&self) {
        if let Some(path) = &self.cache_file {
            self.debug("the broker refused the cached access token; requesting a new one");
            let _ = std::fs::remove_file(path);
        }
    }

    fn read_cache(&self) -> Option<CachedToken> {
        let text = std::fs::read_to_string(self.cache_file.as_ref()?).ok()?;
        let cached: CachedToken = serde_json::from_str(&text).ok()?;
        (now() < cached.refresh_at).then_some(cached)
    }

    /// Requests a token with HTTP Basic client credentials and caches it.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<Secret> {
        let (Some(id), Some(password)) = (&self.client_id, &self.client_password) else {
            return Err(Error::Configuration(
                "no credentials: set DCV_SM_CLIENT_ID and DCV_SM_CLIENT_PASSWORD (or client-id and client-password \
                 in the [authentication] section of dcvsmcli.conf), or DCV_SM_OAUTH2_TOKEN"
                    .into(),
            ));
        };
        self.debug(&format!("requesting an access token from {}", self.url));
        let response = http
            .post(self.url.clone())
            .basic_auth(id, Some(&password.0))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .map_err(|error| Error::Other(format!("cannot reach the authorization server {}: {error}", self.url)))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        self.debug(&format!("authorization server answered {}", status.as_u16()));
        if !status.is_success() {
            return Err(Error::Service {
                what: "authorization server",
                status: status.as_u16(),
                message: oauth_error(&body),
            });
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|error| Error::Other(format!("unexpected answer from the authorization server: {error}")))?;
        let lifetime = token.expires_in.unwrap_or(0);
        let margin = (lifetime / 10).min(60);
        self.write_cache(&CachedToken {
            access_token: token.access_token.clone(),
            refresh_at: now() + lifetime - margin,
        });
        Ok(Secret(token.access_token))
    }

    fn write_cache(&self, token: &CachedToken) {
        let Some(path) = &self.cache_file else { return };
        if let Err(error) = write_private(path, &serde_json::to_vec(token).unwrap_or_default()) {
            self.debug(&format!("cannot cache the access token in {}: {error}", path.display()));
        }
    }
}

/// The text of an OAuth error answer (`error_description`, else `error`), else the raw body.
fn oauth_error(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|value| value.get(name)?.as_str().map(str::to_owned));
    field("error_description").or_else(|| field("error")).unwrap_or_else(|| body.trim().to_owned())
}

/// Writes `bytes` to `path` readable by the owner only, creating the folder `0700`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent folder"))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    fn settings(broker: &str, auth: Option<&str>) -> Settings {
        Settings {
            broker_url: broker.into(),
            auth_server_url: auth.map(str::to_owned),
            client_id: Some("id".into()),
            client_password: Some(Secret("pw".into())),
            oauth2_token: None,
            output_format: OutputFormat::Json,
            debug: false,
            verify_ssl: true,
            ca_bundle: None,
            conf_file: None,
        }
    }

    #[test]
    fn the_token_url_defaults_to_the_broker_and_keeps_a_full_url() {
        let url = |auth| token_url(&settings("https://b:8443", auth)).unwrap().to_string();
        assert_eq!(url(None), "https://b:8443/oauth2/token?grant_type=client_credentials");
        assert_eq!(url(Some("https://idp:9000")), "https://idp:9000/oauth2/token?grant_type=client_credentials");
        let full = "https://b:8443/oauth2/token?grant_type=client_credentials";
        assert_eq!(url(Some(full)), full);
        assert_eq!(url(Some("https://idp/custom/token")), "https://idp/custom/token?grant_type=client_credentials");
    }

    #[test]
    fn the_cache_file_name_holds_no_credential_and_depends_on_each() {
        let dir = PathBuf::from("/cache");
        let one = TokenSource::new(&settings("https://b", None), Some(dir.clone())).unwrap();
        let name = one.cache_file().unwrap().to_string_lossy().into_owned();
        let file_name = one.cache_file().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        assert!(file_name.starts_with("token-") && !file_name.contains("pw"), "{name}");
        let mut other = settings("https://b", None);
        other.client_password = Some(Secret("other".into()));
        let two = TokenSource::new(&other, Some(dir)).unwrap();
        assert_ne!(one.cache_file(), two.cache_file());
    }

    #[cfg(unix)]
    #[test]
    fn cached_tokens_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dcvsm").join("token.json");
        write_private(&path, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
