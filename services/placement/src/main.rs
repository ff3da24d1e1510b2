//! `switchboard-placement`: one placement replica as its own process. Thin: load settings (defaults →
//! `--config` file → `SWITCHBOARD_*` → flags, `switchboard_common::config`), bind, call
//! [`switchboard_placement::serve`]. Settings are documented in `docs/configuration.md`.

use std::net::SocketAddr;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, InternalTlsSettings, StorageSettings, TelemetrySettings};
use switchboard_common::grpc::replica_channel;
use switchboard_placement::PlacementConfig;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_store::{BackendConfig, open_backend};

/// Every setting of the binary: its own, then placement's and the shared ones (flattened: one flat set
/// of file keys and flags).
#[derive(Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
struct Settings {
    /// gRPC listen address (Placement + health).
    #[arg(long)]
    listen: SocketAddr,
    /// session-store replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long)]
    store_url: String,
    /// Most items in one CreateSessions call.
    #[arg(long)]
    max_batch: usize,
    /// Former name of `create_sessions_number_of_retries_on_failure`: still read (file, flag, variable),
    /// never written.
    #[arg(long, hide = true)]
    #[serde(skip_serializing)]
    retries_on_failure: Option<u32>,
    #[command(flatten)]
    #[serde(flatten)]
    placement: PlacementConfig,
    /// Where the `Idempotency-Key` records of CreateSessions live: the store auth and session-store use.
    #[command(flatten)]
    #[serde(flatten)]
    storage: StorageSettings,
    #[command(flatten)]
    #[serde(flatten)]
    internal_tls: InternalTlsSettings,
    #[command(flatten)]
    #[serde(flatten)]
    telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7002".parse().expect("valid address"),
            store_url: "http://127.0.0.1:7003".to_owned(),
            max_batch: PlacementConfig::default().max_batch,
            retries_on_failure: None,
            placement: PlacementConfig::default(),
            storage: StorageSettings::default(),
            internal_tls: InternalTlsSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl config::Settings for Settings {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }

    fn internal_tls(&self) -> Option<&InternalTlsSettings> {
        Some(&self.internal_tls)
    }
}

/// The command line's name and text.
fn command() -> clap::Command {
    clap::Command::new("switchboard-placement")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Switchboard placement: validation and host choice")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = config::bootstrap::<Settings>(command())? else {
        return Ok(());
    };
    let served = run(settings).await;
    switchboard_common::telemetry::shutdown().await;
    served
}

/// Everything after the settings: bind, serve until a signal.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let placement = PlacementConfig { max_batch: settings.max_batch, ..settings.placement };
    let placement_config = placement_config(placement, settings.retries_on_failure)?;
    let storage: BackendConfig = settings.storage.choice()?.into();
    let store = SessionStoreClient::new(replica_channel(&settings.store_url).context("store_url")?);
    let backend = open_backend(&storage).await.context("opening the store")?;
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, store = %settings.store_url, "placement starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_placement::serve(placement_config, listener, store, backend.clone(), backend, shutdown).await?;
    Ok(())
}

