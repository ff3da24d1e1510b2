//! Placement against a real session-store (`StoreService` over the embedded
//! backend) whose host commands are answered by the test instead of agents.
//! Covers every placement rule, the retry path, the queue (max size, timeout,
//! cancel, wake-up, no head-of-line blocking between classes, FIFO within a
//! class, several replicas) and ExplainPlacement.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use switchboard_common::{Shutdown, grpc::lazy_channel};
use switchboard_placement::{
    PlacementConfig, serve,
    service::{OWNER_COUNTS_MAX_IDS, OWNER_COUNTS_TIMEOUT},
};
use switchboard_proto::{
    AssignSessionRequest, AssignSessionResponse, ClaimQueuedRequest, ClaimQueuedResponse, CommandResult,
    CreateSessionSpec, CreateSessionsRequest, DeleteSessionItem, DeleteSessionsRequest, DeleteSessionsResponse,
    DequeueSessionRequest, DequeueSessionResponse, EnqueueSessionRequest, EnqueueSessionResponse,
    ExplainPlacementRequest, GetSessionsRequest, HostCommand, HostInfo, HostSession, KeyValue, ListServersRequest,
    ListSessionsRequest, Os, OwnerSessionCountsRequest, OwnerSessionCountsResponse, QueueHeadsRequest,
    QueueHeadsResponse, RecordSessionsRequest, RecordSessionsResponse, ReleaseQueuedRequest, ReleaseQueuedResponse,
    SendCommandRequest, ServerChangesRequest, ServerChangesResponse, ServerRecord, ServersPage, SessionRecord,
    SessionState, SessionType, SessionsPage, SetServersOpenRequest, SetServersOpenResponse, SettleUnplacedRequest,
    SettleUnplacedResponse, StartSessionRequest, StartSessionResponse, command_result,
    create_session_outcome::Outcome,
    host_command,
    placement_client::PlacementClient,
    session_store_client::SessionStoreClient,
    session_store_server::{SessionStore, SessionStoreServer},
    settle_unplaced_request, start_session_response,
};
use switchboard_session_store::{
    routing::{HostCommands, SendFailure},
    service::StoreService,
};
use switchboard_store::{AssignOutcome, Backend, OWNER_COUNTS_MAX_SERVERS, embedded::EmbeddedBackend};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// What the fake hosts answer, and what they were asked.
#[derive(Default)]
struct Hosts {
    /// Per-server answer to a create command: `Err(text)` fails it.
    answers: HashMap<String, Result<(), String>>,
    commands_to: Vec<String>,
}

/// Fake hosts behind the real store service: each answers a create command as `Hosts::answers` says.
struct FakeHosts(Arc<Mutex<Hosts>>);

#[tonic::async_trait]
impl HostCommands for FakeHosts {
    async fn send(
        &self,
        server_id: &str,
        command: HostCommand,
        _timeout: Option<Duration>,
        _forwarded: bool,
    ) -> Result<CommandResult, SendFailure> {
        let Some(host_command::Action::Create(create)) = command.action else {
            return Err(SendFailure::NotSent(Status::invalid_argument("unexpected command")));
        };
        let mut hosts = self.0.lock().unwrap();
        hosts.commands_to.push(server_id.to_owned());
        Ok(match hosts.answers.get(server_id).cloned().unwrap_or(Ok(())) {
            Ok(()) => CommandResult {
                command_id: "c1".into(),
                payload: Some(command_result::Payload::Session(HostSession {
                    id: create.session_id,
                    creation_time_unix_ms: 1_601_979_331_633,
                    ..Default::default()
                })),
                ..Default::default()
            },
            Err(error) => CommandResult { command_id: "c1".into(), error, ..Default::default() },
        })
    }
}

/// The real store service over fake hosts, with a few observation and fault hooks.
#[derive(Clone)]
struct TestStore {
    inner: Arc<StoreService>,
    hosts: Arc<Mutex<Hosts>>,
    /// AssignSession answers UNAVAILABLE this many times first (a dying store replica).
    unavailable_assigns: Arc<AtomicUsize>,
    /// OwnerSessionCounts answers UNAVAILABLE this many times first.
    unavailable_counts: Arc<AtomicUsize>,
    /// OwnerSessionCounts answers only after this long (a stuck store).
    counts_delay: Arc<Mutex<Duration>>,
    /// `OwnerSessionCounts` calls, and the server ids of the last one.
    owner_counts: Arc<Mutex<(usize, Vec<String>)>>,
    /// Successful writes that made a session DELETED, per session.
    deleted_writes: Arc<Mutex<HashMap<String, usize>>>,
    /// `RecordSessions` calls: one per CreateSessions request with accepted items.
    record_calls: Arc<AtomicUsize>,
    /// `RecordSessions` calls still to fail with Unavailable (a store outage).
    unavailable_records: Arc<AtomicUsize>,
    /// How long `RecordSessions` waits before recording (a slow store).
    record_delay: Arc<Mutex<Duration>>,
    /// `ListServers` and `ListSessions` calls: placement decides from its
    /// fleet view, so a scan of the store per decision shows here.
    scans: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl SessionStore for TestStore {
    async fn get_sessions(&self, request: Request<GetSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        self.inner.get_sessions(request).await
    }

    async fn record_sessions(
        &self,
        request: Request<RecordSessionsRequest>,
    ) -> Result<Response<RecordSessionsResponse>, Status> {
        self.record_calls.fetch_add(1, Ordering::SeqCst);
        let outage = self.unavailable_records.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if outage.is_ok() {
            return Err(Status::unavailable("store down"));
        }
        let delay = *self.record_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.inner.record_sessions(request).await
    }

    async fn list_sessions(&self, request: Request<ListSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.list_sessions(request).await
    }

    async fn take_over_unplaced(
        &self,
        request: Request<switchboard_proto::TakeOverUnplacedRequest>,
    ) -> Result<Response<switchboard_proto::TakeOverUnplacedResponse>, Status> {
        self.inner.take_over_unplaced(request).await
    }

    async fn read_events(
        &self,
        request: Request<switchboard_proto::ReadEventsRequest>,
    ) -> Result<Response<switchboard_proto::ReadEventsResponse>, Status> {
        self.inner.read_events(request).await
    }

    async fn register_webhook(
        &self,
        request: Request<switchboard_proto::RegisterWebhookRequest>,
    ) -> Result<Response<switchboard_proto::RegisterWebhookResponse>, Status> {
        self.inner.register_webhook(request).await
    }

    async fn list_webhooks(
        &self,
        request: Request<switchboard_proto::ListWebhooksRequest>,
    ) -> Result<Response<switchboard_proto::ListWebhooksResponse>, Status> {
        self.inner.list_webhooks(request).await
    }

    async fn unregister_webhook(
        &self,
        request: Request<switchboard_proto::UnregisterWebhookRequest>,
    ) -> Result<Response<switchboard_proto::UnregisterWebhookResponse>, Status> {
        self.inner.unregister_webhook(request).await
    }

    async fn get_server_dns_names(
        &self,
        request: Request<switchboard_proto::GetServerDnsNamesRequest>,
    ) -> Result<Response<switchboard_proto::GetServerDnsNamesResponse>, Status> {
        self.inner.get_server_dns_names(request).await
    }

    async fn owner_session_counts(
        &self,
        request: Request<OwnerSessionCountsRequest>,
    ) -> Result<Response<OwnerSessionCountsResponse>, Status> {
        {
            let mut calls = self.owner_counts.lock().unwrap();
            calls.0 += 1;
            calls.1 = request.get_ref().server_ids.clone();
        }
        let outage = self.unavailable_counts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if outage.is_ok() {
            return Err(Status::unavailable("tcp connect error"));
        }
        let delay = *self.counts_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.inner.owner_session_counts(request).await
    }

    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<StartSessionResponse>, Status> {
        let session_id = request.get_ref().session_id.clone();
        let started = self.inner.start_session(request).await?;
        if started.get_ref().outcome() == start_session_response::Outcome::Ended {
            *self.deleted_writes.lock().unwrap().entry(session_id).or_default() += 1;
        }
        Ok(started)
    }

    async fn settle_unplaced(
        &self,
        request: Request<SettleUnplacedRequest>,
    ) -> Result<Response<SettleUnplacedResponse>, Status> {
        let session_id = request.get_ref().session_id.clone();
        let fail = request.get_ref().action() == settle_unplaced_request::Action::Fail;
        let settled = self.inner.settle_unplaced(request).await?;
        if fail && settled.get_ref().changed {
            *self.deleted_writes.lock().unwrap().entry(session_id).or_default() += 1;
        }
        Ok(settled)
    }

    async fn assign_session(
        &self,
        request: Request<AssignSessionRequest>,
    ) -> Result<Response<AssignSessionResponse>, Status> {
        let outage = self.unavailable_assigns.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if outage.is_ok() {
            return Err(Status::unavailable("tcp connect error"));
        }
        self.inner.assign_session(request).await
    }

    async fn delete_sessions(
        &self,
        request: Request<DeleteSessionsRequest>,
    ) -> Result<Response<DeleteSessionsResponse>, Status> {
        self.inner.delete_sessions(request).await
    }

    async fn list_servers(&self, request: Request<ListServersRequest>) -> Result<Response<ServersPage>, Status> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.list_servers(request).await
    }

