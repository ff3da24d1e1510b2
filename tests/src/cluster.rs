//! A multi-process cluster on loopback: Redis, two replicas of every service and simulated agents, each a
//! real process of the real binaries, for fault tests (`kill -9`, restarts).
//!
//! The binaries are not built here: `./scripts/test` runs `cargo build --workspace --bins` first, and
//! [`binary`] finds them next to the test executable (`<target>/<profile>/`), failing with that advice
//! when one is missing. Every process is killed when the [`ProcessCluster`] is dropped.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchboard_proto::{ListServersRequest, session_store_client::SessionStoreClient};
use switchboard_testkit::{RedisServer, SentinelGroup};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Longest a process may take to become ready after a start or restart.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The services that run as replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// REST API (HTTPS).
    Gateway,
    /// Clients, keys, tokens.
    Auth,
    /// Validation and host choice.
    Placement,
    /// Fleet state and the agent port.
    SessionStore,
}

impl Service {
    /// Every service, in the order faults are injected.
    pub const ALL: [Service; 4] = [Service::Gateway, Service::Auth, Service::Placement, Service::SessionStore];

    /// The binary's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Self::Gateway => "switchboard-gateway",
            Self::Auth => "switchboard-auth",
            Self::Placement => "switchboard-placement",
            Self::SessionStore => "switchboard-session-store",
        }
    }

    /// The gRPC service name its health reports, `None` for the gateway (HTTP `/health/ready`).
    fn health_name(self) -> Option<&'static str> {
        match self {
            Self::Gateway => None,
            Self::Auth => Some("switchboard.v1.Auth"),
            Self::Placement => Some("switchboard.v1.Placement"),
            Self::SessionStore => Some("switchboard.v1.SessionStore"),
        }
    }
}

/// Path of a workspace binary beside the running executable: a test (`<target>/<profile>/deps/<test>-<hash>`)
/// or a binary of this package such as `bench-api` (`<target>/<profile>/bench-api`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let mut dir = exe.parent().context("the executable has no parent dir")?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().context("deps has no parent dir")?;
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the binaries first with `cargo build --workspace --bins` (./scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

/// An unused loopback port (bound then released; the process binds it next). Taken below the kernel's
/// ephemeral range (32768–60999 by default), where the outgoing connections of the running processes get
/// their local ports: a port handed out here cannot be taken by one of those before its process binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    /// Where the next search starts: spread by process id so concurrent test binaries start apart.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let start = LOW + (std::process::id() % u32::from(SPAN)) as u16;
        let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let candidate = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (candidate.wrapping_sub(LOW) % SPAN);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// One process: how to start it, and the running child.
struct Process {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null()).env_remove("RUST_BACKTRACE");
        if std::env::var_os("TEST_LOG").is_some() {
            command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            command.stdout(log.try_clone()?).stderr(log);
        }
        self.child = Some(command.spawn().with_context(|| format!("starting {}", self.label))?);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails when the process exited on its own, with the end of its log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String =
                log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            bail!("{} exited ({status}):\n{tail}", self.label);
        }
        Ok(())
    }
}

/// A replica of a service: its process and its port.
struct Replica {
    service: Service,
    port: u16,
    process: Process,
    /// The `/metrics` port, when the cluster serves metrics.
    metrics_port: Option<u16>,
}

/// The session-store replicas' stalled bound: how long the fault tests wait, at most, for what a fault
/// left in CREATING or DELETING to end.
pub const STALLED_SESSION_SECONDS: u64 = 20;

/// Settings of [`ProcessCluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Replicas of each service.
    pub replicas: usize,
    /// Simulated agents, split across the session-store replicas.
    pub agents: usize,
    /// `max_virtual_sessions` of every agent.
    pub max_virtual_sessions: u32,
    /// Internal gRPC ports with mutual TLS (every service and this test process present the dev CA's
    /// certificate); `https://` upstream URLs.
    pub internal_mtls: bool,
    /// Every service process serves Prometheus metrics (`--metrics-listen` on a free port).
    pub metrics: bool,
    /// Every service process and agent exports all its traces (sampling 1.0) to this OTLP/gRPC receiver,
    /// and the services log JSON lines.
    pub otlp_endpoint: Option<String>,
    /// The shared state: one persistent Redis, or a primary with replicas behind Sentinel.
    pub redis: RedisTopology,
}

