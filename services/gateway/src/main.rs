//! `switchboard-gateway`: one gateway replica as its own process. Thin: load settings (defaults →
//! `--config` file → `SWITCHBOARD_*` → flags), set up telemetry, load TLS, bind, call
//! [`switchboard_gateway::serve`]. Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, ConfigArgs, InternalTlsArgs, LogArgs, TlsArgs};
use switchboard_common::grpc::replica_channel;
use switchboard_common::telemetry::{self, LogFormat};
use switchboard_gateway::limits::{LimitsConfig, RateLimit};
use switchboard_gateway::verify::VerifierConfig;
use switchboard_gateway::{GatewayConfig, Upstreams};
use switchboard_proto::{
    auth_client::AuthClient, placement_client::PlacementClient, session_store_client::SessionStoreClient,
};

/// Every setting; field names are the config file's keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    listen: SocketAddr,
    auth_url: String,
    placement_url: String,
    store_url: String,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    dev_tls_dir: Option<PathBuf>,
    tls_names: Vec<String>,
    max_body_bytes: usize,
    request_timeout_seconds: u64,
    max_batch: usize,
    resolver_listen: Option<SocketAddr>,
    resolver_client_ca_file: Option<PathBuf>,
    session_screenshot_max_width: u32,
    session_screenshot_max_height: u32,
    session_screenshot_format: String,
    command_timeout_seconds: u64,
    internal_tls_ca_file: Option<PathBuf>,
    internal_tls_cert_file: Option<PathBuf>,
    internal_tls_key_file: Option<PathBuf>,
    internal_tls_client_auth: bool,
    max_header_bytes: usize,
    token_rate_per_minute: u32,
    token_rate_burst: u32,
    token_rate_overall_per_minute: u32,
    token_rate_overall_burst: u32,
    api_rate_per_minute: u32,
    api_rate_burst: u32,
    client_cache_seconds: u64,
    key_set_refresh_seconds: u64,
    log_format: LogFormat,
    log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        let gateway = GatewayConfig::default();
        Self {
            listen: "0.0.0.0:8443".parse().expect("valid address"),
            auth_url: "http://127.0.0.1:7001".to_owned(),
            placement_url: "http://127.0.0.1:7002".to_owned(),
            store_url: "http://127.0.0.1:7003".to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
            dev_tls_dir: None,
            tls_names: Vec::new(),
            max_body_bytes: gateway.max_body_bytes,
            request_timeout_seconds: gateway.request_timeout.as_secs(),
            max_batch: gateway.max_batch,
            resolver_listen: None,
            resolver_client_ca_file: None,
            session_screenshot_max_width: gateway.screenshot_max_width,
            session_screenshot_max_height: gateway.screenshot_max_height,
            session_screenshot_format: gateway.screenshot_format,
            command_timeout_seconds: gateway.command_timeout.as_secs(),
            internal_tls_ca_file: None,
            internal_tls_cert_file: None,
            internal_tls_key_file: None,
            internal_tls_client_auth: false,
            max_header_bytes: gateway.limits.max_header_bytes,
            token_rate_per_minute: gateway.limits.token_per_address.per_minute,
            token_rate_burst: gateway.limits.token_per_address.burst,
            token_rate_overall_per_minute: gateway.limits.token_overall.per_minute,
            token_rate_overall_burst: gateway.limits.token_overall.burst,
            api_rate_per_minute: gateway.limits.api_per_client.per_minute,
            api_rate_burst: gateway.limits.api_per_client.burst,
            client_cache_seconds: gateway.client_cache_ttl.as_secs(),
            key_set_refresh_seconds: gateway.verifier.key_set_max_age.as_secs(),
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
        }
    }
}

