//! `switchboard-agent`: reads `agent.conf` and runs the agent until SIGTERM/SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use switchboard_agent::{AgentConfig, options_from_config, telemetry::local_host};
use switchboard_common::telemetry::{self, LogFormat};

/// Command line of the agent.
#[derive(Debug, Parser)]
#[command(version, about = "Switchboard agent: drives the DCV sessions of this host for the broker")]
struct Cli {
    /// Path of agent.conf (the original agent's format).
    #[arg(long, env = "SWITCHBOARD_AGENT_CONFIG", default_value = "/etc/dcv-session-manager-agent/agent.conf")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = AgentConfig::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    telemetry::init(config.log.level.as_deref().unwrap_or("info"), LogFormat::Pretty);
    config.log_warnings();
    switchboard_common::tls::install_crypto_provider();
    let (options, driver) = options_from_config(&config)?;
    tracing::info!(
        broker = %options.broker_url,
        fallback_brokers = options.fallback_broker_urls.len(),
        server_id = %options.server_id,
        hostname = %options.hostname,
        ip = %options.ip,
        "starting switchboard agent"
    );
    let shutdown = switchboard_common::shutdown::on_signals();
    switchboard_agent::run(options, driver, local_host, shutdown).await?;
    tracing::info!("switchboard agent stopped");
    Ok(())
}
