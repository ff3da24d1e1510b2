//! Switchboard auth: who may call the API, and the tokens that prove it.
//!
//! - [`keys`]: Ed25519 signing keys in the shared store, the current key, the JWKS document.
//! - [`tokens`]: access-token claims and the [`tokens::Signer`] that issues JWTs.
//! - [`clients`]: the API client registry (id, name, hash of a 256-bit secret, scope) and credential
//!   checks.
//! - [`servers`]: trusted external authorization servers (JWKS URL, pinned algorithm, issuer, audience).
//! - [`service`]: the `Auth` gRPC service (token issuance, key set, admin registry calls).
//! - [`agent_admin`]: the `AgentAdmin` gRPC service (software statements, agent clients, server DNS
//!   mappings), admin-only.
//! - [`metrics`]: the tokens-issued counter.
//!
//! [`serve`] is the one entry point: it makes sure a signing key exists, then serves `Auth` plus
//! gRPC health on a bound listener until shutdown.
//!
//! Every replica is equal: keys and clients live in the store ([`ApiRegistry`]; agent enrolment in
//! [`Enrolment`]), two replicas racing to create
//! the first key is harmless (all keys in the set verify; each replica signs with the newest one).

pub mod agent_admin;
pub mod clients;
pub mod keys;
pub mod metrics;
pub mod servers;
pub mod service;
pub mod tokens;

use std::fmt;
use std::sync::Arc;
use tonic::server::NamedService;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_common::{ErrorCode, ServiceError, Shutdown};
use switchboard_proto::agent_admin_server::AgentAdminServer;
use switchboard_proto::auth_server::AuthServer;
use switchboard_store::{ApiRegistry, BackendError, DnsMappings, Enrolment, Reachable};
use tokio::net::TcpListener;

/// Settings of the auth service; every replica must use the same values. Each field is one setting
/// (file key, `--flag`, `SWITCHBOARD_*` variable; see `switchboard_common::config`).
#[derive(Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AuthConfig {
    /// `iss` of issued tokens, checked by verifiers (the same on every replica).
    #[arg(long)]
    pub issuer: String,
    /// `aud` of issued tokens, checked by verifiers (the same on every replica).
    #[arg(long)]
    pub audience: String,
    /// Access-token lifetime in seconds; also how long a retired key stays in the key set.
    #[arg(long)]
    pub token_lifetime_seconds: u32,
    /// Connection-token lifetime in minutes, 1..=1440 (the original broker's
    /// `connect-session-token-duration-minutes`).
    #[arg(long)]
    pub connect_session_token_duration_minutes: u32,
    /// Seconds between `renew-auth-server-api-key` publishing a new key and signing with it; it is
    /// published at once, so this must exceed the gateways' `key_set_refresh_seconds`.
    #[arg(long)]
    pub key_publish_delay_seconds: u32,
    /// SHA-256 of the admin token that guards the client registry RPCs ([`admin_token_hash`]);
    /// `None` disables those RPCs. Only the hash is kept so the token itself never sits in memory.
    /// Not a setting: the binary reads the token from `admin_token_file`.
    #[arg(skip)]
    #[serde(skip)]
    pub admin_token_sha256: Option<[u8; 32]>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "switchboard".to_owned(),
            audience: "switchboard-api".to_owned(),
            token_lifetime_seconds: 3600,
            connect_session_token_duration_minutes: 60,
            key_publish_delay_seconds: 60,
            admin_token_sha256: None,
        }
    }
}

impl AuthConfig {
    /// Lifetime of a connection token, in seconds.
    pub fn connection_token_lifetime_seconds(&self) -> u32 {
        self.connect_session_token_duration_minutes.saturating_mul(60)
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=24 * 60).contains(&self.connect_session_token_duration_minutes) {
            return Err("connect_session_token_duration_minutes must be 1..=1440".into());
        }
        if self.token_lifetime_seconds == 0 {
            return Err("token_lifetime_seconds must be above 0".into());
        }
        Ok(())
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("token_lifetime_seconds", &self.token_lifetime_seconds)
            .field("connect_session_token_duration_minutes", &self.connect_session_token_duration_minutes)
            .field("key_publish_delay_seconds", &self.key_publish_delay_seconds)
            .field("admin_token_sha256", &self.admin_token_sha256.map(|_| "[redacted]"))
            .finish()
    }
}

