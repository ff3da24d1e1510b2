//! Switchboard gateway: the DCV Session Manager REST API in front of the
//! gRPC services.
//!
//! - [`model`]: the API's JSON shapes, exactly as `dcv-session-manager-api.yaml`.
//! - [`convert`]: proto records to API shapes and createSessions items to specs.
//! - [`extract`]: JSON body extraction with `{"error": ...}` rejections.
//! - [`error`]: [`ApiError`], the one error type, and its JSON responses.
//! - [`auth`]: the bearer-token middleware, [`auth::Caller`] and the [`auth::TokenCheck`] seam.
//! - [`scope`]: the table of operations and the access each needs (scoped API clients).
//! - [`limits`]: rate limits and the header size limit.
//! - [`routes`]: the handlers (`/oauth2/token`, the nine API operations, the served spec, `/health*`).
//! - [`spec`]: the served OpenAPI document (official file + documented additions) and its check.
//! - [`resolver`]: the Connection Gateway session resolver (`POST /resolveSession`, its own port).
//! - [`verify`]: [`verify::TokenVerifier`], bearer tokens checked against the auth service's key set and
//!   registered external JWKS (algorithm pinned per key).
//!
//! The gateway holds no state: every request becomes calls to auth,
//! placement and session-store over gRPC, so any number of replicas may run.

pub mod auth;
pub mod convert;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod readiness;
pub mod resolver;
pub mod routes;
pub mod scope;
pub mod spec;
pub mod verify;

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use switchboard_common::grpc::GrpcChannel;
use switchboard_common::{Shutdown, tls_reload::ReloadingIdentity};
use switchboard_proto::{
    auth_client::AuthClient, placement_client::PlacementClient, session_store_client::SessionStoreClient,
};

pub use error::{ApiError, Result};
pub use routes::router;

/// Gateway settings; each field is one setting (file key, `--flag`, `SWITCHBOARD_*` variable; see
/// `switchboard_common::config`), its doc the flag's help.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct GatewayConfig {
    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long)]
    pub max_body_bytes: usize,
    /// Longest a request may take (then 504), in seconds; also the drain time at shutdown.
    #[arg(long)]
    pub request_timeout_seconds: u64,
    /// Most items in one batch request (createSessions, deleteSessions, …).
    #[arg(long)]
    pub max_batch: usize,
    /// Largest screenshot width when a request gives no `MaxWidth` (DCV's `session-screenshot-max-width`).
    #[arg(long)]
    pub session_screenshot_max_width: u32,
    /// Largest screenshot height when a request gives no `MaxHeight` (DCV's
    /// `session-screenshot-max-height`).
    #[arg(long)]
    pub session_screenshot_max_height: u32,
    /// Screenshot format, `png` or `jpeg` (DCV's `session-screenshot-format`).
    #[arg(long)]
    pub session_screenshot_format: String,
    /// How long a host command (permissions, screenshot) may take, in seconds.
    #[arg(long)]
    pub command_timeout_seconds: u64,
    /// Rate limits and the header size limit.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: limits::LimitsConfig,
    /// Longest a client's policy (existence, scope) is cached, in seconds: the revocation bound.
    #[arg(long)]
    pub client_cache_seconds: u64,
    /// Longest the token verifier uses a fetched key set, in seconds (a rotated key is published before it
    /// signs; keep this below auth's `key_publish_delay_seconds`).
    #[arg(long)]
    pub key_set_refresh_seconds: u64,
    /// Least time between two key-set fetches of the token verifier. Not a setting (tests shorten it).
    #[arg(skip = crate::verify::MIN_REFRESH_INTERVAL)]
    #[serde(skip, default = "min_refresh_interval")]
    pub key_set_min_refresh_interval: Duration,
}

fn min_refresh_interval() -> Duration {
    crate::verify::MIN_REFRESH_INTERVAL
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 60,
            max_batch: 100,
            session_screenshot_max_width: 160,
            session_screenshot_max_height: 100,
            session_screenshot_format: "png".to_owned(),
            command_timeout_seconds: 30,
            limits: limits::LimitsConfig::default(),
            client_cache_seconds: 10,
            key_set_refresh_seconds: crate::verify::KEY_SET_MAX_AGE.as_secs(),
            key_set_min_refresh_interval: crate::verify::MIN_REFRESH_INTERVAL,
        }
    }
}

impl GatewayConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.session_screenshot_format.as_str(), "png" | "jpeg") {
            return Err(format!(
                "session_screenshot_format must be png or jpeg, not {:?}",
                self.session_screenshot_format
            ));
        }
        if self.session_screenshot_max_width == 0 || self.session_screenshot_max_height == 0 {
            return Err("session_screenshot_max_width and _height must be greater than 0".into());
        }
        if self.max_batch == 0 {
            return Err("max_batch must be greater than 0".into());
        }
        Ok(())
    }

    /// Longest a request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// How long a host command may take.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_seconds)
    }

    /// How long a client's policy is cached.
    pub fn client_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.client_cache_seconds)
    }

    /// The token verifier's refresh behaviour.
    pub fn verifier(&self) -> crate::verify::VerifierConfig {
        crate::verify::VerifierConfig {
            key_set_max_age: Duration::from_secs(self.key_set_refresh_seconds),
            min_refresh_interval: self.key_set_min_refresh_interval,
        }
    }
}