    async fn set_servers_open(
        &self,
        request: Request<SetServersOpenRequest>,
    ) -> Result<Response<SetServersOpenResponse>, Status> {
        self.inner.set_servers_open(request).await
    }

    async fn send_command(&self, request: Request<SendCommandRequest>) -> Result<Response<CommandResult>, Status> {
        self.inner.send_command(request).await
    }

    async fn server_changes(
        &self,
        request: Request<ServerChangesRequest>,
    ) -> Result<Response<ServerChangesResponse>, Status> {
        self.inner.server_changes(request).await
    }

    async fn enqueue_session(
        &self,
        request: Request<EnqueueSessionRequest>,
    ) -> Result<Response<EnqueueSessionResponse>, Status> {
        self.inner.enqueue_session(request).await
    }

    async fn queue_heads(&self, request: Request<QueueHeadsRequest>) -> Result<Response<QueueHeadsResponse>, Status> {
        self.inner.queue_heads(request).await
    }

    async fn claim_queued(
        &self,
        request: Request<ClaimQueuedRequest>,
    ) -> Result<Response<ClaimQueuedResponse>, Status> {
        self.inner.claim_queued(request).await
    }

    async fn release_queued(
        &self,
        request: Request<ReleaseQueuedRequest>,
    ) -> Result<Response<ReleaseQueuedResponse>, Status> {
        self.inner.release_queued(request).await
    }

    async fn dequeue_session(
        &self,
        request: Request<DequeueSessionRequest>,
    ) -> Result<Response<DequeueSessionResponse>, Status> {
        self.inner.dequeue_session(request).await
    }
}

struct Harness {
    backend: Arc<dyn Backend>,
    store: TestStore,
    store_client: SessionStoreClient<switchboard_common::grpc::GrpcChannel>,
    client: PlacementClient<switchboard_common::grpc::GrpcChannel>,
    shutdown: Shutdown,
}

fn test_config() -> PlacementConfig {
    PlacementConfig {
        fleet_sync_interval_ms: 50,
        queue_poll_interval_ms: 100,
        create_timeout_seconds: 10,
        ..PlacementConfig::default()
    }
}

impl Harness {
    async fn start(servers: Vec<ServerRecord>) -> Self {
        Self::start_with(servers, test_config(), 1).await
    }

    /// A store with `servers` and `replicas` placement replicas (the client
    /// talks to the first).
    async fn start_with(servers: Vec<ServerRecord>, config: PlacementConfig, replicas: usize) -> Self {
        switchboard_common::telemetry::init_for_tests();
        let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
        for server in servers {
            let open = server.open;
            backend.upsert_server_report(server, open, None).await.unwrap();
        }
        let hosts: Arc<Mutex<Hosts>> = Arc::default();
        let store = TestStore {
            inner: Arc::new(StoreService::new(backend.clone(), Arc::new(FakeHosts(hosts.clone())))),
            hosts,
            unavailable_assigns: Arc::default(),
            unavailable_counts: Arc::default(),
            counts_delay: Arc::default(),
            owner_counts: Arc::default(),
            deleted_writes: Arc::default(),
            record_calls: Arc::default(),
            unavailable_records: Arc::default(),
            record_delay: Arc::default(),
            scans: Arc::default(),
        };
        let shutdown = Shutdown::new();
        let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store_url = format!("http://{}", store_listener.local_addr().unwrap());
        let router =
            switchboard_common::grpc::server_builder().unwrap().add_service(SessionStoreServer::new(store.clone()));
        tokio::spawn(switchboard_common::grpc::serve_router(router, store_listener, shutdown.clone()));
        let store_client = SessionStoreClient::new(lazy_channel(&store_url).unwrap());
        let mut placement_urls = Vec::new();
        for _ in 0..replicas {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            placement_urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(serve(
                config.clone(),
                listener,
                store_client.clone(),
                backend.clone(),
                backend.clone(),
                shutdown.clone(),
            ));
        }
        let client = PlacementClient::new(lazy_channel(&placement_urls[0]).unwrap());
        Self { backend, store, store_client, client, shutdown }
    }

    fn answer(&self, server_id: &str, answer: Result<(), &str>) {
        self.store.hosts.lock().unwrap().answers.insert(server_id.into(), answer.map_err(str::to_owned));
    }

    fn commands_to(&self) -> Vec<String> {
        self.store.hosts.lock().unwrap().commands_to.clone()
    }

