//! Switchboard session-store: the owner of shared fleet state (sessions and
//! servers) and of the agent streams.
//!
//! Module map:
//! - [`backend`]: the [`backend::Backend`] trait, the embedded and Redis
//!   implementations, [`backend::open_backend`] and the shared conformance
//!   suite;
//! - [`service`]: the `SessionStore` gRPC service (sessions, servers, commands);
//! - [`agent_link`]: the `AgentLink` gRPC service (one stream per host), its
//!   registry of live streams, inventory reconciliation, fencing of stale
//!   owners, change-only writes, liveness and the reapers;
//! - [`routing`]: sending host commands to the replica owning the stream;
//! - [`page_token`]: signed, replica-independent `NextToken`s;
//! - `deletion`: DELETING → DELETED with the close command in the background;
//! - [`error`]: the crate's error enum.
//!
//! [`serve`] runs both services on already-bound listeners until shutdown.

pub mod agent_link;
pub mod backend;
mod deletion;
pub mod error;
pub mod page_token;
pub mod routing;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::grpc::{health, serve_router};
use switchboard_proto::agent_link_server::AgentLinkServer;
use switchboard_proto::session_store_server::SessionStoreServer;
use tonic::transport::{Server, ServerTlsConfig};

pub use error::{Error, Result};

use agent_link::AgentLinkService;
use agent_link::hub::AgentHub;
use backend::Backend;
use routing::CommandRouter;
use service::StoreService;

/// Largest gRPC message either service accepts or sends (screenshots).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Settings of one session-store replica.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Unique id of this replica; names it as the owner of agent streams.
    pub replica_id: String,
    /// `http://host:port` of this replica's internal gRPC port, where other
    /// replicas forward commands for the agents it owns.
    pub advertised_address: String,
    /// How often agents send updates (sent to them in the welcome).
    pub update_interval_seconds: u32,
    /// Lifetime of an agent-stream ownership lease; renewed every third of it
    /// while the agent keeps talking. Liveness rests on this lease, not on
    /// per-update writes: a host whose lease lapsed (its replica died) is
    /// declared unreachable by the sweep. Default: two update intervals.
    pub agent_lease_seconds: u32,
    /// How often a connected host's volatile telemetry (load average, memory
    /// in use) is written when nothing else changed. Changes that matter for
    /// placement or the API (identity, tags, limits, health, endpoints,
    /// sessions) are written at once; an unchanged update writes nothing.
    pub telemetry_write_interval: Duration,
    /// After how long without its agent an unreachable server is forgotten
    /// (its open/closed flag is kept for its return). DCV's
    /// `seconds-before-deleting-unreachable-server`.
    pub seconds_before_deleting_unreachable_server: u64,
    /// After how long without its agent the sessions of an unreachable
    /// server become DELETED. DCV's
    /// `seconds-before-deleting-sessions-unreachable-server`.
    pub seconds_before_deleting_sessions_unreachable_server: u64,
    /// How long DELETED sessions stay visible (DescribeSessions) before
    /// their records are removed.
    pub deleted_session_retention_seconds: u64,
    /// How long `SendCommand` waits for a host when the caller gives no timeout.
    pub command_timeout: Duration,
    /// Whether servers seen for the first time are open for placement.
    pub default_server_open: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            replica_id: "session-store-0".to_owned(),
            advertised_address: "http://127.0.0.1:8446".to_owned(),
            update_interval_seconds: 10,
            agent_lease_seconds: 20,
            telemetry_write_interval: Duration::from_secs(60),
            seconds_before_deleting_unreachable_server: 1800,
            seconds_before_deleting_sessions_unreachable_server: 1800,
            deleted_session_retention_seconds: 300,
            command_timeout: Duration::from_secs(30),
            default_server_open: true,
        }
    }
}

/// The bound sockets the session-store serves on.
pub struct Listeners {
    /// Internal gRPC (`SessionStore` + health), plaintext.
    pub grpc: tokio::net::TcpListener,
    /// Agent endpoint (`AgentLink` + health), TLS when an identity is given.
    pub agent: tokio::net::TcpListener,
}

/// How often the agent port pings its agents (HTTP/2) and probes their TCP connections.
pub const AGENT_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How long an agent has to answer a ping before its connection is dropped.
pub const AGENT_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves `SessionStore` on `listeners.grpc` and `AgentLink` on
/// `listeners.agent` (TLS with `agent_tls`) until `shutdown` is cancelled,
/// then ends the agent streams and lets in-flight calls finish. Also runs the
/// liveness sweep.
///
/// The agent port pings every agent stream every [`AGENT_KEEPALIVE_INTERVAL`] and drops a connection
/// whose ping is not answered within [`AGENT_KEEPALIVE_TIMEOUT`].
pub async fn serve(
    config: StoreConfig,
    listeners: Listeners,
    backend: Arc<dyn Backend>,
    agent_tls: Option<switchboard_common::tls::Identity>,
    shutdown: Shutdown,
) -> Result<()> {
    let hub = Arc::new(AgentHub::default());
    let router =
        Arc::new(CommandRouter::new(config.replica_id.clone(), backend.clone(), hub.clone(), config.command_timeout));
    let store = SessionStoreServer::new(StoreService::new(backend.clone(), router))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let link = AgentLinkServer::new(AgentLinkService::new(config.clone(), backend.clone(), hub, shutdown.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (store_health, store_health_service) = health();
    store_health.set_serving::<SessionStoreServer<StoreService>>().await;
    let (link_health, link_health_service) = health();
    link_health.set_serving::<AgentLinkServer<AgentLinkService>>().await;

    let grpc_router = Server::builder().add_service(store_health_service).add_service(store);
    // Agents hold one stream each for hours, often through load balancers: the broker pings idle agents
    // (so dead ones are found and proxies keep the connection) and accepts the agents' own pings, which
    // they send every 30 s by default. hyper enforces no minimum ping interval on the server side.
    let mut agent_server = Server::builder()
        .http2_keepalive_interval(Some(AGENT_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(AGENT_KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(AGENT_KEEPALIVE_INTERVAL));
    if let Some(identity) = agent_tls {
        switchboard_common::tls::install_crypto_provider();
        let identity = tonic::transport::Identity::from_pem(identity.cert_pem, identity.key_pem);
        agent_server = agent_server.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let agent_router = agent_server.add_service(link_health_service).add_service(link);

    let stop_liveness = shutdown.child_token();
    let liveness = tokio::spawn(agent_link::liveness::run(backend, config.clone(), stop_liveness.clone()));
    tracing::info!(replica_id = %config.replica_id, "session-store serving");
    let served = tokio::try_join!(
        serve_router(grpc_router, listeners.grpc, shutdown.clone()),
        serve_router(agent_router, listeners.agent, shutdown.clone()),
    );
    // Stops the sweep also when a server failed before shutdown was requested.
    stop_liveness.cancel();
    let _ = liveness.await;
    served?;
    Ok(())
}
