//! The all-in-one cluster: every service of Switchboard in one process.
//!
//! This module only *composes* the services' libraries — it implements no
//! behaviour of its own. Each service gets its own loopback listener and the
//! services talk to each other over real gRPC, exactly as separate processes
//! do; the only thing shared in-process is the embedded storage backend
//! (auth and session-store both use it, as they would share Redis).
//!
//! Start order: TLS material → storage → session-store (gRPC + agent port) →
//! auth → placement → gateway → simulated hosts (which enrol with a software
//! statement the cluster generates, and keep their credentials in
//! `<data-dir>/agents/`). Shutdown cancels one token;
//! every service drains and returns.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_common::config::TelemetrySettings;
use switchboard_common::tls_reload::{ReloadingCa, ReloadingIdentity};
use switchboard_common::{Shutdown, grpc::lazy_channel, tls::DevCa};
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_store::{Backend, Observed, embedded::EmbeddedBackend};
use tokio::{net::TcpListener, task::JoinSet};

use crate::admin::AdminChannel;

/// What `switchboard up` starts: its settings (file key, `--flag`, `SWITCHBOARD_*` variable, as every
/// binary's; see `switchboard_common::config`), with the gateway's and auth's flattened in.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct UpConfig {
    /// Where durable state, TLS material and `admin.json` live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Simulated DCV hosts to run in this process.
    #[arg(long)]
    pub sim_hosts: usize,
    /// Client API (HTTPS) listen address.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Agent endpoint listen address.
    #[arg(long)]
    pub agent_listen: SocketAddr,
    /// Seconds between agent updates.
    #[arg(long, alias = "update-interval")]
    pub update_interval_seconds: u32,
    /// Extra DNS names or IPs for the generated server certificate (comma-separated).
    #[arg(long, alias = "tls-name", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Connection Gateway session resolver (HTTPS, `POST /resolveSession`) listen address, or `off`.
    #[arg(long)]
    pub resolver_listen: OptionalAddr,
    /// PEM CA of agent client certificates: the agent port then requires one (mutual TLS). The simulated
    /// hosts present certificates from the development CA (`<data-dir>/tls/ca.pem`), so include it.
    #[arg(long)]
    pub agent_client_ca_file: Option<PathBuf>,
    /// PEM CA of the session resolver's clients: the resolver then requires a client certificate.
    #[arg(long)]
    pub resolver_client_ca_file: Option<PathBuf>,
    /// Gateway settings (limits, screenshots, token-verifier refresh, client-cache time).
    #[command(flatten)]
    #[serde(flatten)]
    pub gateway: switchboard_gateway::GatewayConfig,
    /// Auth settings (issuer, audience, token lifetimes, key publish delay); the admin token hash is always
    /// the cluster's own.
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: switchboard_auth::AuthConfig,
    /// Log format and filter.
    #[command(flatten)]
    #[serde(flatten)]
    pub timers: switchboard_session_store::Timers,
    /// Webhook delivery (session-store's settings).
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: switchboard_session_store::webhooks::WebhookSettings,
    /// Placement settings (retries on another host, `AutorunFileArguments` limits, the create timeout, the
    /// strategy, the create-sessions queue); `max_batch` is the gateway's.
    #[command(flatten)]
    #[serde(flatten)]
    pub placement: switchboard_placement::PlacementConfig,
    #[command(flatten)]
    #[serde(flatten)]
    pub telemetry: TelemetrySettings,
}

/// A listen address that can be switched off (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl Serialize for OptionalAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OptionalAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for OptionalAddr {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        value.parse().map(|addr| Self(Some(addr))).map_err(|error| format!("{error}; use host:port or off"))
    }
}

