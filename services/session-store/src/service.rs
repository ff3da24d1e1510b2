//! The `SessionStore` gRPC service: sessions, servers and host commands over
//! any [`Backend`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use switchboard_common::time::now_ms;
use switchboard_proto::contract::{DRAIN_TIMEOUT_MAX_SECONDS, OWNER_COUNTS_MAX_SERVERS, SERVER_HAS_SESSIONS};
use switchboard_proto::session_store_server::SessionStore;
use switchboard_proto::{
    AssignSessionRequest, AssignSessionResponse, ClaimQueuedRequest, ClaimQueuedResponse, CommandResult,
    DeleteSessionOutcome, DeleteSessionsRequest, DeleteSessionsResponse, DequeueSessionRequest, DequeueSessionResponse,
    EnqueueOutcome, EnqueueSessionRequest, EnqueueSessionResponse, EventRecord, GetServerDnsNamesRequest,
    GetServerDnsNamesResponse, GetSessionsRequest, KeyValue, ListServersRequest, ListSessionsRequest,
    ListWebhooksRequest, ListWebhooksResponse, OwnerSessionCountsRequest, OwnerSessionCountsResponse,
    QueueHeadsRequest, QueueHeadsResponse, QueuePlace, ReadEventsRequest, ReadEventsResponse, RecordSessionsRequest,
    RecordSessionsResponse, RegisterWebhookRequest, RegisterWebhookResponse, ReleaseQueuedRequest,
    ReleaseQueuedResponse, SendCommandRequest, ServerChangesRequest, ServerChangesResponse, ServerRecord, ServersPage,
    SessionRecord, SessionState, SessionsPage, SetServerOpenOutcome, SetServersOpenRequest, SetServersOpenResponse,
    SettleUnplacedRequest, SettleUnplacedResponse, StartSessionRequest, StartSessionResponse, TakeOverUnplacedRequest,
    TakeOverUnplacedResponse, UnregisterWebhookRequest, UnregisterWebhookResponse, WebhookStatus,
    assign_session_response, host_command,
};
use tonic::{Request, Response, Status};

use crate::Error;
use crate::deletion;
use crate::dns_names::DnsNames;
use crate::events::EventFeed;
use crate::page_token::{PageKind, PageTokens};
use crate::queue_places;
use crate::routing::{FORWARDED_HEADER, HostCommands};
use crate::{creation, lifecycle};
use switchboard_store::{AssignOutcome, Backend, BackendError, CloseOutcome, QueuePush};

/// Largest page a list call returns.
const MAX_PAGE_SIZE: u32 = 1000;
/// Most sessions one `TakeOverUnplaced` claims.
const MAX_TAKEOVER: u32 = 1000;
/// Sessions read per page while looking for unplaced ones to take over.
const TAKEOVER_PAGE: usize = 500;
/// Most servers `GetServerDnsNames` answers for at once.
const MAX_DNS_SERVERS: usize = 1000;
/// Most queue entries returned per class by `QueueHeads`.
const MAX_HEADS_PER_CLASS: u32 = 100;
/// Longest accepted text field of a queue entry (ids, class, owner), in bytes;
/// requirements are bounded by placement's own limit, checked here too.
const MAX_QUEUE_FIELD_BYTES: usize = 16 * 1024;
/// Longest owner `OwnerSessionCounts` accepts, in bytes (placement accepts
/// owners of at most 256 characters, up to 4 bytes each).
const MAX_OWNER_BYTES: usize = 1024;

/// A backend failure as a gRPC status, through the one policy (`switchboard_common::error`).
/// A broken call contract as a gRPC status: the text is for the calling service, not API clients.
fn contract(text: impl Into<String>) -> Status {
    Error::Contract(text.into()).into()
}

pub(crate) fn store_status(error: BackendError) -> Status {
    Error::from(error).into()
}

