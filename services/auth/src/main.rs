//! `switchboard-auth`: one auth replica as its own process. Thin: load settings (defaults → `--config`
//! file → `SWITCHBOARD_*` → flags, `switchboard_common::config`), open storage, bind, call
//! [`switchboard_auth::serve`]. Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_auth::AuthConfig;
use switchboard_common::config::{self, InternalTlsSettings, StorageSettings, TelemetrySettings};
use switchboard_store::{BackendConfig, open_backend};

/// Every setting of the binary: its own, then auth's and the shared ones (flattened: one flat set of
/// file keys and flags).
#[derive(Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
struct Settings {
    /// gRPC listen address (Auth + health).
    #[arg(long)]
    listen: SocketAddr,
    /// File holding the admin token that guards the client registry (absent: admin RPCs disabled).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    auth: AuthConfig,
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
            listen: "127.0.0.1:7001".parse().expect("valid address"),
            admin_token_file: None,
            auth: AuthConfig::default(),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = clap::Command::new("switchboard-auth")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Switchboard auth service (API clients, keys, tokens)");
    let Some(settings) = config::bootstrap::<Settings>(command)? else {
        return Ok(());
    };
    let served = run(settings).await;
    switchboard_common::telemetry::shutdown().await;
    served
}

/// Everything after the settings: bind, serve until a signal.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let storage: BackendConfig = settings.storage.choice()?.into();
    let mut auth_config = settings.auth;
    auth_config.validate().map_err(anyhow::Error::msg)?;
    auth_config.admin_token_sha256 = match &settings.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(!token.trim().is_empty(), "admin token file {} is empty", path.display());
            Some(switchboard_auth::admin_token_hash(token.trim()))
        }
        None => None,
    };
    let backend = open_backend(&storage).await.context("opening the store")?;
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, admin = auth_config.admin_token_sha256.is_some(), "auth starting");
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_auth::serve(
        auth_config,
        listener,
        backend.clone(),
        backend.clone(),
        backend.clone(),
        backend,
        shutdown,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        let command = config::command::<Settings>(clap::Command::new("switchboard-auth"));
        let doc = include_str!("../../../docs/configuration.md");
        let problems = config::undocumented(&command, doc, &["auth", "all four"]);
        assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
    }
}
