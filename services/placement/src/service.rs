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
//! an item limits `max_concurrent_sessions_per_user`, the pre-check makes one
//! store read of the owner's per-host counters, the same counters
//! `AssignSession` checks (`SessionStore.OwnerSessionCounts` for those
//! servers; no scan of the sessions), and drops the hosts where the owner is
//! at the limit; if none is left the item fails at once, e.g. `no server
//! matches: 3 servers; 3 at the owner's session limit`. The read is skipped
//! when some candidate has no per-user limit, or when there are more limited
//! candidates than one call may name ([`OWNER_COUNTS_MAX_IDS`]); it is made
//! at most once per owner per request (a later item of the owner needing a
//! host that read did not cover is not refused), and a slow (over
//! [`OWNER_COUNTS_TIMEOUT`]) or failed read leaves the item to the
//! background placement (logged, never an error).
//!
//! The pre-check is only advisory, for the immediate answer; the store's
//! atomic `AssignSession` remains the authority (with several replicas, or
//! several items of one owner in one request, an accepted item can still be
//! refused there and become DELETED with `… refused by the store
//! (USER_SESSION_LIMIT)`).
//!
//! A request with an `Idempotency-Key` claims it first and stores its answer
//! once done ([`crate::idempotency`]): a retry gets the same answer and creates
//! nothing.
//!
//! `ExplainPlacement` validates an expression and dry-runs it against the
//! fleet view (synced first): the servers that would take such a session,
//! best first, and the rejection counts by reason.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
    time::Duration,
};

use switchboard_common::grpc::GrpcChannel;
use switchboard_common::{ErrorCode, time::now_ms};
use switchboard_proto::contract::substate::SESSION_PLACING;
use switchboard_proto::{
    CreateSessionOutcome, CreateSessionSpec, CreateSessionsRequest, CreateSessionsResponse, ExplainPlacementRequest,
    ExplainPlacementResponse, OwnerSessionCountsRequest, RecordSessionsRequest, SessionRecord, SessionState,
    SessionType, create_session_outcome::Outcome, placement_server::Placement,
    session_store_client::SessionStoreClient,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    PlacementConfig, Placements,
    driver::Driver,
    fleet::FleetView,
    idempotency::{Begin, IdempotencyKeys},
    place::{self, Exclusion, PlacementRequest, SessionKind},
    queue::QueueWorker,
    requirements::Requirements,
    validate::{REQUIREMENTS_MAX_CHARS, validate_spec},
};

/// Matching servers `ExplainPlacement` lists when the caller does not say.
const EXPLAIN_DEFAULT_SERVERS: u32 = 100;
/// Most matching servers `ExplainPlacement` lists.
const EXPLAIN_MAX_SERVERS: u32 = 1000;
/// Most server ids the pre-check names in one `OwnerSessionCounts` call: the store's bound. With
/// more limited candidates the read is skipped and the store decides.
pub use switchboard_proto::contract::OWNER_COUNTS_MAX_SERVERS as OWNER_COUNTS_MAX_IDS;
/// How long the pre-check waits for an owner's session counts.
pub const OWNER_COUNTS_TIMEOUT: Duration = Duration::from_secs(2);

/// An owner's sessions counted against `max_concurrent_sessions_per_user`,
/// per server id read (a server not in the map was not read).
type OwnerCounts = Arc<HashMap<String, u32>>;

/// What the pre-check concludes from the fleet view.
#[derive(Debug)]
enum Precheck {
    /// Some server could take the item (or the pre-check does not apply).
    Fits,
    /// No server could take it: the explanation.
    Refused(String),
    /// Every server that could take it (these, at most
    /// [`OWNER_COUNTS_MAX_IDS`]) limits sessions per owner: the owner's
    /// counts there decide.
    OwnerLimited(Vec<String>),
}

/// The `Placement` gRPC service.
#[derive(Debug, Clone)]
pub struct PlacementService {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<GrpcChannel>,
    placements: Placements,
    fleet: Arc<FleetView>,
    queue_wake: Arc<Notify>,
    keys: IdempotencyKeys,
}

