//! Switchboard session-store: the owner of shared fleet state (sessions and
//! servers) and of the agent streams.
//!
//! Module map:
//! - [`service`]: the `SessionStore` gRPC service (sessions, servers, commands);
//! - [`agent_link`]: the `AgentLink` gRPC service (one stream per host), its
//!   registry of live streams, inventory reconciliation, fencing of stale
//!   owners, change-only writes, liveness and the reapers;
//! - [`connection_tokens`]: DCV connection-token verification (agent
//!   enrolment and credential checks are the store's enrolment role,
//!   `switchboard_store::enrolment`);
//! - [`routing`]: sending host commands to the replica owning the stream;
//! - [`page_token`]: signed, replica-independent `NextToken`s;
//! - [`queue_places`]: where queued sessions stand in the create-sessions queue (position, estimated wait);
//! - [`lifecycle`]: every transition of a session record (pure functions, applied with compare-and-set);
//! - `creation`: `StartSession` (one attempt on a host, to its outcome) and `SettleUnplaced`;
//! - `deletion`: DELETING → DELETED with the close command in the background;
//! - [`events`]: `ReadEvents`, the event stream's long polls, and the events this crate appends itself
//!   (permission changes, reaping warnings; the store appends session and server events);
//! - [`webhooks`]: webhook registration and the deliverer (one replica at a time, by lease; signed, retried,
//!   dead letters, guarded against reaching private networks);
//! - [`dns_names`]: the registered server DNS names (`GetServerDnsNames`), cached per replica;
//! - [`error`]: the crate's error enum.
//!
//! [`serve`] runs both ports on already-bound listeners until shutdown: the
//! internal gRPC port (`SessionStore`) and the agent port, which carries
//! `AgentLink`, `AgentEnrolment` and the DCV verifier's HTTP route on one
//! listener (tonic routes merged into an axum router, served by axum-server
//! with rustls, ALPN h2 and http/1.1).

pub mod agent_link;
pub mod connection_tokens;
mod creation;
mod deletion;
pub mod dns_names;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod metrics;
pub mod page_token;
pub mod queue_places;
pub mod routing;
pub mod service;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;

use serde::{Deserialize, Serialize};

use switchboard_common::Shutdown;
use switchboard_common::grpc::{health, serve_router};
use switchboard_proto::agent_enrolment_server::AgentEnrolmentServer;
use switchboard_proto::agent_link_server::AgentLinkServer;
use switchboard_proto::session_store_server::SessionStoreServer;

pub use error::{Error, Result};

use agent_link::AgentLinkService;
use agent_link::hub::AgentHub;
use routing::CommandRouter;
use service::StoreService;
use switchboard_store::Backend;

/// Largest gRPC message either service accepts or sends (screenshots).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Settings of one session-store replica. The fields with a flag are settings (file key, `--flag`,
/// `SWITCHBOARD_*` variable; see `switchboard_common::config`); the others are worked out by the binary at
/// start (`replica_id`, `advertised_address`, the client CA's contents) or are for tests.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct StoreConfig {
    /// Unique id of this replica; names it as the owner of agent streams.
    #[arg(skip = StoreConfig::default().replica_id)]
    #[serde(skip)]
    pub replica_id: String,
    /// `http://host:port` of this replica's internal gRPC port, where other
    /// replicas forward commands for the agents it owns.
    #[arg(skip = StoreConfig::default().advertised_address)]
    #[serde(skip)]
    pub advertised_address: String,
    /// Seconds between agent updates (sent to agents in the welcome).
    #[arg(long)]
    pub update_interval_seconds: u32,
    /// Lifetime of an agent-stream ownership lease, in seconds; renewed every third of it while the agent
    /// keeps talking. Liveness rests on this lease, not on per-update writes: a host whose lease lapsed (its
    /// replica died) is declared unreachable by the sweep. Default: two update intervals.
    #[arg(long)]
    pub agent_lease_seconds: u32,
    /// How often a connected host's volatile telemetry (load average, memory
    /// in use) is written when nothing else changed. Changes that matter for
    /// placement or the API (identity, tags, limits, health, endpoints,
    /// sessions) are written at once; an unchanged update writes nothing.
    #[arg(skip = StoreConfig::default().telemetry_write_interval)]
    #[serde(skip, default = "telemetry_write_interval")]
    pub telemetry_write_interval: Duration,
    /// How long a host command may take when the caller sets no timeout, in seconds.
    #[arg(long)]
    pub command_timeout_seconds: u64,
    /// The lifecycle's timers (flattened: settings of their own).
    #[command(flatten)]
    #[serde(flatten)]
    pub timers: Timers,
    /// Whether hosts seen for the first time are open for placement.
    #[arg(long)]
    pub default_server_open: bool,
    /// Whether agents must present registered agent-client credentials (see `switchboard_store::enrolment`).
    /// Off only for tests and migrations.
    #[arg(long)]
    pub require_agent_credentials: bool,
    /// Expected `iss` of DCV connection tokens (the auth service's `issuer`).
    #[arg(long)]
    pub connection_token_issuer: String,
    /// Whether a DCV connection token passes the verifier only once.
    #[arg(long)]
    pub connection_token_single_use: bool,
    /// CA certificates of the agent port's clients (the `agent_client_ca_file` setting, followed when it
    /// changes): when
    /// set, every connection to the agent port (agents, and the DCV server calling the token verifier) must
    /// present a certificate chaining to one of them, or the TLS handshake fails. `None`: no client
    /// certificates (the default).
    #[arg(skip)]
    #[serde(skip)]
    pub agent_client_ca: Option<switchboard_common::tls_reload::ReloadingCa>,
    /// Webhook delivery (flattened: settings of their own).
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: webhooks::WebhookSettings,
}

