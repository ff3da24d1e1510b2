//! The tonic `Placement` service.
//!
//! `CreateSessions` answers at once, like the original broker: each valid item
//! is recorded as CREATING / SESSION_PLACING and returned as successful, and a
//! background [`driver`](crate::driver) task places it. If placement later
//! finds no host, or every host fails to create the session, the record becomes
//! DELETED with the explanation as its `StateReason`, which clients observe with
//! DescribeSessions; an item with `EnqueueRequest` waits in the queue instead.
//!
//! Design choice: in addition, a cheap synchronous pre-check against the
//! in-memory fleet view puts an item straight into the unsuccessful list when
//! no server could possibly take it (none open, reachable, healthy, matching,
//! of the right OS and not visibly full), with the explanation in numbers. The
//! view is synced once before such a refusal, so a host that just joined is
//! not missed. Items with `EnqueueRequest` skip the pre-check: they are meant
//! to wait for capacity. The pre-check is only advisory; the store's atomic
//! `AssignSession` remains the authority.
//!
//! Known difference: `max_concurrent_sessions_per_user` is not part of the
//! pre-check (the owner's sessions per host are known only to the store, and
//! the view holds no per-owner counts). An item without `EnqueueRequest`
//! whose every otherwise fitting host has its owner at that limit is
//! therefore returned as successful (CREATING), and moments later becomes
//! DELETED with a `StateReason` such as `no server matches: 1 server; 1
//! refused by the store (USER_SESSION_LIMIT)` instead of being in the
//! unsuccessful list at once. With `EnqueueRequest` it is queued as usual and
//! woken when one of the owner's sessions on such a host ends.
//!
//! `ExplainPlacement` validates an expression and dry-runs it against the
//! fleet view (synced first): the servers that would take such a session,
//! best first, and the rejection counts by reason.

use std::{collections::HashMap, sync::Arc};

use switchboard_common::{ErrorCode, time::now_ms};
use switchboard_proto::{
    CreateSessionOutcome, CreateSessionRequest, CreateSessionSpec, CreateSessionsRequest, CreateSessionsResponse,
    ExplainPlacementRequest, ExplainPlacementResponse, SessionRecord, SessionState, SessionType,
    create_session_outcome::Outcome, placement_server::Placement, session_store_client::SessionStoreClient,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, transport::Channel};

use crate::{
    PlacementConfig, Placements,
    driver::Driver,
    fleet::FleetView,
    place::{self, PlacementRequest, SessionKind},
    queue::QueueWorker,
    requirements::Requirements,
    validate::{REQUIREMENTS_MAX_CHARS, validate_spec},
};

/// Substate of a session waiting for a host.
pub const SESSION_PLACING: &str = "SESSION_PLACING";
/// Matching servers `ExplainPlacement` lists when the caller does not say.
const EXPLAIN_DEFAULT_SERVERS: u32 = 100;
/// Most matching servers `ExplainPlacement` lists.
const EXPLAIN_MAX_SERVERS: u32 = 1000;

/// The `Placement` gRPC service.
#[derive(Debug, Clone)]
pub struct PlacementService {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<Channel>,
    placements: Placements,
    fleet: Arc<FleetView>,
    queue_wake: Arc<Notify>,
}

impl PlacementService {
    /// A service using `store` for all shared state.
    pub fn new(config: PlacementConfig, store: SessionStoreClient<Channel>) -> Self {
        let fleet = Arc::new(FleetView::new(store.clone()));
        Self { config: Arc::new(config), store, placements: Placements::new(), fleet, queue_wake: Arc::default() }
    }

    /// The background placement tasks, for draining at shutdown.
    pub fn placements(&self) -> Placements {
        self.placements.clone()
    }

    /// The fleet view (run its sync loop with [`FleetView::run`]).
    pub fn fleet(&self) -> Arc<FleetView> {
        self.fleet.clone()
    }

