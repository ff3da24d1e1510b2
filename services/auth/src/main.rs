//! `switchboard-auth`: one auth replica as its own process. Thin: load settings (defaults → `--config`
//! file → `SWITCHBOARD_*` → flags), set up telemetry, open storage, bind, call [`switchboard_auth::serve`].
//! Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, ConfigArgs, InternalTlsArgs, LogArgs, StorageArgs};
use switchboard_common::telemetry::{self, LogFormat};
use switchboard_store::{BackendConfig, open_backend, redis::RedisConfig};

/// Every setting; field names are the config file's keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    listen: SocketAddr,
    redis_url: Option<String>,
    redis_key_prefix: String,
    data_dir: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    issuer: String,
    audience: String,
    token_lifetime_seconds: u32,
    connect_session_token_duration_minutes: u32,
    internal_tls_ca_file: Option<PathBuf>,
    internal_tls_cert_file: Option<PathBuf>,
    internal_tls_key_file: Option<PathBuf>,
    internal_tls_client_auth: bool,
    key_publish_delay_seconds: u32,
    log_format: LogFormat,
    log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        let auth = switchboard_auth::AuthConfig::default();
        Self {
            listen: "127.0.0.1:7001".parse().expect("valid address"),
            redis_url: None,
            redis_key_prefix: RedisConfig::default().key_prefix,
            data_dir: None,
            admin_token_file: None,
            issuer: auth.issuer,
            audience: auth.audience,
            token_lifetime_seconds: auth.token_lifetime_seconds,
            connect_session_token_duration_minutes: auth.connection_token_lifetime_seconds / 60,
            internal_tls_ca_file: None,
            internal_tls_cert_file: None,
            internal_tls_key_file: None,
            internal_tls_client_auth: false,
            key_publish_delay_seconds: auth.key_publish_delay_seconds,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
        }
    }
}

/// Command line; each flag falls back to its `SWITCHBOARD_*` variable, then to the config file.
#[derive(Debug, Parser, Serialize)]
#[command(name = "switchboard-auth", version, about = "Switchboard auth service (API clients, keys, tokens)")]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    source: ConfigArgs,
    /// gRPC listen address (Auth + health).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    #[serde(flatten)]
    storage: StorageArgs,
    /// File holding the admin token that guards the client registry (absent: admin RPCs disabled).
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// `iss` of issued tokens (the same on every replica).
    #[arg(long, env = "SWITCHBOARD_ISSUER")]
    issuer: Option<String>,
    /// `aud` of issued tokens (the same on every replica).
    #[arg(long, env = "SWITCHBOARD_AUDIENCE")]
    audience: Option<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "SWITCHBOARD_TOKEN_LIFETIME_SECONDS")]
    token_lifetime_seconds: Option<u32>,
    /// Connection-token lifetime in minutes (the original broker's setting of the same name).
    #[arg(long, env = "SWITCHBOARD_CONNECT_SESSION_TOKEN_DURATION_MINUTES")]
    connect_session_token_duration_minutes: Option<u32>,
    #[command(flatten)]
    #[serde(flatten)]
    internal_tls: InternalTlsArgs,
    /// Seconds between `renew-auth-server-api-key` publishing a new key and signing with it (must
    /// exceed the gateways' `key_set_refresh_seconds`).
    #[arg(long, env = "SWITCHBOARD_KEY_PUBLISH_DELAY_SECONDS")]
    key_publish_delay_seconds: Option<u32>,
    #[command(flatten)]
    #[serde(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(settings) = config::load_or_dump::<Settings>(&cli.source, &cli)? else {
        return Ok(());
    };
    telemetry::init(&settings.log_level, settings.log_format);
    config::configure_internal_tls(
        settings.internal_tls_ca_file.as_deref(),
        settings.internal_tls_cert_file.as_deref(),
        settings.internal_tls_key_file.as_deref(),
        settings.internal_tls_client_auth,
    )?;
    let storage: BackendConfig = config::storage_choice(
        settings.redis_url.as_deref(),
        &settings.redis_key_prefix,
        settings.data_dir.as_deref(),
    )?
    .into();
    let admin_token_sha256 = match &settings.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(!token.trim().is_empty(), "admin token file {} is empty", path.display());
            Some(switchboard_auth::admin_token_hash(token.trim()))
        }
        None => None,
    };
    let auth_config = switchboard_auth::AuthConfig {
        issuer: settings.issuer,
        audience: settings.audience,
        token_lifetime_seconds: settings.token_lifetime_seconds,
        connection_token_lifetime_seconds: {
            let minutes = settings.connect_session_token_duration_minutes;
            anyhow::ensure!(
                (1..=24 * 60).contains(&minutes),
                "connect_session_token_duration_minutes must be 1..=1440"
            );
            minutes * 60
        },
        key_publish_delay_seconds: settings.key_publish_delay_seconds,
        admin_token_sha256,
    };
    let backend = open_backend(&storage).await.context("opening the store")?;
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, admin = auth_config.admin_token_sha256.is_some(), "auth starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_auth::serve(auth_config, listener, backend.clone(), backend, shutdown).await?;
    Ok(())
}
