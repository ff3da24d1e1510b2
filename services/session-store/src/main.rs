//! `switchboard-session-store`: one session-store replica as its own process. Thin: load settings
//! (defaults → `--config` file → `SWITCHBOARD_*` → flags, `switchboard_common::config`), open storage, bind
//! both ports, call [`switchboard_session_store::serve`]. Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, InternalTlsSettings, StorageSettings, TelemetrySettings, TlsSettings};
use switchboard_session_store::StoreConfig;
use switchboard_store::{BackendConfig, open_backend};

/// Every setting of the binary: its own, then session-store's and the shared ones (flattened: one flat
/// set of file keys and flags).
#[derive(Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
struct Settings {
    /// Internal gRPC listen address (SessionStore + health).
    #[arg(long)]
    listen: SocketAddr,
    /// Agent endpoint listen address (AgentLink over TLS + health).
    #[arg(long)]
    agent_listen: SocketAddr,
    /// `http://host:port` other replicas forward host commands to; default from POD_IP and the listen port.
    #[arg(long)]
    advertised_address: Option<String>,
    /// Unique id of this replica (owner of agent streams); default `<HOSTNAME>-<random>`.
    #[arg(long)]
    replica_id: Option<String>,
    /// PEM CA of agent client certificates: when set, the agent port requires a client certificate
    /// chaining to it (mutual TLS) from agents and from the DCV server calling the token verifier.
    #[arg(long)]
    agent_client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    store: StoreConfig,
    #[command(flatten)]
    #[serde(flatten)]
    storage: StorageSettings,
    #[command(flatten)]
    #[serde(flatten)]
    tls: TlsSettings,
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
            listen: "127.0.0.1:7003".parse().expect("valid address"),
            agent_listen: "0.0.0.0:8445".parse().expect("valid address"),
            advertised_address: None,
            replica_id: None,
            agent_client_ca_file: None,
            store: StoreConfig::default(),
            storage: StorageSettings::default(),
            tls: TlsSettings::default(),
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
    let command = clap::Command::new("switchboard-session-store")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Switchboard session-store: fleet state and agent port");
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
    let identity = settings.tls.identity()?;
    let agent_client_ca =
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
    let store_config = StoreConfig { replica_id, advertised_address, agent_client_ca, ..settings.store };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        let command = config::command::<Settings>(clap::Command::new("switchboard-session-store"));
        let doc = include_str!("../../../docs/configuration.md");
        let problems = config::undocumented(&command, doc, &["session-store", "all four"]);
        assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
    }
}