/// The tonic `SessionStore` implementation.
pub struct StoreService {
    backend: Arc<dyn Backend>,
    hosts: Arc<dyn HostCommands>,
    tokens: PageTokens,
    dns_names: DnsNames,
    bounds: lifecycle::Bounds,
    /// How long a server closed without force drains when the call gives no timeout, in seconds (the
    /// `drain_timeout_seconds` setting; 0: no drain, the original broker's refusal).
    drain_timeout_seconds: u32,
    events: Arc<EventFeed>,
    webhooks: Arc<crate::webhooks::Guard>,
}

impl StoreService {
    /// A service over `backend`, sending host commands through `hosts` (a [`CommandRouter`] in a replica).
    ///
    /// [`CommandRouter`]: crate::routing::CommandRouter
    pub fn new(backend: Arc<dyn Backend>, hosts: Arc<dyn HostCommands>) -> Self {
        let tokens = PageTokens::new(backend.clone());
        let dns_names = DnsNames::new(backend.clone());
        let timers = crate::Timers::default();
        let events = EventFeed::start(backend.clone());
        Self {
            events,
            webhooks: Arc::default(),
            backend,
            hosts,
            tokens,
            dns_names,
            bounds: timers.bounds(),
            drain_timeout_seconds: timers.drain_timeout_seconds,
        }
    }

    /// The webhook settings (allowed networks, CA) registrations are checked with, instead of the defaults.
    pub fn with_webhook_guard(mut self, guard: Arc<crate::webhooks::Guard>) -> Self {
        self.webhooks = guard;
        self
    }