/// gRPC clients of the services behind the API.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Tokens and key set.
    pub auth: AuthClient<GrpcChannel>,
    /// Session creation.
    pub placement: PlacementClient<GrpcChannel>,
    /// Sessions and servers.
    pub store: SessionStoreClient<GrpcChannel>,
    /// The channels under the clients, for their health checks.
    channels: [(&'static str, GrpcChannel); 3],
}

impl Upstreams {
    /// Clients over the channels to auth, placement and session-store.
    pub fn new(auth: GrpcChannel, placement: GrpcChannel, store: GrpcChannel) -> Self {
        Self {
            auth: AuthClient::new(auth.clone()),
            placement: PlacementClient::new(placement.clone()),
            store: SessionStoreClient::new(store.clone()),
            channels: [("auth", auth), ("placement", placement), ("session-store", store)],
        }
    }

    /// A gRPC health probe of each upstream, by name.
    pub fn probes(&self) -> Vec<(&'static str, switchboard_common::health::Probe)> {
        self.channels
            .iter()
            .map(|(name, channel)| (*name, switchboard_common::health::grpc_probe(channel.clone())))
            .collect()
    }

    /// The DNS names registered for `server_id` (`register-server-dns-mappings`), if any.
    pub async fn server_dns_names(&self, server_id: &str) -> Result<Option<switchboard_proto::ServerDnsNames>> {
        let request = switchboard_proto::GetServerDnsNamesRequest { server_ids: vec![server_id.to_owned()] };
        let mut names = self.store.clone().get_server_dns_names(request).await?.into_inner().names;
        Ok(names.remove(server_id))
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<GatewayConfig>,
    /// Backing services.
    pub upstreams: Upstreams,
    /// Bearer-token verification.
    pub tokens: Arc<dyn auth::TokenCheck>,
    /// Rate limiters of this replica.
    pub limits: Arc<limits::Limits>,
    /// Cancelled when the process drains; readiness turns false.
    pub shutdown: Shutdown,
    /// The upstreams' reachability, for readiness.
    pub readiness: Arc<readiness::Readiness>,
}

impl AppState {
    /// State verifying tokens with the auth service's key set.
    pub fn new(config: GatewayConfig, upstreams: Upstreams, shutdown: Shutdown) -> Self {
        let tokens = auth::token_verifier(upstreams.auth.clone(), config.verifier(), config.client_cache_ttl());
        let readiness = readiness::Readiness::watch(upstreams.probes(), shutdown.clone());
        Self { readiness, ..Self::with_token_check(config, upstreams, tokens, shutdown) }
    }

    /// State with a custom token check and no upstream health checks (tests).
    pub fn with_token_check(
        config: GatewayConfig,
        upstreams: Upstreams,
        tokens: Arc<dyn auth::TokenCheck>,
        shutdown: Shutdown,
    ) -> Self {
        let limits = Arc::new(limits::Limits::new(config.limits));
        let readiness = Arc::default();
        Self { config: Arc::new(config), upstreams, tokens, limits, shutdown, readiness }
    }
}

/// Serves the API on `listener` (HTTPS with `tls`, plain HTTP without, for
/// tests) until `shutdown` is cancelled, then drains in-flight requests for at
/// most `request_timeout`.
pub async fn serve(
    config: GatewayConfig,
    listener: std::net::TcpListener,
    tls: Option<ReloadingIdentity>,
    upstreams: Upstreams,
    shutdown: Shutdown,
) -> Result<()> {
    metrics::describe();
    let grace = config.request_timeout();
    let max_header_bytes = config.limits.max_header_bytes;
    let app = router(AppState::new(config, upstreams, shutdown.clone()));
    let handle = axum_server::Handle::new();
    let watcher = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("gateway draining");
        watcher.graceful_shutdown(Some(grace));
    });
    let addr = listener.local_addr().ok();
    match tls {
        Some(identity) => {
            // The certificate is asked at every handshake, so a rotated one is served without a restart.
            let tls_config =
                switchboard_common::tls_reload::server_config(&identity, None, switchboard_common::tls::HTTPS_ALPN)?;
            tracing::info!(?addr, "gateway serving https");
            let mut server = switchboard_common::listen::https(listener, tls_config)?.handle(handle);
            bound_headers(server.http_builder(), max_header_bytes);
            server.serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
        }
        None => {
            tracing::info!(?addr, "gateway serving plain http");
            let mut server = switchboard_common::listen::http(listener)?.handle(handle);
            bound_headers(server.http_builder(), max_header_bytes);
            server.serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
        }
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Bounds what hyper buffers for request heads (HTTP/1 read buffer, HTTP/2 header list), so an
/// oversized head is refused before it reaches the router's exact check (`limits::limit_headers`).
fn bound_headers(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, max: usize) {
    let head = max.saturating_add(8 * 1024).max(8 * 1024);
    builder.http1().max_buf_size(head);
    builder.http2().max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
}
