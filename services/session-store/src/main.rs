//! `switchboard-session-store`: one session-store replica as its own process. Thin: load settings
//! (defaults → `--config` file → `SWITCHBOARD_*` → flags), set up telemetry, open storage, bind both ports,
//! call [`switchboard_session_store::serve`]. Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, ConfigArgs, InternalTlsArgs, LogArgs, StorageArgs, TlsArgs};
use switchboard_common::telemetry::{self, LogFormat};
use switchboard_store::{BackendConfig, open_backend, redis::RedisConfig};

/// Every setting; field names are the config file's keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    listen: SocketAddr,
    agent_listen: SocketAddr,
    advertised_address: Option<String>,
    replica_id: Option<String>,
    redis_url: Option<String>,
    redis_key_prefix: String,
    data_dir: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    dev_tls_dir: Option<PathBuf>,
    tls_names: Vec<String>,
    update_interval_seconds: u32,
    agent_lease_seconds: u32,
    command_timeout_seconds: u64,
    default_server_open: bool,
    require_agent_credentials: bool,
    connection_token_issuer: String,
    connection_token_single_use: bool,
    agent_client_ca_file: Option<PathBuf>,
    internal_tls_ca_file: Option<PathBuf>,
    internal_tls_cert_file: Option<PathBuf>,
    internal_tls_key_file: Option<PathBuf>,
    internal_tls_client_auth: bool,
    log_format: LogFormat,
    log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        let store = switchboard_session_store::StoreConfig::default();
        Self {
            listen: "127.0.0.1:7003".parse().expect("valid address"),
            agent_listen: "0.0.0.0:8445".parse().expect("valid address"),
            advertised_address: None,
            replica_id: None,
            redis_url: None,
            redis_key_prefix: RedisConfig::default().key_prefix,
            data_dir: None,
            tls_cert_file: None,
            tls_key_file: None,
            dev_tls_dir: None,
            tls_names: Vec::new(),
            update_interval_seconds: store.update_interval_seconds,
            agent_lease_seconds: store.agent_lease_seconds,
            command_timeout_seconds: store.command_timeout.as_secs(),
            default_server_open: store.default_server_open,
            require_agent_credentials: store.require_agent_credentials,
            connection_token_issuer: store.connection_token_issuer,
            connection_token_single_use: store.connection_token_single_use,
            agent_client_ca_file: None,
            internal_tls_ca_file: None,
            internal_tls_cert_file: None,
            internal_tls_key_file: None,
            internal_tls_client_auth: false,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
        }
    }
}