fn telemetry_write_interval() -> Duration {
    StoreConfig::default().telemetry_write_interval
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            replica_id: "session-store-0".to_owned(),
            advertised_address: "http://127.0.0.1:8446".to_owned(),
            update_interval_seconds: 10,
            agent_lease_seconds: 20,
            telemetry_write_interval: Duration::from_secs(60),
            command_timeout_seconds: 30,
            timers: Timers::default(),
            default_server_open: true,
            require_agent_credentials: true,
            connection_token_issuer: "switchboard".to_owned(),
            connection_token_single_use: false,
            agent_client_ca: None,
            webhooks: webhooks::WebhookSettings::default(),
        }
    }
}

/// How long sessions and servers wait before the lifecycle ends or forgets them: settings of
/// session-store, and of `switchboard up` (both flatten this). The original broker's names are accepted
/// as aliases where they differ (flags, and keys of the settings file: `switchboard_common::config`).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Timers {
    /// After how long without its agent an unreachable server is forgotten, in seconds (its open/closed flag
    /// is kept for its return). The original's `seconds-before-deleting-unreachable-dcv-server`.
    #[arg(long, alias = "seconds-before-deleting-unreachable-dcv-server")]
    pub seconds_before_deleting_unreachable_server: u64,
    /// After how long without its agent the sessions of an unreachable server become DELETED, in seconds.
    /// The original's `seconds-before-deleting-sessions-unreachable-server`.
    #[arg(long)]
    pub seconds_before_deleting_sessions_unreachable_server: u64,
    /// How long DELETED sessions stay visible (DescribeSessions) before their records are removed, in
    /// seconds. The original's `delete-session-duration-seconds`.
    #[arg(long, alias = "delete-session-duration-seconds")]
    pub deleted_session_retention_seconds: u64,
    /// How long a session may wait on someone else before it ends DELETED with a StateReason saying so, in
    /// seconds: a CREATING session on placement (a placement replica died mid-create) or on its host's
    /// confirmation (the create command timed out or its replica died), a DELETING one on its host's
    /// confirmation of the close (resent with backoff meanwhile). Counts from the session's last lifecycle
    /// step. Keep it above placement's `create_timeout_seconds` plus the telemetry write interval (60 s),
    /// so a slow but successful create is confirmed by the host's inventory first.
    #[arg(long)]
    pub stalled_session_seconds: u64,
    /// How long a server closed without Force while sessions run on it drains before it closes as with
    /// Force, in seconds, when the CloseServers item gives no `DrainTimeoutSeconds`: draining, it takes no
    /// new session, and it closes when its last session ends (within one update interval) or at the
    /// deadline (its sessions keep running). 0 (the default): no drain, such a close is refused with
    /// `SERVER_HAS_SESSIONS`, as the original broker does. At most 604800 (7 days).
    #[arg(long)]
    pub drain_timeout_seconds: u32,
    /// Reap sessions without a client connection for this long, in seconds (as their hosts report it;
    /// counted from the later of the session's creation and its last disconnection): the session is
    /// deleted as by DeleteSessions, after a warning (`reap_warning_seconds`). A CreateSessions item's
    /// `MaxIdleSeconds` overrides it for its session. 0 (the default): off. At most 31536000 (365 days).
    #[arg(long)]
    pub session_max_idle_seconds: u32,
    /// Reap sessions this long after their creation, connected or not, in seconds, after a warning
    /// (`reap_warning_seconds`). A CreateSessions item's `MaxLifetimeSeconds` overrides it for its session.
    /// 0 (the default): off. At most 31536000 (365 days).
    #[arg(long)]
    pub session_max_lifetime_seconds: u32,
    /// How long before reaping a session (idle or lifetime limit) the reap is announced, in seconds: the
    /// session's `ReapAt` and `ReapReason` are set then, and a client connection in that window cancels an
    /// idle reap. 0: no warning. At most 86400 (1 day).
    #[arg(long)]
    pub reap_warning_seconds: u32,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            seconds_before_deleting_unreachable_server: 1800,
            seconds_before_deleting_sessions_unreachable_server: 1800,
            deleted_session_retention_seconds: 300,
            stalled_session_seconds: 180,
            drain_timeout_seconds: 0,
            session_max_idle_seconds: 0,
            session_max_lifetime_seconds: 0,
            reap_warning_seconds: 300,
        }
    }
}

