//! The tonic `Placement` service.
//!
//! `CreateSessions` answers at once, like the original broker: each valid item
//! is recorded as CREATING / SESSION_PLACING and returned as successful, and a
//! background [`driver`](crate::driver) task places it. If placement later
//! finds no host, or every host fails to create the session, the record becomes
//! DELETED with the explanation as its `StateReason`, which clients observe with
//! DescribeSessions.
//!
//! Design choice: in addition, a cheap synchronous pre-check lists the servers
//! once per call and puts an item straight into the unsuccessful list when no
//! server could possibly take it (none open, reachable, healthy, matching and
//! not visibly full). That answers the common "empty or closed fleet" case
//! immediately instead of through a session that exists only to be DELETED.
//! Items with `EnqueueRequest` skip the pre-check: they are meant to wait for
//! capacity (queueing itself is a later issue; for now they fail in the
//! background with "(queueing is not available yet)"). The pre-check is only
//! advisory; the store's atomic `AssignSession` remains the authority.

use std::{collections::HashSet, sync::Arc};

use switchboard_common::{ErrorCode, time::now_ms};
use switchboard_proto::{
    CreateSessionOutcome, CreateSessionRequest, CreateSessionSpec, CreateSessionsRequest, CreateSessionsResponse,
    ServerRecord, SessionRecord, SessionState, create_session_outcome::Outcome, placement_server::Placement,
    session_store_client::SessionStoreClient,
};
use tonic::{Request, Response, Status, transport::Channel};

use crate::{PlacementConfig, Placements, driver::Driver, place, requirements::Requirements, validate::validate_spec};

/// Substate of a session waiting for a host.
pub const SESSION_PLACING: &str = "SESSION_PLACING";

/// The `Placement` gRPC service.
#[derive(Debug, Clone)]
pub struct PlacementService {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<Channel>,
    placements: Placements,
}

impl PlacementService {
    /// A service using `store` for all shared state.
    pub fn new(config: PlacementConfig, store: SessionStoreClient<Channel>) -> Self {
        Self { config: Arc::new(config), store, placements: Placements::new() }
    }

    /// The background placement tasks, for draining at shutdown.
    pub fn placements(&self) -> Placements {
        self.placements.clone()
    }

    /// Records one valid spec and starts placing it; `Err` is a FailureReason.
    async fn accept(&self, request_id: &str, spec: CreateSessionSpec) -> Result<SessionRecord, String> {
        let session = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            r#type: spec.r#type,
            max_concurrent_clients: spec.max_concurrent_clients,
            state: SessionState::Creating as i32,
            substate: SESSION_PLACING.into(),
            creation_time_unix_ms: now_ms(),
            storage_root: spec.storage_root.clone(),
            spec: Some(spec),
            ..Default::default()
        };
        let stored = self.store.clone().create_session(CreateSessionRequest { session: Some(session) }).await;
        let stored = match stored {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(request_id, code = ?status.code(), message = status.message(), "recording session failed");
                return Err(match ErrorCode::from_grpc(status.code()) {
                    ErrorCode::Unavailable | ErrorCode::Timeout => "the session store is unavailable; try again".into(),
                    _ => "the session could not be recorded".into(),
                });
            }
        };
        tracing::info!(request_id, session_id = %stored.id, owner = %stored.owner, "session accepted");
        let driver = Driver::new(self.config.clone(), self.store.clone());
        let permits = self.placements.permits();
        let session = stored.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            driver.run(session).await;
        });
        Ok(stored)
    }
}

/// The pre-check: `Some(explanation)` when no server could take `spec`.
fn no_candidate(servers: &[ServerRecord], spec: &CreateSessionSpec) -> Option<String> {
    let requirements = Requirements::parse(&spec.requirements).ok()?;
    let ranking = place::rank(servers, spec.r#type(), &requirements, &HashSet::new());
    ranking.candidates.is_empty().then(|| ranking.census.explanation())
}

#[tonic::async_trait]
impl Placement for PlacementService {
    async fn create_sessions(
        &self,
        request: Request<CreateSessionsRequest>,
    ) -> Result<Response<CreateSessionsResponse>, Status> {
        let CreateSessionsRequest { request_id, specs } = request.into_inner();
        if specs.len() > self.config.max_batch {
            return Err(ErrorCode::InvalidArgument
                .status(format!("at most {} sessions may be created per request", self.config.max_batch)));
        }
        let verdicts: Vec<_> = specs.iter().map(|spec| validate_spec(spec, &self.config)).collect();
        let needs_servers = specs.iter().zip(&verdicts).any(|(spec, verdict)| verdict.is_ok() && !spec.enqueue_request);
        let servers = match needs_servers {
            true => place::list_all_servers(&mut self.store.clone()).await?,
            false => Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(specs.len());
        for (spec, verdict) in specs.into_iter().zip(verdicts) {
            let result = match verdict {
                Err(reason) => Err(reason),
                Ok(()) => match (!spec.enqueue_request).then(|| no_candidate(&servers, &spec)).flatten() {
                    Some(explanation) => Err(explanation),
                    None => self.accept(&request_id, spec).await,
                },
            };
            let outcome = match result {
                Ok(session) => Outcome::Session(session),
                Err(reason) => {
                    tracing::info!(request_id, %reason, "create item refused");
                    Outcome::FailureReason(reason)
                }
            };
            outcomes.push(CreateSessionOutcome { outcome: Some(outcome) });
        }
        Ok(Response::new(CreateSessionsResponse { outcomes }))
    }
}