impl std::fmt::Display for OptionalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("switchboard-data"),
            sim_hosts: 2,
            listen: "127.0.0.1:8443".parse().expect("valid address"),
            agent_listen: "127.0.0.1:8445".parse().expect("valid address"),
            update_interval_seconds: 10,
            tls_names: Vec::new(),
            resolver_listen: OptionalAddr("127.0.0.1:8447".parse().ok()),
            agent_client_ca_file: None,
            resolver_client_ca_file: None,
            gateway: switchboard_gateway::GatewayConfig::default(),
            auth: switchboard_auth::AuthConfig::default(),
            timers: switchboard_session_store::Timers::default(),
            webhooks: switchboard_session_store::webhooks::WebhookSettings::default(),
            placement: switchboard_placement::PlacementConfig::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl switchboard_common::config::Settings for UpConfig {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

impl UpConfig {
    /// A cluster on `data_dir` with `sim_hosts` simulated hosts, every listener (API, agent port, resolver)
    /// on a free loopback port and agents reporting every second: what tests and embedders start from.
    pub fn ephemeral(data_dir: &std::path::Path, sim_hosts: usize) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        Self {
            data_dir: data_dir.to_owned(),
            sim_hosts,
            listen: any,
            agent_listen: any,
            update_interval_seconds: 1,
            resolver_listen: OptionalAddr(Some(any)),
            ..Self::default()
        }
    }
}

/// A running all-in-one cluster.
pub struct Cluster {
    /// Base URL of the REST API, e.g. `https://localhost:8443`.
    pub api_url: String,
    /// Address the client API listens on.
    pub api_addr: SocketAddr,
    /// Address the agent endpoint listens on.
    pub agent_addr: SocketAddr,
    /// Address of the session resolver, when served.
    pub resolver_addr: Option<SocketAddr>,
    /// The development CA clients must trust.
    pub ca_pem: String,
    /// Where that CA is on disk.
    pub ca_path: PathBuf,
    /// The admin channel (also written to `<data-dir>/admin.json`).
    pub admin: AdminChannel,
    /// The embedded store every service of this cluster shares (for tools and tests).
    pub backend: Arc<dyn Backend>,
    store_url: String,
    data_dir: PathBuf,
    shutdown: Shutdown,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for the {what}"))
}

async fn bind_loopback() -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind a loopback port")?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// Whether the PEM bundle `client_ca` holds the certificate `ca_pem`.
fn trusts(client_ca: &str, ca_pem: &str) -> anyhow::Result<bool> {
    let ca = switchboard_common::tls::parse_certs(ca_pem)?;
    Ok(switchboard_common::tls::parse_certs(client_ca)?.iter().any(|cert| ca.contains(cert)))
}

/// Where simulated host `index` keeps its agent credentials.
fn sim_host_credentials(data_dir: &std::path::Path, index: usize) -> PathBuf {
    data_dir.join("agents").join(format!("sim-host-{index}.credentials.toml"))
}

/// The enrolment of each simulated host. Hosts that registered before reuse their credentials; a host
/// whose agent client was unregistered (in an earlier run) loses its stale credentials and enrols again at
/// this start. When any host needs to enrol, the cluster generates one software statement for them (listed
/// by `describe-software-statements` like any other).
async fn sim_host_enrolments(
    backend: &dyn Backend,
    data_dir: &std::path::Path,
    hosts: usize,
) -> anyhow::Result<Vec<switchboard_agent::enrol::Enrolment>> {
    let mut missing = false;
    for index in 0..hosts {
        let path = sim_host_credentials(data_dir, index);
        let registered = match switchboard_agent::enrol::stored_client_id(&path)? {
            Some(client_id) => backend.get_agent_client(&client_id).await?.is_some(),
            None => false,
        };
        if !registered {
            missing = true;
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
            }
        }
    }
    let statement = if missing {
        let generated = switchboard_store::enrolment::statements::generate(backend)
            .await
            .context("generating the simulated hosts' software statement")?;
        generated.text
    } else {
        // Never read: every host has its credentials.
        switchboard_common::Secret::new(String::new())
    };
    Ok((0..hosts)
        .map(|index| {
            switchboard_agent::enrol::Enrolment::inline(statement.clone(), sim_host_credentials(data_dir, index))
        })
        .collect())
}

