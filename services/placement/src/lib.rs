//! Switchboard placement: validates CreateSessions items, chooses hosts and
//! drives session creation on them.
//!
//! - [`validate`]: per-item checks of a `CreateSessionSpec` (FailureReason texts).
//! - [`requirements`]: the `Requirements` expression language (grammar,
//!   semantics, compile cache); its module doc is the language reference.
//! - [`fleet`]: the in-memory view of the fleet, kept current from
//!   session-store's change feed (no listing of the store per decision).
//! - [`place`]: the placement rules, the strategy, `AssignSession` over the
//!   best candidates, and the "no server matches" explanation in numbers.
//! - [`service`]: the tonic `Placement` service (records sessions, answers at
//!   once; `ExplainPlacement` dry-runs an expression against the fleet).
//! - [`driver`]: the background task that places one session, creates it on the
//!   host, retries elsewhere on failure, queues it when nothing fits and it
//!   asked to be queued, and records the final state.
//! - [`queue`]: the create-sessions queue worker: wakes queued requests when
//!   capacity appears, times them out.
//! - [`idempotency`]: CreateSessions' `Idempotency-Key`: claims and stored
//!   answers in the store's `Idempotency` role.
//!
//! Placement's one record of its own is the idempotency record, kept in the
//! store's `Idempotency` role (shared by every replica); the fleet view is a
//! cache, the queue lives in session-store's backend, and every decision is
//! committed by session-store's atomic operations, so any number of replicas
//! may run.

pub mod driver;
pub mod fleet;
pub mod idempotency;
pub mod metrics;
pub mod place;
pub mod queue;
pub mod requirements;
pub mod service;
pub mod validate;

use std::{sync::Arc, time::Duration};
use tonic::server::NamedService;

use serde::{Deserialize, Serialize};

use switchboard_common::grpc::GrpcChannel;
use switchboard_common::{ErrorCode, ServiceError, Shutdown};
use switchboard_proto::{placement_server::PlacementServer, session_store_client::SessionStoreClient};
use switchboard_store::{BackendError, Idempotency, Reachable};
use tokio::net::TcpListener;

pub use service::PlacementService;

/// Placement settings; each field is one setting (file key, `--flag`, `SWITCHBOARD_*` variable; see
/// `switchboard_common::config`), its doc the flag's help.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct PlacementConfig {
    /// Other hosts tried after creation fails on one, unless the item sets `DisableRetryOnFailure` (DCV's
    /// `create-sessions-number-of-retries-on-failure`).
    #[arg(long)]
    pub create_sessions_number_of_retries_on_failure: u32,
    /// Most `AutorunFileArguments` items accepted per session (DCV's `autorun-file-arguments-max-size`).
    #[arg(long)]
    pub autorun_file_arguments_max_size: usize,
    /// Longest accepted `AutorunFileArguments` item, in characters (DCV's
    /// `autorun-file-arguments-max-argument-length`).
    #[arg(long)]
    pub autorun_file_arguments_max_argument_length: usize,
    /// Most items in one CreateSessions call: the placement binary's `max_batch` setting, or the gateway's
    /// in `switchboard up` (one setting for both there), so not a flag of this struct.
    #[arg(skip = 100_usize)]
    #[serde(skip)]
    pub max_batch: usize,
    /// How long a host may take to create a session, in seconds, before the attempt fails.
    #[arg(long)]
    pub create_timeout_seconds: u64,
    /// How hosts that fit are ordered (see [`place`]).
    #[command(flatten)]
    #[serde(flatten)]
    pub strategy: place::StrategyConfig,
    /// Most requests waiting in the create-sessions queue (DCV's `create-sessions-queue-max-size`).
    #[arg(long)]
    pub create_sessions_queue_max_size: u32,
    /// How long a queued request may wait, in seconds (DCV's `create-sessions-queue-max-time-seconds`).
    #[arg(long)]
    pub create_sessions_queue_max_time_seconds: u64,
    /// How often the fleet view asks session-store for changes, in milliseconds (at least 10).
    #[arg(long)]
    pub fleet_sync_interval_ms: u64,
    /// How often the queue worker looks for requests queued by other replicas and for timed-out ones, in
    /// milliseconds (at least 10; changes of the fleet wake it at once).
    #[arg(long)]
    pub queue_poll_interval_ms: u64,
    /// How long the answer of a CreateSessions request with an `Idempotency-Key` is kept, in seconds: a
    /// retry with the same key within it gets the same answer and creates nothing.
    #[arg(long)]
    pub idempotency_ttl_seconds: u64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            create_sessions_number_of_retries_on_failure: 2,
            autorun_file_arguments_max_size: 50,
            autorun_file_arguments_max_argument_length: 150,
            max_batch: 100,
            create_timeout_seconds: 60,
            strategy: place::StrategyConfig::default(),
            create_sessions_queue_max_size: 1000,
            create_sessions_queue_max_time_seconds: 1800,
            fleet_sync_interval_ms: 250,
            queue_poll_interval_ms: 1000,
            idempotency_ttl_seconds: 86_400,
        }
    }
}

