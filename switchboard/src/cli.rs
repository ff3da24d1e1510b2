//! The `switchboard` command line: `up` and the admin commands.

use std::{net::SocketAddr, path::PathBuf, time::Duration, time::Instant};

use clap::{Args, Parser, Subcommand};
use switchboard_common::telemetry::LogFormat;

use crate::{
    admin::{AdminChannel, explain},
    cluster::{Cluster, UpConfig},
};

/// Switchboard: a session broker for Amazon DCV, wire-compatible with DCV Session Manager.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs every service in this process, with simulated DCV hosts.
    Up(UpArgs),
    /// Registers an API client and prints its credentials (two lines).
    RegisterApiClient {
        /// A name for the client.
        #[arg(long)]
        client_name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Lists registered API clients.
    DescribeApiClients {
        #[command(flatten)]
        target: Target,
    },
    /// Removes an API client; it can no longer get tokens.
    UnregisterApiClient {
        /// The client's id.
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Agent enrolment: software statements and agent clients.
    #[command(flatten)]
    Agents(crate::agents_cli::AgentCommand),
}

/// Which running cluster an admin command talks to.
#[derive(Debug, Args)]
pub struct Target {
    /// The data dir of the running cluster (holds admin.json).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-data")]
    pub data_dir: PathBuf,
}

/// Options of `switchboard up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where durable state, TLS material and admin.json live.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-data")]
    pub data_dir: PathBuf,
    /// Simulated DCV hosts to run in this process.
    #[arg(long, env = "SWITCHBOARD_SIM_HOSTS", default_value_t = 2)]
    pub sim_hosts: usize,
    /// Client API (HTTPS) listen address.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Agent endpoint listen address.
    #[arg(long, env = "SWITCHBOARD_AGENT_LISTEN", default_value = "127.0.0.1:8445")]
    pub agent_listen: SocketAddr,
    /// Seconds between agent updates.
    #[arg(long, env = "SWITCHBOARD_UPDATE_INTERVAL", default_value_t = 10)]
    pub update_interval: u32,
    /// Extra DNS names or IPs for the generated server certificate.
    #[arg(long = "tls-name", env = "SWITCHBOARD_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Connection Gateway session resolver (HTTPS, `POST /resolveSession`) listen address, or `off`.
    #[arg(long, env = "SWITCHBOARD_RESOLVER_LISTEN", default_value = "127.0.0.1:8447")]
    pub resolver_listen: String,
    /// Log format: pretty or json (filter with RUST_LOG).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", default_value = "pretty", value_parser = parse_log_format)]
    pub log_format: LogFormat,
}

fn parse_optional_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|error| format!("{error}; use host:port or off"))
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format {other:?}; use pretty or json")),
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::RegisterApiClient { client_name, target } => {
            let channel = AdminChannel::read(&target.data_dir)?;
            let request = switchboard_proto::RegisterApiClientRequest { client_name };
            let response = channel
                .client()?
                .register_api_client(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            // Exactly two lines: existing tooling parses this format.
            println!("client-id: {}", response.client_id);
            println!("client-password: {}", response.client_secret);
            Ok(())
        }
        Command::DescribeApiClients { target } => {
            let channel = AdminChannel::read(&target.data_dir)?;
            let response = channel
                .client()?
                .list_api_clients(switchboard_proto::ListApiClientsRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            for client in response.clients {
                let created = switchboard_common::time::rfc3339_ms(client.created_unix_ms).unwrap_or_default();
                println!("client-id: {}  client-name: {}  created: {created}", client.client_id, client.client_name);
            }
            Ok(())
        }
        Command::Agents(command) => crate::agents_cli::run(command).await,
        Command::UnregisterApiClient { client_id, target } => {
            let channel = AdminChannel::read(&target.data_dir)?;
            let request = switchboard_proto::UnregisterApiClientRequest { client_id: client_id.clone() };
            channel
                .client()?
                .unregister_api_client(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?;
            println!("unregistered client-id: {client_id}");
            Ok(())
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    switchboard_common::telemetry::init("info", args.log_format);
    let started = Instant::now();
    let config = UpConfig {
        data_dir: args.data_dir.clone(),
        sim_hosts: args.sim_hosts,
        listen: args.listen,
        agent_listen: args.agent_listen,
        update_interval_seconds: args.update_interval,
        tls_names: args.tls_names,
        resolver_listen: parse_optional_addr(&args.resolver_listen).map_err(anyhow::Error::msg)?,
    };
    let cluster = Cluster::start(config).await?;
    let shutdown = switchboard_common::shutdown::on_signals();
    let token = cluster.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        token.cancel();
    });
    cluster.wait_ready(args.sim_hosts, Duration::from_secs(10)).await?;
    print_banner(&cluster, &args.data_dir, args.sim_hosts, started.elapsed());
    cluster.run_until_stopped().await
}

fn print_banner(cluster: &Cluster, data_dir: &std::path::Path, hosts: usize, elapsed: Duration) {
    let ca = cluster.ca_path.display();
    let dir = data_dir.display();
    let api = &cluster.api_url;
    println!(
        "\nSwitchboard is ready in {:.2} s\n\
         \x20 REST API         {api}\n\
         \x20 CA certificate   {ca}\n\
         \x20 agent endpoint   localhost:{agent} ({hosts} simulated hosts connected)\n\
         \x20 session resolver {resolver}\n\
         \n\
         Next, in another terminal:\n\
         \x20 1. credentials:  cargo run --release --bin switchboard -- register-api-client --client-name demo --data-dir {dir}\n\
         \x20 2. a token:      curl --cacert {ca} -u \"$CLIENT_ID:$CLIENT_PASSWORD\" -X POST \\\n\
         \x20                    -H 'Content-Type: application/x-www-form-urlencoded' '{api}/oauth2/token?grant_type=client_credentials'\n\
         \x20 3. the API:      see the walkthrough in README.md\n\
         Ctrl-C stops (a second Ctrl-C exits at once).\n",
        elapsed.as_secs_f64(),
        agent = cluster.agent_addr.port(),
        resolver = cluster
            .resolver_addr
            .map_or_else(|| "off".to_owned(), |addr| format!("https://localhost:{}/resolveSession", addr.port())),
    );
}
