//! Fake upstream gRPC servers on 127.0.0.1:0 and request helpers.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::{Router, body::Body};
use http::{Request, StatusCode};
use switchboard_common::{ErrorCode, Shutdown, grpc::lazy_channel};
use switchboard_gateway::{
    AppState, GatewayConfig, Upstreams,
    auth::{Caller, Scope, TokenCheck},
    error::ApiError,
};
use switchboard_proto::{
    self as pb,
    auth_server::{Auth, AuthServer},
    placement_server::{Placement, PlacementServer},
    session_store_server::{SessionStore, SessionStoreServer},
};
use tonic::{Request as GrpcRequest, Response, Status};
use tower::ServiceExt;

/// What the fakes saw; a std Mutex, never held across an await.
#[derive(Default)]
pub struct Seen {
    pub create_requests: Vec<pb::CreateSessionsRequest>,
    pub list_requests: Vec<pb::ListSessionsRequest>,
    pub server_list_requests: Vec<pb::ListServersRequest>,
    pub commands: Vec<pb::SendCommandRequest>,
    pub open_requests: Vec<pb::SetServersOpenRequest>,
    pub connection_requests: Vec<pb::IssueConnectionTokenRequest>,
}

#[derive(Clone, Default)]
pub struct Fakes {
    pub seen: Arc<Mutex<Seen>>,
}

