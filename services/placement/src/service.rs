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
//! to wait for capacity (one refused by the per-user limit is woken when one
//! of the owner's sessions on such a host ends).
//!
//! The view holds no per-owner counts, so when every server that could take
//! an item limits `max_concurrent_sessions_per_user`, the pre-check reads the
//! owner's sessions (`SessionStore.ListSessions` with `owner`; non-DELETED
//! sessions on a server count, as in the store's `AssignSession`) and drops
//! the hosts where the owner is at the limit; if none is left the item fails
//! at once, e.g. `no server matches: 3 servers; 3 at the owner's session
//! limit`. The listing is skipped when some candidate has no per-user limit
//! or the candidates' limits add up to more than it may read; it reads at
//! most [`OWNER_PAGES`] pages of [`OWNER_PAGE_SIZE`] of the owner's records
//! within [`OWNER_LISTING_TIMEOUT`], and an owner with more records, a slow or
//! a failed listing leaves the item to the background placement (logged,
//! never an error).
//!
//! The pre-check is only advisory, for the immediate answer; the store's
//! atomic `AssignSession` remains the authority (with several replicas, or
//! several items of one owner in one request, an accepted item can still be
//! refused there and become DELETED with `… refused by the store
//! (USER_SESSION_LIMIT)`).
//!
//! `ExplainPlacement` validates an expression and dry-runs it against the
//! fleet view (synced first): the servers that would take such a session,
//! best first, and the rejection counts by reason.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
    time::Duration,
};

use switchboard_common::{ErrorCode, time::now_ms};
use switchboard_proto::{
    CreateSessionOutcome, CreateSessionRequest, CreateSessionSpec, CreateSessionsRequest, CreateSessionsResponse,
    ExplainPlacementRequest, ExplainPlacementResponse, ListSessionsRequest, SessionRecord, SessionState, SessionType,
    create_session_outcome::Outcome, placement_server::Placement, session_store_client::SessionStoreClient,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status, transport::Channel};

