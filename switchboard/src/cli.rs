//! The `switchboard` command line: `up` and the admin commands.

use std::{path::PathBuf, time::Duration, time::Instant};

use clap::{Args, Parser, Subcommand};

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
        /// A name for the client (`-cn` as in the original broker's CLI).
        #[arg(long)]
        client_name: String,
        /// Only describe operations and connection data (no create, delete or server changes).
        #[arg(long)]
        read_only: bool,
        /// Restrict the client to sessions of these owners (repeat, or comma-separated); such a
        /// client cannot call server operations.
        #[arg(long = "allowed-owner", value_delimiter = ',')]
        allowed_owners: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Lists registered API clients.
    DescribeApiClients {
        #[command(flatten)]
        target: Target,
    },
    /// Removes an API client; it can no longer get tokens, and its tokens are refused within the
    /// gateways' client-cache time.
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
    /// Server DNS mappings for the DCV Connection Gateway.
    #[command(flatten)]
    Dns(crate::dns_cli::DnsCommand),
    /// Rotates the token-signing key: the new key is published now and signs after the publish
    /// delay; the old one keeps verifying until its tokens expire.
    RenewAuthServerApiKey {
        #[command(flatten)]
        target: Target,
    },
    /// Trusts an external authorization server (its JWKS URL); its access tokens are accepted.
    RegisterAuthServer {
        /// JWKS URL (https; http only for localhost).
        #[arg(long)]
        url: String,
        /// Pin the JWS algorithm of its keys (RS256, ES256, …; needed e.g. for Azure AD whose
        /// JWKS omits `alg`). Default: each key's `alg`, else its key type.
        #[arg(long)]
        algorithm: Option<String>,
        /// Require this `iss` claim.
        #[arg(long)]
        issuer: Option<String>,
        /// Require this `aud` claim.
        #[arg(long)]
        audience: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Lists the trusted external authorization servers.
    ListAuthServers {
        #[command(flatten)]
        target: Target,
    },
    /// Stops trusting an external authorization server.
    UnregisterAuthServer {
        /// The JWKS URL it was registered with.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Which running cluster an admin command talks to: the all-in-one cluster whose data dir holds
/// `admin.json`, or (Kubernetes, separate services) an auth replica given by `--auth-url` with the
/// admin token in `--admin-token-file`.
#[derive(Debug, Args)]
pub struct Target {
    /// The data dir of the running all-in-one cluster (holds admin.json).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "switchboard-data")]
    pub data_dir: PathBuf,
    /// gRPC URL of an auth replica (e.g. `http://127.0.0.1:7001` inside the auth pod); used
    /// instead of admin.json, with `--admin-token-file`.
    #[arg(long, env = "SWITCHBOARD_ADMIN_AUTH_URL")]
    pub auth_url: Option<String>,
    /// File holding the admin token (with `--auth-url`); the auth pod mounts it and sets this.
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// With an `https://` `--auth-url`: the internal CA to trust (the services' `internal_tls_ca_file`;
    /// inside an auth pod the same environment variable is already set).
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_CA_FILE")]
    pub internal_tls_ca_file: Option<PathBuf>,
    /// Client certificate to present to auth when its internal port requires one (mTLS).
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_CERT_FILE")]
    pub internal_tls_cert_file: Option<PathBuf>,
    /// Key of `--internal-tls-cert-file`.
    #[arg(long, env = "SWITCHBOARD_INTERNAL_TLS_KEY_FILE")]
    pub internal_tls_key_file: Option<PathBuf>,
}

impl Target {
    /// The admin channel this target names.
    pub fn channel(&self) -> anyhow::Result<AdminChannel> {
        match (&self.auth_url, &self.admin_token_file) {
            (Some(url), Some(file)) => {
                // `https://` auth URLs dial with the internal TLS settings, as the services do.
                switchboard_common::config::configure_internal_tls(
                    self.internal_tls_ca_file.as_deref(),
                    self.internal_tls_cert_file.as_deref(),
                    self.internal_tls_key_file.as_deref(),
                    false,
                )?;
                AdminChannel::from_token_file(url.clone(), file)
            }
            (Some(_), None) => anyhow::bail!("--auth-url needs --admin-token-file (or SWITCHBOARD_ADMIN_TOKEN_FILE)"),
            (None, _) => AdminChannel::read(&self.data_dir),
        }
    }
}

/// `switchboard up`: its settings are [`UpConfig`], added to this subcommand by [`command`] and loaded
/// like every binary's (defaults → `--config` file → `SWITCHBOARD_*` → flags; `--dump-config`).
#[derive(Debug, Args)]
pub struct UpArgs {}

/// The whole command line: [`Cli`] with `up`'s settings.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    Cli::command().mut_subcommand("up", switchboard_common::config::command::<UpConfig>)
}

/// The original broker's admin flags that clap cannot take as they are written: `-cn` (two letters after one
/// dash, the original's short form of `--client-name`, used by its console setup wizard).
fn original_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|arg| if arg == "-cn" { "--client-name".into() } else { arg }).collect()
}