    async fn create(&mut self, specs: Vec<CreateSessionSpec>) -> Vec<Outcome> {
        let request = CreateSessionsRequest { request_id: "r1".into(), specs, ..Default::default() };
        let response = self.client.create_sessions(request).await.unwrap().into_inner();
        response.outcomes.into_iter().map(|o| o.outcome.unwrap()).collect()
    }

    async fn create_one(&mut self, spec: CreateSessionSpec) -> SessionRecord {
        let outcome = self.create(vec![spec]).await.remove(0);
        session_of(&outcome).clone()
    }

    async fn session(&self, id: &str) -> SessionRecord {
        self.backend.get_sessions(&[id.to_owned()]).await.unwrap().remove(0)
    }

    /// Waits until `done` holds for the session (polling, with a generous
    /// safety net so a bug fails the test instead of hanging it).
    async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&SessionRecord) -> bool) -> SessionRecord {
        for _ in 0..600 {
            let session = self.session(id).await;
            if done(&session) {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("session {id} never became {what}: {:?}", self.session(id).await);
    }

    async fn settled(&self, id: &str) -> SessionRecord {
        self.wait_for(id, "settled", |s| s.state() != SessionState::Creating).await
    }

    async fn queued(&self, id: &str) -> SessionRecord {
        let session = self.wait_for(id, "queued", |s| s.state_reason.starts_with("queued: ")).await;
        assert_eq!((session.state(), session.substate.as_str()), (SessionState::Creating, "SESSION_PLACING"));
        session
    }

    /// Puts `count` placed sessions of `owner` on `server_id`.
    async fn fill(&self, server_id: &str, owner: &str, count: usize, session_type: SessionType) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..count {
            let id = format!("filler-{server_id}-{owner}-{i}");
            let session = SessionRecord {
                id: id.clone(),
                owner: owner.into(),
                r#type: session_type as i32,
                state: SessionState::Creating as i32,
                ..Default::default()
            };
            self.backend.insert_session(session, None).await.unwrap();
            let outcome = self.backend.assign_session(&id, server_id).await.unwrap();
            assert!(matches!(outcome, AssignOutcome::Assigned(_)), "filling {server_id}: {outcome:?}");
            ids.push(id);
        }
        ids
    }

    async fn end_session(&self, id: &str) {
        let mut session = self.session(id).await;
        session.state = SessionState::Deleted as i32;
        self.backend.update_session(session.clone(), session.revision, None).await.unwrap();
    }

    async fn queue_len(&self) -> usize {
        self.backend.queue_len().await.unwrap()
    }

    /// How many times the store was listed (servers or sessions).
    /// `RecordSessions` calls so far.
    fn record_calls(&self) -> usize {
        self.store.record_calls.load(Ordering::SeqCst)
    }

    fn scans(&self) -> usize {
        self.store.scans.load(Ordering::SeqCst)
    }

    /// `OwnerSessionCounts` calls so far.
    fn owner_count_reads(&self) -> usize {
        self.store.owner_counts.lock().unwrap().0
    }

    /// The server ids named by the last `OwnerSessionCounts` call, sorted.
    fn last_owner_count_ids(&self) -> Vec<String> {
        let mut ids = self.store.owner_counts.lock().unwrap().1.clone();
        ids.sort_unstable();
        ids
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn linux() -> Option<HostInfo> {
    Some(HostInfo { os: Some(Os { family: "linux".into(), ..Default::default() }), ..Default::default() })
}

fn server(id: &str) -> ServerRecord {
    ServerRecord {
        id: id.into(),
        open: true,
        reachable: true,
        dcv_healthy: true,
        max_virtual_sessions: 4,
        host: linux(),
        ..Default::default()
    }
}

fn windows(id: &str) -> ServerRecord {
    let host = HostInfo { os: Some(Os { family: "windows".into(), ..Default::default() }), ..Default::default() };
    ServerRecord { host: Some(host), ..server(id) }
}

fn tagged(mut server: ServerRecord, key: &str, value: &str) -> ServerRecord {
    server.tags.push(KeyValue { key: key.into(), value: value.into() });
    server
}

fn spec() -> CreateSessionSpec {
    CreateSessionSpec {
        name: "s1".into(),
        owner: "alice".into(),
        r#type: SessionType::Virtual as i32,
        ..Default::default()
    }
}

fn queued_spec() -> CreateSessionSpec {
    CreateSessionSpec { enqueue_request: true, ..spec() }
}

fn session_of(outcome: &Outcome) -> &SessionRecord {
    match outcome {
        Outcome::Session(session) => session,
        Outcome::FailureReason(reason) => panic!("unexpected failure: {reason}"),
    }
}

// ----- placement rules -----

#[tokio::test]
async fn no_server_at_all_fails_the_item_immediately() {
    let mut harness = Harness::start(vec![]).await;
    let outcomes = harness.create(vec![spec()]).await;
    assert_eq!(outcomes, [Outcome::FailureReason("no server matches: no servers are registered".into())]);
    assert!(harness.backend.list_sessions("", 10).await.unwrap().is_empty(), "nothing may be recorded");
}

#[tokio::test]
async fn precheck_explains_in_numbers() {
    let servers = vec![
        ServerRecord { open: false, ..tagged(server("closed"), "gpu", "a100") },
        ServerRecord { reachable: false, ..tagged(server("gone"), "gpu", "a100") },
        ServerRecord { dcv_healthy: false, ..tagged(server("sick"), "gpu", "a100") },
        tagged(server("full"), "gpu", "a100"),
        server("plain-1"),
        server("plain-2"),
        tagged(windows("win"), "gpu", "a100"),
    ];
    let mut harness = Harness::start(servers).await;
    harness.fill("full", "bob", 4, SessionType::Virtual).await;
    let outcomes = harness.create(vec![CreateSessionSpec { requirements: "tag:gpu = 'a100'".into(), ..spec() }]).await;
    assert_eq!(
        outcomes,
        [Outcome::FailureReason(
            "no server matches: 7 servers; 2 rejected by tag:gpu = 'a100', 1 closed, 1 unreachable, \
             1 DCV server unhealthy, 1 not Linux (virtual sessions need Linux), 1 full"
                .into()
        )]
    );
}

#[tokio::test]
async fn invalid_items_fail_alone_and_valid_ones_become_ready_on_the_least_loaded_host() {
    let mut harness = Harness::start(vec![server("busy"), server("idle"), server("middle")]).await;
    harness.fill("busy", "bob", 3, SessionType::Virtual).await;
    harness.fill("middle", "bob", 1, SessionType::Virtual).await;
    let bad = CreateSessionSpec { owner: String::new(), ..spec() };
    let outcomes = harness.create(vec![bad, spec()]).await;
    assert_eq!(outcomes[0], Outcome::FailureReason("Owner is required".into()));
    let accepted = session_of(&outcomes[1]);
    assert_eq!((accepted.state(), accepted.substate.as_str()), (SessionState::Creating, "SESSION_PLACING"));
    let settled = harness.settled(&accepted.id).await;
    assert_eq!(settled.state(), SessionState::Ready);
    assert_eq!(settled.server_id, "idle");
    assert_eq!(settled.creation_time_unix_ms, 1_601_979_331_633);
}

#[tokio::test]
async fn a_request_is_recorded_in_one_store_write_in_item_order() {
    let mut harness = Harness::start(vec![server("h1"), server("h2")]).await;
    let bad = CreateSessionSpec { owner: String::new(), ..spec() };
    let named = |name: &str| CreateSessionSpec { name: name.into(), ..spec() };
    let outcomes = harness.create(vec![named("first"), bad, named("second"), named("third")]).await;
    assert_eq!(harness.record_calls(), 1, "one RecordSessions call for the three accepted items");
    assert_eq!(outcomes[1], Outcome::FailureReason("Owner is required".into()), "the refused item keeps its place");
    let names: Vec<&str> =
        [&outcomes[0], &outcomes[2], &outcomes[3]].iter().map(|o| session_of(o).name.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"], "accepted items answer in request order");
    for outcome in [&outcomes[0], &outcomes[2], &outcomes[3]] {
        assert_eq!(harness.settled(&session_of(outcome).id).await.state(), SessionState::Ready);
    }
    let _ = harness.create(vec![bad_owner()]).await;
    assert_eq!(harness.record_calls(), 1, "a request with no accepted item writes nothing");
}

/// A CreateSessions request of `specs` with an idempotency key of client `c1`, its body standing for
/// the API body's hash.
fn keyed(key: &str, body: &str, specs: Vec<CreateSessionSpec>) -> CreateSessionsRequest {
    let mut body_sha256 = body.as_bytes().to_vec();
    body_sha256.resize(32, 0);
    CreateSessionsRequest {
        request_id: "r-keyed".into(),
        specs,
        idempotency_key: key.into(),
        body_sha256,
        client_id: "c1".into(),
    }
}

#[tokio::test]
async fn an_idempotency_key_runs_a_request_once_and_is_released_when_nothing_was_recorded() {
    let mut harness = Harness::start(vec![server("h1")]).await;
    harness.store.unavailable_records.store(1, Ordering::SeqCst);
    let first = harness.client.create_sessions(keyed("k1", "body", vec![spec()])).await.unwrap().into_inner();
    assert_eq!(
        first.outcomes[0].outcome,
        Some(Outcome::FailureReason("the session store is unavailable; try again".into())),
        "a store outage: nothing recorded"
    );
    let second = harness.client.create_sessions(keyed("k1", "body", vec![spec()])).await.unwrap().into_inner();
    let created = session_of(second.outcomes[0].outcome.as_ref().unwrap()).clone();
    assert_eq!(harness.record_calls(), 2, "the released key let the retry run");

    let retry = harness.client.create_sessions(keyed("k1", "body", vec![spec()])).await.unwrap().into_inner();
    let replayed = session_of(retry.outcomes[0].outcome.as_ref().unwrap());
    assert_eq!((&replayed.id, &replayed.name), (&created.id, &created.name), "a retry gets the stored answer");
    assert!(replayed.spec.is_none(), "stored without the spec, which the API answer does not show");
    assert_eq!(harness.record_calls(), 2, "and records nothing");
    assert_eq!(harness.settled(&created.id).await.state(), SessionState::Ready);

    let other = harness.client.create_sessions(keyed("k1", "other", vec![spec()])).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::FailedPrecondition, "another body: {other:?}");
    assert_eq!(switchboard_common::error::public_message(&other), switchboard_proto::contract::IDEMPOTENCY_KEY_REUSED);

    let bad = harness.client.create_sessions(keyed("k\u{e9}", "body", vec![spec()])).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "a non-ASCII key: {bad:?}");
    let no_client = CreateSessionsRequest { client_id: String::new(), ..keyed("k2", "body", vec![spec()]) };
    let refused = harness.client.create_sessions(no_client).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "a key without its client: {refused:?}");
    assert_eq!(harness.record_calls(), 2, "refused requests record nothing");

    let plain = harness.create(vec![spec()]).await;
    assert_ne!(session_of(&plain[0]).id, created.id, "without a key, a request runs as always");
}