/// Command line; each flag falls back to its `SWITCHBOARD_*` variable, then to the config file.
#[derive(Debug, Parser, Serialize)]
#[command(name = "switchboard-session-store", version, about = "Switchboard session-store: fleet state and agent port")]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    source: ConfigArgs,
    /// Internal gRPC listen address (SessionStore + health).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Agent endpoint listen address (AgentLink over TLS + health).
    #[arg(long, env = "SWITCHBOARD_AGENT_LISTEN")]
    agent_listen: Option<SocketAddr>,
    /// `http://host:port` other replicas forward host commands to; default from POD_IP and the listen port.
    #[arg(long, env = "SWITCHBOARD_ADVERTISED_ADDRESS")]
    advertised_address: Option<String>,
    /// Unique id of this replica (owner of agent streams); default `<HOSTNAME>-<random>`.
    #[arg(long, env = "SWITCHBOARD_REPLICA_ID")]
    replica_id: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    #[serde(flatten)]
    tls: TlsArgs,
    /// Seconds between agent updates (sent to agents in the welcome).
    #[arg(long, env = "SWITCHBOARD_UPDATE_INTERVAL_SECONDS")]
    update_interval_seconds: Option<u32>,
    /// Lifetime of an agent-stream ownership lease, in seconds.
    #[arg(long, env = "SWITCHBOARD_AGENT_LEASE_SECONDS")]
    agent_lease_seconds: Option<u32>,
    /// How long a host command may take when the caller sets no timeout, in seconds.
    #[arg(long, env = "SWITCHBOARD_COMMAND_TIMEOUT_SECONDS")]
    command_timeout_seconds: Option<u64>,
    /// Whether hosts seen for the first time are open for placement.
    #[arg(long, env = "SWITCHBOARD_DEFAULT_SERVER_OPEN")]
    default_server_open: Option<bool>,
    /// Whether agents must present registered agent-client credentials (off only for tests and migrations).
    #[arg(long, env = "SWITCHBOARD_REQUIRE_AGENT_CREDENTIALS")]
    require_agent_credentials: Option<bool>,
    /// Expected `iss` of DCV connection tokens (the auth service's `issuer`).
    #[arg(long, env = "SWITCHBOARD_CONNECTION_TOKEN_ISSUER")]
    connection_token_issuer: Option<String>,
    /// Whether a DCV connection token passes the verifier only once.
    #[arg(long, env = "SWITCHBOARD_CONNECTION_TOKEN_SINGLE_USE")]
    connection_token_single_use: Option<bool>,
    /// PEM CA of agent client certificates: when set, the agent port requires a client certificate
    /// chaining to it (mutual TLS) from agents and from the DCV server calling the token verifier.
    #[arg(long, env = "SWITCHBOARD_AGENT_CLIENT_CA_FILE")]
    agent_client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    internal_tls: InternalTlsArgs,
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
    switchboard_common::tls::install_crypto_provider();

    let storage: BackendConfig = config::storage_choice(
        settings.redis_url.as_deref(),
        &settings.redis_key_prefix,
        settings.data_dir.as_deref(),
    )?
    .into();
    let identity = config::server_identity(
        settings.tls_cert_file.as_deref(),
        settings.tls_key_file.as_deref(),
        settings.dev_tls_dir.as_deref(),
        &settings.tls_names,
    )?;
    let agent_client_ca_pem =
        config::client_ca(settings.agent_client_ca_file.as_deref()).context("agent_client_ca_file")?;
    let backend = open_backend(&storage).await.context("opening the store")?;

    let grpc =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    let agent = tokio::net::TcpListener::bind(settings.agent_listen)
        .await
        .with_context(|| format!("binding {}", settings.agent_listen))?;
    let pod_ip = std::env::var("POD_IP").ok();
    let mut advertised_address =
        config::advertised_url(settings.advertised_address.as_deref(), grpc.local_addr()?, pod_ip.as_deref())?;
    // With internal TLS this replica's gRPC port speaks TLS: replicas forwarding to it must dial https.
    if switchboard_common::internal_tls::configured().is_some_and(|tls| tls.identity.is_some())
        && let Some(rest) = advertised_address.strip_prefix("http://")
    {
        advertised_address = format!("https://{rest}");
    }
    let replica_id = settings.replica_id.unwrap_or_else(default_replica_id);
    let store_config = switchboard_session_store::StoreConfig {
        replica_id,
        advertised_address,
        update_interval_seconds: settings.update_interval_seconds,
        agent_lease_seconds: settings.agent_lease_seconds,
        command_timeout: Duration::from_secs(settings.command_timeout_seconds),
        default_server_open: settings.default_server_open,
        require_agent_credentials: settings.require_agent_credentials,
        connection_token_issuer: settings.connection_token_issuer,
        connection_token_single_use: settings.connection_token_single_use,
        agent_client_ca_pem,
        ..Default::default()
    };
    tracing::info!(
        listen = %grpc.local_addr()?,
        agent_listen = %agent.local_addr()?,
        advertised = %store_config.advertised_address,
        replica_id = %store_config.replica_id,
        "session-store starting"
    );
    let listeners = switchboard_session_store::Listeners { grpc, agent };
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_session_store::serve(store_config, listeners, backend, Some(identity), shutdown).await?;
    Ok(())
}

/// `<pod or host name>-<8 random hex digits>`: unique per process start, readable in logs.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "session-store".to_owned());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