/// Parses the command line and runs it.
pub async fn main() -> anyhow::Result<()> {
    use clap::FromArgMatches as _;
    let matches = command().get_matches_from(original_flags(std::env::args_os()));
    if let Some(("up", up_matches)) = matches.subcommand() {
        let config: UpConfig = switchboard_common::config::load(up_matches)?;
        if up_matches.get_flag("dump_config") {
            print!("{}", switchboard_common::config::dump(&config)?);
            return Ok(());
        }
        return up(config).await;
    }
    run(Cli::from_arg_matches(&matches)?).await
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(UpArgs {}) => up(UpConfig::default()).await,
        Command::RegisterApiClient { client_name, read_only, allowed_owners, target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::RegisterApiClientRequest { client_name, read_only, allowed_owners };
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
            let channel = target.channel()?;
            let response = channel
                .client()?
                .list_api_clients(switchboard_proto::ListApiClientsRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            // The original broker's format (`Api clients` and a JSON array of name / id / active), with
            // Switchboard's additions after them: creation time and scope.
            let listed: Vec<_> = response
                .clients
                .iter()
                .map(|client| {
                    serde_json::json!({
                        "name": client.client_name,
                        "id": client.client_id,
                        "active": true,
                        "created": switchboard_common::time::rfc3339_ms(client.created_unix_ms).unwrap_or_default(),
                        "scope": scope_text(client.read_only, &client.allowed_owners),
                    })
                })
                .collect();
            println!("Api clients\n{}", serde_json::to_string_pretty(&listed)?);
            Ok(())
        }
        Command::Agents(command) => crate::agents_cli::run(command).await,
        Command::Dns(command) => crate::dns_cli::run(command).await,
        Command::UnregisterApiClient { client_id, target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::UnregisterApiClientRequest { client_id: client_id.clone() };
            channel
                .client()?
                .unregister_api_client(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?;
            println!("Client {client_id} unregistered.");
            Ok(())
        }
        Command::RenewAuthServerApiKey { target } => {
            let channel = target.channel()?;
            let response = channel
                .client()?
                .rotate_signing_key(switchboard_proto::RotateSigningKeyRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            let from = switchboard_common::time::rfc3339_ms(response.active_from_unix_ms).unwrap_or_default();
            println!("Keys renewed.");
            println!("new key: {} (published now, signs from {from})", response.kid);
            for kid in response.retiring_kids {
                println!("retiring key: {kid} (stops signing then; verifies until its tokens expire)");
            }
            Ok(())
        }
        Command::RegisterAuthServer { url, algorithm, issuer, audience, target } => {
            let channel = target.channel()?;
            let server = switchboard_proto::AuthServerInfo {
                url: url.clone(),
                algorithm: algorithm.unwrap_or_default(),
                issuer: issuer.unwrap_or_default(),
                audience: audience.unwrap_or_default(),
                created_unix_ms: 0,
            };
            let request = switchboard_proto::RegisterAuthServerRequest { server: Some(server) };
            channel
                .client()?
                .register_auth_server(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?;
            println!("Jwk url registered.");
            Ok(())
        }
        Command::ListAuthServers { target } => {
            let channel = target.channel()?;
            let response = channel
                .client()?
                .list_auth_servers(switchboard_proto::ListAuthServersRequest {})
                .await
                .map_err(|status| explain(status, &channel.auth_url))?
                .into_inner();
            let urls: Vec<&str> = response.servers.iter().map(|server| server.url.as_str()).collect();
            println!("Urls: [{}]", urls.join(", "));
            for server in response.servers {
                let or_any = |value: &str| if value.is_empty() { "(any)".to_owned() } else { value.to_owned() };
                println!(
                    "url: {}  algorithm: {}  issuer: {}  audience: {}",
                    server.url,
                    if server.algorithm.is_empty() { "(from key)".to_owned() } else { server.algorithm },
                    or_any(&server.issuer),
                    or_any(&server.audience)
                );
            }
            Ok(())
        }
        Command::UnregisterAuthServer { url, target } => {
            let channel = target.channel()?;
            let request = switchboard_proto::UnregisterAuthServerRequest { url: url.clone() };
            channel
                .client()?
                .unregister_auth_server(request)
                .await
                .map_err(|status| explain(status, &channel.auth_url))?;
            println!("unregistered auth server: {url}");
            Ok(())
        }
    }
}

fn scope_text(read_only: bool, allowed_owners: &[String]) -> String {
    let mut parts = Vec::new();
    if read_only {
        parts.push("read-only".to_owned());
    }
    if !allowed_owners.is_empty() {
        parts.push(format!("owners={}", allowed_owners.join(",")));
    }
    if parts.is_empty() { "full".to_owned() } else { parts.join(" ") }
}

async fn up(config: UpConfig) -> anyhow::Result<()> {
    config.telemetry.init("switchboard")?;
    switchboard_common::process::raise_fd_limit_logged();
    let started = Instant::now();
    config.gateway.validate().map_err(anyhow::Error::msg)?;
    config.auth.validate().map_err(anyhow::Error::msg)?;
    let (data_dir, sim_hosts) = (config.data_dir.clone(), config.sim_hosts);
    let cluster = Cluster::start(config).await?;
    let shutdown = switchboard_common::shutdown::on_signals();
    let token = cluster.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        token.cancel();
    });
    cluster.wait_ready(sim_hosts, Duration::from_secs(10)).await?;
    print_banner(&cluster, &data_dir, sim_hosts, started.elapsed());
    let stopped = cluster.run_until_stopped().await;
    switchboard_common::telemetry::shutdown().await;
    stopped
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_up_setting_is_documented() {
        let up = command().find_subcommand("up").expect("up is a subcommand").clone();
        let doc = include_str!("../../docs/configuration.md");
        let problems = switchboard_common::config::undocumented(&up, doc, &["up", "gateway", "auth", "placement"]);
        assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
    }

    #[test]
    fn up_reads_a_config_file_and_flags_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.toml");
        std::fs::write(&file, "sim_hosts = 5\napi_rate_per_minute = 0\nresolver_listen = 'off'\n").unwrap();
        let matches = command()
            .try_get_matches_from(["switchboard", "up", "--config", file.to_str().unwrap(), "--update-interval", "3"])
            .unwrap();
        let (_, up) = matches.subcommand().unwrap();
        let config: UpConfig = switchboard_common::config::load(up).unwrap();
        assert_eq!((config.sim_hosts, config.update_interval_seconds), (5, 3));
        assert_eq!(config.gateway.limits.api_rate_per_minute, 0, "a flattened gateway setting");
        assert_eq!(config.resolver_listen.0, None);
        std::fs::write(&file, "sim_hostz = 5\n").unwrap();
        let matches =
            command().try_get_matches_from(["switchboard", "up", "--config", file.to_str().unwrap()]).unwrap();
        assert!(switchboard_common::config::load::<UpConfig>(matches.subcommand().unwrap().1).is_err());
    }
}