    /// The lifecycle's bounds (the `stalled_session_seconds` setting) instead of the defaults.
    pub fn with_bounds(mut self, bounds: lifecycle::Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The `drain_timeout_seconds` setting instead of the default (0, no drain).
    pub fn with_drain_timeout_seconds(mut self, seconds: u32) -> Self {
        self.drain_timeout_seconds = seconds;
        self
    }

    /// The `after_id` to resume from: the verified `page_token` when given, else `after_id`.
    async fn resume_after(&self, kind: PageKind, page_token: &str, after_id: String) -> Result<String, Status> {
        if page_token.is_empty() {
            return Ok(after_id);
        }
        match self.tokens.verify(kind, page_token).await.map_err(store_status)? {
            Ok(after_id) => Ok(after_id),
            Err(invalid) => Err(Status::from(Error::InvalidPageToken(invalid.to_string()))),
        }
    }

    /// The signed token for the page after `last_id` (empty at the end).
    async fn next_token(&self, kind: PageKind, last_id: &str) -> Result<String, Status> {
        if last_id.is_empty() {
            return Ok(String::new());
        }
        self.tokens.sign(kind, last_id).await.map_err(store_status)
    }

    /// The servers `sessions` reference, each once, in first-seen order.
    async fn servers_of(&self, sessions: &[SessionRecord]) -> Result<Vec<ServerRecord>, Status> {
        let mut ids: Vec<String> = Vec::new();
        for session in sessions {
            if !session.server_id.is_empty() && !ids.contains(&session.server_id) {
                ids.push(session.server_id.clone());
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.get_servers(&ids).await.map_err(store_status)
    }

    /// Where the queued ones of `sessions` stand, when `wanted`: one store call per page.
    async fn queue_places(&self, wanted: bool, sessions: &[SessionRecord]) -> Result<Vec<QueuePlace>, Status> {
        if !wanted {
            return Ok(Vec::new());
        }
        queue_places::queue_places(&*self.backend, sessions).await.map_err(store_status)
    }
}

fn page_size(requested: u32) -> Result<usize, Status> {
    if !(1..=MAX_PAGE_SIZE).contains(&requested) {
        return Err(contract(format!("page_size must be 1..={MAX_PAGE_SIZE}")));
    }
    Ok(requested as usize)
}

fn has_tags(server: Option<&ServerRecord>, tags: &[KeyValue]) -> bool {
    tags.is_empty() || server.is_some_and(|server| tags.iter().all(|tag| server.tags.contains(tag)))
}

#[tonic::async_trait]
impl SessionStore for StoreService {
    async fn record_sessions(
        &self,
        request: Request<RecordSessionsRequest>,
    ) -> Result<Response<RecordSessionsResponse>, Status> {
        let sessions = request.into_inner().sessions;
        if sessions.iter().any(|session| session.id.is_empty()) {
            return Err(contract("session id is required"));
        }
        let now = now_ms();
        let sessions = sessions.into_iter().map(|session| lifecycle::accepted(session, now)).collect();
        let sessions = self.backend.insert_sessions(sessions).await.map_err(store_status)?;
        Ok(Response::new(RecordSessionsResponse { sessions }))
    }

    async fn get_sessions(&self, request: Request<GetSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        let request = request.into_inner();
        let sessions = self.backend.get_sessions(&request.session_ids).await.map_err(store_status)?;
        let servers = self.servers_of(&sessions).await?;
        let queue_places = self.queue_places(request.with_queue_places, &sessions).await?;
        Ok(Response::new(SessionsPage {
            sessions,
            servers,
            last_id: String::new(),
            next_token: String::new(),
            queue_places,
        }))
    }

    async fn list_sessions(&self, request: Request<ListSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let mut servers: HashMap<String, Option<ServerRecord>> = HashMap::new();
        let mut page = Vec::new();
        let mut cursor = self.resume_after(PageKind::Sessions, &request.page_token, request.after_id).await?;
        'scan: loop {
            let batch = self.backend.list_sessions(&cursor, limit).await.map_err(store_status)?;
            let Some(last) = batch.last() else { break };
            cursor = last.id.clone();
            let batch_full = batch.len() == limit;
            if !request.tags.is_empty() {
                let missing: Vec<String> = batch
                    .iter()
                    .filter(|s| !s.server_id.is_empty() && !servers.contains_key(&s.server_id))
                    .map(|s| s.server_id.clone())
                    .collect();
                for id in &missing {
                    servers.insert(id.clone(), None);
                }
                for server in self.backend.get_servers(&missing).await.map_err(store_status)? {
                    servers.insert(server.id.clone(), Some(server));
                }
            }
            for session in batch {
                let owner_matches = request.owner.as_ref().is_none_or(|owner| *owner == session.owner);
                let server = servers.get(&session.server_id).and_then(Option::as_ref);
                if owner_matches && has_tags(server, &request.tags) {
                    page.push(session);
                    if page.len() == limit {
                        break 'scan;
                    }
                }
            }
            if !batch_full {
                break;
            }
        }
        let last_id =
            if page.len() == limit { page.last().map(|s| s.id.clone()).unwrap_or_default() } else { String::new() };
        let servers = self.servers_of(&page).await?;
        let next_token = self.next_token(PageKind::Sessions, &last_id).await?;
        let queue_places = self.queue_places(request.with_queue_places, &page).await?;
        Ok(Response::new(SessionsPage { sessions: page, servers, last_id, next_token, queue_places }))
    }

    async fn assign_session(
        &self,
        request: Request<AssignSessionRequest>,
    ) -> Result<Response<AssignSessionResponse>, Status> {
        let request = request.into_inner();
        let outcome =
            self.backend.assign_session(&request.session_id, &request.server_id).await.map_err(store_status)?;
        let outcome = match outcome {
            AssignOutcome::Assigned(session) => assign_session_response::Outcome::Session(session),
            AssignOutcome::Rejected(reason) => assign_session_response::Outcome::Rejected(reason.as_str().to_owned()),
        };
        Ok(Response::new(AssignSessionResponse { outcome: Some(outcome) }))
    }

    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<StartSessionResponse>, Status> {
        let request = request.into_inner();
        if request.session_id.is_empty() || request.server_id.is_empty() {
            return Err(contract("session_id and server_id are required"));
        }
        Ok(Response::new(creation::start(&*self.backend, &self.hosts, request).await?))
    }

    async fn settle_unplaced(
        &self,
        request: Request<SettleUnplacedRequest>,
    ) -> Result<Response<SettleUnplacedResponse>, Status> {
        Ok(Response::new(creation::settle_unplaced(&*self.backend, request.into_inner()).await?))
    }

    async fn delete_sessions(
        &self,
        request: Request<DeleteSessionsRequest>,
    ) -> Result<Response<DeleteSessionsResponse>, Status> {
        let mut outcomes = Vec::new();
        for item in request.into_inner().items {
            let outcome = match deletion::start(&self.backend, &self.hosts, &item).await? {
                Ok(state) => DeleteSessionOutcome {
                    session_id: item.session_id,
                    state: state as i32,
                    failure_reason: String::new(),
                },
                Err(reason) => DeleteSessionOutcome {
                    session_id: item.session_id,
                    state: SessionState::Unspecified as i32,
                    failure_reason: reason,
                },
            };
            outcomes.push(outcome);
        }
        Ok(Response::new(DeleteSessionsResponse { outcomes }))
    }

    async fn list_servers(&self, request: Request<ListServersRequest>) -> Result<Response<ServersPage>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let after_id = self.resume_after(PageKind::Servers, &request.page_token, request.after_id).await?;
        let servers = if request.server_ids.is_empty() {
            self.backend.list_servers(&after_id, limit).await.map_err(store_status)?
        } else {
            let found = self.backend.get_servers(&request.server_ids).await.map_err(store_status)?;
            let sorted: BTreeMap<String, ServerRecord> = found.into_iter().map(|s| (s.id.clone(), s)).collect();
            sorted.into_values().filter(|s| s.id > after_id).take(limit).collect()
        };
        let last_id = if servers.len() == limit {
            servers.last().map(|s| s.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let next_token = self.next_token(PageKind::Servers, &last_id).await?;
        Ok(Response::new(ServersPage { servers, last_id, next_token }))
    }

    async fn set_servers_open(
        &self,
        request: Request<SetServersOpenRequest>,
    ) -> Result<Response<SetServersOpenResponse>, Status> {
        let request = request.into_inner();
        let change = match (request.open, request.force) {
            (true, _) => OpenChange::Open,
            (false, true) => OpenChange::ForceClose,
            (false, false) => {
                let seconds = request.drain_timeout_seconds.unwrap_or(self.drain_timeout_seconds);
                if seconds > DRAIN_TIMEOUT_MAX_SECONDS {
                    return Err(contract(format!("drain_timeout_seconds must be at most {DRAIN_TIMEOUT_MAX_SECONDS}")));
                }
                // One deadline for the whole call, read once from the broker's clock.
                let deadline = if seconds == 0 { 0 } else { now_ms().saturating_add(i64::from(seconds) * 1000) };
                OpenChange::Close { drain_deadline_unix_ms: deadline }
            }
        };
        let mut outcomes = Vec::with_capacity(request.server_ids.len());
        for server_id in request.server_ids {
            outcomes.push(set_one_open(&*self.backend, server_id, change).await?);
        }
        Ok(Response::new(SetServersOpenResponse { outcomes }))
    }

    async fn send_command(&self, request: Request<SendCommandRequest>) -> Result<Response<CommandResult>, Status> {
        let forwarded = request.metadata().contains_key(FORWARDED_HEADER);
        let request = request.into_inner();
        let command = request.command.ok_or_else(|| contract("command is required"))?;
        let timeout = (request.timeout_ms > 0).then(|| Duration::from_millis(u64::from(request.timeout_ms)));
        let permissions = match &command.action {
            Some(host_command::Action::SetPermissions(set)) if !forwarded => Some(set.session_id.clone()),
            _ => None,
        };
        let result = self.hosts.send(&request.server_id, command, timeout, forwarded).await?;
        if let Some(session_id) = permissions.filter(|_| result.error.is_empty()) {
            let owner = self.backend.get_session(&session_id).await.ok().flatten().map(|s| s.owner).unwrap_or_default();
            let event = EventRecord {
                kind: switchboard_store::events::kind::SESSION_PERMISSIONS.to_owned(),
                session_id,
                owner,
                server_id: request.server_id.clone(),
                ..Default::default()
            };
            crate::events::record(&*self.backend, event).await;
        }
        Ok(Response::new(result))
    }

    async fn read_events(&self, request: Request<ReadEventsRequest>) -> Result<Response<ReadEventsResponse>, Status> {
        let request = request.into_inner();
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        let answer = self.events.read(&request.after, limit, wait).await.map_err(store_status)?;
        Ok(Response::new(answer))
    }

    async fn register_webhook(
        &self,
        request: Request<RegisterWebhookRequest>,
    ) -> Result<Response<RegisterWebhookResponse>, Status> {
        let request = request.into_inner();
        match crate::webhooks::register(&*self.backend, &self.webhooks, &request.url, request.event_types).await {
            Ok(answer) => Ok(Response::new(answer)),
            Err(crate::webhooks::RegisterError::Invalid(text)) => Err(Error::InvalidRequest(text).into()),
            Err(crate::webhooks::RegisterError::Store(error)) => Err(store_status(error)),
        }
    }

    async fn list_webhooks(&self, _: Request<ListWebhooksRequest>) -> Result<Response<ListWebhooksResponse>, Status> {
        let mut webhooks = Vec::new();
        for mut webhook in self.backend.list_webhooks().await.map_err(store_status)? {
            let dead_letters = self.backend.dead_letters(&webhook.id).await.map_err(store_status)?;
            webhook.secret.clear();
            webhooks.push(WebhookStatus { webhook: Some(webhook), dead_letters });
        }
        Ok(Response::new(ListWebhooksResponse { webhooks }))
    }

    async fn unregister_webhook(
        &self,
        request: Request<UnregisterWebhookRequest>,
    ) -> Result<Response<UnregisterWebhookResponse>, Status> {
        let id = request.into_inner().id;
        let removed = self.backend.remove_webhook(&id).await.map_err(store_status)?;
        if removed {
            tracing::info!(webhook_id = %id, "webhook unregistered");
        }
        Ok(Response::new(UnregisterWebhookResponse { removed }))
    }

    async fn server_changes(
        &self,
        request: Request<ServerChangesRequest>,
    ) -> Result<Response<ServerChangesResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let changes = self.backend.server_changes(request.after_revision, limit).await.map_err(store_status)?;
        Ok(Response::new(ServerChangesResponse {
            generation: changes.generation,
            revision: changes.revision,
            servers: changes.servers,
            removed_server_ids: changes.removed,
            more: changes.more,
        }))
    }

    async fn enqueue_session(
        &self,
        request: Request<EnqueueSessionRequest>,
    ) -> Result<Response<EnqueueSessionResponse>, Status> {
        let request = request.into_inner();
        let entry = request.entry.ok_or_else(|| contract("entry is required"))?;
        if entry.session_id.is_empty() || entry.class_id.is_empty() {
            return Err(contract("session_id and class_id are required"));
        }
        let longest = [&entry.session_id, &entry.class_id, &entry.owner, &entry.requirements].map(|f| f.len());
        if longest.into_iter().max().unwrap_or_default() > MAX_QUEUE_FIELD_BYTES {
            return Err(contract("queue entry field too long"));
        }
        let max_size = usize::try_from(request.max_size).unwrap_or(usize::MAX);
        let pushed = self.backend.queue_push(entry, request.max_wait_ms, max_size).await.map_err(store_status)?;
        let (outcome, entry) = match pushed {
            QueuePush::Queued(entry) => (EnqueueOutcome::Queued, Some(entry)),
            QueuePush::Full => (EnqueueOutcome::Full, None),
            QueuePush::AlreadyQueued => (EnqueueOutcome::AlreadyQueued, None),
        };
        Ok(Response::new(EnqueueSessionResponse { outcome: outcome as i32, entry }))
    }

    async fn queue_heads(&self, request: Request<QueueHeadsRequest>) -> Result<Response<QueueHeadsResponse>, Status> {
        let per_class = request.into_inner().per_class;
        if !(1..=MAX_HEADS_PER_CLASS).contains(&per_class) {
            return Err(contract(format!("per_class must be 1..={MAX_HEADS_PER_CLASS}")));
        }
        let entries = self.backend.queue_heads(per_class as usize).await.map_err(store_status)?;
        let queue_size = self.backend.queue_len().await.map_err(store_status)?;
        Ok(Response::new(QueueHeadsResponse { entries, queue_size: u32::try_from(queue_size).unwrap_or(u32::MAX) }))
    }

    async fn claim_queued(
        &self,
        request: Request<ClaimQueuedRequest>,
    ) -> Result<Response<ClaimQueuedResponse>, Status> {
        let request = request.into_inner();
        if request.claim_id.is_empty() || request.claim_id.len() > MAX_QUEUE_FIELD_BYTES {
            return Err(contract("claim_id is required"));
        }
        let entries = if request.session_id.is_empty() {
            let limit = page_size(request.limit)?;
            self.backend.queue_claim_expired(&request.claim_id, request.lease_ms, limit).await.map_err(store_status)?
        } else {
            let claimed = self.backend.queue_claim(&request.session_id, &request.claim_id, request.lease_ms).await;
            claimed.map_err(store_status)?.into_iter().collect()
        };
        Ok(Response::new(ClaimQueuedResponse { entries }))
    }

    async fn release_queued(
        &self,
        request: Request<ReleaseQueuedRequest>,
    ) -> Result<Response<ReleaseQueuedResponse>, Status> {
        let request = request.into_inner();
        let released =
            self.backend.queue_release(&request.session_id, &request.claim_id).await.map_err(store_status)?;
        Ok(Response::new(ReleaseQueuedResponse { released }))
    }

    async fn dequeue_session(
        &self,
        request: Request<DequeueSessionRequest>,
    ) -> Result<Response<DequeueSessionResponse>, Status> {
        let request = request.into_inner();
        let removed = if request.placed {
            self.backend.queue_remove_placed(&request.session_id).await
        } else {
            self.backend.queue_remove(&request.session_id).await
        }
        .map_err(store_status)?;
        Ok(Response::new(DequeueSessionResponse { removed }))
    }

    async fn owner_session_counts(
        &self,
        request: Request<OwnerSessionCountsRequest>,
    ) -> Result<Response<OwnerSessionCountsResponse>, Status> {
        let request = request.into_inner();
        if request.owner.is_empty() || request.owner.len() > MAX_OWNER_BYTES {
            return Err(contract(format!("owner is required, at most {MAX_OWNER_BYTES} bytes")));
        }
        if request.server_ids.len() > OWNER_COUNTS_MAX_SERVERS {
            return Err(contract(format!("at most {OWNER_COUNTS_MAX_SERVERS} server ids")));
        }
        let counts =
            self.backend.owner_session_counts(&request.owner, &request.server_ids).await.map_err(store_status)?;
        Ok(Response::new(OwnerSessionCountsResponse { counts }))
    }

    async fn take_over_unplaced(
        &self,
        request: Request<TakeOverUnplacedRequest>,
    ) -> Result<Response<TakeOverUnplacedResponse>, Status> {
        let TakeOverUnplacedRequest { idle_ms, limit } = request.into_inner();
        if idle_ms <= 0 || limit == 0 || limit > MAX_TAKEOVER {
            return Err(contract(format!("idle_ms must be above 0 and limit 1 to {MAX_TAKEOVER}")));
        }
        let idle_before = now_ms().saturating_sub(idle_ms);
        let mut sessions = Vec::new();
        let mut after_id = String::new();
        // A scan of the sessions, as the lifecycle's unplaced sweep makes: placement calls it rarely.
        'pages: loop {
            let page = self.backend.list_sessions(&after_id, TAKEOVER_PAGE).await.map_err(store_status)?;
            let Some(last) = page.last() else { break };
            after_id = last.id.clone();
            let full = page.len() == TAKEOVER_PAGE;
            let bounds = self.bounds;
            for candidate in page.iter().filter(|s| lifecycle::taken_over(s, idle_before, &bounds, now_ms()).is_some())
            {
                let applied = lifecycle::apply(&*self.backend, &candidate.id, None, |record, now| {
                    lifecycle::taken_over(record, idle_before, &bounds, now)
                })
                .await
                .map_err(store_status)?;
                if let Some(applied) = applied.filter(|applied| applied.changed) {
                    tracing::info!(session_id = %applied.record.id, "unplaced session taken over by another placement replica");
                    sessions.push(applied.record);
                    if sessions.len() >= limit as usize {
                        break 'pages;
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(Response::new(TakeOverUnplacedResponse { sessions }))
    }

    async fn get_server_dns_names(
        &self,
        request: Request<GetServerDnsNamesRequest>,
    ) -> Result<Response<GetServerDnsNamesResponse>, Status> {
        let ids = request.into_inner().server_ids;
        if ids.len() > MAX_DNS_SERVERS {
            return Err(contract(format!("at most {MAX_DNS_SERVERS} server ids per call")));
        }
        let servers = self.backend.get_servers(&ids).await.map_err(store_status)?;
        let names = self.dns_names.of(&servers).await.map_err(store_status)?;
        Ok(Response::new(GetServerDnsNamesResponse { names }))
    }
}

/// What one `SetServersOpen` call does to each of its servers.
#[derive(Debug, Clone, Copy)]
enum OpenChange {
    /// Open (a drain under way is cancelled).
    Open,
    /// Close with force: at once, whatever runs (a drain under way ends).
    ForceClose,
    /// Close without force: a server with sessions drains until the deadline, or is refused with 0.
    Close { drain_deadline_unix_ms: i64 },
}

/// Applies `change` to one server; its outcome (a failure code for an unknown server or a refusal).
async fn set_one_open(
    backend: &dyn Backend,
    server_id: String,
    change: OpenChange,
) -> Result<SetServerOpenOutcome, Status> {
    const NOT_FOUND: (&str, &str) = ("DCV_SERVER_NOT_FOUND", "Dcv server not found.");
    const HAS_SESSIONS: (&str, &str) =
        (SERVER_HAS_SESSIONS, "Dcv server has sessions; close it with force to proceed.");
    let result = match change {
        OpenChange::Open => backend.set_server_open(&server_id, true).await.map(|_| Ok(0)),
        OpenChange::ForceClose => backend.set_server_open(&server_id, false).await.map(|_| Ok(0)),
        OpenChange::Close { drain_deadline_unix_ms } => {
            backend.close_server(&server_id, drain_deadline_unix_ms).await.map(|outcome| match outcome {
                CloseOutcome::Closed(_) => Ok(0),
                CloseOutcome::Draining(server) => {
                    tracing::info!(server_id = %server.id, drain_deadline_unix_ms, "server draining");
                    Ok(server.drain_deadline_unix_ms)
                }
                CloseOutcome::HasSessions => Err(HAS_SESSIONS),
            })
        }
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(BackendError::NotFound(_)) => Err(NOT_FOUND),
        Err(error) => return Err(store_status(error)),
    };
    Ok(match outcome {
        Ok(drain_deadline_unix_ms) => SetServerOpenOutcome { server_id, drain_deadline_unix_ms, ..Default::default() },
        Err((code, reason)) => SetServerOpenOutcome {
            server_id,
            failure_code: code.to_owned(),
            failure_reason: reason.to_owned(),
            drain_deadline_unix_ms: 0,
        },
    })
}