/// Command line; each flag falls back to its `SWITCHBOARD_*` variable, then to the config file.
#[derive(Debug, Parser, Serialize)]
#[command(name = "switchboard-gateway", version, about = "Switchboard gateway: the REST API over HTTPS")]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    source: ConfigArgs,
    /// HTTPS listen address of the REST API.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// auth replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long, env = "SWITCHBOARD_AUTH_URL")]
    auth_url: Option<String>,
    /// placement replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long, env = "SWITCHBOARD_PLACEMENT_URL")]
    placement_url: Option<String>,
    /// session-store replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long, env = "SWITCHBOARD_STORE_URL")]
    store_url: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    tls: TlsArgs,
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Longest a request may take (then 504), in seconds; also the drain time at shutdown.
    #[arg(long, env = "SWITCHBOARD_REQUEST_TIMEOUT_SECONDS")]
    request_timeout_seconds: Option<u64>,
    /// Most items in one createSessions or deleteSessions request.
    #[arg(long, env = "SWITCHBOARD_MAX_BATCH")]
    max_batch: Option<usize>,
    /// HTTPS address of the Connection Gateway session resolver (`POST /resolveSession`), e.g.
    /// `0.0.0.0:8447`; off when unset.
    #[arg(long, env = "SWITCHBOARD_RESOLVER_LISTEN")]
    resolver_listen: Option<SocketAddr>,
    /// PEM CA of the session resolver's clients: when set, the resolver requires a client certificate
    /// chaining to it (mutual TLS), i.e. from the Connection Gateway.
    #[arg(long, env = "SWITCHBOARD_RESOLVER_CLIENT_CA_FILE")]
    resolver_client_ca_file: Option<PathBuf>,
    /// Default largest screenshot width (getSessionScreenshots without MaxWidth).
    #[arg(long, env = "SWITCHBOARD_SESSION_SCREENSHOT_MAX_WIDTH")]
    session_screenshot_max_width: Option<u32>,
    /// Default largest screenshot height (getSessionScreenshots without MaxHeight).
    #[arg(long, env = "SWITCHBOARD_SESSION_SCREENSHOT_MAX_HEIGHT")]
    session_screenshot_max_height: Option<u32>,
    /// Screenshot image format: `png` or `jpeg`.
    #[arg(long, env = "SWITCHBOARD_SESSION_SCREENSHOT_FORMAT")]
    session_screenshot_format: Option<String>,
    /// How long a host command (permissions, screenshot) may take, in seconds.
    #[arg(long, env = "SWITCHBOARD_COMMAND_TIMEOUT_SECONDS")]
    command_timeout_seconds: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    internal_tls: InternalTlsArgs,
    /// Largest total size of request headers in bytes (larger: 431).
    #[arg(long, env = "SWITCHBOARD_MAX_HEADER_BYTES")]
    max_header_bytes: Option<usize>,
    /// Token requests per minute per peer address, per replica (0: no limit).
    #[arg(long, env = "SWITCHBOARD_TOKEN_RATE_PER_MINUTE")]
    token_rate_per_minute: Option<u32>,
    /// Token requests per peer address allowed at once.
    #[arg(long, env = "SWITCHBOARD_TOKEN_RATE_BURST")]
    token_rate_burst: Option<u32>,
    /// Token requests per minute over all callers, per replica (0: no limit).
    #[arg(long, env = "SWITCHBOARD_TOKEN_RATE_OVERALL_PER_MINUTE")]
    token_rate_overall_per_minute: Option<u32>,
    /// Token requests over all callers allowed at once.
    #[arg(long, env = "SWITCHBOARD_TOKEN_RATE_OVERALL_BURST")]
    token_rate_overall_burst: Option<u32>,
    /// API calls per minute per client, per replica (0: no limit).
    #[arg(long, env = "SWITCHBOARD_API_RATE_PER_MINUTE")]
    api_rate_per_minute: Option<u32>,
    /// API calls per client allowed at once.
    #[arg(long, env = "SWITCHBOARD_API_RATE_BURST")]
    api_rate_burst: Option<u32>,
    /// Seconds a client's policy (existence, scope) is cached: the revocation bound.
    #[arg(long, env = "SWITCHBOARD_CLIENT_CACHE_SECONDS")]
    client_cache_seconds: Option<u64>,
    /// Seconds after which the token key set (and external JWKS) is fetched again.
    #[arg(long, env = "SWITCHBOARD_KEY_SET_REFRESH_SECONDS")]
    key_set_refresh_seconds: Option<u64>,
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
    let identity = config::server_identity(
        settings.tls_cert_file.as_deref(),
        settings.tls_key_file.as_deref(),
        settings.dev_tls_dir.as_deref(),
        &settings.tls_names,
    )?;
    let upstreams = Upstreams {
        auth: AuthClient::new(replica_channel(&settings.auth_url).context("auth_url")?),
        placement: PlacementClient::new(replica_channel(&settings.placement_url).context("placement_url")?),
        store: SessionStoreClient::new(replica_channel(&settings.store_url).context("store_url")?),
    };
    let gateway_config = GatewayConfig {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: Duration::from_secs(settings.request_timeout_seconds),
        max_batch: settings.max_batch,
        screenshot_max_width: settings.session_screenshot_max_width,
        screenshot_max_height: settings.session_screenshot_max_height,
        screenshot_format: settings.session_screenshot_format,
        command_timeout: Duration::from_secs(settings.command_timeout_seconds),
        limits: LimitsConfig {
            token_per_address: RateLimit {
                per_minute: settings.token_rate_per_minute,
                burst: settings.token_rate_burst,
            },
            token_overall: RateLimit {
                per_minute: settings.token_rate_overall_per_minute,
                burst: settings.token_rate_overall_burst,
            },
            api_per_client: RateLimit { per_minute: settings.api_rate_per_minute, burst: settings.api_rate_burst },
            max_header_bytes: settings.max_header_bytes,
        },
        verifier: VerifierConfig {
            key_set_max_age: Duration::from_secs(settings.key_set_refresh_seconds),
            ..VerifierConfig::default()
        },
        client_cache_ttl: Duration::from_secs(settings.client_cache_seconds),
    };
    gateway_config.validate().map_err(anyhow::Error::msg)?;
    let bind = |addr: SocketAddr| -> anyhow::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    let listener = bind(settings.listen)?;
    let resolver = settings.resolver_listen.map(bind).transpose()?;
    let resolver_client_ca =
        config::client_ca(settings.resolver_client_ca_file.as_deref()).context("resolver_client_ca_file")?;
    if resolver_client_ca.is_some() && resolver.is_none() {
        anyhow::bail!("resolver_client_ca_file is set but resolver_listen is not");
    }
    tracing::info!(listen = %listener.local_addr()?, resolver = ?settings.resolver_listen, "gateway starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    let resolver_task = resolver.map(|listener| {
        let (identity, upstreams, shutdown) = (identity.clone(), upstreams.clone(), shutdown.clone());
        tokio::spawn(switchboard_gateway::resolver::serve(
            listener,
            Some(identity),
            resolver_client_ca,
            upstreams,
            shutdown,
        ))
    });
    switchboard_gateway::serve(gateway_config, listener, Some(identity), upstreams, shutdown).await?;
    if let Some(task) = resolver_task {
        task.await.context("resolver task")??;
    }
    Ok(())
}