/// The value to put in [`AuthConfig::admin_token_sha256`] for an admin token.
pub fn admin_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What can go wrong in the auth service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown client or wrong secret; deliberately the same error for both.
    #[error("invalid client credentials")]
    InvalidCredentials,
    /// A request field is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An admin call came without the admin token, or with a wrong one.
    #[error("admin token missing or invalid")]
    AdminUnauthenticated,
    /// Admin calls are disabled (no admin token configured).
    #[error("admin channel disabled")]
    AdminDisabled,
    /// The named API client does not exist.
    #[error("api client not found")]
    ClientNotFound,
    /// No authorization server is registered with that URL.
    #[error("auth server not found")]
    AuthServerNotFound,
    /// There is no signing key to issue tokens with.
    #[error("no signing key available")]
    NoSigningKey,
    /// Generating, encoding or signing with a key failed.
    #[error("key handling failed: {0}")]
    Key(String),
    /// The storage backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The gRPC server failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ServiceError for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::InvalidCredentials | Self::AdminUnauthenticated => ErrorCode::Unauthenticated,
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::AdminDisabled => ErrorCode::PermissionDenied,
            Self::ClientNotFound | Self::AuthServerNotFound => ErrorCode::NotFound,
            Self::NoSigningKey => ErrorCode::Unavailable,
            Self::Key(_) | Self::Transport(_) => ErrorCode::Internal,
            Self::Backend(error) => error.error_code(),
        }
    }
}

impl From<Error> for tonic::Status {
    /// Through the one policy: internal detail stays in the logs (`switchboard_common::error`).
    fn from(error: Error) -> Self {
        switchboard_common::error::to_status(&error)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves the `Auth` service and gRPC health on `listener` until `shutdown` is cancelled.
///
/// Makes sure a signing key exists first (creating one if the backend has none), so the key set
/// is never empty once health reports serving. Health turns `NOT_SERVING` while `reachable` (the
/// backend) does not answer and from the start of shutdown ([`switchboard_common::health::keep`]).
pub async fn serve(
    config: AuthConfig,
    listener: TcpListener,
    registry: Arc<dyn ApiRegistry>,
    enrolment: Arc<dyn Enrolment>,
    dns: Arc<dyn DnsMappings>,
    reachable: Arc<dyn Reachable>,
    shutdown: Shutdown,
) -> Result<()> {
    metrics::describe();
    let key = keys::ensure_signing_key(registry.as_ref()).await?;
    tracing::info!(kid = %key.kid, issuer = %config.issuer, "auth signing key ready");
    let (health_reporter, health_service) = switchboard_common::grpc::health();
    let agent_admin =
        agent_admin::AgentAdminService::new(service::AdminGuard::new(config.admin_token_sha256), enrolment, dns);
    let auth = service::AuthService::new(config, registry);
    let services =
        vec![AuthServer::<service::AuthService>::NAME, AgentAdminServer::<agent_admin::AgentAdminService>::NAME];
    let probe = Some(switchboard_store::reachable::probe(reachable));
    switchboard_common::health::keep(health_reporter, services, probe, shutdown.clone()).await;
    let router = switchboard_common::grpc::server_builder()?
        .add_service(health_service)
        .add_service(AuthServer::new(auth))
        .add_service(AgentAdminServer::new(agent_admin));
    switchboard_common::grpc::serve_router(router, listener, shutdown).await?;
    tracing::info!("auth service stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_admin_hash() {
        let config = AuthConfig { admin_token_sha256: Some(admin_token_hash("hunter2")), ..AuthConfig::default() };
        let printed = format!("{config:?}");
        assert!(printed.contains("[redacted]"));
        let hash_byte = format!("{}", admin_token_hash("hunter2")[0]);
        assert!(!printed.contains(&format!("[{hash_byte},")));
    }

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let status: tonic::Status = Error::Key("pem parse error at byte 7".to_owned()).into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "Internal error");
        let status: tonic::Status = Error::InvalidCredentials.into();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "invalid client credentials");
    }
}
