//! Placement against a fake SessionStore gRPC server on 127.0.0.1:0.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use switchboard_common::{Shutdown, grpc::lazy_channel};
use switchboard_placement::{PlacementConfig, serve};
use switchboard_proto::{
    AssignSessionRequest, AssignSessionResponse, CommandResult, CreateSessionRequest, CreateSessionSpec,
    CreateSessionsRequest, DeleteSessionsRequest, DeleteSessionsResponse, GetSessionsRequest, HostSession,
    ListServersRequest, ListSessionsRequest, ServerRecord, ServersPage, SessionRecord, SessionState, SessionType,
    SessionsPage, SetServersOpenRequest, SetServersOpenResponse, UpdateSessionRequest, assign_session_response,
    command_result,
    create_session_outcome::Outcome,
    host_command,
    placement_client::PlacementClient,
    session_store_client::SessionStoreClient,
    session_store_server::{SessionStore, SessionStoreServer},
};
use tokio::{net::TcpListener, sync::watch};
use tonic::{Request, Response, Status};

/// Mutable fake state; a std Mutex because it is never held across an await.
#[derive(Default)]
struct State {
    servers: Vec<ServerRecord>,
    sessions: HashMap<String, SessionRecord>,
    /// Per-server answer to a create command: `Err(text)` fails it.
    host_answers: HashMap<String, Result<(), String>>,
    /// Servers that reject assignment, with the reason.
    rejections: HashMap<String, String>,
    commands_to: Vec<String>,
    /// AssignSession answers UNAVAILABLE this many times first (a dying store replica).
    unavailable_assigns: usize,
}

#[derive(Clone)]
struct FakeStore {
    state: Arc<Mutex<State>>,
    changed_tx: Arc<watch::Sender<u64>>,
}

impl FakeStore {
    fn bump(&self) {
        self.changed_tx.send_modify(|n| *n += 1);
    }
}

#[tonic::async_trait]
impl SessionStore for FakeStore {
    async fn create_session(&self, request: Request<CreateSessionRequest>) -> Result<Response<SessionRecord>, Status> {
        let mut session = request.into_inner().session.unwrap();
        session.revision = 1;
        self.state.lock().unwrap().sessions.insert(session.id.clone(), session.clone());
        self.bump();
        Ok(Response::new(session))
    }

    async fn get_sessions(&self, request: Request<GetSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        let state = self.state.lock().unwrap();
        let sessions =
            request.into_inner().session_ids.iter().filter_map(|id| state.sessions.get(id).cloned()).collect();
        Ok(Response::new(SessionsPage { sessions, ..Default::default() }))
    }

    async fn list_sessions(&self, _: Request<ListSessionsRequest>) -> Result<Response<SessionsPage>, Status> {
        Err(Status::unimplemented("not used by placement"))
    }

    async fn update_session(&self, request: Request<UpdateSessionRequest>) -> Result<Response<SessionRecord>, Status> {
        let UpdateSessionRequest { session, expected_revision } = request.into_inner();
        let mut session = session.unwrap();
        {
            let mut state = self.state.lock().unwrap();
            let stored = state.sessions.get_mut(&session.id).ok_or_else(|| Status::not_found("no session"))?;
            if stored.revision != expected_revision {
                return Err(Status::aborted("revision conflict"));
            }
            session.revision = expected_revision + 1;
            *stored = session.clone();
        }
        self.bump();
        Ok(Response::new(session))
    }

    async fn assign_session(
        &self,
        request: Request<AssignSessionRequest>,
    ) -> Result<Response<AssignSessionResponse>, Status> {
        {
            let mut state = self.state.lock().unwrap();
            if state.unavailable_assigns > 0 {
                state.unavailable_assigns -= 1;
                return Err(Status::unavailable("tcp connect error"));
            }
        }
        let AssignSessionRequest { session_id, server_id } = request.into_inner();
        let mut state = self.state.lock().unwrap();
        let outcome = if let Some(reason) = state.rejections.get(&server_id) {
            assign_session_response::Outcome::Rejected(reason.clone())
        } else {
            let session = state.sessions.get_mut(&session_id).unwrap();
            if session.state() != SessionState::Creating || !session.server_id.is_empty() {
                assign_session_response::Outcome::Rejected("SESSION_NOT_PLACEABLE".into())
            } else {
                session.server_id = server_id;
                session.substate = "PENDING_PREPARATION".into();
                session.revision += 1;
                assign_session_response::Outcome::Session(session.clone())
            }
        };
        Ok(Response::new(AssignSessionResponse { outcome: Some(outcome) }))
    }

    async fn delete_sessions(
        &self,
        _: Request<DeleteSessionsRequest>,
    ) -> Result<Response<DeleteSessionsResponse>, Status> {
        Err(Status::unimplemented("not used by placement"))
    }

    async fn list_servers(&self, request: Request<ListServersRequest>) -> Result<Response<ServersPage>, Status> {
        // Pages of one server, to exercise paging.
        let after_id = request.into_inner().after_id;
        let state = self.state.lock().unwrap();
        let mut sorted = state.servers.clone();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let next = sorted.into_iter().find(|s| s.id > after_id);
        let last_id = next.as_ref().map(|s| s.id.clone()).unwrap_or_default();
        Ok(Response::new(ServersPage { servers: next.into_iter().collect(), last_id, ..Default::default() }))
    }