impl Timers {
    /// The reaper's broker-wide limits (sessions may carry their own).
    pub fn reap_policy(&self) -> lifecycle::reap::ReapPolicy {
        lifecycle::reap::ReapPolicy {
            max_idle_seconds: self.session_max_idle_seconds,
            max_lifetime_seconds: self.session_max_lifetime_seconds,
            warning_seconds: self.reap_warning_seconds,
        }
    }

    /// Refuses values beyond the contract's bounds.
    fn check(&self) -> Result<()> {
        use switchboard_proto::contract::{DRAIN_TIMEOUT_MAX_SECONDS, REAP_MAX_SECONDS, REAP_WARNING_MAX_SECONDS};
        let limits = [
            ("drain_timeout_seconds", self.drain_timeout_seconds, DRAIN_TIMEOUT_MAX_SECONDS),
            ("session_max_idle_seconds", self.session_max_idle_seconds, REAP_MAX_SECONDS),
            ("session_max_lifetime_seconds", self.session_max_lifetime_seconds, REAP_MAX_SECONDS),
            ("reap_warning_seconds", self.reap_warning_seconds, REAP_WARNING_MAX_SECONDS),
        ];
        match limits.into_iter().find(|(_, value, max)| value > max) {
            Some((name, value, max)) => Err(Error::Config(format!("{name} is {value}, at most {max}"))),
            None => Ok(()),
        }
    }

    /// The lifecycle's bounds on CREATING and DELETING.
    pub fn bounds(&self) -> lifecycle::Bounds {
        let stalled_ms = i64::try_from(self.stalled_session_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        lifecycle::Bounds { stalled_ms }
    }
}

impl StoreConfig {
    /// How long `SendCommand` waits for a host when the caller gives no timeout.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_seconds)
    }

    /// The lifecycle's bounds on CREATING and DELETING.
    pub fn bounds(&self) -> lifecycle::Bounds {
        self.timers.bounds()
    }
}

/// The bound sockets the session-store serves on.
pub struct Listeners {
    /// Internal gRPC (`SessionStore` + health), plaintext.
    pub grpc: tokio::net::TcpListener,
    /// Agent endpoint (`AgentLink`, `AgentEnrolment`, health and the DCV
    /// verifier), TLS when an identity is given.
    pub agent: tokio::net::TcpListener,
}