/// The placement settings, checked, with the former name of the retries setting applied.
fn placement_config(mut placement: PlacementConfig, former_retries: Option<u32>) -> anyhow::Result<PlacementConfig> {
    let default = PlacementConfig::default().create_sessions_number_of_retries_on_failure;
    if let Some(old) = former_retries {
        let current = placement.create_sessions_number_of_retries_on_failure;
        anyhow::ensure!(
            current == default || current == old,
            "set create_sessions_number_of_retries_on_failure or its former name retries_on_failure, not both"
        );
        placement.create_sessions_number_of_retries_on_failure = old;
    }
    placement.validate().map_err(anyhow::Error::msg)?;
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from flags (and no file), as `main` loads them.
    fn settings(flags: &[&str]) -> anyhow::Result<Settings> {
        let args = std::iter::once("switchboard-placement").chain(flags.iter().copied());
        Ok(config::parse::<Settings, _, _>(command(), args)?.0)
    }

    fn config_of(flags: &[&str]) -> anyhow::Result<PlacementConfig> {
        let settings = settings(flags)?;
        placement_config(settings.placement, settings.retries_on_failure)
    }

    /// Settings from a config file's text.
    fn from_file(text: &str) -> anyhow::Result<PlacementConfig> {
        let path = std::env::temp_dir().join(format!("placement-settings-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text)?;
        let loaded = config_of(&["--config", path.to_str().unwrap()]);
        std::fs::remove_file(&path)?;
        loaded
    }

    #[test]
    fn defaults_follow_the_placement_config() {
        let config = config_of(&[]).unwrap();
        assert_eq!(
            (
                config.create_sessions_number_of_retries_on_failure,
                config.autorun_file_arguments_max_size,
                config.autorun_file_arguments_max_argument_length,
                config.create_sessions_queue_max_size
            ),
            (2, 50, 150, 1000)
        );
        let dumped = config::dump(&Settings::default()).unwrap();
        assert!(dumped.contains("create_sessions_number_of_retries_on_failure = 2"), "{dumped}");
        assert!(dumped.contains("strategy = \"spread\""), "{dumped}");
        assert!(!dumped.contains("\nretries_on_failure"), "the former name is never written: {dumped}");
    }

    #[test]
    fn retries_take_the_original_name_and_the_former_one() {
        let config = config_of(&["--create-sessions-number-of-retries-on-failure", "5"]).unwrap();
        assert_eq!(config.create_sessions_number_of_retries_on_failure, 5);
        assert_eq!(config_of(&["--retries-on-failure", "0"]).unwrap().create_sessions_number_of_retries_on_failure, 0);
        let from = |text| from_file(text).unwrap().create_sessions_number_of_retries_on_failure;
        assert_eq!(from("create_sessions_number_of_retries_on_failure = 4\n"), 4);
        assert_eq!(from("retries_on_failure = 3\n"), 3);
        let both = config_of(&["--create-sessions-number-of-retries-on-failure", "5", "--retries-on-failure", "1"]);
        assert!(both.unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn autorun_limits_are_settings_and_must_be_positive() {
        let flags = ["--autorun-file-arguments-max-size", "3", "--autorun-file-arguments-max-argument-length", "20"];
        let config = config_of(&flags).unwrap();
        assert_eq!(
            (config.autorun_file_arguments_max_size, config.autorun_file_arguments_max_argument_length),
            (3, 20)
        );
        let file = "autorun_file_arguments_max_size = 7\nautorun_file_arguments_max_argument_length = 9\n";
        let config = from_file(file).unwrap();
        assert_eq!((config.autorun_file_arguments_max_size, config.autorun_file_arguments_max_argument_length), (7, 9));
        let zero = config_of(&["--autorun-file-arguments-max-size", "0"]).unwrap_err();
        assert_eq!(zero.to_string(), "autorun_file_arguments_max_size must be above 0");
        let zero = config_of(&["--autorun-file-arguments-max-argument-length", "0"]).unwrap_err();
        assert_eq!(zero.to_string(), "autorun_file_arguments_max_argument_length must be above 0");
    }

    #[test]
    fn flattened_strategy_settings_are_flat_keys() {
        let config = from_file("strategy = 'pack'\nkeep_scarce_hosts_free = false\nrare_os_percent = 5\n").unwrap();
        assert_eq!(config.strategy.strategy, switchboard_placement::place::Strategy::Pack);
        assert!(!config.strategy.keep_scarce_hosts_free);
        assert_eq!(config.strategy.rare_os_percent, 5);
        assert!(from_file("rare_os_percent = 101\n").is_err());
        assert!(from_file("strategyy = 'pack'\n").unwrap_err().to_string().contains("unknown setting"));
    }

    #[test]
    fn every_setting_is_documented() {
        let command = config::command::<Settings>(command());
        let doc = include_str!("../../../docs/configuration.md");
        let problems = config::undocumented(&command, doc, &["placement", "all four"]);
        assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
    }
}