impl Cluster {
    /// Starts every service and the simulated hosts; returns once all listen.
    pub async fn start(config: UpConfig) -> anyhow::Result<Self> {
        switchboard_common::tls::install_crypto_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let tls = DevCa::load_or_create(&config.data_dir.join("tls"), &config.tls_names)?;
        // The development CA's material is fixed (it is not rotated), served the way files are.
        let server_identity = ReloadingIdentity::from_pem(&tls.server)?;
        let dev_ca = ReloadingCa::from_pem(&tls.ca_pem)?;
        let agent_client_ca = switchboard_common::config::client_ca(config.agent_client_ca_file.as_deref())
            .context("agent_client_ca_file")?;
        let resolver_client_ca = switchboard_common::config::client_ca(config.resolver_client_ca_file.as_deref())
            .context("resolver_client_ca_file")?;
        if resolver_client_ca.is_some() && config.resolver_listen.0.is_none() {
            anyhow::bail!("resolver_client_ca_file is set but the session resolver is off");
        }
        if let Some(client_ca) = &agent_client_ca
            && config.sim_hosts > 0
            && !trusts(&client_ca.current().pem, &tls.ca_pem)?
        {
            anyhow::bail!(
                "simulated hosts present client certificates from the development CA {}: include it in \
                 agent_client_ca_file, or run with --sim-hosts 0",
                tls.ca_path.display()
            );
        }
        let embedded = EmbeddedBackend::open(&config.data_dir).with_context(|| {
            format!(
                "cannot open the store in {} (is another switchboard already running with this --data-dir?)",
                config.data_dir.display()
            )
        })?;
        let backend: Arc<dyn Backend> = Observed::wrap(Arc::new(embedded), "embedded");

        let api_listener = bind(config.listen, "client API").await?;
        let agent_listener = bind(config.agent_listen, "agent endpoint").await?;
        let resolver_listener = match config.resolver_listen.0 {
            Some(addr) => Some(bind(addr, "session resolver").await?),
            None => None,
        };
        let resolver_addr = resolver_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let api_addr = api_listener.local_addr()?;
        let agent_addr = agent_listener.local_addr()?;
        let (store_listener, store_url) = bind_loopback().await?;
        let (auth_listener, auth_url) = bind_loopback().await?;
        let (placement_listener, placement_url) = bind_loopback().await?;

        let admin = AdminChannel::generate(auth_url.clone());
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();

        let store_config = switchboard_session_store::StoreConfig {
            replica_id: format!("all-in-one-{}", uuid::Uuid::new_v4()),
            advertised_address: store_url.clone(),
            update_interval_seconds: config.update_interval_seconds,
            agent_client_ca: agent_client_ca.clone(),
            timers: config.timers.clone(),
            webhooks: config.webhooks.clone(),
            ..Default::default()
        };
        let listeners = switchboard_session_store::Listeners { grpc: store_listener, agent: agent_listener };
        tasks.spawn({
            let (backend, identity, shutdown) = (backend.clone(), server_identity.clone(), shutdown.clone());
            async move {
                let result =
                    switchboard_session_store::serve(store_config, listeners, backend, Some(identity), shutdown);
                ("session-store", result.await.map_err(anyhow::Error::from))
            }
        });

        let auth_config =
            switchboard_auth::AuthConfig { admin_token_sha256: Some(admin.token_sha256()), ..config.auth.clone() };
        tasks.spawn({
            let (backend, shutdown) = (backend.clone(), shutdown.clone());
            async move {
                let result = switchboard_auth::serve(
                    auth_config,
                    auth_listener,
                    backend.clone(),
                    backend.clone(),
                    backend.clone(),
                    backend,
                    shutdown,
                );
                ("auth", result.await.map_err(anyhow::Error::from))
            }
        });

        let store_channel = lazy_channel(&store_url)?;
        let store_client = SessionStoreClient::new(store_channel.clone());
        // One `max_batch` for the gateway and placement.
        let placement_config =
            switchboard_placement::PlacementConfig { max_batch: config.gateway.max_batch, ..config.placement.clone() };
        placement_config.validate().map_err(anyhow::Error::msg)?;
        tasks.spawn({
            let (store_client, backend, shutdown) = (store_client.clone(), backend.clone(), shutdown.clone());
            async move {
                let config = placement_config;
                let result = switchboard_placement::serve(
                    config,
                    placement_listener,
                    store_client,
                    backend.clone(),
                    backend,
                    shutdown,
                );
                ("placement", result.await.map_err(anyhow::Error::from))
            }
        });

        let upstreams =
            switchboard_gateway::Upstreams::new(lazy_channel(&auth_url)?, lazy_channel(&placement_url)?, store_channel);
        let api_listener = api_listener.into_std()?;
        if let Some(listener) = resolver_listener {
            let listener = listener.into_std()?;
            let (identity, upstreams, shutdown) = (server_identity.clone(), upstreams.clone(), shutdown.clone());
            let client_ca = resolver_client_ca.clone();
            tasks.spawn(async move {
                let result =
                    switchboard_gateway::resolver::serve(listener, Some(identity), client_ca, upstreams, shutdown);
                ("session resolver", result.await.map_err(anyhow::Error::from))
            });
        }
        tasks.spawn({
            let (identity, shutdown) = (server_identity.clone(), shutdown.clone());
            let config = config.gateway.clone();
            async move {
                let result = switchboard_gateway::serve(config, api_listener, Some(identity), upstreams, shutdown);
                ("gateway", result.await.map_err(anyhow::Error::from))
            }
        });

        // Simulated hosts are the real agent with the simulated DCV driver; they enrol like real agents.
        let broker_url = format!("https://localhost:{}", agent_addr.port());
        let enrolments = sim_host_enrolments(backend.as_ref(), &config.data_dir, config.sim_hosts).await?;
        for (index, enrolment) in enrolments.into_iter().enumerate() {
            let mut options = switchboard_agent::simulated_host_options(index, &broker_url, Some(dev_ca.clone()));
            options.enrolment = Some(enrolment);
            if agent_client_ca.is_some() {
                let identity = tls.issue_client_identity(&format!("sim-host-{index}"))?;
                options.client_identity = Some(ReloadingIdentity::from_pem(&identity)?);
            }
            let driver = Arc::new(switchboard_agent::driver::simulated::SimulatedDriver::default());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let probe = move || switchboard_agent::telemetry::simulated_host(index as u64);
                let result = switchboard_agent::run(options, driver, probe, shutdown).await;
                ("simulated host", result.map_err(anyhow::Error::from))
            });
        }

        admin.write(&config.data_dir)?;
        Ok(Self {
            api_url: format!("https://localhost:{}", api_addr.port()),
            api_addr,
            agent_addr,
            resolver_addr,
            ca_pem: tls.ca_pem.clone(),
            ca_path: tls.ca_path.clone(),
            admin,
            backend,
            store_url,
            data_dir: config.data_dir,
            shutdown,
            tasks,
        })
    }

    /// Waits until `hosts` agents are connected and reachable, or fails
    /// after `timeout`.
    pub async fn wait_ready(&self, hosts: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reachable = self.reachable_hosts().await.unwrap_or(0);
            if reachable >= hosts {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("only {reachable} of {hosts} hosts connected after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Number of hosts whose agent is connected.
    pub async fn reachable_hosts(&self) -> anyhow::Result<usize> {
        let mut store = SessionStoreClient::new(lazy_channel(&self.store_url)?);
        let request = switchboard_proto::ListServersRequest { page_size: 1000, ..Default::default() };
        let page = store.list_servers(request).await?.into_inner();
        Ok(page.servers.iter().filter(|server| server.reachable).count())
    }

    /// The shared storage backend (tests read signing keys from it to mint tokens).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The shutdown token (cancel it to stop everything).
    pub fn shutdown_token(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs until `shutdown` is cancelled or a service fails; then stops
    /// every service and waits for them to drain.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                // A service that returns because shutdown was requested is not a failure.
                let stopping = self.shutdown.is_cancelled();
                failure = match joined {
                    Ok((_, Ok(()))) if stopping => None,
                    Ok((name, Err(error))) if stopping => {
                        tracing::warn!(service = name, %error, "service failed while stopping");
                        None
                    }
                    Ok((name, Err(error))) => Some(anyhow::anyhow!("{name} failed: {error:#}")),
                    Ok((name, Ok(()))) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
                    Err(error) => Some(anyhow::anyhow!("a service panicked: {error}")),
                };
                self.shutdown.cancel();
            }
        }
        self.stop().await;
        failure.map_or(Ok(()), Err)
    }

    /// Stops every service and waits (bounded) for them to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
            tracing::warn!("services did not drain within 10s; aborting them");
            self.tasks.abort_all();
        }
        AdminChannel::remove(&self.data_dir);
    }
}