impl PlacementConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.autorun_file_arguments_max_size == 0 {
            return Err("autorun_file_arguments_max_size must be above 0".into());
        }
        if self.autorun_file_arguments_max_argument_length == 0 {
            return Err("autorun_file_arguments_max_argument_length must be above 0".into());
        }
        if self.max_batch == 0 {
            return Err("max_batch must be above 0".into());
        }
        if self.strategy.rare_os_percent > 100 {
            return Err("rare_os_percent must be at most 100".into());
        }
        if self.idempotency_ttl_seconds == 0 {
            return Err("idempotency_ttl_seconds must be above 0".into());
        }
        Ok(())
    }

    /// How long a host may take to create a session.
    pub fn create_timeout(&self) -> Duration {
        Duration::from_secs(self.create_timeout_seconds)
    }

    /// How long a request may wait in the queue.
    pub fn create_sessions_queue_max_time(&self) -> Duration {
        Duration::from_secs(self.create_sessions_queue_max_time_seconds)
    }

    /// How often the fleet view syncs.
    pub fn fleet_sync_interval(&self) -> Duration {
        Duration::from_millis(self.fleet_sync_interval_ms.max(10))
    }

    /// How long an idempotent answer is kept.
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_seconds)
    }

    /// How often the queue worker polls.
    pub fn queue_poll_interval(&self) -> Duration {
        Duration::from_millis(self.queue_poll_interval_ms.max(10))
    }
}

/// What can go wrong in placement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A session-store call failed.
    #[error("session-store call failed: {}", .0.message())]
    Store(tonic::Status),
    /// Read-modify-write of a session kept losing to concurrent writers.
    #[error("concurrent updates kept conflicting on session {0}")]
    Conflict(String),
    /// session-store answered something the contract does not allow.
    #[error("unexpected answer from session-store: {0}")]
    Protocol(String),
    /// Serving gRPC failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The store's idempotency role failed.
    #[error("idempotency record: {0}")]
    Backend(#[from] BackendError),
    /// The request's `Idempotency-Key` is malformed.
    #[error("{}", switchboard_proto::contract::IDEMPOTENCY_KEY_INVALID)]
    IdempotencyKeyInvalid,
    /// A request with the same key is still running.
    #[error("{}", switchboard_proto::contract::IDEMPOTENCY_KEY_IN_PROGRESS)]
    IdempotencyInProgress,
    /// The key was used with a different request body.
    #[error("{}", switchboard_proto::contract::IDEMPOTENCY_KEY_REUSED)]
    IdempotencyMismatch,
    /// A task this request ran failed (panicked).
    #[error("task failed: {0}")]
    Task(String),
    /// The caller broke the contract between the gateway and placement.
    #[error("{0}")]
    Contract(String),
}

impl ServiceError for Error {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Store(status) => ErrorCode::from_grpc(status.code()),
            Self::Conflict(_) | Self::IdempotencyInProgress => ErrorCode::Conflict,
            Self::Protocol(_) | Self::Transport(_) | Self::Task(_) => ErrorCode::Internal,
            Self::Backend(error) => error.code(),
            Self::IdempotencyKeyInvalid | Self::Contract(_) => ErrorCode::InvalidArgument,
            Self::IdempotencyMismatch => ErrorCode::Unprocessable,
        }
    }

    /// A store refusal passes on only what session-store marked public.
    fn is_public(&self) -> bool {
        match self {
            Self::Store(status) => status.metadata().contains_key(switchboard_common::error::PUBLIC_MESSAGE_KEY),
            Self::Backend(_) | Self::Contract(_) => false,
            _ => !self.error_code().is_server_side(),
        }
    }
}

