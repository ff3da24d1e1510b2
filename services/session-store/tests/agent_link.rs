//! The agent link end to end: real servers on 127.0.0.1:0, a fake agent, and
//! the `SessionStore` API observing and commanding it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::grpc::GrpcChannel;
use switchboard_common::grpc::lazy_channel;
use switchboard_proto::agent_link_client::AgentLinkClient;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::host_command::Action;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_proto::start_session_response::Outcome;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, AssignSessionRequest, BrokerMessage,
    CommandErrorKind, CommandResult, DeleteSessionItem, DeleteSessionsRequest, GetSessionsRequest, HostCommand,
    HostSession, ListServersRequest, RecordSessionsRequest, ScreenshotCommand, SendCommandRequest, ServerRecord,
    SessionRecord, SessionState, SessionType, SetServersOpenRequest, SettleUnplacedRequest, StartSessionRequest,
    assign_session_response, command_result, settle_unplaced_request,
};
use switchboard_session_store::{Listeners, StoreConfig, serve};
use switchboard_store::Backend;
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::enrolment as agent_auth;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Upper bound for any single wait; nothing in these tests should take long.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One running replica.
struct Replica {
    backend: Arc<dyn Backend>,
    store: SessionStoreClient<GrpcChannel>,
    agent_url: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<switchboard_session_store::Result<()>>,
}

async fn start_replica(replica_id: &str, backend: Arc<dyn Backend>) -> Replica {
    start_replica_with(replica_id, backend, StoreConfig::default()).await
}

/// A replica with `config` (its id, address and a 5 s command timeout filled in).
async fn start_replica_with(replica_id: &str, backend: Arc<dyn Backend>, config: StoreConfig) -> Replica {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let agent_url = format!("http://{}", agent.local_addr().unwrap());
    let config = StoreConfig {
        replica_id: replica_id.to_owned(),
        advertised_address: grpc_url.clone(),
        command_timeout_seconds: 5,
        ..config
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(config, Listeners { grpc, agent }, backend.clone(), None, shutdown.clone()));
    Replica { backend, store: SessionStoreClient::new(lazy_channel(&grpc_url).unwrap()), agent_url, shutdown, task }
}

impl Replica {
    async fn stop(self) {
        self.shutdown.cancel();
        within("replica shutdown", self.task).await.unwrap().unwrap();
    }

    async fn server(&mut self, server_id: &str) -> Option<ServerRecord> {
        let request = ListServersRequest { server_ids: vec![server_id.into()], page_size: 10, ..Default::default() };
        self.store.list_servers(request).await.unwrap().into_inner().servers.pop()
    }

    async fn session_state(&mut self, session_id: &str) -> SessionState {
        let request = GetSessionsRequest { session_ids: vec![session_id.into()], with_queue_places: false };
        self.store.get_sessions(request).await.unwrap().into_inner().sessions[0].state()
    }
}

/// A fake agent: what it sends and what the broker sends it.
struct FakeAgent {
    to_broker: mpsc::Sender<AgentMessage>,
    from_broker: tonic::Streaming<BrokerMessage>,
}

