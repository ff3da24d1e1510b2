//! `switchboard-agent`: reads `agent.conf` and runs the agent until SIGTERM/SIGINT; SIGHUP re-reads the tags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use switchboard_agent::telemetry::LocalHost;
use switchboard_agent::{AgentConfig, logging, options_from_config, tags};

/// Command line of the agent.
#[derive(Debug, Parser)]
#[command(version, about = "Switchboard agent: drives the DCV sessions of this host for the broker")]
struct Cli {
    /// Path of agent.conf (the original agent's format).
    #[arg(long, env = "SWITCHBOARD_AGENT_CONFIG", default_value = "/etc/dcv-session-manager-agent/agent.conf")]
    config: PathBuf,
    /// Print the effective configuration (agent.conf with every default filled in, secrets redacted) as
    /// TOML and exit.
    #[arg(long)]
    dump_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = AgentConfig::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    if cli.dump_config {
        print!("{}", switchboard_common::config::dump(&config)?);
        return Ok(());
    }
    let _log_guard = logging::init(&config.log, &config.telemetry)?;
    config.log_warnings();
    switchboard_common::tls::install_crypto_provider();
    let (options, driver) = options_from_config(&config)?;
    let shutdown = switchboard_common::shutdown::on_signals();
    tags::reload_on_sighup(config.agent.tags_folder.clone(), options.tags.clone(), shutdown.clone())
        .context("installing the SIGHUP handler")?;
    let host = LocalHost::discover(config.agent.query_aws_metadata, config.agent.enable_query_logged_in_users).await;
    tracing::info!(
        broker = %options.broker_url,
        fallback_brokers = options.fallback_broker_urls.len(),
        server_id = %options.server_id,
        hostname = %options.hostname,
        ip = %options.ip,
        driver = ?config.agent.driver,
        gpus = host.snapshot().gpus.len(),
        "starting switchboard agent"
    );
    let ran = switchboard_agent::run(options, driver, move || host.snapshot(), shutdown).await;
    tracing::info!("switchboard agent stopped");
    switchboard_common::telemetry::shutdown().await;
    Ok(ran?)
}