    /// The settings.
    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// The queue worker of this replica (run it with [`QueueWorker::run`]).
    pub fn queue_worker(&self) -> QueueWorker {
        QueueWorker::new(
            self.config.clone(),
            self.store.clone(),
            self.fleet.clone(),
            self.queue_wake.clone(),
            self.placements.clone(),
        )
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
        let driver = Driver::new(self.config.clone(), self.store.clone(), self.fleet.clone(), self.queue_wake.clone());
        let permits = self.placements.permits();
        let session = stored.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            driver.run(session).await;
        });
        Ok(stored)
    }

    /// The pre-check: `Some(explanation)` when no server in the view could take `spec`.
    fn no_candidate(&self, spec: &CreateSessionSpec) -> Option<String> {
        let requirements = Requirements::parse(&spec.requirements).ok()?;
        let excluded = HashMap::new();
        let request =
            PlacementRequest { kind: SessionKind::of(spec), requirements: &requirements, excluded: &excluded };
        let ranking = self.fleet.read(|fleet| place::rank(fleet, &request, &self.config.strategy, 1));
        ranking.candidates.is_empty().then(|| ranking.census.explanation())
    }
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
        let precheck = |spec: &CreateSessionSpec, verdict: &Result<(), String>| {
            verdict.is_ok() && !spec.enqueue_request && self.no_candidate(spec).is_some()
        };
        if specs.iter().zip(&verdicts).any(|(spec, verdict)| precheck(spec, verdict)) {
            // Refuse only on a fresh view.
            self.fleet.sync().await?;
        }
        let mut outcomes = Vec::with_capacity(specs.len());
        for (spec, verdict) in specs.into_iter().zip(verdicts) {
            let result = match verdict {
                Err(reason) => Err(reason),
                Ok(()) => match (!spec.enqueue_request).then(|| self.no_candidate(&spec)).flatten() {
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

    async fn explain_placement(
        &self,
        request: Request<ExplainPlacementRequest>,
    ) -> Result<Response<ExplainPlacementResponse>, Status> {
        let request = request.into_inner();
        let max_servers = match request.max_servers {
            0 => EXPLAIN_DEFAULT_SERVERS,
            n => n.min(EXPLAIN_MAX_SERVERS),
        };
        let length = request.requirements.chars().count();
        if length > REQUIREMENTS_MAX_CHARS {
            return Ok(Response::new(ExplainPlacementResponse {
                error: format!("Requirements must be at most {REQUIREMENTS_MAX_CHARS} characters"),
                ..Default::default()
            }));
        }
        let requirements = match Requirements::compile(&request.requirements) {
            Ok(requirements) => requirements,
            Err(error) => {
                return Ok(Response::new(ExplainPlacementResponse {
                    error: error.to_string(),
                    error_column: error.column.and_then(|c| u32::try_from(c).ok()).unwrap_or_default(),
                    ..Default::default()
                }));
            }
        };
        let session_type = match request.r#type() {
            SessionType::Unspecified => SessionType::Virtual,
            other => other,
        };
        if request.dcv_gl_enabled && session_type != SessionType::Virtual {
            return Ok(Response::new(ExplainPlacementResponse {
                error: "DcvGlEnabled is supported with VIRTUAL sessions only".into(),
                ..Default::default()
            }));
        }
        self.fleet.sync().await?;
        let excluded = HashMap::new();
        let placement = PlacementRequest {
            kind: SessionKind::new(session_type, &request.autorun_file),
            requirements: &requirements,
            excluded: &excluded,
        };
        let ranking =
            self.fleet.read(|fleet| place::rank(fleet, &placement, &self.config.strategy, max_servers as usize));
        let census = &ranking.census;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut rejections: HashMap<String, u32> = HashMap::new();
        for (reason, n) in census.rejections() {
            if reason != "not tried (attempt limit)" {
                rejections.insert(reason, count(n));
            }
        }
        let explanation = if ranking.candidates.is_empty() {
            census.explanation()
        } else {
            format!("{} of {} servers could take the session", census.fitting, census.total)
        };
        Ok(Response::new(ExplainPlacementResponse {
            valid: true,
            total_servers: count(census.total),
            matching_count: count(census.fitting),
            matching_servers: ranking.candidates,
            rejections,
            explanation,
            ..Default::default()
        }))
    }
}
