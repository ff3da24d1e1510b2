//! `switchboard-gateway`: one gateway replica as its own process. Thin: load settings (defaults →
//! `--config` file → `SWITCHBOARD_*` → flags, `switchboard_common::config`), load TLS, bind, call
//! [`switchboard_gateway::serve`]. Settings are documented in `docs/configuration.md`.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_common::config::{self, InternalTlsSettings, TelemetrySettings, TlsSettings};
use switchboard_common::grpc::replica_channel;
use switchboard_gateway::{GatewayConfig, Upstreams};

/// Every setting of the binary: its own, then the gateway's and the shared ones (flattened: one flat set
/// of file keys and flags).
#[derive(Debug, Serialize, Deserialize, clap::Args)]
#[serde(default)]
struct Settings {
    /// HTTPS listen address of the REST API.
    #[arg(long)]
    listen: SocketAddr,
    /// auth replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long)]
    auth_url: String,
    /// placement replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long)]
    placement_url: String,
    /// session-store replicas: comma-separated `http://host:port` URLs, or one Service URL.
    #[arg(long)]
    store_url: String,
    /// HTTPS address of the Connection Gateway session resolver (`POST /resolveSession`), e.g.
    /// `0.0.0.0:8447`; off when unset.
    #[arg(long)]
    resolver_listen: Option<SocketAddr>,
    /// PEM CA of the session resolver's clients: when set, the resolver requires a client certificate
    /// chaining to it (mutual TLS), i.e. from the Connection Gateway.
    #[arg(long)]
    resolver_client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    gateway: GatewayConfig,
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
            listen: "0.0.0.0:8443".parse().expect("valid address"),
            auth_url: "http://127.0.0.1:7001".to_owned(),
            placement_url: "http://127.0.0.1:7002".to_owned(),
            store_url: "http://127.0.0.1:7003".to_owned(),
            resolver_listen: None,
            resolver_client_ca_file: None,
            gateway: GatewayConfig::default(),
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
    let command = clap::Command::new("switchboard-gateway")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Switchboard gateway: the REST API over HTTPS");
    let Some(settings) = config::bootstrap::<Settings>(command)? else {
        return Ok(());
    };
    let served = run(settings).await;
    switchboard_common::telemetry::shutdown().await;
    served
}

/// Everything after the settings: bind, serve until a signal.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let identity = settings.tls.identity()?;
    let upstreams = Upstreams::new(
        replica_channel(&settings.auth_url).context("auth_url")?,
        replica_channel(&settings.placement_url).context("placement_url")?,
        replica_channel(&settings.store_url).context("store_url")?,
    );
    let gateway_config = settings.gateway;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        let command = config::command::<Settings>(clap::Command::new("switchboard-gateway"));
        let doc = include_str!("../../../docs/configuration.md");
        let problems = config::undocumented(&command, doc, &["gateway", "all four"]);
        assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
    }
}