/// How often the agent port pings its agents (HTTP/2) and probes their TCP connections.
pub const AGENT_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How long an agent has to answer a ping before its connection is dropped.
pub const AGENT_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves `SessionStore` on `listeners.grpc` and `AgentLink` on
/// `listeners.agent` (TLS with `agent_tls`, mutual with `config.agent_client_ca`; both follow their files) until `shutdown` is
/// cancelled,
/// then ends the agent streams and lets in-flight calls finish. Also runs the
/// liveness sweep.
///
/// The agent port pings every agent stream every [`AGENT_KEEPALIVE_INTERVAL`] and drops a connection
/// whose ping is not answered within [`AGENT_KEEPALIVE_TIMEOUT`].
pub async fn serve(
    config: StoreConfig,
    listeners: Listeners,
    backend: Arc<dyn Backend>,
    agent_tls: Option<switchboard_common::tls_reload::ReloadingIdentity>,
    shutdown: Shutdown,
) -> Result<()> {
    config.timers.check()?;
    metrics::describe();
    let hub = Arc::new(AgentHub::default());
    let router =
        Arc::new(CommandRouter::new(config.replica_id.clone(), backend.clone(), hub.clone(), config.command_timeout()));
    let guard = Arc::new(webhooks::Guard::new(config.webhooks.clone()).map_err(|e| Error::Config(format!("{e:#}")))?);
    let service = StoreService::new(backend.clone(), router.clone())
        .with_webhook_guard(guard.clone())
        .with_bounds(config.bounds())
        .with_drain_timeout_seconds(config.timers.drain_timeout_seconds);
    let store = SessionStoreServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let link = AgentLinkServer::new(AgentLinkService::new(config.clone(), backend.clone(), hub, shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let enrolment = AgentEnrolmentServer::new(agent_link::enrolment::AgentEnrolmentService::new(backend.clone()));
    let verifier = Arc::new(connection_tokens::ConnectionTokenVerifier::new(
        backend.clone(),
        config.connection_token_issuer.clone(),
        config.connection_token_single_use,
    ));

    // Both ports: NOT_SERVING while the backend does not answer and from the start of shutdown.
    let (store_health, store_health_service) = health();
    let probe = switchboard_store::reachable::probe(backend.clone());
    let store_names = vec![SessionStoreServer::<StoreService>::NAME];
    switchboard_common::health::keep(store_health, store_names, Some(probe.clone()), shutdown.clone()).await;
    let (link_health, link_health_service) = health();
    let link_names = vec![AgentLinkServer::<AgentLinkService>::NAME];
    let link_http_health = switchboard_common::health::http_router(link_health.clone());
    switchboard_common::health::keep(link_health, link_names, Some(probe), shutdown.clone()).await;

    let grpc_router = switchboard_common::grpc::server_builder()?.add_service(store_health_service).add_service(store);
    let agent_router = tonic::service::Routes::new(link_health_service)
        .add_service(link)
        .add_service(enrolment)
        .prepare()
        .into_axum_router()
        .merge(agent_link::verifier::router(verifier))
        .merge(link_http_health);

    let stop_liveness = shutdown.child_token();
    let hosts: Arc<dyn routing::HostCommands> = router.clone();
    let deliverer =
        tokio::spawn(webhooks::run(backend.clone(), guard, config.replica_id.clone(), stop_liveness.clone()));
    let liveness = tokio::spawn(agent_link::liveness::run(backend, hosts, config.clone(), stop_liveness.clone()));
    tracing::info!(replica_id = %config.replica_id, "session-store serving");
    let served = tokio::try_join!(
        async { serve_router(grpc_router, listeners.grpc, shutdown.clone()).await.map_err(Error::from) },
        serve_agent_port(agent_router, listeners.agent, agent_tls, config.agent_client_ca.as_ref(), shutdown.clone()),
    );
    // Stops the sweep also when a server failed before shutdown was requested.
    stop_liveness.cancel();
    let _ = liveness.await;
    let _ = deliverer.await;
    served?;
    Ok(())
}

/// How long the agent port waits for open connections after shutdown (agent
/// streams end themselves at once; this bounds verifier requests).
const AGENT_PORT_DRAIN: Duration = Duration::from_secs(10);

/// Serves the agent port: HTTPS (h2 for gRPC, http/1.1 for the DCV verifier)
/// with `tls` (requiring client certificates from `client_ca` when given; both asked at every handshake),
/// plaintext h2c/http1 without (tests).
async fn serve_agent_port(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    tls: Option<switchboard_common::tls_reload::ReloadingIdentity>,
    client_ca: Option<&switchboard_common::tls_reload::ReloadingCa>,
    shutdown: Shutdown,
) -> Result<()> {
    if tls.is_none() && client_ca.is_some() {
        let why = "a client CA (agent_client_ca_file) needs the agent port to serve TLS";
        return Err(Error::AgentPort(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)));
    }
    let handle = axum_server::Handle::new();
    let watcher = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        watcher.graceful_shutdown(Some(AGENT_PORT_DRAIN));
    });
    let listener = listener.into_std().map_err(Error::AgentPort)?;
    let service = router.into_make_service();
    // Agents hold one stream each for hours, often through load balancers: the broker pings idle agents (so
    // dead ones are found and proxies keep the connection) and accepts the agents' own pings, which they send
    // every 30 s by default. hyper enforces no minimum ping interval on the server side.
    match tls {
        Some(identity) => {
            switchboard_common::tls::install_crypto_provider();
            let config = switchboard_common::tls_reload::server_config(
                &identity,
                client_ca,
                switchboard_common::tls::HTTPS_ALPN,
            )?;
            tracing::info!(client_certificates = client_ca.is_some(), "agent port serving https");
            let mut server = switchboard_common::listen::https(listener, config)?;
            server
                .http_builder()
                .http2()
                .keep_alive_interval(Some(AGENT_KEEPALIVE_INTERVAL))
                .keep_alive_timeout(AGENT_KEEPALIVE_TIMEOUT);
            server.handle(handle).serve(service).await?;
        }
        None => {
            let mut server = switchboard_common::listen::http(listener)?;
            server
                .http_builder()
                .http2()
                .keep_alive_interval(Some(AGENT_KEEPALIVE_INTERVAL))
                .keep_alive_timeout(AGENT_KEEPALIVE_TIMEOUT);
            server.handle(handle).serve(service).await?;
        }
    }
    Ok(())
}
