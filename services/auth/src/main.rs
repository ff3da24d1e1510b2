//! `switchboard-auth`: one auth replica as its own process. Thin: parse
//! config, set up telemetry, open storage, bind, call [`switchboard_auth::serve`].

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use switchboard_session_store::backend::embedded::EmbeddedBackend;

/// Command line and environment (`SWITCHBOARD_*`) settings.
#[derive(Debug, Parser)]
#[command(name = "switchboard-auth", version, about = "Switchboard auth service (API clients, keys, tokens)")]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "SWITCHBOARD_AUTH_LISTEN", default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Directory of the embedded store holding clients and keys.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-auth-data")]
    data_dir: PathBuf,
    /// File holding the admin token that guards the client registry (absent: admin RPCs disabled).
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// `iss` of issued tokens.
    #[arg(long, env = "SWITCHBOARD_TOKEN_ISSUER", default_value = "switchboard")]
    issuer: String,
    /// `aud` of issued tokens.
    #[arg(long, env = "SWITCHBOARD_TOKEN_AUDIENCE", default_value = "switchboard-api")]
    audience: String,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "SWITCHBOARD_TOKEN_LIFETIME_SECONDS", default_value_t = 3600)]
    token_lifetime_seconds: u32,
    /// Log as JSON lines instead of pretty text.
    #[arg(long, env = "SWITCHBOARD_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    switchboard_common::telemetry::init("info", log_format(args.log_json));
    let admin_token_sha256 = match &args.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(switchboard_auth::admin_token_hash(token.trim()))
        }
        None => None,
    };
    let config = switchboard_auth::AuthConfig {
        issuer: args.issuer,
        audience: args.audience,
        token_lifetime_seconds: args.token_lifetime_seconds,
        admin_token_sha256,
    };
    let backend = Arc::new(EmbeddedBackend::open(&args.data_dir).context("opening the store")?);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, "auth service starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_auth::serve(config, listener, backend, shutdown).await?;
    Ok(())
}

fn log_format(json: bool) -> switchboard_common::telemetry::LogFormat {
    if json { switchboard_common::telemetry::LogFormat::Json } else { switchboard_common::telemetry::LogFormat::Pretty }
}