impl Error {
    /// Whether retrying may succeed: session-store was unreachable or
    /// answered nothing (a replica died mid-call), not a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Store(status) if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
            )
        )
    }
}

impl From<Error> for tonic::Status {
    /// Through the one policy (`switchboard_common::error::to_status`).
    fn from(error: Error) -> Self {
        switchboard_common::error::to_status(&error)
    }
}

/// Result alias for placement.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves `Placement` and gRPC health on `listener` until `shutdown` is
/// cancelled; then lets in-flight calls finish and waits (up to
/// `create_timeout`) for background placements to complete. `idempotency`
/// keeps the `Idempotency-Key` records (the store every replica shares); health turns `NOT_SERVING`
/// while `reachable` (that store) does not answer and from the start of shutdown.
pub async fn serve(
    config: PlacementConfig,
    listener: TcpListener,
    store: SessionStoreClient<GrpcChannel>,
    idempotency: Arc<dyn Idempotency>,
    reachable: Arc<dyn Reachable>,
    shutdown: Shutdown,
) -> Result<()> {
    metrics::describe();
    let create_timeout = config.create_timeout();
    let service = PlacementService::new(config, store, idempotency);
    let placements = service.placements();
    let background = shutdown.child_token();
    let fleet = service.fleet();
    let sync_interval = service.config().fleet_sync_interval();
    let sync = tokio::spawn({
        let background = background.clone();
        async move { fleet.run(sync_interval, background).await }
    });
    let worker = tokio::spawn(service.queue_worker().run(background.clone()));
    let (reporter, health) = switchboard_common::grpc::health();
    let probe = Some(switchboard_store::reachable::probe(reachable));
    switchboard_common::health::keep(
        reporter,
        vec![PlacementServer::<PlacementService>::NAME],
        probe,
        shutdown.clone(),
    )
    .await;
    let router =
        switchboard_common::grpc::server_builder()?.add_service(health).add_service(PlacementServer::new(service));
    tracing::info!(addr = ?listener.local_addr().ok(), "placement serving");
    let served = switchboard_common::grpc::serve_router(router, listener, shutdown).await;
    background.cancel();
    let _ = tokio::join!(sync, worker);
    served?;
    if !placements.drain(create_timeout).await {
        tracing::warn!("background placements still running at shutdown; their sessions stay CREATING");
    }
    tracing::info!("placement stopped");
    Ok(())
}

/// Handle on the background placement tasks, for draining at shutdown.
#[derive(Clone, Debug)]
pub struct Placements(Arc<tokio::sync::Semaphore>);

impl Placements {
    /// Background placements that may run at once.
    pub const CONCURRENCY: u32 = 64;

    pub(crate) fn new() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(Self::CONCURRENCY as usize)))
    }

    /// Runs `placement` in the background, in `span`, once one of the [`Self::CONCURRENCY`] slots is free.
    pub(crate) fn spawn(&self, span: tracing::Span, placement: impl std::future::Future<Output = ()> + Send + 'static) {
        let permits = self.0.clone();
        let work = async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            placement.await;
        };
        tokio::spawn(tracing::Instrument::instrument(work, span));
    }

    /// Waits until every queued or running placement finished, or `timeout`
    /// passed; `true` when all finished. The semaphore is fair, so tasks queued
    /// before this call run before it returns.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.0.acquire_many(Self::CONCURRENCY)).await.is_ok_and(|permit| permit.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_brokers() {
        let config = PlacementConfig::default();
        // create-sessions-number-of-retries-on-failure, create-sessions-queue-max-size,
        // create-sessions-queue-max-time-seconds, autorun-file-arguments-max-size and
        // autorun-file-arguments-max-argument-length.
        assert_eq!(config.create_sessions_number_of_retries_on_failure, 2);
        assert_eq!(config.create_sessions_queue_max_size, 1000);
        assert_eq!(config.create_sessions_queue_max_time(), Duration::from_secs(1800));
        assert_eq!(
            (config.autorun_file_arguments_max_size, config.autorun_file_arguments_max_argument_length),
            (50, 150)
        );
        assert_eq!(config.idempotency_ttl(), Duration::from_secs(86_400), "an idempotency key lives a day");
    }
}
