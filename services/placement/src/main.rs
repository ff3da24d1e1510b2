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
    create_sessions_number_of_retries_on_failure: u32,
    /// Former name of `create_sessions_number_of_retries_on_failure`: still
    /// read (file, `--retries-on-failure`, `SWITCHBOARD_RETRIES_ON_FAILURE`),
    /// never written.
    #[serde(skip_serializing)]
    retries_on_failure: Option<u32>,
    autorun_file_arguments_max_size: usize,
    autorun_file_arguments_max_argument_length: usize,
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
            create_sessions_number_of_retries_on_failure: placement.retries_on_failure,
            retries_on_failure: None,
            autorun_file_arguments_max_size: placement.autorun_args_max,
            autorun_file_arguments_max_argument_length: placement.autorun_arg_max_len,
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
    #[arg(long, env = "SWITCHBOARD_CREATE_SESSIONS_NUMBER_OF_RETRIES_ON_FAILURE")]
    create_sessions_number_of_retries_on_failure: Option<u32>,
    /// Former name of `--create-sessions-number-of-retries-on-failure`.
    #[arg(long, env = "SWITCHBOARD_RETRIES_ON_FAILURE", hide = true)]
    retries_on_failure: Option<u32>,
    /// Most `AutorunFileArguments` items accepted per session.
    #[arg(long, env = "SWITCHBOARD_AUTORUN_FILE_ARGUMENTS_MAX_SIZE")]
    autorun_file_arguments_max_size: Option<usize>,
    /// Longest accepted `AutorunFileArguments` item, in characters.
    #[arg(long, env = "SWITCHBOARD_AUTORUN_FILE_ARGUMENTS_MAX_ARGUMENT_LENGTH")]
    autorun_file_arguments_max_argument_length: Option<usize>,
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
    let placement_config = placement_config(&settings)?;
    let store = SessionStoreClient::new(replica_channel(&settings.store_url).context("store_url")?);
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = %settings.store_url, "placement starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_placement::serve(placement_config, listener, store, shutdown).await?;
    Ok(())
}

/// The placement settings, checked.
fn placement_config(settings: &Settings) -> anyhow::Result<PlacementConfig> {
    let default = PlacementConfig::default();
    let retries_on_failure = match settings.retries_on_failure {
        None => settings.create_sessions_number_of_retries_on_failure,
        // The former name alone (the new one is at its default, or agrees).
        Some(old)
            if settings.create_sessions_number_of_retries_on_failure == default.retries_on_failure
                || settings.create_sessions_number_of_retries_on_failure == old =>
        {
            old
        }
        Some(_) => anyhow::bail!(
            "set create_sessions_number_of_retries_on_failure or its former name retries_on_failure, not both"
        ),
    };
    anyhow::ensure!(settings.autorun_file_arguments_max_size > 0, "autorun_file_arguments_max_size must be above 0");
    anyhow::ensure!(
        settings.autorun_file_arguments_max_argument_length > 0,
        "autorun_file_arguments_max_argument_length must be above 0"
    );
    Ok(PlacementConfig {
        retries_on_failure,
        autorun_args_max: settings.autorun_file_arguments_max_size,
        autorun_arg_max_len: settings.autorun_file_arguments_max_argument_length,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from flags (and no file), as `main` loads them.
    fn settings(flags: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("switchboard-placement").chain(flags.iter().copied()))?;
        Ok(config::load::<Settings>(None, &cli)?)
    }

    fn config_of(flags: &[&str]) -> anyhow::Result<PlacementConfig> {
        placement_config(&settings(flags)?)
    }

    /// Settings from a config file's text.
    fn from_file(text: &str) -> anyhow::Result<PlacementConfig> {
        let path = std::env::temp_dir().join(format!("placement-settings-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text)?;
        let cli = Cli::try_parse_from(["switchboard-placement"])?;
        let loaded = config::load::<Settings>(Some(&path), &cli);
        std::fs::remove_file(&path)?;
        placement_config(&loaded?)
    }

    #[test]
    fn defaults_follow_the_placement_config() {
        let config = config_of(&[]).unwrap();
        assert_eq!(
            (config.retries_on_failure, config.autorun_args_max, config.autorun_arg_max_len, config.queue_max_size),
            (2, 50, 150, 1000)
        );
        let dumped = config::dump(&Settings::default()).unwrap();
        assert!(dumped.contains("create_sessions_number_of_retries_on_failure = 2"), "{dumped}");
        assert!(!dumped.contains("\nretries_on_failure"), "the former name is never written: {dumped}");
    }

    #[test]
    fn retries_take_the_original_name_and_the_former_one() {
        let config = config_of(&["--create-sessions-number-of-retries-on-failure", "5"]).unwrap();
        assert_eq!(config.retries_on_failure, 5);
        assert_eq!(config_of(&["--retries-on-failure", "0"]).unwrap().retries_on_failure, 0);
        assert_eq!(from_file("create_sessions_number_of_retries_on_failure = 4\n").unwrap().retries_on_failure, 4);
        assert_eq!(from_file("retries_on_failure = 3\n").unwrap().retries_on_failure, 3);
        let both = config_of(&["--create-sessions-number-of-retries-on-failure", "5", "--retries-on-failure", "1"]);
        assert!(both.unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn autorun_limits_are_settings_and_must_be_positive() {
        let flags = ["--autorun-file-arguments-max-size", "3", "--autorun-file-arguments-max-argument-length", "20"];
        let config = config_of(&flags).unwrap();
        assert_eq!((config.autorun_args_max, config.autorun_arg_max_len), (3, 20));
        let file = "autorun_file_arguments_max_size = 7\nautorun_file_arguments_max_argument_length = 9\n";
        let config = from_file(file).unwrap();
        assert_eq!((config.autorun_args_max, config.autorun_arg_max_len), (7, 9));
        let zero = config_of(&["--autorun-file-arguments-max-size", "0"]).unwrap_err();
        assert_eq!(zero.to_string(), "autorun_file_arguments_max_size must be above 0");
        let zero = config_of(&["--autorun-file-arguments-max-argument-length", "0"]).unwrap_err();
        assert_eq!(zero.to_string(), "autorun_file_arguments_max_argument_length must be above 0");
    }
}