    async fn set_servers_open(
        &self,
        _: Request<SetServersOpenRequest>,
    ) -> Result<Response<SetServersOpenResponse>, Status> {
        Err(Status::unimplemented("not used by placement"))
    }

    async fn send_command(
        &self,
        request: Request<switchboard_proto::SendCommandRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let request = request.into_inner();
        let command = request.command.unwrap();
        let Some(host_command::Action::Create(create)) = command.action else {
            return Err(Status::invalid_argument("unexpected command"));
        };
        let mut state = self.state.lock().unwrap();
        state.commands_to.push(request.server_id.clone());
        let answer = state.host_answers.get(&request.server_id).cloned().unwrap_or(Ok(()));
        Ok(Response::new(match answer {
            Ok(()) => CommandResult {
                command_id: "c1".into(),
                payload: Some(command_result::Payload::Session(HostSession {
                    id: create.session_id,
                    num_of_connections: 0,
                    creation_time_unix_ms: 1_601_979_331_633,
                    ..Default::default()
                })),
                ..Default::default()
            },
            Err(error) => CommandResult { command_id: "c1".into(), error, ..Default::default() },
        }))
    }
}

struct Harness {
    store: FakeStore,
    changed_rx: watch::Receiver<u64>,
    client: PlacementClient<tonic::transport::Channel>,
    shutdown: Shutdown,
}

impl Harness {
    async fn start(state: State) -> Self {
        switchboard_common::telemetry::init_for_tests();
        let (changed_tx, changed_rx) = watch::channel(0);
        let store = FakeStore { state: Arc::new(Mutex::new(state)), changed_tx: Arc::new(changed_tx) };
        let shutdown = Shutdown::new();
        let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store_url = format!("http://{}", store_listener.local_addr().unwrap());
        let router = tonic::transport::Server::builder().add_service(SessionStoreServer::new(store.clone()));
        tokio::spawn(switchboard_common::grpc::serve_router(router, store_listener, shutdown.clone()));
        let placement_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let placement_url = format!("http://{}", placement_listener.local_addr().unwrap());
        let store_client = SessionStoreClient::new(lazy_channel(&store_url).unwrap());
        tokio::spawn(serve(PlacementConfig::default(), placement_listener, store_client, shutdown.clone()));
        let client = PlacementClient::new(lazy_channel(&placement_url).unwrap());
        Self { store, changed_rx, client, shutdown }
    }

    async fn create(&mut self, specs: Vec<CreateSessionSpec>) -> Vec<Outcome> {
        let request = CreateSessionsRequest { request_id: "r1".into(), specs };
        let response = self.client.create_sessions(request).await.unwrap().into_inner();
        response.outcomes.into_iter().map(|o| o.outcome.unwrap()).collect()
    }

