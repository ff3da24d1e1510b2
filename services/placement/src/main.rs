//! `switchboard-placement`: one placement replica as its own process. Thin: load settings (defaults →
//! `--config` file → `SWITCHBOARD_*` → flags), set up telemetry, bind, call [`switchboard_placement::serve`].
//! Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, time::Duration};

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, ConfigArgs, InternalTlsArgs, LogArgs};
use switchboard_common::grpc::replica_channel;
use switchboard_common::telemetry::{self, LogFormat};
use switchboard_placement::{
    PlacementConfig,
    place::{Strategy, StrategyConfig},
};
use switchboard_proto::session_store_client::SessionStoreClient;

/// Every setting; field names are the config file's keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    listen: SocketAddr,
    store_url: String,
    retries_on_failure: u32,
    max_batch: usize,
    create_timeout_seconds: u64,
    strategy: Strategy,
    keep_scarce_hosts_free: bool,
    rare_os_percent: u8,
    create_sessions_queue_max_size: u32,
    create_sessions_queue_max_time_seconds: u64,
    fleet_sync_interval_ms: u64,
    queue_poll_interval_ms: u64,
    internal_tls_ca_file: Option<PathBuf>,
    internal_tls_cert_file: Option<PathBuf>,
    internal_tls_key_file: Option<PathBuf>,
    internal_tls_client_auth: bool,
    log_format: LogFormat,
    log_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        let placement = PlacementConfig::default();
        Self {
            listen: "127.0.0.1:7002".parse().expect("valid address"),
            store_url: "http://127.0.0.1:7003".to_owned(),
            retries_on_failure: placement.retries_on_failure,
            max_batch: placement.max_batch,
            create_timeout_seconds: placement.create_timeout.as_secs(),
            strategy: placement.strategy.strategy,
            keep_scarce_hosts_free: placement.strategy.keep_scarce_hosts_free,
            rare_os_percent: placement.strategy.rare_os_percent,
            create_sessions_queue_max_size: placement.queue_max_size,
            create_sessions_queue_max_time_seconds: placement.queue_max_time.as_secs(),
            fleet_sync_interval_ms: u64::try_from(placement.fleet_sync_interval.as_millis()).unwrap_or(u64::MAX),
            queue_poll_interval_ms: u64::try_from(placement.queue_poll_interval.as_millis()).unwrap_or(u64::MAX),
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
#[command(name = "switchboard-placement", version, about = "Switchboard placement: validation and host choice")]
struct Cli {
    #[command(flatten)]
    #[serde(skip)]
    source: ConfigArgs,
    /// gRPC listen address (Placement + health).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// session-store replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long, env = "SWITCHBOARD_STORE_URL")]
    store_url: Option<String>,
    /// Other hosts tried after creation fails on one (unless the item disables retries).
    #[arg(long, env = "SWITCHBOARD_RETRIES_ON_FAILURE")]
    retries_on_failure: Option<u32>,
    /// Most items in one CreateSessions call.
    #[arg(long, env = "SWITCHBOARD_MAX_BATCH")]
    max_batch: Option<usize>,
    /// How long a host may take to create a session, in seconds.
    #[arg(long, env = "SWITCHBOARD_CREATE_TIMEOUT_SECONDS")]
    create_timeout_seconds: Option<u64>,
    /// How hosts that fit are ordered: `spread` (fewest sessions first) or `pack`.
    #[arg(long, env = "SWITCHBOARD_STRATEGY")]
    strategy: Option<Strategy>,
    /// Use scarce hosts (GPU, rare OS) only when no ordinary host fits.
    #[arg(long, env = "SWITCHBOARD_KEEP_SCARCE_HOSTS_FREE")]
    keep_scarce_hosts_free: Option<bool>,
    /// An OS family below this share of the fleet (percent) is rare.
    #[arg(long, env = "SWITCHBOARD_RARE_OS_PERCENT")]
    rare_os_percent: Option<u8>,
    /// Most requests waiting in the create-sessions queue.
    #[arg(long, env = "SWITCHBOARD_CREATE_SESSIONS_QUEUE_MAX_SIZE")]
    create_sessions_queue_max_size: Option<u32>,
    /// How long a queued request may wait, in seconds.
    #[arg(long, env = "SWITCHBOARD_CREATE_SESSIONS_QUEUE_MAX_TIME_SECONDS")]
    create_sessions_queue_max_time_seconds: Option<u64>,
    /// How often the fleet view asks session-store for changes, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_FLEET_SYNC_INTERVAL_MS")]
    fleet_sync_interval_ms: Option<u64>,
    /// How often the queue worker polls for new and timed-out requests, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_QUEUE_POLL_INTERVAL_MS")]
    queue_poll_interval_ms: Option<u64>,
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
    let placement_config = PlacementConfig {
        retries_on_failure: settings.retries_on_failure,
        max_batch: settings.max_batch,
        create_timeout: Duration::from_secs(settings.create_timeout_seconds),
        strategy: StrategyConfig {
            strategy: settings.strategy,
            keep_scarce_hosts_free: settings.keep_scarce_hosts_free,
            rare_os_percent: settings.rare_os_percent.min(100),
        },
        queue_max_size: settings.create_sessions_queue_max_size,
        queue_max_time: Duration::from_secs(settings.create_sessions_queue_max_time_seconds),
        fleet_sync_interval: Duration::from_millis(settings.fleet_sync_interval_ms.max(10)),
        queue_poll_interval: Duration::from_millis(settings.queue_poll_interval_ms.max(10)),
        ..PlacementConfig::default()
    };
    let store = SessionStoreClient::new(replica_channel(&settings.store_url).context("store_url")?);
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = %settings.store_url, "placement starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_placement::serve(placement_config, listener, store, shutdown).await?;
    Ok(())
}