/// A caller that gives up while its keyed request is being recorded leaves no duplicate behind: the request
/// finishes and stores its answer, which the retry gets.
#[tokio::test]
async fn a_keyed_request_abandoned_by_its_caller_still_stores_its_answer() {
    let mut harness = Harness::start(vec![server("h1")]).await;
    *harness.store.record_delay.lock().unwrap() = Duration::from_millis(500);
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        harness.client.create_sessions(keyed("k1", "body", vec![spec()])),
    );
    assert!(abandoned.await.is_err(), "the caller gave up while the sessions were being recorded");
    *harness.store.record_delay.lock().unwrap() = Duration::ZERO;
    let mut answer = None;
    for _ in 0..200 {
        match harness.client.create_sessions(keyed("k1", "body", vec![spec()])).await {
            Ok(response) => {
                answer = Some(response.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::Aborted => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(status) => panic!("the retry failed: {status:?}"),
        }
    }
    let answer = answer.expect("the first request finished and stored its answer");
    let session = session_of(answer.outcomes[0].outcome.as_ref().unwrap());
    assert_eq!(harness.record_calls(), 1, "the retry created nothing");
    assert_eq!(harness.settled(&session.id).await.state(), SessionState::Ready);
}

fn bad_owner() -> CreateSessionSpec {
    CreateSessionSpec { owner: String::new(), ..spec() }
}

#[tokio::test]
async fn one_console_session_per_host() {
    let mut harness = Harness::start(vec![server("a"), server("b")]).await;
    harness.fill("a", "bob", 1, SessionType::Console).await;
    let console = harness.create_one(CreateSessionSpec { r#type: SessionType::Console as i32, ..spec() }).await;
    assert_eq!(harness.settled(&console.id).await.server_id, "b", "a already has a console session");
    let again = harness.create(vec![CreateSessionSpec { r#type: SessionType::Console as i32, ..spec() }]).await;
    assert_eq!(
        again,
        [Outcome::FailureReason("no server matches: 2 servers; 2 console session exists".into())],
        "a third console session has nowhere to go"
    );
}

#[tokio::test]
async fn virtual_sessions_and_dcv_gl_need_linux() {
    let mut harness = Harness::start(vec![windows("win")]).await;
    let refused = harness.create(vec![spec(), CreateSessionSpec { dcv_gl_enabled: true, ..spec() }]).await;
    let not_linux = "no server matches: 1 server; 1 not Linux (virtual sessions need Linux)";
    assert_eq!(refused, [Outcome::FailureReason(not_linux.into()), Outcome::FailureReason(not_linux.into())]);
    let gl_console = harness
        .create(vec![CreateSessionSpec { dcv_gl_enabled: true, r#type: SessionType::Console as i32, ..spec() }])
        .await;
    assert_eq!(gl_console, [Outcome::FailureReason("DcvGlEnabled is supported with VIRTUAL sessions only".into())]);
    let console = harness.create_one(CreateSessionSpec { r#type: SessionType::Console as i32, ..spec() }).await;
    assert_eq!(harness.settled(&console.id).await.server_id, "win", "console sessions run on Windows");
}

#[tokio::test]
async fn max_virtual_sessions_and_per_user_limits_hold() {
    let limited = ServerRecord { max_virtual_sessions: 2, max_concurrent_sessions_per_user: 1, ..server("limited") };
    let mut harness = Harness::start(vec![limited]).await;
    harness.fill("limited", "alice", 1, SessionType::Virtual).await;
    let alice = harness.create(vec![spec()]).await;
    let at_limit = "no server matches: 1 server; 1 at the owner's session limit";
    assert_eq!(alice, [Outcome::FailureReason(at_limit.into())], "alice is at her per-user limit");
    let bob = harness.create_one(CreateSessionSpec { owner: "bob".into(), ..spec() }).await;
    assert_eq!(harness.settled(&bob.id).await.state(), SessionState::Ready);
    let carol = harness.create(vec![CreateSessionSpec { owner: "carol".into(), ..spec() }]).await;
    assert_eq!(carol, [Outcome::FailureReason("no server matches: 1 server; 1 full".into())], "max_virtual_sessions");
}

/// Hosts limiting sessions per owner: "a" to 1, "b" to 2, and a closed one.
fn per_user_limited() -> Vec<ServerRecord> {
    vec![
        ServerRecord { max_concurrent_sessions_per_user: 1, ..server("a") },
        ServerRecord { max_concurrent_sessions_per_user: 2, ..server("b") },
        ServerRecord { open: false, max_concurrent_sessions_per_user: 1, ..server("closed") },
    ]
}

#[tokio::test]
async fn an_owner_at_the_per_user_limit_on_every_host_fails_at_once() {
    let mut harness = Harness::start(per_user_limited()).await;
    harness.fill("a", "alice", 1, SessionType::Virtual).await;
    let on_b = harness.fill("b", "alice", 2, SessionType::Virtual).await;
    let recorded = harness.backend.list_sessions("", 100).await.unwrap().len();
    let scans = harness.scans();
    let refused = harness.create(vec![spec(), CreateSessionSpec { name: "s2".into(), ..spec() }]).await;
    let reason = "no server matches: 3 servers; 1 closed, 2 at the owner's session limit";
    assert_eq!(refused, [Outcome::FailureReason(reason.into()), Outcome::FailureReason(reason.into())]);
    assert_eq!(harness.backend.list_sessions("", 100).await.unwrap().len(), recorded, "nothing may be recorded");
    assert_eq!(harness.owner_count_reads(), 1, "the owner's counters are read once per request");
    assert_eq!(harness.last_owner_count_ids(), ["a", "b"], "for the fitting candidates only");
    assert_eq!(harness.scans(), scans, "no listing of the store");

    let bob = harness.create_one(CreateSessionSpec { owner: "bob".into(), ..spec() }).await;
    assert_eq!(harness.settled(&bob.id).await.state(), SessionState::Ready, "another owner still fits");
    assert_eq!(harness.owner_count_reads(), 2, "bob's counters, in his own request");

    // A DELETED session does not count against the limit.
    harness.end_session(&on_b[0]).await;
    let again = harness.create_one(spec()).await;
    let settled = harness.settled(&again.id).await;
    assert_eq!((settled.state(), settled.server_id.as_str()), (SessionState::Ready, "b"));

    // At the limit everywhere again: with EnqueueRequest the item waits,
    // without reading the counters.
    let reads = harness.owner_count_reads();
    let queued = harness.create_one(queued_spec()).await;
    let waiting = harness.queued(&queued.id).await;
    assert_eq!(
        waiting.state_reason,
        "queued: no server matches: 3 servers; 1 closed, 2 refused by the store (USER_SESSION_LIMIT)"
    );
    assert_eq!(harness.owner_count_reads(), reads, "queued items skip the pre-check");
    harness.end_session(&on_b[1]).await;
    let placed = harness.settled(&queued.id).await;
    assert_eq!((placed.state(), placed.server_id.as_str()), (SessionState::Ready, "b"), "woken when hers ends");
    assert_eq!(harness.scans(), scans, "still no listing of the store");
}

#[tokio::test]
async fn a_host_without_a_per_user_limit_takes_the_item_without_reading_the_owner() {
    let mut servers = per_user_limited();
    servers.push(ServerRecord { max_virtual_sessions: 1, ..server("unlimited") });
    let mut harness = Harness::start(servers).await;
    harness.fill("a", "alice", 1, SessionType::Virtual).await;
    harness.fill("b", "alice", 2, SessionType::Virtual).await;
    let session = harness.create_one(spec()).await;
    assert_eq!(harness.settled(&session.id).await.server_id, "unlimited");
    assert_eq!(harness.owner_count_reads(), 0, "a candidate without a per-user limit needs no read");
    // Now full, it is no candidate: the limited hosts decide.
    let refused = harness.create(vec![spec()]).await;
    let reason = "no server matches: 4 servers; 1 closed, 1 full, 2 at the owner's session limit";
    assert_eq!(refused, [Outcome::FailureReason(reason.into())]);
    assert_eq!(harness.owner_count_reads(), 1);
    assert_eq!(harness.scans(), 0, "no listing of the store");
}

#[tokio::test]
async fn a_failed_or_slow_owner_count_read_leaves_the_limit_to_the_store() {
    let mut harness = Harness::start(vec![ServerRecord { max_concurrent_sessions_per_user: 1, ..server("a") }]).await;
    harness.fill("a", "alice", 1, SessionType::Virtual).await;
    let store_refusal = "no server matches: 1 server; 1 refused by the store (USER_SESSION_LIMIT)";

    harness.store.unavailable_counts.store(1, Ordering::SeqCst);
    let accepted = harness.create_one(spec()).await;
    assert_eq!(harness.store.unavailable_counts.load(Ordering::SeqCst), 0, "the read was tried");
    let settled = harness.settled(&accepted.id).await;
    assert_eq!((settled.state(), settled.state_reason.as_str()), (SessionState::Deleted, store_refusal));

    // A store slower than the pre-check's timeout: accepted, the store decides.
    *harness.store.counts_delay.lock().unwrap() = OWNER_COUNTS_TIMEOUT + Duration::from_secs(1);
    let accepted = harness.create_one(spec()).await;
    assert_eq!(harness.owner_count_reads(), 2, "one read per request, given up after the timeout");
    let settled = harness.settled(&accepted.id).await;
    assert_eq!((settled.state(), settled.state_reason.as_str()), (SessionState::Deleted, store_refusal));

    // Back to normal: refused at once.
    *harness.store.counts_delay.lock().unwrap() = Duration::ZERO;
    let refused = harness.create(vec![spec()]).await;
    let reason = "no server matches: 1 server; 1 at the owner's session limit";
    assert_eq!(refused, [Outcome::FailureReason(reason.into())]);
    assert_eq!(harness.scans(), 0, "no listing of the store");
}

#[tokio::test]
async fn more_limited_candidates_than_one_read_covers_leave_the_limit_to_the_store() {
    assert_eq!(OWNER_COUNTS_MAX_IDS, OWNER_COUNTS_MAX_SERVERS, "placement names no more ids than the store takes");
    let limited = |i: usize| ServerRecord { max_concurrent_sessions_per_user: 1, ..server(&format!("h{i:04}")) };
    let mut servers: Vec<ServerRecord> = (0..OWNER_COUNTS_MAX_IDS).map(|i| tagged(limited(i), "pool", "x")).collect();
    servers.push(limited(OWNER_COUNTS_MAX_IDS));
    let mut harness = Harness::start(servers).await;
    // One more limited candidate than a read may name: no read, accepted.
    let accepted = harness.create_one(spec()).await;
    assert_eq!(harness.owner_count_reads(), 0, "too many candidates for one read: skipped");
    assert_eq!(harness.settled(&accepted.id).await.state(), SessionState::Ready);
    // Exactly as many as a read may name: one read, of all of them.
    let pooled = CreateSessionSpec { requirements: "tag:pool = 'x'".into(), ..spec() };
    let accepted = harness.create_one(pooled).await;
    assert_eq!(harness.owner_count_reads(), 1, "within the bound: one read");
    assert_eq!(harness.last_owner_count_ids().len(), OWNER_COUNTS_MAX_IDS);
    assert_eq!(harness.settled(&accepted.id).await.state(), SessionState::Ready);
    assert_eq!(harness.scans(), 0, "no listing of the store");
}

#[tokio::test]
async fn requirements_filter_hosts() {
    let mut harness = Harness::start(vec![server("plain"), tagged(server("tagged"), "color", "dark-red")]).await;
    harness.fill("tagged", "bob", 2, SessionType::Virtual).await;
    let outcomes =
        harness.create(vec![CreateSessionSpec { requirements: "tag:color := 'red'".into(), ..spec() }]).await;
    assert_eq!(harness.settled(&session_of(&outcomes[0]).id).await.server_id, "tagged");
}

#[tokio::test]
async fn scarce_gpu_hosts_are_kept_for_requests_that_need_them() {
    let mut harness = Harness::start(vec![server("plain"), tagged(server("gpu-host"), "gpu", "a100")]).await;
    harness.fill("plain", "bob", 2, SessionType::Virtual).await;
    let ordinary = harness.create_one(spec()).await;
    assert_eq!(harness.settled(&ordinary.id).await.server_id, "plain", "the busier ordinary host, not the GPU host");
    let gpu = harness.create_one(CreateSessionSpec { requirements: "tag:gpu = 'a100'".into(), ..spec() }).await;
    assert_eq!(harness.settled(&gpu.id).await.server_id, "gpu-host");
}

#[tokio::test]
async fn host_failure_retries_on_the_next_host() {
    let mut harness = Harness::start(vec![server("a"), server("b")]).await;
    harness.fill("b", "bob", 1, SessionType::Virtual).await;
    harness.answer("a", Err("owner does not exist"));
    let session = harness.create_one(spec()).await;
    let settled = harness.settled(&session.id).await;
    assert_eq!((settled.state(), settled.server_id.as_str()), (SessionState::Ready, "b"));
    assert_eq!(harness.commands_to(), ["a", "b"]);
}

#[tokio::test]
async fn retries_stop_after_the_configured_number() {
    // The default (2) and other values: each gives one attempt plus that many retries.
    for retries in [2, 0, 1] {
        let servers = vec![server("a"), server("b"), server("c"), server("d")];
        let config = PlacementConfig { create_sessions_number_of_retries_on_failure: retries, ..test_config() };
        let mut harness = Harness::start_with(servers, config, 1).await;
        for id in ["a", "b", "c", "d"] {
            harness.answer(id, Err("no such user"));
        }
        let session = harness.create_one(spec()).await;
        let settled = harness.settled(&session.id).await;
        assert_eq!(settled.state(), SessionState::Deleted);
        let attempts = harness.commands_to();
        assert_eq!(attempts.len(), 1 + retries as usize, "one attempt and {retries} retries: {attempts:?}");
        assert!(settled.state_reason.starts_with("session creation failed on server"), "{}", settled.state_reason);
    }
}

#[tokio::test]
async fn disable_retry_on_failure_deletes_after_the_first_host_fails() {
    let mut harness = Harness::start(vec![server("a"), server("b")]).await;
    harness.fill("b", "bob", 1, SessionType::Virtual).await;
    harness.answer("a", Err("owner does not exist"));
    let session = harness.create_one(CreateSessionSpec { disable_retry_on_failure: true, ..spec() }).await;
    let settled = harness.settled(&session.id).await;
    assert_eq!(settled.state(), SessionState::Deleted);
    assert_eq!(settled.state_reason, "session creation failed on server a: owner does not exist");
    assert_ne!(settled.ended_unix_ms, 0);
    assert_eq!(harness.commands_to(), ["a"]);
}

#[tokio::test]
async fn a_store_outage_during_placement_is_retried_not_fatal() {
    let mut harness = Harness::start(vec![server("a")]).await;
    harness.store.unavailable_assigns.store(2, Ordering::SeqCst);
    let session = harness.create_one(spec()).await;
    let settled = harness.settled(&session.id).await;
    assert_eq!(settled.state(), SessionState::Ready, "{settled:?}");
    assert_eq!(harness.store.unavailable_assigns.load(Ordering::SeqCst), 0, "both outages were hit");
}

#[tokio::test]
async fn a_host_that_joins_after_start_is_seen_without_listing_the_store() {
    let mut harness = Harness::start(vec![]).await;
    harness.backend.upsert_server_report(server("late"), true, None).await.unwrap();
    let session = harness.create_one(spec()).await;
    assert_eq!(harness.settled(&session.id).await.server_id, "late");
    harness.backend.upsert_server_report(server("later"), true, None).await.unwrap();
    let sessions = harness.create(vec![spec(), spec(), spec()]).await;
    for outcome in &sessions {
        assert_eq!(harness.settled(&session_of(outcome).id).await.state(), SessionState::Ready);
    }
    assert_eq!(harness.scans(), 0, "placement decided from its view, never by listing the store");
}

#[tokio::test]
async fn a_console_session_with_an_autorun_file_needs_a_windows_host() {
    let mut harness = Harness::start(vec![server("lin"), windows("win")]).await;
    let console = || CreateSessionSpec { r#type: SessionType::Console as i32, ..spec() };
    let autorun = || CreateSessionSpec { autorun_file: "start.cmd".into(), ..console() };
    // Both hosts are idle; without the rule the tie would go to "lin" (by id).
    let first = harness.create_one(autorun()).await;
    assert_eq!(harness.settled(&first.id).await.server_id, "win");
    let refused = harness.create(vec![autorun()]).await;
    assert_eq!(
        refused,
        [Outcome::FailureReason(
            "no server matches: 2 servers; 1 not Windows (console sessions with an AutorunFile need Windows), \
             1 console session exists"
                .into()
        )]
    );
    let plain = harness.create_one(console()).await;
    assert_eq!(harness.settled(&plain.id).await.server_id, "lin", "without an AutorunFile a Linux console is fine");
    let virtual_autorun = harness.create_one(CreateSessionSpec { autorun_file: "start.sh".into(), ..spec() }).await;
    assert_eq!(harness.settled(&virtual_autorun.id).await.server_id, "lin", "virtual sessions autorun on Linux");
    assert_eq!(harness.scans(), 0);
}

// ----- the queue -----

#[tokio::test]
async fn a_queued_request_waits_and_is_placed_when_a_host_opens() {
    let mut harness = Harness::start(vec![ServerRecord { open: false, ..server("a") }]).await;
    let session = harness.create_one(queued_spec()).await;
    let queued = harness.queued(&session.id).await;
    assert_eq!(queued.state_reason, "queued: no server matches: 1 server; 1 closed");
    assert_eq!(harness.queue_len().await, 1);
    harness.backend.set_server_open("a", true).await.unwrap();
    let settled = harness.settled(&session.id).await;
    assert_eq!((settled.state(), settled.server_id.as_str()), (SessionState::Ready, "a"));
    assert_eq!(harness.queue_len().await, 0, "a placed request leaves the queue");
}

#[tokio::test]
async fn a_queued_request_wakes_when_an_agent_joins_or_a_session_ends() {
    let mut harness = Harness::start(vec![ServerRecord { max_virtual_sessions: 1, ..server("a") }]).await;
    let filler = harness.fill("a", "bob", 1, SessionType::Virtual).await;
    let first = harness.create_one(queued_spec()).await;
    harness.queued(&first.id).await;
    harness.end_session(&filler[0]).await;
    assert_eq!(harness.settled(&first.id).await.server_id, "a", "a session ending frees its slot");

    let second = harness.create_one(queued_spec()).await;
    harness.queued(&second.id).await;
    harness.backend.upsert_server_report(server("joined"), true, None).await.unwrap();
    assert_eq!(harness.settled(&second.id).await.server_id, "joined", "a new agent brings capacity");
}

#[tokio::test]
async fn a_queued_request_wakes_when_a_host_reports_a_tag_it_needs() {
    let mut harness = Harness::start(vec![server("a"), server("b")]).await;
    let session =
        harness.create_one(CreateSessionSpec { requirements: "tag:pool = 'gpu'".into(), ..queued_spec() }).await;
    let queued = harness.queued(&session.id).await;
    assert_eq!(queued.state_reason, "queued: no server matches: 2 servers; 2 rejected by tag:pool = 'gpu'");
    // The agent's next update reports the tag (a telemetry change, no host
    // opened or joined, no session ended).
    harness.backend.upsert_server_report(tagged(server("b"), "pool", "gpu"), true, None).await.unwrap();
    let settled = harness.settled(&session.id).await;
    assert_eq!((settled.state(), settled.server_id.as_str()), (SessionState::Ready, "b"));
    assert_eq!(harness.queue_len().await, 0);
    assert_eq!(harness.scans(), 0, "the wake-up came from the fleet view's changes, not a listing");
}

#[tokio::test]
async fn a_queued_console_autorun_request_waits_for_a_windows_host() {
    let mut harness = Harness::start(vec![windows("win")]).await;
    harness.fill("win", "bob", 1, SessionType::Console).await;
    let spec =
        CreateSessionSpec { r#type: SessionType::Console as i32, autorun_file: "app.exe".into(), ..queued_spec() };
    let session = harness.create_one(spec).await;
    let queued = harness.queued(&session.id).await;
    assert_eq!(queued.state_reason, "queued: no server matches: 1 server; 1 console session exists");
    // A Linux host joining is a change the class hears about, but cannot use.
    harness.backend.upsert_server_report(server("lin"), true, None).await.unwrap();
    harness.backend.upsert_server_report(windows("win-2"), true, None).await.unwrap();
    let settled = harness.settled(&session.id).await;
    assert_eq!((settled.state(), settled.server_id.as_str()), (SessionState::Ready, "win-2"));
}

#[tokio::test]
async fn the_queue_is_bounded_by_its_max_size() {
    let config = PlacementConfig { create_sessions_queue_max_size: 1, ..test_config() };
    let mut harness = Harness::start_with(vec![ServerRecord { open: false, ..server("a") }], config, 1).await;
    let first = harness.create_one(queued_spec()).await;
    harness.queued(&first.id).await;
    let second = harness.create_one(queued_spec()).await;
    let refused = harness.settled(&second.id).await;
    assert_eq!(refused.state(), SessionState::Deleted);
    assert_eq!(
        refused.state_reason,
        "the create-sessions queue is full (1 requests; create-sessions-queue-max-size); \
         no server matches: 1 server; 1 closed"
    );
    assert_eq!(harness.session(&first.id).await.state(), SessionState::Creating, "the first keeps waiting");
}

#[tokio::test]
async fn a_queued_request_times_out_exactly_once_across_replicas() {
    let config = PlacementConfig { create_sessions_queue_max_time_seconds: 1, ..test_config() };
    let mut harness = Harness::start_with(vec![ServerRecord { open: false, ..server("a") }], config, 3).await;
    let session = harness.create_one(queued_spec()).await;
    harness.queued(&session.id).await;
    let settled = harness.settled(&session.id).await;
    assert_eq!(settled.state(), SessionState::Deleted);
    assert_eq!(
        settled.state_reason,
        "not placed within 1 s (create-sessions-queue-max-time-seconds); no server matches: 1 server; 1 closed"
    );
    // Let every replica poll a few more times; the failure must not repeat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(harness.store.deleted_writes.lock().unwrap().get(&session.id).copied(), Some(1));
    assert_eq!(harness.queue_len().await, 0);
}

#[tokio::test]
async fn deleting_a_queued_session_cancels_it() {
    let mut harness = Harness::start(vec![ServerRecord { open: false, ..server("a") }]).await;
    let session = harness.create_one(queued_spec()).await;
    harness.queued(&session.id).await;
    let item = DeleteSessionItem { session_id: session.id.clone(), owner: "alice".into(), force: false };
    let deleted =
        harness.store_client.delete_sessions(DeleteSessionsRequest { items: vec![item] }).await.unwrap().into_inner();
    assert_eq!(deleted.outcomes[0].state(), SessionState::Deleted);
    assert_eq!(harness.queue_len().await, 0, "the entry left the queue");
    harness.backend.set_server_open("a", true).await.unwrap();
    // A request placed after cancellation would reach the host: give the
    // worker a few polls, then check nothing was sent.
    let other = harness.create_one(spec()).await;
    harness.settled(&other.id).await;
    assert_eq!(harness.session(&session.id).await.state(), SessionState::Deleted);
    assert_eq!(harness.commands_to().len(), 1, "only the later request was created");
}

#[tokio::test]
async fn classes_do_not_block_each_other_and_each_is_fifo() {
    let mut harness = Harness::start(vec![ServerRecord { max_virtual_sessions: 1, ..server("a") }]).await;
    harness.fill("a", "bob", 1, SessionType::Virtual).await;
    let gpu = harness.create_one(CreateSessionSpec { requirements: "tag:gpu = 'a100'".into(), ..queued_spec() }).await;
    harness.queued(&gpu.id).await;
    let first = harness.create_one(queued_spec()).await;
    harness.queued(&first.id).await;
    let second = harness.create_one(queued_spec()).await;
    harness.queued(&second.id).await;
    assert_eq!(harness.queue_len().await, 3);

    harness
        .backend
        .upsert_server_report(ServerRecord { max_virtual_sessions: 1, ..server("b") }, true, None)
        .await
        .unwrap();
    let placed = harness.settled(&first.id).await;
    assert_eq!(placed.server_id, "b", "the older request of its class goes first, past the blocked GPU request");
    assert_eq!(harness.session(&second.id).await.state(), SessionState::Creating, "no room for the second yet");
    assert_eq!(harness.session(&gpu.id).await.state(), SessionState::Creating, "the GPU request keeps waiting");

    harness.backend.upsert_server_report(server("c"), true, None).await.unwrap();
    assert_eq!(harness.settled(&second.id).await.server_id, "c");
    assert_eq!(harness.session(&gpu.id).await.state(), SessionState::Creating);
    assert_eq!(harness.queue_len().await, 1);
}

/// Fair turns (docs/saas.md, "Queue position and ETA"): when capacity for two frees up, a long class gets
/// one of the slots and a short class competing for the same hosts the other, though the long class has
/// the older entries too.
#[tokio::test]
async fn a_long_class_does_not_starve_a_short_one() {
    let mut harness = Harness::start(vec![ServerRecord { max_virtual_sessions: 1, ..server("a") }]).await;
    harness.fill("a", "bob", 1, SessionType::Virtual).await;
    let mut long = Vec::new();
    for _ in 0..2 {
        let session = harness.create_one(queued_spec()).await;
        harness.queued(&session.id).await;
        long.push(session.id);
    }
    let linux = CreateSessionSpec { requirements: "server:Host.Os.Family = 'linux'".into(), ..queued_spec() };
    let short = harness.create_one(linux).await;
    harness.queued(&short.id).await;
    for _ in 0..2 {
        let session = harness.create_one(queued_spec()).await;
        harness.queued(&session.id).await;
        long.push(session.id);
    }
    assert_eq!(harness.queue_len().await, 5);

    harness
        .backend
        .upsert_server_report(ServerRecord { max_virtual_sessions: 2, ..server("b") }, true, None)
        .await
        .unwrap();
    assert_eq!(harness.settled(&short.id).await.server_id, "b", "the short class gets a slot of the turn");
    assert_eq!(harness.settled(&long[0]).await.server_id, "b", "the long class's oldest the other");
    for id in &long[1..] {
        assert_eq!(harness.session(id).await.state(), SessionState::Creating, "no room for the rest of the long class");
    }
    assert_eq!(harness.queue_len().await, 3);

    // The worker's dequeue of a placed entry feeds its class's rate: the rest of the class has an estimate.
    let positions = harness.backend.queue_positions(&long[1..]).await.unwrap();
    let places: Vec<(usize, usize, usize)> =
        positions.iter().map(|p| (p.position, p.class_entries, p.recent_placements)).collect();
    assert_eq!(places, [(1, 3, 1), (2, 3, 1), (3, 3, 1)], "moved up; one placement of the class counted");
}

// ----- explain -----

#[tokio::test]
async fn explain_placement_dry_runs_against_the_fleet() {
    let servers = vec![
        tagged(server("gpu-1"), "gpu", "a100"),
        tagged(server("gpu-2"), "gpu", "a100"),
        ServerRecord { open: false, ..tagged(server("gpu-3"), "gpu", "a100") },
        server("plain"),
    ];
    let mut harness = Harness::start(servers).await;
    harness.fill("gpu-1", "bob", 1, SessionType::Virtual).await;
    let request = ExplainPlacementRequest { requirements: "tag:gpu = 'a100'".into(), ..Default::default() };
    let answer = harness.client.explain_placement(request).await.unwrap().into_inner();
    assert!(answer.valid, "{answer:?}");
    assert_eq!((answer.total_servers, answer.matching_count), (4, 2));
    assert_eq!(answer.matching_servers, ["gpu-2", "gpu-1"], "best first");
    assert_eq!(answer.rejections, HashMap::from([("tag:gpu = 'a100'".into(), 1), ("closed".into(), 1)]));

    // A console session with an AutorunFile: only Windows hosts (there are none here).
    let console_autorun = ExplainPlacementRequest {
        r#type: SessionType::Console as i32,
        autorun_file: "start.cmd".into(),
        ..Default::default()
    };
    let answer = harness.client.explain_placement(console_autorun).await.unwrap().into_inner();
    assert_eq!(answer.matching_count, 0, "{answer:?}");
    assert_eq!(answer.rejections.get("not Windows (console sessions with an AutorunFile need Windows)"), Some(&3));

    let bad = ExplainPlacementRequest { requirements: "tag:gpu = ".into(), ..Default::default() };
    let answer = harness.client.explain_placement(bad).await.unwrap().into_inner();
    assert!(!answer.valid);
    assert_eq!(answer.error_column, 11);
    assert!(answer.error.contains("column 11"), "{}", answer.error);
}

/// A session another placement replica accepted and then left unplaced (it died before assigning a host)
/// is taken over after `create_timeout` by a live replica and placed once, on one host.
#[tokio::test]
async fn a_session_left_unplaced_by_a_dead_replica_is_taken_over_and_placed_once() {
    let config = PlacementConfig { create_timeout_seconds: 1, ..test_config() };
    let harness = Harness::start_with(vec![server("a"), server("b")], config, 3).await;
    // What RecordSessions stored for the dead replica; nobody is placing it.
    let now = switchboard_common::time::now_ms();
    let orphan = SessionRecord {
        id: "orphan".into(),
        name: "orphan".into(),
        owner: "alice".into(),
        r#type: SessionType::Virtual as i32,
        state: SessionState::Creating as i32,
        substate: "SESSION_PLACING".into(),
        creation_time_unix_ms: now,
        spec: Some(spec()),
        ..Default::default()
    };
    let request = switchboard_proto::RecordSessionsRequest { sessions: vec![orphan] };
    harness.store_client.clone().record_sessions(request).await.unwrap();
    let settled = harness.settled("orphan").await;
    assert_eq!(settled.state(), SessionState::Ready, "{settled:?}");
    assert_eq!(harness.commands_to().len(), 1, "created on one host, once: {:?}", harness.commands_to());
}