#[tonic::async_trait]
impl Auth for Fakes {
    async fn issue_token(
        &self,
        request: GrpcRequest<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let request = request.into_inner();
        if request.client_id == "good" && request.client_secret == "pw" {
            return Ok(Response::new(pb::IssueTokenResponse {
                access_token: "jwt-for-good".into(),
                token_type: "Bearer".into(),
                expires_in_seconds: 3600,
            }));
        }
        Err(Status::unauthenticated("bad credentials"))
    }
    async fn get_key_set(&self, _: GrpcRequest<pb::GetKeySetRequest>) -> Result<Response<pb::KeySet>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_api_client(
        &self,
        _: GrpcRequest<pb::RegisterApiClientRequest>,
    ) -> Result<Response<pb::RegisterApiClientResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_api_clients(
        &self,
        _: GrpcRequest<pb::ListApiClientsRequest>,
    ) -> Result<Response<pb::ListApiClientsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn unregister_api_client(
        &self,
        _: GrpcRequest<pb::UnregisterApiClientRequest>,
    ) -> Result<Response<pb::UnregisterApiClientResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn issue_connection_token(
        &self,
        request: GrpcRequest<pb::IssueConnectionTokenRequest>,
    ) -> Result<Response<pb::IssueConnectionTokenResponse>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().connection_requests.push(request.clone());
        Ok(Response::new(pb::IssueConnectionTokenResponse {
            connection_token: format!("conn-{}-{}", request.session_id, request.user),
            expires_in_seconds: 3600,
        }))
    }

    async fn get_client_policy(
        &self,
        _: GrpcRequest<pb::GetClientPolicyRequest>,
    ) -> Result<Response<pb::ClientPolicy>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn rotate_signing_key(
        &self,
        _: GrpcRequest<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_auth_server(
        &self,
        _: GrpcRequest<pb::RegisterAuthServerRequest>,
    ) -> Result<Response<pb::RegisterAuthServerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_auth_servers(
        &self,
        _: GrpcRequest<pb::ListAuthServersRequest>,
    ) -> Result<Response<pb::ListAuthServersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn unregister_auth_server(
        &self,
        _: GrpcRequest<pb::UnregisterAuthServerRequest>,
    ) -> Result<Response<pb::UnregisterAuthServerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl Placement for Fakes {
    async fn create_sessions(
        &self,
        request: GrpcRequest<pb::CreateSessionsRequest>,
    ) -> Result<Response<pb::CreateSessionsResponse>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().create_requests.push(request.clone());
        let outcomes = request
            .specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let outcome = if spec.owner == "nohost" {
                    pb::create_session_outcome::Outcome::FailureReason(
                        "no server can host the session: no servers are registered".into(),
                    )
                } else {
                    pb::create_session_outcome::Outcome::Session(pb::SessionRecord {
                        id: format!("session-{i}"),
                        name: spec.name.clone(),
                        owner: spec.owner.clone(),
                        r#type: spec.r#type,
                        state: pb::SessionState::Creating as i32,
                        substate: "SESSION_PLACING".into(),
                        creation_time_unix_ms: 1_601_979_331_633,
                        spec: Some(spec),
                        ..Default::default()
                    })
                };
                pb::CreateSessionOutcome { outcome: Some(outcome) }
            })
            .collect();
        Ok(Response::new(pb::CreateSessionsResponse { outcomes }))
    }

    async fn explain_placement(
        &self,
        request: GrpcRequest<pb::ExplainPlacementRequest>,
    ) -> Result<Response<pb::ExplainPlacementResponse>, Status> {
        let request = request.into_inner();
        if request.requirements.contains("bad") {
            return Ok(Response::new(pb::ExplainPlacementResponse {
                error: "requirements: column 5: bad".into(),
                error_column: 5,
                ..Default::default()
            }));
        }
        Ok(Response::new(pb::ExplainPlacementResponse {
            valid: true,
            total_servers: 3,
            matching_count: 1,
            matching_servers: vec![format!("{:?}", request.r#type())],
            rejections: [("closed".to_owned(), 2)].into(),
            explanation: "1 of 3 servers could take the session".into(),
            ..Default::default()
        }))
    }
}

pub fn ready_session(id: &str) -> pb::SessionRecord {
    pb::SessionRecord {
        id: id.into(),
        name: "a session name".into(),
        owner: "user1".into(),
        r#type: pb::SessionType::Virtual as i32,
        server_id: "server-1".into(),
        state: pb::SessionState::Ready as i32,
        creation_time_unix_ms: 1_601_979_331_633,
        num_of_connections: 2,
        ..Default::default()
    }
}

/// The fake session-store's clock for drain deadlines (2023-11-14T22:13:20Z).
pub const FAKE_NOW_MS: i64 = 1_700_000_000_000;

pub fn server() -> pb::ServerRecord {
    pb::ServerRecord {
        id: "server-1".into(),
        ip: "1.1.1.123".into(),
        hostname: "server hostname".into(),
        endpoints: vec![pb::Endpoint {
            ip_address: "1.1.1.123".into(),
            port: 8443,
            web_url_path: "/".into(),
            protocol: "HTTP".into(),
        }],
        tags: vec![pb::KeyValue { key: "os".into(), value: "windows".into() }],
        open: true,
        reachable: true,
        dcv_healthy: true,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SessionStore for Fakes {
    async fn start_session(
        &self,
        _: GrpcRequest<pb::StartSessionRequest>,
    ) -> Result<Response<pb::StartSessionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn record_sessions(
        &self,
        _: GrpcRequest<pb::RecordSessionsRequest>,
    ) -> Result<Response<pb::RecordSessionsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_sessions(
        &self,
        request: GrpcRequest<pb::GetSessionsRequest>,
    ) -> Result<Response<pb::SessionsPage>, Status> {
        let request = request.into_inner();
        let ids = request.session_ids;
        if ids.iter().any(|id| id == "explode") {
            return Err(Status::internal("secret backend detail: redis at 10.0.0.3 refused"));
        }
        let sessions: Vec<_> = ids.iter().filter(|id| id.starts_with("known")).map(|id| ready_session(id)).collect();
        // `known-reaping…`: a session whose idle reap is announced.
        let reaping = |session: pb::SessionRecord| match session.id.starts_with("known-reaping") {
            true => pb::SessionRecord { reap_at_unix_ms: FAKE_NOW_MS, reap_reason: "IDLE".into(), ..session },
            false => session,
        };
        // `known-queued…`: a session waiting in the create-sessions queue, second of five in its class.
        let queued = |session: pb::SessionRecord| match session.id.starts_with("known-queued") {
            true => pb::SessionRecord {
                server_id: String::new(),
                state: pb::SessionState::Creating as i32,
                state_reason: "queued: no server matches".into(),
                ..session
            },
            false => session,
        };
        let sessions: Vec<_> = sessions.into_iter().map(reaping).map(queued).collect();
        let queue_places = sessions
            .iter()
            .filter(|session| request.with_queue_places && session.id.starts_with("known-queued"))
            .map(|session| pb::QueuePlace {
                session_id: session.id.clone(),
                position: 2,
                class_entries: 5,
                estimated_wait_ms: Some(60_000),
            })
            .collect();
        Ok(Response::new(pb::SessionsPage { sessions, servers: vec![server()], queue_places, ..Default::default() }))
    }
    async fn list_sessions(
        &self,
        request: GrpcRequest<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::SessionsPage>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().list_requests.push(request.clone());
        if request.page_token == "%%%" {
            return Err(switchboard_common::error::public_status(ErrorCode::InvalidArgument, "Invalid NextToken"));
        }
        let next_token = if request.page_token.is_empty() { "signed-known-1".to_owned() } else { String::new() };
        Ok(Response::new(pb::SessionsPage {
            sessions: vec![ready_session("known-1")],
            servers: vec![server()],
            next_token,
            ..Default::default()
        }))
    }
    async fn settle_unplaced(
        &self,
        _: GrpcRequest<pb::SettleUnplacedRequest>,
    ) -> Result<Response<pb::SettleUnplacedResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn assign_session(
        &self,
        _: GrpcRequest<pb::AssignSessionRequest>,
    ) -> Result<Response<pb::AssignSessionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_sessions(
        &self,
        request: GrpcRequest<pb::DeleteSessionsRequest>,
    ) -> Result<Response<pb::DeleteSessionsResponse>, Status> {
        let outcomes = request
            .into_inner()
            .items
            .into_iter()
            .map(|item| {
                if item.session_id.starts_with("known") {
                    pb::DeleteSessionOutcome {
                        session_id: item.session_id,
                        state: pb::SessionState::Deleting as i32,
                        failure_reason: String::new(),
                    }
                } else if item.session_id == "explode" {
                    pb::DeleteSessionOutcome { session_id: item.session_id, ..Default::default() }
                } else {
                    pb::DeleteSessionOutcome {
                        session_id: item.session_id,
                        state: pb::SessionState::Unspecified as i32,
                        failure_reason: "The requested dcvSession does not exist".into(),
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::DeleteSessionsResponse { outcomes }))
    }
    async fn list_servers(
        &self,
        request: GrpcRequest<pb::ListServersRequest>,
    ) -> Result<Response<pb::ServersPage>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().server_list_requests.push(request.clone());
        if request.server_ids.iter().any(|id| id == "explode") {
            return Err(Status::internal("secret backend detail: redis at 10.0.0.3 refused"));
        }
        if request.server_ids.iter().any(|id| id == "draining-1") {
            let deadline = switchboard_common::time::now_ms() + 90_000;
            let draining =
                pb::ServerRecord { id: "draining-1".into(), open: false, drain_deadline_unix_ms: deadline, ..server() };
            return Ok(Response::new(pb::ServersPage { servers: vec![draining], ..Default::default() }));
        }
        let next_token = if request.page_token.is_empty() && request.page_size == 1 { "signed-server-1" } else { "" };
        Ok(Response::new(pb::ServersPage {
            servers: vec![server()],
            next_token: next_token.into(),
            ..Default::default()
        }))
    }
    async fn set_servers_open(
        &self,
        request: GrpcRequest<pb::SetServersOpenRequest>,
    ) -> Result<Response<pb::SetServersOpenResponse>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().open_requests.push(request.clone());
        let outcomes = request
            .server_ids
            .into_iter()
            .map(|server_id| {
                // server-1 has sessions: a gentle close drains with a timeout (from a fixed clock), else is refused.
                let drain_seconds = request.drain_timeout_seconds.unwrap_or_default();
                let gentle = !request.open && !request.force;
                let (code, reason) = match server_id.as_str() {
                    "server-1" if gentle && drain_seconds == 0 => {
                        ("SERVER_HAS_SESSIONS", "Dcv server has sessions; close it with force to proceed.")
                    }
                    "server-1" => ("", ""),
                    _ => ("DCV_SERVER_NOT_FOUND", "Dcv server not found."),
                };
                let draining = server_id == "server-1" && gentle && drain_seconds > 0;
                pb::SetServerOpenOutcome {
                    server_id,
                    failure_code: code.into(),
                    failure_reason: reason.into(),
                    drain_deadline_unix_ms: if draining { FAKE_NOW_MS + i64::from(drain_seconds) * 1000 } else { 0 },
                }
            })
            .collect();
        Ok(Response::new(pb::SetServersOpenResponse { outcomes }))
    }
    async fn send_command(
        &self,
        request: GrpcRequest<pb::SendCommandRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let request = request.into_inner();
        self.seen.lock().unwrap().commands.push(request.clone());
        let action = request.command.and_then(|c| c.action);
        let result = match action {
            Some(pb::host_command::Action::SetPermissions(set)) if set.permissions_file.starts_with(b"bad") => {
                pb::CommandResult {
                    error: "invalid permissions file: line 1".into(),
                    error_kind: pb::CommandErrorKind::InvalidRequest as i32,
                    ..Default::default()
                }
            }
            Some(pb::host_command::Action::SetPermissions(_)) => pb::CommandResult::default(),
            Some(pb::host_command::Action::Screenshot(_)) => pb::CommandResult {
                payload: Some(pb::command_result::Payload::Screenshot(pb::Screenshot {
                    images: vec![pb::ScreenshotImage {
                        format: "png".into(),
                        data: b"image".to_vec(),
                        creation_time_unix_ms: 1_601_979_331_633,
                        primary: true,
                    }],
                })),
                ..Default::default()
            },
            _ => return Err(Status::unimplemented("fake")),
        };
        Ok(Response::new(result))
    }
    async fn server_changes(
        &self,
        _: GrpcRequest<pb::ServerChangesRequest>,
    ) -> Result<Response<pb::ServerChangesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn enqueue_session(
        &self,
        _: GrpcRequest<pb::EnqueueSessionRequest>,
    ) -> Result<Response<pb::EnqueueSessionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn queue_heads(
        &self,
        _: GrpcRequest<pb::QueueHeadsRequest>,
    ) -> Result<Response<pb::QueueHeadsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn claim_queued(
        &self,
        _: GrpcRequest<pb::ClaimQueuedRequest>,
    ) -> Result<Response<pb::ClaimQueuedResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn release_queued(
        &self,
        _: GrpcRequest<pb::ReleaseQueuedRequest>,
    ) -> Result<Response<pb::ReleaseQueuedResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn dequeue_session(
        &self,
        _: GrpcRequest<pb::DequeueSessionRequest>,
    ) -> Result<Response<pb::DequeueSessionResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn owner_session_counts(
        &self,
        _: GrpcRequest<pb::OwnerSessionCountsRequest>,
    ) -> Result<Response<pb::OwnerSessionCountsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn take_over_unplaced(
        &self,
        _: GrpcRequest<pb::TakeOverUnplacedRequest>,
    ) -> Result<Response<pb::TakeOverUnplacedResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_webhook(
        &self,
        _: GrpcRequest<pb::RegisterWebhookRequest>,
    ) -> Result<Response<pb::RegisterWebhookResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_webhooks(
        &self,
        _: GrpcRequest<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn unregister_webhook(
        &self,
        _: GrpcRequest<pb::UnregisterWebhookRequest>,
    ) -> Result<Response<pb::UnregisterWebhookResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    /// Three events after any cursor: a session of `user1`, one of `mallory`, a server's.
    async fn read_events(
        &self,
        _: GrpcRequest<pb::ReadEventsRequest>,
    ) -> Result<Response<pb::ReadEventsResponse>, Status> {
        let event = |id: &str, kind: &str, owner: &str| pb::EventRecord {
            id: id.into(),
            at_unix_ms: 1_700_000_000_000,
            kind: kind.into(),
            session_id: if owner.is_empty() { String::new() } else { format!("session-of-{owner}") },
            owner: owner.into(),
            state: pb::SessionState::Ready as i32,
            ..Default::default()
        };
        let events = vec![
            event("1-0", "session.state", "user1"),
            event("1-1", "session.state", "mallory"),
            pb::EventRecord {
                server_id: "h1".into(),
                availability: "AVAILABLE".into(),
                state: 0,
                ..event("1-2", "server.availability", "")
            },
        ];
        Ok(Response::new(pb::ReadEventsResponse { events, truncated: false, cursor: "1-2".into() }))
    }
    /// No DNS mappings registered.
    async fn get_server_dns_names(
        &self,
        _: GrpcRequest<pb::GetServerDnsNamesRequest>,
    ) -> Result<Response<pb::GetServerDnsNamesResponse>, Status> {
        Ok(Response::new(pb::GetServerDnsNamesResponse::default()))
    }
}

/// Accepts the token `valid` (full access), `read-only` (a read-only client) and `tenant` (a
/// client restricted to owners `user1` and `user2`).
pub struct FakeTokens;

#[async_trait::async_trait]
impl TokenCheck for FakeTokens {
    async fn verify(&self, bearer_token: &str) -> Result<Caller, ApiError> {
        match bearer_token {
            "valid" => Ok(Caller::full("client-1")),
            "read-only" => Ok(Caller::with_scope("reader", Scope { read_only: true, allowed_owners: None })),
            "tenant" => Ok(Caller::with_scope(
                "tenant",
                Scope { read_only: false, allowed_owners: Some(["user1".to_owned(), "user2".to_owned()].into()) },
            )),
            _ => Err(ApiError::Unauthenticated("Invalid access token".into())),
        }
    }
}

/// Fakes serving on 127.0.0.1:0, and upstream clients to them.
pub struct Upstream {
    pub fakes: Fakes,
    pub upstreams: Upstreams,
    /// The fakes' gRPC health (serving until a test says otherwise).
    pub health: tonic_health::server::HealthReporter,
    pub shutdown: Shutdown,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start_fakes() -> Upstream {
    switchboard_common::telemetry::init_for_tests();
    let fakes = Fakes::default();
    let shutdown = Shutdown::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (health, health_service) = switchboard_common::grpc::health();
    let router = switchboard_common::grpc::server_builder()
        .unwrap()
        .add_service(health_service)
        .add_service(AuthServer::new(fakes.clone()))
        .add_service(PlacementServer::new(fakes.clone()))
        .add_service(SessionStoreServer::new(fakes.clone()));
    tokio::spawn(switchboard_common::grpc::serve_router(router, listener, shutdown.clone()));
    let channel = lazy_channel(&url).unwrap();
    let upstreams = Upstreams::new(channel.clone(), channel.clone(), channel);
    Upstream { fakes, upstreams, health, shutdown }
}

impl Upstream {
    pub fn router(&self, config: GatewayConfig) -> Router {
        let state = AppState::with_token_check(config, self.upstreams.clone(), Arc::new(FakeTokens), Shutdown::new());
        switchboard_gateway::router(state)
    }
}

/// Sends one request; returns status and the JSON body.
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert_eq!(content_type.as_ref().map(|v| v.to_str().unwrap()), Some("application/json"), "every body is JSON");
    (status, serde_json::from_slice(&bytes).unwrap())
}

pub fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("authorization", "Bearer valid")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}