impl PlacementService {
    /// A service using `store` for all shared state but the `Idempotency-Key` records, kept in
    /// `idempotency`.
    pub fn new(
        config: PlacementConfig,
        store: SessionStoreClient<GrpcChannel>,
        idempotency: Arc<dyn switchboard_store::Idempotency>,
    ) -> Self {
        let fleet = Arc::new(FleetView::new(store.clone()));
        let keys = IdempotencyKeys::new(idempotency, config.idempotency_ttl());
        Self { config: Arc::new(config), store, placements: Placements::new(), fleet, queue_wake: Arc::default(), keys }
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
    /// The record of an accepted item: CREATING / SESSION_PLACING, not yet stored.
    fn new_record(spec: CreateSessionSpec) -> SessionRecord {
        SessionRecord {
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
        }
    }

    /// Stores the accepted items' records in one `RecordSessions` call and starts placing each in the
    /// background; `Err` is every item's failure reason when they could not be recorded.
    async fn accept(&self, request_id: &str, records: Vec<SessionRecord>) -> Result<Vec<SessionRecord>, String> {
        if records.is_empty() {
            return Ok(records);
        }
        let stored = self.store.clone().record_sessions(RecordSessionsRequest { sessions: records }).await;
        let stored = match stored {
            Ok(response) => response.into_inner().sessions,
            Err(status) => {
                tracing::warn!(request_id, code = ?status.code(), message = status.message(), "recording sessions failed");
                return Err(match ErrorCode::from_grpc(status.code()) {
                    ErrorCode::Unavailable | ErrorCode::Timeout => "the session store is unavailable; try again".into(),
                    _ => "the session could not be recorded".into(),
                });
            }
        };
        for session in &stored {
            tracing::info!(request_id, session_id = %session.id, owner = %session.owner, "session accepted");
            let driver =
                Driver::new(self.config.clone(), self.store.clone(), self.fleet.clone(), self.queue_wake.clone());
            // Traced as a child of this CreateSessions call, so the trace goes on to the host.
            let span = switchboard_common::child_span!("place session", session_id = %session.id);
            self.placements.spawn(span, driver.run(session.clone()));
        }
        Ok(stored)
    }

    /// The pre-check of a valid item without `EnqueueRequest`:
    /// `Some(explanation)` when no server could take it now. Syncs the view
    /// once (per request, `synced`) before a refusal; reads an owner's
    /// session counts at most once per request (`owners`).
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
                Precheck::OwnerLimited(server_ids) => {
                    let read = match owners.entry(spec.owner.clone()) {
                        Entry::Occupied(entry) => entry.get().clone(),
                        Entry::Vacant(entry) => {
                            entry.insert(self.owner_session_counts(&spec.owner, server_ids).await).clone()
                        }
                    };
                    // Unknown: leave the item to the store's check.
                    let Some(read) = read else { return Ok(None) };
                    counts = Some(read);
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

    /// The pre-check against the view. With `counts` (the owner's sessions
    /// per server read from the store) hosts where the owner is at its
    /// `max_concurrent_sessions_per_user` are passed over, and a limited host
    /// the counts do not cover fits (the store decides); without, an item
    /// only limited hosts could take is [`Precheck::OwnerLimited`].
    fn precheck(&self, spec: &CreateSessionSpec, counts: Option<&HashMap<String, u32>>) -> Precheck {
        let Ok(requirements) = Requirements::parse(&spec.requirements) else { return Precheck::Fits };
        let kind = SessionKind::of(spec);
        self.fleet.read(|fleet| {
            let eligible = self.fleet.eligible(fleet, kind, &requirements);
            let mut excluded = HashMap::new();
            let mut limited = Vec::new();
            for server in place::fitting(fleet, &eligible, kind) {
                let limit = server.max_concurrent_sessions_per_user;
                if limit == 0 {
                    return Precheck::Fits;
                }
                match counts.map(|counts| counts.get(&server.id)) {
                    Some(Some(&count)) if count >= limit => {
                        excluded.insert(server.id.clone(), Exclusion::OwnerLimit);
                    }
                    // Below the limit, or not read.
                    Some(_) => return Precheck::Fits,
                    None if limited.len() == OWNER_COUNTS_MAX_IDS => {
                        tracing::debug!(
                            owner = spec.owner,
                            "more limited candidates than one read covers; leaving the per-user limit to the store"
                        );
                        return Precheck::Fits;
                    }
                    None => limited.push(server.id.clone()),
                }
            }
            if !limited.is_empty() {
                return Precheck::OwnerLimited(limited);
            }
            let request = PlacementRequest { kind, requirements: &requirements, excluded: &excluded };
            let ranking = place::rank(fleet, &request, &self.config.strategy, 1);
            match ranking.candidates.is_empty() {
                true => Precheck::Refused(ranking.census.explanation()),
                false => Precheck::Fits,
            }
        })
    }

    /// `owner`'s sessions counted against `max_concurrent_sessions_per_user`
    /// on each of `server_ids` (one `OwnerSessionCounts` call); `None` when
    /// the call failed or took longer than [`OWNER_COUNTS_TIMEOUT`].
    async fn owner_session_counts(&self, owner: &str, server_ids: Vec<String>) -> Option<OwnerCounts> {
        let mut store = self.store.clone();
        let request = OwnerSessionCountsRequest { owner: owner.to_owned(), server_ids: server_ids.clone() };
        match tokio::time::timeout(OWNER_COUNTS_TIMEOUT, store.owner_session_counts(request)).await {
            Ok(Ok(response)) => {
                let counts = response.into_inner().counts;
                if counts.len() != server_ids.len() {
                    tracing::warn!(
                        owner,
                        asked = server_ids.len(),
                        answered = counts.len(),
                        "the store answered a different number of session counts; leaving the limit to the store"
                    );
                    return None;
                }
                Some(Arc::new(server_ids.into_iter().zip(counts).collect()))
            }
            Ok(Err(status)) => {
                let (code, message) = (status.code(), status.message());
                tracing::warn!(
                    owner,
                    ?code,
                    message,
                    "reading the owner's session counts failed; leaving the limit to the store"
                );
                None
            }
            Err(_) => {
                tracing::warn!(owner, "reading the owner's session counts timed out; leaving the limit to the store");
                None
            }
        }
    }
}

impl PlacementService {
    /// CreateSessions without its idempotency: judges every item, records the accepted ones and starts
    /// placing them. The flag says whether the answer is final: `false` when the accepted items could
    /// not be recorded (nothing was created; a retry may succeed).
    async fn create(
        &self,
        request_id: &str,
        specs: Vec<CreateSessionSpec>,
    ) -> Result<(CreateSessionsResponse, bool), Status> {
        let verdicts: Vec<_> = specs.iter().map(|spec| validate_spec(spec, &self.config)).collect();
        let mut synced = false;
        let mut owners = HashMap::new();
        // Each item is judged on its own; the accepted ones are then recorded together, in one store write.
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(specs.len());
        let mut accepted = Vec::new();
        for (spec, verdict) in specs.into_iter().zip(verdicts) {
            let refusal = match verdict {
                Err(reason) => Some(reason),
                Ok(()) if spec.enqueue_request => None,
                Ok(()) => self.refusal(&spec, &mut synced, &mut owners).await?,
            };
            match refusal {
                Some(reason) => {
                    tracing::info!(request_id, %reason, "create item refused");
                    outcomes.push(Some(Outcome::FailureReason(reason)));
                }
                None => {
                    accepted.push((outcomes.len(), Self::new_record(spec)));
                    outcomes.push(None);
                }
            }
        }
        let (positions, records): (Vec<usize>, Vec<SessionRecord>) = accepted.into_iter().unzip();
        let recorded = match self.accept(request_id, records).await {
            Ok(stored) => {
                for (position, session) in positions.into_iter().zip(stored) {
                    outcomes[position] = Some(Outcome::Session(session));
                }
                true
            }
            Err(reason) => {
                for position in positions {
                    outcomes[position] = Some(Outcome::FailureReason(reason.clone()));
                }
                false
            }
        };
        let outcomes = outcomes.into_iter().map(|outcome| CreateSessionOutcome { outcome }).collect();
        Ok((CreateSessionsResponse { outcomes }, recorded))
    }
}

#[tonic::async_trait]
impl Placement for PlacementService {
    async fn create_sessions(
        &self,
        request: Request<CreateSessionsRequest>,
    ) -> Result<Response<CreateSessionsResponse>, Status> {
        let request = request.into_inner();
        if request.specs.len() > self.config.max_batch {
            return Err(ErrorCode::InvalidArgument
                .status(format!("at most {} sessions may be created per request", self.config.max_batch)));
        }
        let claim = match self.keys.begin(&request).await? {
            None => {
                return self.create(&request.request_id, request.specs).await.map(|(answer, _)| Response::new(answer));
            }
            Some(Begin::Answer(answer)) => return Ok(Response::new(answer)),
            Some(Begin::Run(claim)) => claim,
        };
        // A task of its own, finished even when the caller goes away: once sessions may be recorded, the
        // answer must be stored (or, when nothing was, the key released), else a retry after the claim
        // expired would create them again.
        let service = self.clone();
        let work = async move {
            let created = service.create(&request.request_id, request.specs).await;
            match &created {
                Ok((answer, true)) => service.keys.complete(claim, answer).await,
                // Nothing was created: a retry runs again.
                _ => service.keys.release(claim).await,
            }
            created
        };
        let created = tokio::spawn(tracing::Instrument::instrument(work, tracing::Span::current()))
            .await
            .map_err(|error| crate::Error::Task(format!("an idempotent create: {error}")))?;
        created.map(|(answer, _)| Response::new(answer))
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
