//! The `AgentLink` service: one long-lived stream per DCV host.
//!
//! - [`stream`]: the per-stream session object (init / run / cleanup); every
//!   stream is authenticated (agent client credentials) and its hello's server
//!   id checked against the client's binding before anything is written;
//! - [`enrolment`]: the `AgentEnrolment` service (registration with a software
//!   statement);
//! - [`verifier`]: the DCV server's `POST /agent/validate-authentication-token`;
//! - [`hub`]: the streams this replica owns and the commands awaiting results;
//! - [`reconcile`]: turning an agent's full inventory into session writes;
//! - `changes`: which agent updates are worth a store write;
//! - [`liveness`]: marking hosts whose lease lapsed unreachable, and the
//!   reapers of long-gone servers and old DELETED sessions, on every replica.

mod changes;
pub mod enrolment;
pub mod hub;
pub mod liveness;
pub mod reconcile;
mod stream;
pub mod verifier;

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_common::Shutdown;
use switchboard_proto::agent_link_server::AgentLink;
use switchboard_proto::{AgentMessage, BrokerMessage, HostSession, ServerRecord, SessionState};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::StoreConfig;
use crate::lifecycle::Bounds;
use hub::AgentHub;
use reconcile::Change;
use switchboard_store::{Backend, BackendError, BackendResult, Fence};

/// Why a session's host went quiet.
pub const AGENT_UNREACHABLE: &str = "the host's agent is unreachable";

/// What every agent stream of this replica shares.
pub(crate) struct LinkContext {
    pub(crate) config: StoreConfig,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) hub: Arc<AgentHub>,
    pub(crate) shutdown: Shutdown,
}

/// The tonic `AgentLink` implementation.
pub struct AgentLinkService {
    context: Arc<LinkContext>,
}

impl AgentLinkService {
    /// A service whose streams register in `hub` and end on `shutdown`.
    pub fn new(config: StoreConfig, backend: Arc<dyn Backend>, hub: Arc<AgentHub>, shutdown: Shutdown) -> Self {
        Self { context: Arc::new(LinkContext { config, backend, hub, shutdown }) }
    }
}

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type ConnectStream = ReceiverStream<Result<BrokerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let client = if self.context.config.require_agent_credentials {
            let backend = self.context.backend.as_ref();
            Some(switchboard_store::enrolment::clients::authenticate(backend, request.metadata()).await?)
        } else {
            None
        };
        let mut incoming = request.into_inner();
        let session = stream::AgentSession::init(self.context.clone(), &mut incoming, client.as_ref()).await?;
        let outgoing_rx = session.start(incoming);
        Ok(Response::new(ReceiverStream::new(outgoing_rx)))
    }
}

/// Applies an agent's full inventory for `server_id`: makes the writes and returns the sessions to close
/// on the host and whether any still waits on it (see [`reconcile`]). Conflicts are skipped: the next inventory retries them. Every write
/// carries `fence`, so a superseded stream gets `Fenced`.
pub(crate) async fn apply_inventory(
    backend: &dyn Backend,
    server_id: &str,
    reported: &[HostSession],
    bounds: &Bounds,
    fence: Option<&Fence>,
) -> BackendResult<(Vec<String>, bool)> {
    let on_server = backend.sessions_on_server(server_id).await?;
    let known: HashSet<&str> = on_server.iter().map(|s| s.id.as_str()).collect();
    let other_ids: Vec<String> =
        reported.iter().filter(|h| !known.contains(h.id.as_str())).map(|h| h.id.clone()).collect();
    let elsewhere = if other_ids.is_empty() { Vec::new() } else { backend.get_sessions(&other_ids).await? };
    let now = switchboard_common::time::now_ms();
    let reconciled = reconcile::reconcile(server_id, reported, &on_server, &elsewhere, bounds, now);
    for change in reconciled.changes {
        let outcome = match change {
            Change::Insert(session) => backend.insert_session(session, fence).await.map(|_| ()),
            Change::Update { session, expected_revision } => {
                if session.state() == SessionState::Deleted && !session.state_reason.is_empty() {
                    tracing::info!(server_id, session_id = %session.id, reason = %session.state_reason, "session ended");
                }
                backend.update_session(session, expected_revision, fence).await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => {}
            Err(BackendError::Conflict(what) | BackendError::AlreadyExists(what)) => {
                tracing::debug!(server_id, %what, "inventory write raced; next report retries");
            }
            Err(error) => return Err(error),
        }
    }
    Ok((reconciled.to_close, reconciled.unsettled))
}

/// Marks a server unreachable and its READY sessions UNKNOWN. Idempotent,
/// CAS-based and fenced: a stream's cleanup passes its own
/// [`Fence::Owner`], the liveness sweep [`Fence::Unowned`], so neither can
/// undo a reconnect that already happened (the write fails with `Fenced`).
pub(crate) async fn mark_unreachable(
    backend: &dyn Backend,
    server: ServerRecord,
    default_open: bool,
    fence: &Fence,
) -> BackendResult<()> {
    let server_id = server.id.clone();
    if server.reachable {
        backend.upsert_server_report(ServerRecord { reachable: false, ..server }, default_open, Some(fence)).await?;
    }
    for session in backend.sessions_on_server(&server_id).await? {
        if session.state() != SessionState::Ready {
            continue;
        }
        let expected_revision = session.revision;
        let unknown = crate::lifecycle::host_unreachable(session, AGENT_UNREACHABLE);
        match backend.update_session(unknown, expected_revision, Some(fence)).await {
            Ok(_) | Err(BackendError::Conflict(_) | BackendError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