/// Which Redis a [`ProcessCluster`] shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisTopology {
    /// One `redis-server` writing every command to its append-only file (fsync always).
    #[default]
    Standalone,
    /// A primary with two replicas and three `redis-sentinel`s; the services use `redis+sentinel://`.
    Sentinel,
}

/// The Redis a [`ProcessCluster`] runs.
pub enum Redis {
    /// One server.
    Standalone(RedisServer),
    /// A Sentinel group.
    Sentinel(SentinelGroup),
}

impl Redis {
    /// The services' `redis_url`.
    pub fn url(&self) -> String {
        match self {
            Self::Standalone(server) => server.url(),
            Self::Sentinel(group) => group.url(),
        }
    }

    /// The one server of a standalone topology.
    pub fn server(&mut self) -> &mut RedisServer {
        match self {
            Self::Standalone(server) => server,
            Self::Sentinel(_) => panic!("the cluster runs Sentinel, not one server"),
        }
    }

    /// The Sentinel group of a Sentinel topology.
    pub fn sentinel(&mut self) -> &mut SentinelGroup {
        match self {
            Self::Sentinel(group) => group,
            Self::Standalone(_) => panic!("the cluster runs one server, not Sentinel"),
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            agents: 4,
            max_virtual_sessions: 50,
            internal_mtls: false,
            metrics: false,
            otlp_endpoint: None,
            redis: RedisTopology::Standalone,
        }
    }
}