fn hello(server_id: &str, protocol_version: u32) -> AgentHello {
    AgentHello {
        protocol_version,
        server_id: server_id.into(),
        hostname: "dcv-1".into(),
        dcv_healthy: true,
        sessions: vec![HostSession {
            id: "s1".into(),
            name: "desk".into(),
            owner: "alice".into(),
            r#type: SessionType::Virtual as i32,
            num_of_connections: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Enrols a fresh agent client (as a real agent does with a software statement) and opens its stream.
async fn connect(replica: &Replica, hello: AgentHello) -> Result<FakeAgent, tonic::Status> {
    let backend = replica.backend.as_ref();
    let statement = agent_auth::statements::generate(backend).await.unwrap();
    let client = agent_auth::clients::register(backend, statement.text.expose(), "dcv-1").await.unwrap();
    let authorization =
        agent_auth::clients::basic_authorization(&client.record.client_id, client.client_secret.expose());
    let (to_broker, agent_rx) = mpsc::channel(8);
    to_broker.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.unwrap();
    let mut client = AgentLinkClient::new(lazy_channel(&replica.agent_url).unwrap());
    let mut request = tonic::Request::new(ReceiverStream::new(agent_rx));
    request.metadata_mut().insert("authorization", authorization.parse().unwrap());
    let from_broker = within("connect", client.connect(request)).await?.into_inner();
    Ok(FakeAgent { to_broker, from_broker })
}

impl FakeAgent {
    async fn next(&mut self) -> BrokerKind {
        within("a broker message", self.from_broker.message()).await.unwrap().unwrap().kind.unwrap()
    }

    async fn next_command(&mut self) -> HostCommand {
        match self.next().await {
            BrokerKind::Command(command) => command,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    async fn answer(&self, result: CommandResult) {
        self.to_broker.send(AgentMessage { kind: Some(AgentKind::Result(result)) }).await.unwrap();
    }
}

/// Polls until `check` holds; the broker offers no event to await here.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn screenshot() -> HostCommand {
    HostCommand {
        command_id: String::new(),
        action: Some(Action::Screenshot(ScreenshotCommand { session_id: "s1".into(), ..Default::default() })),
        traceparent: String::new(),
    }
}

#[tokio::test]
async fn agent_stream_lifecycle() {
    switchboard_common::telemetry::init_for_tests();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let mut replica = start_replica("r1", backend).await;

    let mut agent = connect(&replica, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
    let BrokerKind::Welcome(welcome) = agent.next().await else { panic!("first message must be the welcome") };
    assert_eq!(welcome.broker_id, "r1");
    assert_eq!(welcome.update_interval_seconds, 10);
    assert!(welcome.epoch > 0);

    let server = replica.server("h1").await.expect("server registered by the hello");
    assert!(server.reachable && server.open, "connected server is reachable and open by default");
    assert_eq!(server.virtual_session_count, 1, "the reported session counts");
    assert_eq!(replica.session_state("s1").await, SessionState::Ready, "reported session is READY");

    // A command through the store API reaches the agent and its result comes back.
    let mut store = replica.store.clone();
    let call = tokio::spawn(async move {
        let request = SendCommandRequest { server_id: "h1".into(), command: Some(screenshot()), timeout_ms: 5000 };
        store.send_command(request).await
    });
    let command = agent.next_command().await;
    assert!(!command.command_id.is_empty(), "the store fills in the command id");
    agent.answer(CommandResult { command_id: command.command_id.clone(), ..Default::default() }).await;
    let result = within("send_command", call).await.unwrap().unwrap().into_inner();
    assert_eq!(result.command_id, command.command_id);

    // Closing a server with sessions needs force (no drain by default); unknown servers are reported.
    let ids = vec!["h1".into(), "nope".into()];
    let request = SetServersOpenRequest { server_ids: ids, open: false, force: false, drain_timeout_seconds: None };
    let outcomes = replica.store.set_servers_open(request).await.unwrap().into_inner().outcomes;
    assert_eq!(outcomes[0].failure_code, "SERVER_HAS_SESSIONS");
    assert_eq!(outcomes[1].failure_code, "DCV_SERVER_NOT_FOUND");
    assert_eq!(outcomes[1].failure_reason, "Dcv server not found.");

    // Delete: DELETING at once, DELETED when the host confirms the close.
    let items = vec![
        DeleteSessionItem { session_id: "s1".into(), owner: "mallory".into(), force: false },
        DeleteSessionItem { session_id: "s1".into(), owner: "alice".into(), force: false },
    ];
    let outcomes = replica.store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap().into_inner().outcomes;
    assert_eq!(
        outcomes[0].failure_reason, "The requested dcvSession does not exist",
        "owner mismatch hides the session"
    );
    assert_eq!(outcomes[1].state(), SessionState::Deleting);
    let close = agent.next_command().await;
    assert!(matches!(&close.action, Some(Action::Close(c)) if c.session_id == "s1"), "host told to close: {close:?}");
    agent.answer(CommandResult { command_id: close.command_id, ..Default::default() }).await;
    eventually("session DELETED", || {
        let mut replica_store = replica.store.clone();
        async move {
            let request = GetSessionsRequest { session_ids: vec!["s1".into()], with_queue_places: false };
            replica_store.get_sessions(request).await.unwrap().into_inner().sessions[0].state() == SessionState::Deleted
        }
    })
    .await;

    // The agent goes away: the server becomes unreachable, commands fail fast.
    drop(agent);
    eventually("server unreachable", || {
        let mut replica_store = replica.store.clone();
        async move {
            let request = ListServersRequest { server_ids: vec!["h1".into()], page_size: 1, ..Default::default() };
            !replica_store.list_servers(request).await.unwrap().into_inner().servers[0].reachable
        }
    })
    .await;
    let request = SendCommandRequest { server_id: "h1".into(), command: Some(screenshot()), timeout_ms: 1000 };
    let status = replica.store.send_command(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("not connected"), "{status:?}");

    replica.stop().await;
}

#[tokio::test]
async fn hello_with_wrong_protocol_version_is_refused() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let replica = start_replica("r1", backend).await;
    let status = connect(&replica, hello("h1", 99)).await.err().expect("version 99 must be refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    replica.stop().await;
}

#[tokio::test]
async fn commands_are_forwarded_to_the_owning_replica() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let owner = start_replica("owner", backend.clone()).await;
    let mut other = start_replica("other", backend).await;
    let mut agent = connect(&owner, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
    assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));

    let call = tokio::spawn(async move {
        let request = SendCommandRequest { server_id: "h1".into(), command: Some(screenshot()), timeout_ms: 5000 };
        let result = other.store.send_command(request).await;
        (other, result)
    });
    let command = agent.next_command().await;
    agent
        .answer(CommandResult { command_id: command.command_id.clone(), error: "boom".into(), ..Default::default() })
        .await;
    let (other, result) = within("forwarded send_command", call).await.unwrap();
    let result = result.expect("forwarded call succeeds").into_inner();
    assert_eq!((result.command_id, result.error.as_str()), (command.command_id, "boom"), "host error passed through");

    drop(agent);
    other.stop().await;
    owner.stop().await;
}

#[tokio::test]
async fn close_of_a_session_the_host_no_longer_has_ends_deleted() {
    switchboard_common::telemetry::init_for_tests();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let mut replica = start_replica("r1", backend).await;
    let mut agent = connect(&replica, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
    let BrokerKind::Welcome(_) = agent.next().await else { panic!("first message must be the welcome") };

    let items = vec![DeleteSessionItem { session_id: "s1".into(), owner: "alice".into(), force: false }];
    let outcomes = replica.store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap().into_inner().outcomes;
    assert_eq!(outcomes[0].state(), SessionState::Deleting);
    let close = agent.next_command().await;
    let answer = CommandResult {
        command_id: close.command_id,
        error: "the host has no such session".into(),
        error_kind: CommandErrorKind::SessionNotFound as i32,
        ..Default::default()
    };
    agent.answer(answer).await;
    eventually("session DELETED", || {
        let mut replica_store = replica.store.clone();
        async move {
            let request = GetSessionsRequest { session_ids: vec!["s1".into()], with_queue_places: false };
            replica_store.get_sessions(request).await.unwrap().into_inner().sessions[0].state() == SessionState::Deleted
        }
    })
    .await;
    replica.shutdown.cancel();
}

#[tokio::test]
async fn an_unavailable_inventory_marks_the_host_unhealthy_and_keeps_its_sessions() {
    switchboard_common::telemetry::init_for_tests();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let mut replica = start_replica("r1", backend).await;
    let agent = connect(&replica, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
    assert_eq!(replica.session_state("s1").await, SessionState::Ready);

    // The DCV server stops answering: the agent reports it unhealthy and says its list is not an inventory.
    let update =
        switchboard_proto::AgentUpdate { dcv_healthy: false, inventory_unavailable: true, ..Default::default() };
    agent.to_broker.send(AgentMessage { kind: Some(AgentKind::Update(update)) }).await.unwrap();
    eventually("server unhealthy", || {
        let mut replica_store = replica.store.clone();
        async move {
            let request = ListServersRequest {
                server_ids: vec!["h1".into()],
                page_size: 10,
                after_id: String::new(),
                ..Default::default()
            };
            let server = replica_store.list_servers(request).await.unwrap().into_inner().servers.pop().unwrap();
            !server.dcv_healthy
        }
    })
    .await;
    assert_eq!(replica.session_state("s1").await, SessionState::Ready, "the cached session is kept");
    assert_eq!(replica.server("h1").await.unwrap().virtual_session_count, 1);

    // A reconnect with an unavailable inventory keeps it too. `connect` enrols a new agent client, so free
    // the server id from the first one (as `unregister-agent-client` would before a re-enrolment).
    drop(agent);
    for client in replica.backend.list_agent_clients().await.unwrap() {
        replica.backend.remove_agent_client(&client.client_id).await.unwrap();
    }
    let again = AgentHello {
        dcv_healthy: false,
        inventory_unavailable: true,
        sessions: Vec::new(),
        ..hello("h1", AGENT_PROTOCOL_VERSION)
    };
    let mut agent = connect(&replica, again).await.unwrap();
    let BrokerKind::Welcome(_) = agent.next().await else { panic!("first message must be the welcome") };
    // The disconnect made it UNKNOWN (as for any host that drops); an unknowable inventory does not delete it.
    assert_eq!(replica.session_state("s1").await, SessionState::Unknown);
    // The DCV server answers again: the session is READY again.
    let update = switchboard_proto::AgentUpdate {
        dcv_healthy: true,
        sessions: hello("h1", AGENT_PROTOCOL_VERSION).sessions,
        ..Default::default()
    };
    agent.to_broker.send(AgentMessage { kind: Some(AgentKind::Update(update)) }).await.unwrap();
    eventually("session READY again", || {
        let mut replica_store = replica.store.clone();
        async move {
            let request = GetSessionsRequest { session_ids: vec!["s1".into()], with_queue_places: false };
            replica_store.get_sessions(request).await.unwrap().into_inner().sessions[0].state() == SessionState::Ready
        }
    })
    .await;
    replica.stop().await;
}

/// The lifecycle scenarios run on each backend: embedded, and a real `redis-server` of the test's own.
async fn each_backend() -> Vec<(&'static str, Arc<dyn Backend>, Option<switchboard_testkit::redis::RedisServer>)> {
    let redis = switchboard_testkit::redis::RedisServer::start();
    let config = switchboard_store::redis::RedisConfig {
        url: redis.url(),
        key_prefix: "lifecycle:".into(),
        ..Default::default()
    };
    let on_redis: Arc<dyn Backend> = Arc::new(switchboard_store::redis::RedisBackend::connect(config).await.unwrap());
    vec![("embedded", Arc::new(EmbeddedBackend::in_memory().unwrap()), None), ("redis", on_redis, Some(redis))]
}

/// A CREATING session `id` for alice, assigned to `server_id` (empty: unplaced), as placement leaves it.
async fn creating(store: &mut SessionStoreClient<GrpcChannel>, id: &str, server_id: &str) {
    let session = switchboard_store::conformance::session(id, "alice", SessionType::Virtual);
    store.record_sessions(RecordSessionsRequest { sessions: vec![session] }).await.unwrap();
    if !server_id.is_empty() {
        let request = AssignSessionRequest { session_id: id.into(), server_id: server_id.into() };
        let outcome = store.assign_session(request).await.unwrap().into_inner().outcome;
        assert!(matches!(outcome, Some(assign_session_response::Outcome::Session(_))), "{outcome:?}");
    }
}

async fn record(store: &mut SessionStoreClient<GrpcChannel>, id: &str) -> SessionRecord {
    let request = GetSessionsRequest { session_ids: vec![id.into()], with_queue_places: false };
    store.get_sessions(request).await.unwrap().into_inner().sessions.remove(0)
}

fn start(id: &str, last_attempt: bool, timeout_ms: u32) -> StartSessionRequest {
    StartSessionRequest { session_id: id.into(), server_id: "h1".into(), timeout_ms, last_attempt }
}

fn empty_hello(server_id: &str) -> AgentHello {
    AgentHello { sessions: vec![], ..hello(server_id, AGENT_PROTOCOL_VERSION) }
}

impl FakeAgent {
    /// Sends an update whose inventory is `sessions`.
    async fn report(&self, sessions: Vec<HostSession>) {
        let update = AgentUpdate { dcv_healthy: true, sessions, ..Default::default() };
        self.to_broker.send(AgentMessage { kind: Some(AgentKind::Update(update)) }).await.unwrap();
    }

    /// The id of the session the next command creates (panics on any other command).
    async fn next_create(&mut self) -> (String, String) {
        let command = self.next_command().await;
        match command.action {
            Some(Action::Create(create)) => (command.command_id, create.session_id),
            other => panic!("expected a create, got {other:?}"),
        }
    }

    /// The id of the session the next command closes (panics on any other command).
    async fn next_close(&mut self) -> String {
        match self.next_command().await.action {
            Some(Action::Close(close)) => close.session_id,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

fn host_session(id: &str) -> HostSession {
    HostSession { id: id.into(), owner: "alice".into(), r#type: SessionType::Virtual as i32, ..Default::default() }
}

#[tokio::test]
async fn start_session_carries_one_attempt_to_its_outcome() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        let replica = start_replica("r1", backend).await;
        let mut agent = connect(&replica, empty_hello("h1")).await.unwrap();
        assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
        let mut store = replica.store.clone();
        for id in ["ok", "refused", "last", "slow", "gone"] {
            creating(&mut store, id, "h1").await;
        }

        // The host creates it: READY with what the host reported, in one call.
        let call = tokio::spawn({
            let mut store = store.clone();
            async move { store.start_session(start("ok", false, 5000)).await }
        });
        let (command_id, session_id) = agent.next_create().await;
        assert_eq!(session_id, "ok");
        let created = HostSession { num_of_connections: 0, storage_root: "/data".into(), ..host_session("ok") };
        let payload = Some(command_result::Payload::Session(created));
        agent.answer(CommandResult { command_id, payload, ..Default::default() }).await;
        let outcome = within("start", call).await.unwrap().unwrap().into_inner();
        assert_eq!(outcome.outcome(), Outcome::Ready, "{name}");
        let ready = record(&mut store, "ok").await;
        assert_eq!((ready.state(), ready.storage_root.as_str()), (SessionState::Ready, "/data"), "{name}");

        // The host refuses: back to placing for another host, or DELETED on the last attempt.
        for (id, last, state) in [("refused", false, SessionState::Creating), ("last", true, SessionState::Deleted)] {
            let call = tokio::spawn({
                let mut store = store.clone();
                async move { store.start_session(start(id, last, 5000)).await }
            });
            let (command_id, _) = agent.next_create().await;
            agent.answer(CommandResult { command_id, error: "disk full".into(), ..Default::default() }).await;
            let outcome = within("start", call).await.unwrap().unwrap().into_inner();
            let expected = if last { Outcome::Ended } else { Outcome::Retry };
            assert_eq!(outcome.outcome(), expected, "{name} {id}");
            let after = record(&mut store, id).await;
            assert_eq!(after.state(), state, "{name} {id}");
            assert!(after.state_reason.contains("session creation failed on server h1: disk full"), "{name} {id}");
            assert_eq!(after.server_id.is_empty(), !last, "{name} {id}: a retry clears the server");
        }

        // The host does not answer in time: unconfirmed, still CREATING on the host, left to its inventory;
        // the inventory listing it makes it READY.
        let call = tokio::spawn({
            let mut store = store.clone();
            async move { store.start_session(start("slow", false, 200)).await }
        });
        let _ = agent.next_create().await;
        let outcome = within("start", call).await.unwrap().unwrap().into_inner();
        assert_eq!(outcome.outcome(), Outcome::Unconfirmed, "{name}");
        let waiting = record(&mut store, "slow").await;
        assert_eq!((waiting.state(), waiting.server_id.as_str()), (SessionState::Creating, "h1"), "{name}");
        agent.report(vec![host_session("ok"), host_session("slow")]).await;
        eventually("the inventory confirms the slow create", || {
            let mut store = store.clone();
            async move { record(&mut store, "slow").await.state() == SessionState::Ready }
        })
        .await;

        // Deleted meanwhile: nothing is sent, nothing recorded.
        let items = vec![DeleteSessionItem { session_id: "gone".into(), owner: "alice".into(), force: true }];
        store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap();
        let outcome = store.start_session(start("gone", false, 5000)).await.unwrap().into_inner();
        assert_eq!(outcome.outcome(), Outcome::Gone, "{name}");
        assert_eq!(record(&mut store, "gone").await.state(), SessionState::Deleted, "{name}");
        drop(agent);
        replica.stop().await;
    }
}

#[tokio::test]
async fn unplaced_sessions_are_settled_only_while_unplaced() {
    for (name, backend, _redis) in each_backend().await {
        let replica = start_replica("r1", backend.clone()).await;
        backend.upsert_server_report(switchboard_store::conformance::server("h1"), true, None).await.unwrap();
        let mut store = replica.store.clone();
        creating(&mut store, "waiting", "").await;
        creating(&mut store, "placed", "h1").await;
        let settle = |id: &str, action: settle_unplaced_request::Action| SettleUnplacedRequest {
            session_id: id.into(),
            reason: "no server matches".into(),
            action: action as i32,
        };
        let queued = store.settle_unplaced(settle("waiting", settle_unplaced_request::Action::Queued)).await.unwrap();
        assert!(queued.into_inner().changed, "{name}");
        assert_eq!(record(&mut store, "waiting").await.state_reason, "queued: no server matches", "{name}");
        let placed = store.settle_unplaced(settle("placed", settle_unplaced_request::Action::Fail)).await.unwrap();
        assert!(!placed.into_inner().changed, "{name}: a placed session is not failed as unplaced");
        let failed = store.settle_unplaced(settle("waiting", settle_unplaced_request::Action::Fail)).await.unwrap();
        assert!(failed.into_inner().changed, "{name}");
        let ended = record(&mut store, "waiting").await;
        assert_eq!((ended.state(), ended.state_reason.as_str()), (SessionState::Deleted, "no server matches"));
        let again = store.settle_unplaced(settle("waiting", settle_unplaced_request::Action::Fail)).await.unwrap();
        assert!(!again.into_inner().changed, "{name}: ends once");
        replica.stop().await;
    }
}

#[tokio::test]
async fn stray_copies_are_closed_and_force_deleted_sessions_recached() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        let replica = start_replica("r1", backend.clone()).await;
        backend.upsert_server_report(switchboard_store::conformance::server("h2"), true, None).await.unwrap();
        let mut store = replica.store.clone();
        // "elsewhere" is recorded on h2; "ended" failed to be placed (DELETED with a reason).
        creating(&mut store, "elsewhere", "h2").await;
        creating(&mut store, "ended", "").await;
        let fail = SettleUnplacedRequest {
            session_id: "ended".into(),
            reason: "no server matches".into(),
            action: settle_unplaced_request::Action::Fail as i32,
        };
        assert!(store.settle_unplaced(fail).await.unwrap().into_inner().changed);

        let strays = vec![host_session("elsewhere"), host_session("ended")];
        let mut agent = connect(&replica, AgentHello { sessions: strays, ..empty_hello("h1") }).await.unwrap();
        assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
        let mut closed = vec![agent.next_close().await, agent.next_close().await];
        closed.sort();
        assert_eq!(closed, ["elsewhere", "ended"], "{name}");
        let elsewhere = record(&mut store, "elsewhere").await;
        assert_eq!(elsewhere.server_id, "h2", "{name}: the stray does not move the record");
        assert_eq!(record(&mut store, "ended").await.state(), SessionState::Deleted, "{name}");

        // Force removes a session from the cache only; a host still running it has it re-cached.
        agent.report(vec![host_session("forced")]).await;
        eventually("the reported session is cached", || {
            let mut store = store.clone();
            async move {
                let request = GetSessionsRequest { session_ids: vec!["forced".into()], with_queue_places: false };
                let sessions = store.get_sessions(request).await.unwrap().into_inner().sessions;
                sessions.first().is_some_and(|s| s.state() == SessionState::Ready)
            }
        })
        .await;
        let items = vec![DeleteSessionItem { session_id: "forced".into(), owner: "alice".into(), force: true }];
        let outcome = store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap().into_inner().outcomes;
        assert_eq!(outcome[0].state(), SessionState::Deleted, "{name}: Force ends it at once");
        agent.report(vec![host_session("forced"), host_session("new")]).await;
        eventually("the force-deleted session is re-cached", || {
            let mut store = store.clone();
            async move { record(&mut store, "forced").await.state() == SessionState::Ready }
        })
        .await;
        drop(agent);
        replica.stop().await;
    }
}

#[tokio::test]
async fn deleting_resends_the_close_and_stalled_sessions_end_with_a_reason() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        let config = StoreConfig {
            timers: switchboard_session_store::Timers { stalled_session_seconds: 2, ..Default::default() },
            ..StoreConfig::default()
        };
        let replica = start_replica_with("r1", backend.clone(), config).await;
        let mut agent = connect(&replica, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
        assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
        let mut store = replica.store.clone();
        creating(&mut store, "never", "h1").await;

        // The host fails the close and keeps listing the session: the close is sent again.
        let items = vec![DeleteSessionItem { session_id: "s1".into(), owner: "alice".into(), force: false }];
        store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap();
        let close = agent.next_command().await;
        agent.answer(CommandResult { command_id: close.command_id, error: "busy".into(), ..Default::default() }).await;
        eventually("the failure is recorded", || {
            let mut store = store.clone();
            async move { record(&mut store, "s1").await.state_reason == "busy" }
        })
        .await;
        agent.report(vec![host_session("s1")]).await;
        assert_eq!(agent.next_close().await, "s1", "{name}: resent while the host lists it");

        // Past the bound (2 s): DELETING and the never-confirmed CREATING end DELETED, saying why.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        agent.report(vec![host_session("s1")]).await;
        eventually("both end", || {
            let mut store = store.clone();
            async move {
                record(&mut store, "s1").await.state() == SessionState::Deleted
                    && record(&mut store, "never").await.state() == SessionState::Deleted
            }
        })
        .await;
        let s1 = record(&mut store, "s1").await;
        assert_eq!(s1.state_reason, "the host h1 did not confirm the close within 2 s", "{name}");
        let never = record(&mut store, "never").await;
        assert_eq!(never.state_reason, "the host h1 did not confirm the session within 2 s", "{name}");
        drop(agent);
        replica.stop().await;
    }
}

#[tokio::test]
async fn servers_carry_the_broker_reserved_tags() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let mut replica = start_replica("r1", backend).await;
    let os = |family: &str| {
        Some(switchboard_proto::HostInfo {
            os: Some(switchboard_proto::Os { family: family.into(), ..Default::default() }),
            ..Default::default()
        })
    };
    let tag = |key: &str, value: &str| switchboard_proto::KeyValue { key: key.into(), value: value.into() };
    let hosts = [
        ("win", "windows", 5, vec![tag("color", "pink"), tag("dcv:os-family", "spoofed")]),
        ("lin", "linux", 10, vec![tag("size", "big")]),
        ("unlimited", "linux", 0, vec![]),
    ];
    let mut agents = Vec::new();
    for (server_id, family, max_virtual_sessions, tags) in hosts {
        let hello = AgentHello { host: os(family), tags, max_virtual_sessions, ..empty_hello(server_id) };
        let mut agent = connect(&replica, hello).await.unwrap();
        assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
        agents.push(agent);
    }
    let tags_of =
        |server: ServerRecord| server.tags.into_iter().map(|t| format!("{}={}", t.key, t.value)).collect::<Vec<_>>();
    let win = tags_of(replica.server("win").await.unwrap());
    assert_eq!(win, ["color=pink", "dcv:os-family=windows", "dcv:max-virtual-sessions=0"], "agents cannot set dcv:*");
    let lin = tags_of(replica.server("lin").await.unwrap());
    assert_eq!(lin, ["size=big", "dcv:os-family=linux", "dcv:max-virtual-sessions=10"]);
    let unlimited = tags_of(replica.server("unlimited").await.unwrap());
    assert_eq!(unlimited, ["dcv:os-family=linux"], "no limit, no max-virtual-sessions tag");
    drop(agents);
    replica.stop().await;
}

/// A SetServersOpen call for `h1`: open, or close without force with a drain timeout.
fn set_h1(open: bool, drain_timeout_seconds: u32) -> SetServersOpenRequest {
    let drain_timeout_seconds = (!open).then_some(drain_timeout_seconds);
    SetServersOpenRequest { server_ids: vec!["h1".into()], open, force: false, drain_timeout_seconds }
}

/// Graceful drain on each backend, through two replicas sharing it: the host's stream on r1, every call
/// on r2, and either replica's sweep may finish the drain.
#[tokio::test]
async fn a_server_closed_without_force_drains_until_its_sessions_end_or_its_deadline() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        // Sweeps every second, so a drain that is due ends within a second or two.
        let config = StoreConfig { update_interval_seconds: 1, ..StoreConfig::default() };
        let r1 = start_replica_with("r1", backend.clone(), config.clone()).await;
        let mut r2 = start_replica_with("r2", backend.clone(), config).await;
        let mut agent = connect(&r1, hello("h1", AGENT_PROTOCOL_VERSION)).await.unwrap();
        assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
        assert_eq!(r2.session_state("s1").await, SessionState::Ready, "{name}: the host's session");
        let mut store = r2.store.clone();

        // Closed without force while s1 runs: draining, a success that says until when.
        let outcome = store.set_servers_open(set_h1(false, 3600)).await.unwrap().into_inner().outcomes.remove(0);
        assert_eq!(outcome.failure_code, "", "{name}: a drain is a success: {outcome:?}");
        let deadline = outcome.drain_deadline_unix_ms;
        assert!(deadline > switchboard_common::time::now_ms(), "{name}: a deadline ahead: {outcome:?}");
        assert_eq!(drain_state(&mut store, "h1").await, Some((false, deadline)), "{name}: listed as draining");

        // No new session is placed on it.
        let fresh = switchboard_store::conformance::session("fresh", "alice", SessionType::Virtual);
        store.record_sessions(RecordSessionsRequest { sessions: vec![fresh] }).await.unwrap();
        let request = AssignSessionRequest { session_id: "fresh".into(), server_id: "h1".into() };
        let assigned = store.assign_session(request).await.unwrap().into_inner().outcome;
        assert!(
            matches!(assigned, Some(assign_session_response::Outcome::Rejected(_))),
            "{name}: a draining server takes no new session: {assigned:?}"
        );

        // Its last session ends: a sweep closes it.
        let items = vec![DeleteSessionItem { session_id: "s1".into(), owner: "alice".into(), force: false }];
        store.delete_sessions(DeleteSessionsRequest { items }).await.unwrap();
        let close = agent.next_command().await;
        agent.answer(CommandResult { command_id: close.command_id, ..Default::default() }).await;
        agent.report(vec![]).await;
        eventually("the drained server closed", || {
            let mut store = store.clone();
            async move { drain_state(&mut store, "h1").await == Some((false, 0)) }
        })
        .await;

        // A short deadline: closed as with force, its session still running.
        store.set_servers_open(set_h1(true, 0)).await.unwrap();
        agent.report(vec![host_session("s2")]).await;
        eventually("s2 cached", || {
            let mut store = store.clone();
            async move { record_if_any(&mut store, "s2").await.is_some_and(|s| s.state() == SessionState::Ready) }
        })
        .await;
        let outcome = store.set_servers_open(set_h1(false, 1)).await.unwrap().into_inner().outcomes.remove(0);
        assert!(outcome.drain_deadline_unix_ms > 0, "{name}: draining: {outcome:?}");
        eventually("closed at the deadline", || {
            let mut store = store.clone();
            async move { drain_state(&mut store, "h1").await == Some((false, 0)) }
        })
        .await;
        assert_eq!(r2.session_state("s2").await, SessionState::Ready, "{name}: its session keeps running");
        assert_eq!(r2.server("h1").await.unwrap().virtual_session_count, 1, "{name}");

        // Opening cancels a drain.
        store.set_servers_open(set_h1(true, 0)).await.unwrap();
        let outcome = store.set_servers_open(set_h1(false, 3600)).await.unwrap().into_inner().outcomes.remove(0);
        assert!(outcome.drain_deadline_unix_ms > 0, "{name}: draining again: {outcome:?}");
        let opened = store.set_servers_open(set_h1(true, 0)).await.unwrap().into_inner().outcomes.remove(0);
        assert_eq!(opened.failure_code, "", "{name}");
        assert_eq!(drain_state(&mut store, "h1").await, Some((true, 0)), "{name}: open, no longer draining");
        drop(agent);
        r2.stop().await;
        r1.stop().await;
    }
}

/// Server `id`'s `(open, drain deadline)`, if it is known.
async fn drain_state(store: &mut SessionStoreClient<GrpcChannel>, id: &str) -> Option<(bool, i64)> {
    let request = ListServersRequest { server_ids: vec![id.into()], page_size: 10, ..Default::default() };
    let server = store.list_servers(request).await.unwrap().into_inner().servers.pop();
    server.map(|s| (s.open, s.drain_deadline_unix_ms))
}

/// The record of session `id`, if the store has one.
async fn record_if_any(store: &mut SessionStoreClient<GrpcChannel>, id: &str) -> Option<SessionRecord> {
    let request = GetSessionsRequest { session_ids: vec![id.into()], with_queue_places: false };
    store.get_sessions(request).await.unwrap().into_inner().sessions.pop()
}

/// A session on the host with `connections` clients, created at `created` (ms since epoch).
fn connected_session(id: &str, connections: u32, created: i64) -> HostSession {
    HostSession { num_of_connections: connections, creation_time_unix_ms: created, ..host_session(id) }
}

/// What a fake host reports, sent every 500 ms as a real agent reports every update interval (the broker
/// ends the stream of an agent silent for two intervals).
struct Inventory {
    sessions: Arc<std::sync::Mutex<Vec<HostSession>>>,
    reporter: tokio::task::JoinHandle<()>,
}

impl Inventory {
    fn keep_reporting(agent: &FakeAgent, sessions: Vec<HostSession>) -> Self {
        let sessions = Arc::new(std::sync::Mutex::new(sessions));
        let (to_broker, reported) = (agent.to_broker.clone(), sessions.clone());
        let reporter = tokio::spawn(async move {
            loop {
                let sessions = reported.lock().unwrap().clone();
                let update = AgentUpdate { dcv_healthy: true, sessions, ..Default::default() };
                if to_broker.send(AgentMessage { kind: Some(AgentKind::Update(update)) }).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self { sessions, reporter }
    }

    /// From now on the host reports `sessions`.
    fn set(&self, sessions: Vec<HostSession>) {
        *self.sessions.lock().unwrap() = sessions;
    }
}

/// Two replicas on one backend reaping under `timers`: r1 owns `h1`'s stream (the fake agent, whose hello
/// lists `sessions` and which keeps reporting its inventory), r2 is where the test looks.
async fn reaping_pair(
    backend: Arc<dyn Backend>,
    timers: switchboard_session_store::Timers,
    sessions: Vec<HostSession>,
) -> (Replica, Replica, FakeAgent, Inventory) {
    // Sweeps (and, since the settings reap, scans the sessions) every second.
    let config = StoreConfig { update_interval_seconds: 1, timers, ..StoreConfig::default() };
    let r1 = start_replica_with("r1", backend.clone(), config.clone()).await;
    let r2 = start_replica_with("r2", backend, config).await;
    let mut agent = connect(&r1, AgentHello { sessions: sessions.clone(), ..empty_hello("h1") }).await.unwrap();
    assert!(matches!(agent.next().await, BrokerKind::Welcome(_)));
    let inventory = Inventory::keep_reporting(&agent, sessions);
    (r1, r2, agent, inventory)
}

/// Idle reaping on each backend through two replicas: a session without connections is warned (ReapAt)
/// then deleted through the close to its host; a connected one is kept; a connection in the warning
/// window cancels.
#[tokio::test]
async fn idle_sessions_are_warned_then_reaped_and_a_connection_cancels() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        // Idle after 2 s, announced 4 s ahead: warned at the first scan, deleted 4 s later.
        let timers = switchboard_session_store::Timers {
            session_max_idle_seconds: 2,
            reap_warning_seconds: 4,
            ..Default::default()
        };
        let now = switchboard_common::time::now_ms();
        let sessions = vec![connected_session("idle", 0, now), connected_session("busy", 1, now)];
        let sessions = [sessions, vec![connected_session("flaky", 0, now)]].concat();
        let (r1, r2, mut agent, inventory) = reaping_pair(backend, timers, sessions).await;
        let mut store = r2.store.clone();

        eventually("both idle sessions warned", || {
            let mut store = store.clone();
            async move {
                let (idle, flaky) = (record(&mut store, "idle").await, record(&mut store, "flaky").await);
                idle.reap_at_unix_ms > 0 && flaky.reap_at_unix_ms > 0
            }
        })
        .await;
        let warned = record(&mut store, "idle").await;
        assert_eq!((warned.state(), warned.reap_reason.as_str()), (SessionState::Ready, "IDLE"), "{name}");
        assert!(warned.reap_at_unix_ms >= now + 2000, "{name}: announced for when it is due: {warned:?}");

        // A client connects to flaky within the warning window: its reap is cancelled.
        let reported = vec![connected_session("idle", 0, now), connected_session("busy", 1, now)];
        inventory.set([reported, vec![connected_session("flaky", 1, now)]].concat());
        eventually("flaky's reap cancelled", || {
            let mut store = store.clone();
            async move { record(&mut store, "flaky").await.reap_at_unix_ms == 0 }
        })
        .await;

        // idle is deleted as by DeleteSessions: DELETING, the close to its host, DELETED once confirmed.
        let close = agent.next_command().await;
        let Some(Action::Close(closed)) = &close.action else { panic!("{name}: expected a close: {close:?}") };
        assert_eq!(closed.session_id, "idle", "{name}: only the idle session is reaped");
        assert_eq!(record(&mut store, "idle").await.state(), SessionState::Deleting, "{name}");
        agent.answer(CommandResult { command_id: close.command_id, ..Default::default() }).await;
        inventory.set(vec![connected_session("busy", 1, now), connected_session("flaky", 1, now)]);
        eventually("idle deleted", || {
            let mut store = store.clone();
            async move { record(&mut store, "idle").await.state() == SessionState::Deleted }
        })
        .await;
        let reaped = record(&mut store, "idle").await;
        assert_eq!(reaped.state_reason, switchboard_session_store::lifecycle::reap::REAPED_IDLE, "{name}");
        assert_eq!((reaped.reap_reason.as_str(), reaped.reap_at_unix_ms), ("IDLE", warned.reap_at_unix_ms));
        for id in ["busy", "flaky"] {
            let kept = record(&mut store, id).await;
            assert_eq!((kept.state(), kept.reap_at_unix_ms), (SessionState::Ready, 0), "{name}: {id} kept");
        }
        inventory.reporter.abort();
        drop(agent);
        r2.stop().await;
        r1.stop().await;
    }
}

/// The maximum lifetime on each backend through two replicas: it deletes even a connected session,
/// except one whose CreateSessions item turned it off (`MaxLifetimeSeconds: 0`).
#[tokio::test]
async fn the_maximum_lifetime_reaps_connected_sessions_unless_their_own_limit_is_off() {
    switchboard_common::telemetry::init_for_tests();
    for (name, backend, _redis) in each_backend().await {
        let timers = switchboard_session_store::Timers {
            session_max_lifetime_seconds: 2,
            reap_warning_seconds: 1,
            ..Default::default()
        };
        let now = switchboard_common::time::now_ms();
        let (r1, r2, mut agent, inventory) =
            reaping_pair(backend, timers, vec![connected_session("old", 1, now)]).await;
        let mut store = r2.store.clone();
        // Recorded by placement with its own limit off, then found on the host (adopted READY).
        let spec = switchboard_proto::CreateSessionSpec { max_lifetime_seconds: Some(0), ..Default::default() };
        let kept = SessionRecord {
            spec: Some(spec),
            ..switchboard_store::conformance::session("kept", "alice", SessionType::Virtual)
        };
        store.record_sessions(RecordSessionsRequest { sessions: vec![kept] }).await.unwrap();
        inventory.set(vec![connected_session("old", 1, now), connected_session("kept", 1, now)]);
        eventually("kept adopted", || {
            let mut store = store.clone();
            async move { record(&mut store, "kept").await.state() == SessionState::Ready }
        })
        .await;

        let close = agent.next_command().await;
        let Some(Action::Close(closed)) = &close.action else { panic!("{name}: expected a close: {close:?}") };
        assert_eq!(closed.session_id, "old", "{name}: reaped though connected");
        agent.answer(CommandResult { command_id: close.command_id, ..Default::default() }).await;
        inventory.set(vec![connected_session("kept", 1, now)]);
        eventually("old deleted", || {
            let mut store = store.clone();
            async move { record(&mut store, "old").await.state() == SessionState::Deleted }
        })
        .await;
        let old = record(&mut store, "old").await;
        assert_eq!(old.reap_reason, "MAX_LIFETIME", "{name}");
        assert_eq!(old.state_reason, switchboard_session_store::lifecycle::reap::REAPED_MAX_LIFETIME, "{name}");
        // Created with old, so it would be past its warning too; its own limit is off.
        let kept = record(&mut store, "kept").await;
        assert_eq!((kept.state(), kept.reap_at_unix_ms), (SessionState::Ready, 0), "{name}: kept");
        inventory.reporter.abort();
        drop(agent);
        r2.stop().await;
        r1.stop().await;
    }
}