use crate::{
    PlacementConfig, Placements,
    driver::Driver,
    fleet::FleetView,
    place::{self, Exclusion, PlacementRequest, SessionKind},
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
/// Sessions per page when the pre-check reads an owner's sessions.
pub const OWNER_PAGE_SIZE: u32 = 1000;
/// Most pages of an owner's sessions the pre-check reads.
pub const OWNER_PAGES: usize = 2;
/// How long the pre-check waits for an owner's sessions.
pub const OWNER_LISTING_TIMEOUT: Duration = Duration::from_secs(2);
/// Most records of an owner the pre-check reads.
const OWNER_RECORDS_MAX: u64 = OWNER_PAGE_SIZE as u64 * OWNER_PAGES as u64;

/// Live sessions of one owner per server id.
type OwnerCounts = Arc<HashMap<String, usize>>;

/// What the pre-check concludes from the fleet view.
#[derive(Debug)]
enum Precheck {
    /// Some server could take the item (or the pre-check does not apply).
    Fits,
    /// No server could take it: the explanation.
    Refused(String),
    /// Every server that could take it limits sessions per owner (and their
    /// limits add up to no more than the listing reads): the owner's
    /// sessions decide.
    OwnerLimited,
}

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

    /// The pre-check of a valid item without `EnqueueRequest`:
    /// `Some(explanation)` when no server could take it now. Syncs the view
    /// once (per request, `synced`) before a refusal; reads an owner's
    /// sessions at most once per request (`owners`).
    async fn refusal(
        &self,
        spec: &CreateSessionSpec,
        synced: &mut bool,
        owners: &mut HashMap<String, Option<OwnerCounts>>,
    ) -> Result<Option<String>, Status> {
        let mut counts: Option<OwnerCounts> = None;
        loop {
            match self.precheck(spec, counts.as_deref()) {
                Precheck::Fits => return Ok(None),
                Precheck::OwnerLimited => {
                    let listed = match owners.entry(spec.owner.clone()) {
                        Entry::Occupied(entry) => entry.get().clone(),
                        Entry::Vacant(entry) => entry.insert(self.owner_sessions(&spec.owner).await).clone(),
                    };
                    // Unknown: leave the item to the store's check.
                    let Some(listed) = listed else { return Ok(None) };
                    counts = Some(listed);
                }
                Precheck::Refused(explanation) if *synced => return Ok(Some(explanation)),
                Precheck::Refused(_) => {
                    // Refuse only on a fresh view.
                    self.fleet.sync().await?;
                    *synced = true;
                }
            }
        }
    }

    /// The pre-check against the view. With `counts` (the owner's live
    /// sessions per server) hosts where the owner is at its
    /// `max_concurrent_sessions_per_user` are passed over; without, an item
    /// only such hosts could take is [`Precheck::OwnerLimited`].
    fn precheck(&self, spec: &CreateSessionSpec, counts: Option<&HashMap<String, usize>>) -> Precheck {
        let Ok(requirements) = Requirements::parse(&spec.requirements) else { return Precheck::Fits };
        let kind = SessionKind::of(spec);
        self.fleet.read(|fleet| {
            let eligible = self.fleet.eligible(fleet, kind, &requirements);
            let mut excluded = HashMap::new();
            let mut limits = 0u64;
            for server in place::fitting(fleet, &eligible, kind) {
                let limit = server.max_concurrent_sessions_per_user;
                if limit == 0 {
                    return Precheck::Fits;
                }
                match counts {
                    Some(counts) if counts.get(&server.id).copied().unwrap_or_default() < limit as usize => {
                        return Precheck::Fits;
                    }
                    Some(_) => {
                        excluded.insert(server.id.clone(), Exclusion::OwnerLimit);
                    }
                    None => {
                        // At the limit everywhere needs at least this many
                        // sessions; more than the listing reads is never
                        // refused, so do not list.
                        limits += u64::from(limit);
                        if limits > OWNER_RECORDS_MAX {
                            return Precheck::Fits;
                        }
                    }
                }
            }
            if counts.is_none() && limits > 0 {
                return Precheck::OwnerLimited;
            }
            let request = PlacementRequest { kind, requirements: &requirements, excluded: &excluded };
            let ranking = place::rank(fleet, &request, &self.config.strategy, 1);
            match ranking.candidates.is_empty() {
                true => Precheck::Refused(ranking.census.explanation()),
                false => Precheck::Fits,
            }
        })
    }

    /// The live (non-DELETED, placed) sessions of `owner` per server, as the
    /// store's `AssignSession` counts them; `None` when the owner has more
    /// records than the pre-check reads, or the listing failed or was slow.
    async fn owner_sessions(&self, owner: &str) -> Option<OwnerCounts> {
        let mut store = self.store.clone();
        let listing = async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            let mut after_id = String::new();
            for _ in 0..OWNER_PAGES {
                let request = ListSessionsRequest {
                    owner: Some(owner.to_owned()),
                    page_size: OWNER_PAGE_SIZE,
                    after_id,
                    ..Default::default()
                };
                let page = store.list_sessions(request).await?.into_inner();
                let live =
                    page.sessions.iter().filter(|s| s.state() != SessionState::Deleted && !s.server_id.is_empty());
                for session in live {
                    *counts.entry(session.server_id.clone()).or_default() += 1;
                }
                if page.last_id.is_empty() {
                    return Ok(Some(Arc::new(counts)));
                }
                after_id = page.last_id;
            }
            Ok::<_, Status>(None)
        };
        match tokio::time::timeout(OWNER_LISTING_TIMEOUT, listing).await {
            Ok(Ok(Some(counts))) => Some(counts),
            Ok(Ok(None)) => {
                tracing::debug!(
                    owner,
                    "the owner has more sessions than the pre-check reads; leaving the per-user limit to the store"
                );
                None
            }
            Ok(Err(status)) => {
                let (code, message) = (status.code(), status.message());
                tracing::warn!(
                    owner,
                    ?code,
                    message,
                    "listing the owner's sessions failed; leaving the limit to the store"
                );
                None
            }
            Err(_) => {
                tracing::warn!(
                    owner,
                    "listing the owner's sessions timed out; leaving the per-user limit to the store"
                );
                None
            }
        }
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
        let mut synced = false;
        let mut owners = HashMap::new();
        let mut outcomes = Vec::with_capacity(specs.len());
        for (spec, verdict) in specs.into_iter().zip(verdicts) {
            let result = match verdict {
                Err(reason) => Err(reason),
                Ok(()) if spec.enqueue_request => self.accept(&request_id, spec).await,
                Ok(()) => match self.refusal(&spec, &mut synced, &mut owners).await? {
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