/// The running cluster; every process is killed on drop.
pub struct ProcessCluster {
    /// The shared Redis ([`ClusterSpec::redis`]).
    pub redis: Redis,
    /// CA certificate (PEM) the gateways and agent ports are signed by.
    pub ca_pem: String,
    /// Admin token the auth replicas accept.
    pub admin_token: String,
    /// Simulated agents' `max_virtual_sessions`.
    pub max_virtual_sessions: u32,
    /// `http` or `https` (internal mTLS) for the internal gRPC ports.
    scheme: &'static str,
    metrics: bool,
    otlp_endpoint: Option<String>,
    replicas: Vec<Replica>,
    agents: Vec<Process>,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts Redis, `spec.replicas` of each service and `spec.agents` agents; returns once every service
    /// is ready and every agent is reachable.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        switchboard_common::tls::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let tls = switchboard_common::tls::DevCa::load_or_create(&dir.path().join("tls"), &[])?;
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let token_file = dir.path().join("admin-token");
        fs::write(&token_file, &admin_token)?;
        let redis = match spec.redis {
            RedisTopology::Standalone => Redis::Standalone(RedisServer::start_persistent()),
            RedisTopology::Sentinel => Redis::Sentinel(SentinelGroup::start(2, 3)),
        };
        let mut cluster = Self {
            redis,
            ca_pem: tls.ca_pem.clone(),
            admin_token,
            max_virtual_sessions: spec.max_virtual_sessions,
            scheme: if spec.internal_mtls { "https" } else { "http" },
            metrics: spec.metrics,
            otlp_endpoint: spec.otlp_endpoint.clone(),
            replicas: Vec::new(),
            agents: Vec::new(),
            dir,
        };
        let ports = |_| free_port();
        let store_ports: Vec<u16> = (0..spec.replicas).map(ports).collect();
        let agent_ports: Vec<u16> = (0..spec.replicas).map(ports).collect();
        let auth_ports: Vec<u16> = (0..spec.replicas).map(ports).collect();
        let placement_ports: Vec<u16> = (0..spec.replicas).map(ports).collect();
        let gateway_ports: Vec<u16> = (0..spec.replicas).map(ports).collect();
        let scheme = cluster.scheme;
        let urls =
            |ports: &[u16]| ports.iter().map(|p| format!("{scheme}://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        // Internal mTLS: every process (this one included) presents the dev certificate, issued for
        // localhost and 127.0.0.1, and requires the others' to chain to the dev CA.
        let internal_tls: Vec<String> = if spec.internal_mtls {
            switchboard_common::internal_tls::configure(switchboard_common::internal_tls::InternalTls {
                ca: switchboard_common::tls_reload::ReloadingCa::from_pem(&tls.ca_pem)?,
                identity: Some(switchboard_common::tls_reload::ReloadingIdentity::from_pem(&tls.server)?),
                require_client_cert: true,
            });
            vec![
                format!("--internal-tls-ca-file={}", tls.ca_path.display()),
                format!("--internal-tls-cert-file={}", tls.ca_path.with_file_name("server.pem").display()),
                format!("--internal-tls-key-file={}", tls.ca_path.with_file_name("server-key.pem").display()),
                "--internal-tls-client-auth=true".into(),
            ]
        } else {
            Vec::new()
        };
        let cert = tls.ca_path.with_file_name("server.pem");
        let key = tls.ca_path.with_file_name("server-key.pem");
        let redis_url = cluster.redis.url();

        for (index, (&port, &agent_port)) in store_ports.iter().zip(&agent_ports).enumerate() {
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--agent-listen=127.0.0.1:{agent_port}"),
                format!("--replica-id=store-{index}"),
                format!("--redis-url={redis_url}"),
                format!("--tls-cert-file={}", cert.display()),
                format!("--tls-key-file={}", key.display()),
                "--update-interval-seconds=1".into(),
                "--agent-lease-seconds=3".into(),
                // A create or close nobody confirms ends within this bound (placement's create timeout is
                // 10 s below), and ended sessions stay visible for the whole test: the fault tests count
                // what never ended.
                format!("--stalled-session-seconds={STALLED_SESSION_SECONDS}"),
                "--deleted-session-retention-seconds=3600".into(),
            ];
            let args = [args, internal_tls.clone()].concat();
            cluster.add(Service::SessionStore, index, port, args)?;
        }
        for (index, &port) in auth_ports.iter().enumerate() {
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--redis-url={redis_url}"),
                format!("--admin-token-file={}", token_file.display()),
            ];
            let args = [args, internal_tls.clone()].concat();
            cluster.add(Service::Auth, index, port, args)?;
        }
        for (index, &port) in placement_ports.iter().enumerate() {
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--store-url={}", urls(&store_ports)),
                format!("--redis-url={redis_url}"),
                "--create-timeout-seconds=10".into(),
            ];
            let args = [args, internal_tls.clone()].concat();
            cluster.add(Service::Placement, index, port, args)?;
        }
        for (index, &port) in gateway_ports.iter().enumerate() {
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--auth-url={}", urls(&auth_ports)),
                format!("--placement-url={}", urls(&placement_ports)),
                format!("--store-url={}", urls(&store_ports)),
                format!("--tls-cert-file={}", cert.display()),
                format!("--tls-key-file={}", key.display()),
                // The fault tests drive one client hard through both gateways (200 concurrent creates, a
                // token fetch each); rate limits are tested elsewhere (security suite, gateway tests).
                "--token-rate-per-minute=0".into(),
                "--token-rate-overall-per-minute=0".into(),
                "--api-rate-per-minute=0".into(),
            ];
            let args = [args, internal_tls.clone()].concat();
            cluster.add(Service::Gateway, index, port, args)?;
        }
        for index in 0..cluster.replicas.len() {
            cluster.wait_replica_ready(index).await?;
        }
        let statement = cluster.generate_software_statement().await?;
        let statement_dir = cluster.dir.path().join("agents");
        fs::create_dir_all(&statement_dir)?;
        for index in 0..spec.agents {
            // Agents are split across the agent ports: each starts on a different replica, then fails over.
            let mut addresses: Vec<String> = agent_ports.iter().map(|p| format!("'localhost:{p}'")).collect();
            addresses.rotate_left(index % agent_ports.len());
            // One statement file per agent, so each keeps its own credentials next to it.
            let statement_path = statement_dir.join(format!("statement-{index}.txt"));
            fs::write(&statement_path, &statement)?;
            cluster.add_agent(index, &addresses, &tls.ca_path, &statement_path)?;
        }
        cluster.wait_reachable(spec.agents, READY_TIMEOUT).await?;
        Ok(cluster)
    }

    fn add(&mut self, service: Service, index: usize, port: u16, mut args: Vec<String>) -> anyhow::Result<()> {
        let label = format!("{}-{index}", service.binary_name());
        let metrics_port = self.metrics.then(free_port);
        if let Some(metrics_port) = metrics_port {
            args.push(format!("--metrics-listen=127.0.0.1:{metrics_port}"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            args.extend([
                format!("--otlp-endpoint={endpoint}"),
                "--otlp-sampling-ratio=1".into(),
                "--log-format=json".into(),
            ]);
        }
        let mut process = Process {
            log: self.dir.path().join(format!("{label}.log")),
            label,
            program: binary(service.binary_name())?,
            args,
            child: None,
        };
        process.spawn()?;
        self.replicas.push(Replica { service, port, process, metrics_port });
        Ok(())
    }

    /// A software statement from the auth service's admin RPC, as `switchboard generate-software-statement`
    /// prints it.
    async fn generate_software_statement(&self) -> anyhow::Result<String> {
        let auth = self.grpc_urls(Service::Auth);
        let channel = switchboard_common::grpc::replica_channel(&auth)?;
        let mut client = switchboard_proto::agent_admin_client::AgentAdminClient::new(channel);
        let mut request = tonic::Request::new(switchboard_proto::GenerateSoftwareStatementRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer {}", self.admin_token).parse()?);
        Ok(client.generate_software_statement(request).await?.into_inner().software_statement)
    }

    /// Re-enrols every agent, as an operator would after the store lost its data: a new software statement
    /// in each agent's statement file, then its credentials file deleted. Agents pick it up on their next
    /// reconnect.
    pub async fn reenrol_agents(&self) -> anyhow::Result<()> {
        let statement = self.generate_software_statement().await?;
        let statement_dir = self.dir.path().join("agents");
        for index in 0..self.agents.len() {
            fs::write(statement_dir.join(format!("statement-{index}.txt")), &statement)?;
        }
        for index in 0..self.agents.len() {
            let credentials = statement_dir.join(format!("statement-{index}.credentials.toml"));
            match fs::remove_file(&credentials) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn add_agent(
        &mut self,
        index: usize,
        addresses: &[String],
        ca_path: &Path,
        statement: &Path,
    ) -> anyhow::Result<()> {
        let conf = self.dir.path().join(format!("agent-{index}.conf"));
        let telemetry = match &self.otlp_endpoint {
            Some(endpoint) => format!("[telemetry]\notlp_endpoint = '{endpoint}'\notlp_sampling_ratio = 1.0\n"),
            None => String::new(),
        };
        let text = format!(
            "version = '0.1'\n[agent]\nbroker_addresses = [{}]\nca_file = '{}'\nmax_virtual_sessions = {}\n\
             broker_update_interval = 1\ndriver = 'simulated'\nserver_id = 'ha-host-{index}'\nhostname = 'ha-host-{index}'\n\
             software_statement_path = '{}'\n[log]\nlevel = 'info'\n{telemetry}",
            addresses.join(", "),
            ca_path.display(),
            self.max_virtual_sessions,
            statement.display(),
        );
        fs::write(&conf, text)?;
        let label = format!("switchboard-agent-{index}");
        let mut process = Process {
            log: self.dir.path().join(format!("{label}.log")),
            label,
            program: binary("switchboard-agent")?,
            args: vec![format!("--config={}", conf.display())],
            child: None,
        };
        process.spawn()?;
        self.agents.push(process);
        Ok(())
    }

    fn replica_index(&self, service: Service, index: usize) -> usize {
        self.replicas
            .iter()
            .enumerate()
            .filter(|(_, replica)| replica.service == service)
            .nth(index)
            .map(|(position, _)| position)
            .unwrap_or_else(|| panic!("no replica {index} of {service:?}"))
    }

    /// `(process label, http://127.0.0.1:port/metrics)` of every service process, when started with
    /// [`ClusterSpec::metrics`].
    pub fn metrics_urls(&self) -> Vec<(String, String)> {
        let urls = self.replicas.iter().filter_map(|replica| {
            let port = replica.metrics_port?;
            Some((replica.process.label.clone(), format!("http://127.0.0.1:{port}/metrics")))
        });
        urls.collect()
    }

    /// Base URLs (`https://localhost:port`) of the gateways.
    pub fn gateway_urls(&self) -> Vec<String> {
        self.ports(Service::Gateway).into_iter().map(|port| format!("https://localhost:{port}")).collect()
    }

    /// `http(s)://127.0.0.1:port` of every replica of `service`, comma-separated.
    pub fn grpc_urls(&self, service: Service) -> String {
        let scheme = self.scheme;
        self.ports(service).into_iter().map(|port| format!("{scheme}://127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    fn ports(&self, service: Service) -> Vec<u16> {
        self.replicas.iter().filter(|r| r.service == service).map(|r| r.port).collect()
    }

    /// `kill -9` of replica `index` of `service`.
    pub fn kill9(&mut self, service: Service, index: usize) {
        let position = self.replica_index(service, index);
        self.replicas[position].process.kill9();
    }

    /// Starts replica `index` of `service` again (same port and flags) and waits until it is ready.
    pub async fn restart(&mut self, service: Service, index: usize) -> anyhow::Result<()> {
        let position = self.replica_index(service, index);
        self.replicas[position].process.kill9();
        self.replicas[position].process.spawn()?;
        self.wait_replica_ready(position).await
    }

    async fn wait_replica_ready(&mut self, position: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?;
        let http = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(2)).build()?;
        loop {
            self.replicas[position].process.check_alive()?;
            let replica = &self.replicas[position];
            let ready = match replica.service.health_name() {
                None => {
                    let url = format!("https://localhost:{}/health/ready", replica.port);
                    http.get(url).send().await.is_ok_and(|response| response.status().is_success())
                }
                Some(name) => grpc_serving(self.scheme, replica.port, name).await,
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} not ready after {READY_TIMEOUT:?}", replica.process.label);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until at least `hosts` servers are reachable (connected to some session-store replica).
    pub async fn wait_reachable(&mut self, hosts: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for agent in &mut self.agents {
                agent.check_alive()?;
            }
            let reachable = self.reachable_hosts().await.unwrap_or(0);
            if reachable >= hosts {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("only {reachable} of {hosts} hosts reachable after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Servers whose agent is connected, as any session-store replica sees them.
    pub async fn reachable_hosts(&self) -> anyhow::Result<usize> {
        let servers = self.servers().await?;
        Ok(servers.iter().filter(|server| server.reachable).count())
    }

    /// Every server record, read through the session-store replicas.
    pub async fn servers(&self) -> anyhow::Result<Vec<switchboard_proto::ServerRecord>> {
        let channel = switchboard_common::grpc::replica_channel(&self.grpc_urls(Service::SessionStore))?;
        let mut store = SessionStoreClient::new(channel);
        let request = ListServersRequest { page_size: 1000, ..Default::default() };
        let page = tokio::time::timeout(Duration::from_secs(5), store.list_servers(request)).await??;
        Ok(page.into_inner().servers)
    }

    /// Registers an API client through the auth replicas' admin RPC; returns (id, secret).
    pub async fn register_client(&self, name: &str) -> anyhow::Result<(String, String)> {
        self.register_client_for(name, &[]).await
    }

    /// Registers an API client restricted to `owners` (none: unrestricted); returns (id, secret).
    pub async fn register_client_for(&self, name: &str, owners: &[&str]) -> anyhow::Result<(String, String)> {
        let channel = switchboard_common::grpc::replica_channel(&self.grpc_urls(Service::Auth))?;
        let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", self.admin_token).parse()?;
        let mut auth = switchboard_proto::auth_client::AuthClient::with_interceptor(
            channel,
            move |mut request: tonic::Request<()>| {
                request.metadata_mut().insert("authorization", header.clone());
                Ok(request)
            },
        );
        let request = switchboard_proto::RegisterApiClientRequest {
            client_name: name.into(),
            allowed_owners: owners.iter().map(|owner| owner.to_string()).collect(),
            ..Default::default()
        };
        let response = auth.register_api_client(request).await?.into_inner();
        Ok((response.client_id, response.client_secret))
    }

    /// Where the processes' logs are (kept until drop).
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether the gRPC health service on `127.0.0.1:port` reports `service` as serving (2 s at most).
pub async fn grpc_serving(scheme: &str, port: u16, service: &str) -> bool {
    let Ok(channel) = switchboard_common::grpc::lazy_channel(&format!("{scheme}://127.0.0.1:{port}")) else {
        return false;
    };
    let request = HealthCheckRequest { service: service.to_owned() };
    let mut client = HealthClient::new(channel);
    let check = client.check(request);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving
    )
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill9();
        }
        for replica in &mut self.replicas {
            replica.process.kill9();
        }
        if std::thread::panicking() {
            eprintln!("process logs: {} (kept)", self.dir.path().display());
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
        }
    }
}