    /// Waits until the session leaves CREATING (a signal, with a generous
    /// safety net so a bug fails the test instead of hanging it).
    async fn settled(&mut self, id: &str) -> SessionRecord {
        let state = self.store.state.clone();
        let id = id.to_owned();
        let wait = self.changed_rx.wait_for(move |_| {
            state.lock().unwrap().sessions.get(&id).is_some_and(|s| s.state() != SessionState::Creating)
        });
        tokio::time::timeout(Duration::from_secs(30), wait).await.expect("session never settled").unwrap();
        let state = self.store.state.lock().unwrap();
        state.sessions.values().next().cloned().unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn server(id: &str, load: u32) -> ServerRecord {
    ServerRecord {
        id: id.into(),
        open: true,
        reachable: true,
        dcv_healthy: true,
        virtual_session_count: load,
        max_virtual_sessions: 4,
        ..Default::default()
    }
}

fn spec() -> CreateSessionSpec {
    CreateSessionSpec {
        name: "s1".into(),
        owner: "alice".into(),
        r#type: SessionType::Virtual as i32,
        ..Default::default()
    }
}

fn session_of(outcome: &Outcome) -> &SessionRecord {
    match outcome {
        Outcome::Session(session) => session,
        Outcome::FailureReason(reason) => panic!("unexpected failure: {reason}"),
    }
}

#[tokio::test]
async fn no_server_at_all_fails_the_item_immediately() {
    let mut harness = Harness::start(State::default()).await;
    let outcomes = harness.create(vec![spec()]).await;
    assert_eq!(outcomes, [Outcome::FailureReason("no server can host the session: no servers are registered".into())]);
    assert!(harness.store.state.lock().unwrap().sessions.is_empty(), "nothing may be recorded");
}

#[tokio::test]
async fn precheck_explains_with_honest_counts() {
    let servers = vec![ServerRecord { open: false, ..server("a", 0) }, server("b", 4), server("c", 4)];
    let mut harness = Harness::start(State { servers, ..Default::default() }).await;
    let outcomes = harness.create(vec![spec()]).await;
    assert_eq!(
        outcomes,
        [Outcome::FailureReason("no server can host the session: 3 servers; 1 closed, 2 full".into())]
    );
}

#[tokio::test]
async fn invalid_items_fail_alone_and_valid_ones_become_ready_on_the_least_loaded_host() {
    let servers = vec![server("busy", 3), server("idle", 0), server("middle", 1)];
    let mut harness = Harness::start(State { servers, ..Default::default() }).await;
    let bad = CreateSessionSpec { owner: String::new(), ..spec() };
    let outcomes = harness.create(vec![bad, spec()]).await;
    assert_eq!(outcomes[0], Outcome::FailureReason("Owner is required".into()));
    let accepted = session_of(&outcomes[1]);
    assert_eq!(accepted.state(), SessionState::Creating);
    assert_eq!(accepted.substate, "SESSION_PLACING");
    assert_eq!(accepted.owner, "alice");
    assert!(uuid::Uuid::parse_str(&accepted.id).is_ok());

    let settled = harness.settled(&accepted.id).await;
    assert_eq!(settled.state(), SessionState::Ready);
    assert_eq!(settled.server_id, "idle");
    assert_eq!(settled.substate, "");
    assert_eq!(settled.creation_time_unix_ms, 1_601_979_331_633);
}

#[tokio::test]
async fn host_failure_retries_on_the_next_host() {
    let servers = vec![server("a", 0), server("b", 1)];
    let host_answers = HashMap::from([("a".to_owned(), Err("owner does not exist".to_owned()))]);
    let mut harness = Harness::start(State { servers, host_answers, ..Default::default() }).await;
    let outcomes = harness.create(vec![spec()]).await;
    let settled = harness.settled(&session_of(&outcomes[0]).id).await;
    assert_eq!(settled.state(), SessionState::Ready);
    assert_eq!(settled.server_id, "b");
    assert_eq!(harness.store.state.lock().unwrap().commands_to, ["a", "b"]);
}

#[tokio::test]
async fn disable_retry_on_failure_deletes_after_the_first_host_fails() {
    let servers = vec![server("a", 0), server("b", 1)];
    let host_answers = HashMap::from([("a".to_owned(), Err("owner does not exist".to_owned()))]);
    let mut harness = Harness::start(State { servers, host_answers, ..Default::default() }).await;
    let outcomes = harness.create(vec![CreateSessionSpec { disable_retry_on_failure: true, ..spec() }]).await;
    let settled = harness.settled(&session_of(&outcomes[0]).id).await;
    assert_eq!(settled.state(), SessionState::Deleted);
    assert_eq!(settled.state_reason, "session creation failed on server a: owner does not exist");
    assert_ne!(settled.ended_unix_ms, 0);
    assert_eq!(harness.store.state.lock().unwrap().commands_to, ["a"]);
}

#[tokio::test]
async fn rejections_by_the_store_are_counted_in_the_final_reason() {
    let servers = vec![server("a", 0)];
    let rejections = HashMap::from([("a".to_owned(), "USER_SESSION_LIMIT".to_owned())]);
    let mut harness = Harness::start(State { servers, rejections, ..Default::default() }).await;
    let outcomes = harness.create(vec![spec()]).await;
    let settled = harness.settled(&session_of(&outcomes[0]).id).await;
    assert_eq!(settled.state(), SessionState::Deleted);
    assert_eq!(settled.state_reason, "no server can host the session: 1 server; 1 rejected it (USER_SESSION_LIMIT)");
}

#[tokio::test]
async fn enqueue_request_is_accepted_then_fails_saying_queueing_is_missing() {
    let mut harness = Harness::start(State::default()).await;
    let outcomes = harness.create(vec![CreateSessionSpec { enqueue_request: true, ..spec() }]).await;
    let settled = harness.settled(&session_of(&outcomes[0]).id).await;
    assert_eq!(settled.state(), SessionState::Deleted);
    assert_eq!(
        settled.state_reason,
        "no server can host the session: no servers are registered (queueing is not available yet)"
    );
}

#[tokio::test]
async fn requirements_filter_hosts() {
    let mut tagged = server("tagged", 2);
    tagged.tags.push(switchboard_proto::KeyValue { key: "gpu".into(), value: "a100".into() });
    let servers = vec![server("plain", 0), tagged];
    let mut harness = Harness::start(State { servers, ..Default::default() }).await;
    let outcomes = harness.create(vec![CreateSessionSpec { requirements: "tag:gpu = 'a100'".into(), ..spec() }]).await;
    let settled = harness.settled(&session_of(&outcomes[0]).id).await;
    assert_eq!(settled.server_id, "tagged");
}

#[tokio::test]
async fn a_store_outage_during_placement_is_retried_not_fatal() {
    let servers = vec![server("a", 0)];
    let mut harness = Harness::start(State { servers, unavailable_assigns: 2, ..Default::default() }).await;
    let outcomes = harness.create(vec![spec()]).await;
    let accepted = session_of(&outcomes[0]);
    let settled = harness.settled(&accepted.id).await;
    assert_eq!(settled.state(), SessionState::Ready, "{settled:?}");
    assert_eq!(harness.store.state.lock().unwrap().unavailable_assigns, 0, "both outages were hit");
}
