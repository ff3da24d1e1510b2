//! Switchboard gateway: the DCV Session Manager REST API in front of the
//! gRPC services.
//!
//! - [`model`]: the API's JSON shapes, exactly as `dcv-session-manager-api.yaml`.
//! - [`convert`]: proto records to API shapes and createSessions items to specs.
//! - [`extract`]: JSON body extraction with `{"error": ...}` rejections.
//! - [`error`]: [`ApiError`], the one error type, and its JSON responses.
//! - [`auth`]: the bearer-token middleware and the [`auth::TokenCheck`] seam.
//! - [`routes`]: the handlers (`/oauth2/token`, the nine API operations, the served spec, `/health*`).
//! - [`spec`]: the served OpenAPI document (official file + documented additions) and its check.
//! - [`resolver`]: the Connection Gateway session resolver (`POST /resolveSession`, its own port).
//!
//! The gateway holds no state: every request becomes calls to auth,
//! placement and session-store over gRPC, so any number of replicas may run.

pub mod auth;
pub mod convert;
pub mod error;
pub mod extract;
pub mod model;
pub mod resolver;
pub mod routes;
pub mod spec;

use std::{sync::Arc, time::Duration};

use switchboard_common::{Shutdown, tls::Identity};
use switchboard_proto::{
    auth_client::AuthClient, placement_client::PlacementClient, session_store_client::SessionStoreClient,
};
use tonic::transport::Channel;

pub use error::{ApiError, Result};
pub use routes::router;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Longest a request may take before it gets 504; also the drain time at shutdown.
    pub request_timeout: Duration,
    /// Most items in one batch request (createSessions, deleteSessions, …).
    pub max_batch: usize,
    /// Largest screenshot width when a request gives no `MaxWidth` (`session-screenshot-max-width`).
    pub screenshot_max_width: u32,
    /// Largest screenshot height when a request gives no `MaxHeight` (`session-screenshot-max-height`).
    pub screenshot_max_height: u32,
    /// Screenshot format, `png` or `jpeg` (`session-screenshot-format`).
    pub screenshot_format: String,
    /// How long a host command (permissions, screenshot) may take.
    pub command_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_batch: 100,
            screenshot_max_width: 160,
            screenshot_max_height: 100,
            screenshot_format: "png".to_owned(),
            command_timeout: Duration::from_secs(30),
        }
    }
}

impl GatewayConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.screenshot_format.as_str(), "png" | "jpeg") {
            return Err(format!("session_screenshot_format must be png or jpeg, not {:?}", self.screenshot_format));
        }
        if self.screenshot_max_width == 0 || self.screenshot_max_height == 0 {
            return Err("session_screenshot_max_width and _height must be greater than 0".into());
        }
        if self.max_batch == 0 {
            return Err("max_batch must be greater than 0".into());
        }
        Ok(())
    }
}

/// gRPC clients of the services behind the API.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Tokens and key set.
    pub auth: AuthClient<Channel>,
    /// Session creation.
    pub placement: PlacementClient<Channel>,
    /// Sessions and servers.
    pub store: SessionStoreClient<Channel>,
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
    /// Cancelled when the process drains; readiness turns false.
    pub shutdown: Shutdown,
}

impl AppState {
    /// State verifying tokens with the auth service's key set.
    pub fn new(config: GatewayConfig, upstreams: Upstreams, shutdown: Shutdown) -> Self {
        let tokens = auth::token_verifier(upstreams.auth.clone());
        Self::with_token_check(config, upstreams, tokens, shutdown)
    }

    /// State with a custom token check (tests).
    pub fn with_token_check(
        config: GatewayConfig,
        upstreams: Upstreams,
        tokens: Arc<dyn auth::TokenCheck>,
        shutdown: Shutdown,
    ) -> Self {
        Self { config: Arc::new(config), upstreams, tokens, shutdown }
    }
}

/// Serves the API on `listener` (HTTPS with `tls`, plain HTTP without, for
/// tests) until `shutdown` is cancelled, then drains in-flight requests for at
/// most `request_timeout`.
pub async fn serve(
    config: GatewayConfig,
    listener: std::net::TcpListener,
    tls: Option<Identity>,
    upstreams: Upstreams,
    shutdown: Shutdown,
) -> Result<()> {
    let grace = config.request_timeout;
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
            let tls_config = switchboard_common::tls::https_server_config(&identity)?;
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls_config);
            tracing::info!(?addr, "gateway serving https");
            axum_server::from_tcp_rustls(listener, rustls)?.handle(handle).serve(app.into_make_service()).await?;
        }
        None => {
            tracing::info!(?addr, "gateway serving plain http");
            axum_server::from_tcp(listener)?.handle(handle).serve(app.into_make_service()).await?;
        }
    }
    tracing::info!("gateway stopped");
    Ok(())
}
