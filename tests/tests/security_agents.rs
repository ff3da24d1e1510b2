//! The negative security suite for agents and the DCV verifier (issue 6, items 5 and 6), end to end: the
//! all-in-one cluster with its TLS agent port, the real admin channel, fake agents speaking the agent
//! protocol, and the DCV server's `POST /agent/validate-authentication-token` over HTTPS. Each test names
//! the attack and asserts what the broker answers.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard::{Cluster, UpConfig};
use switchboard_auth::tokens::{ConnectionTokenSubject, Signer};
use switchboard_proto::agent_enrolment_client::AgentEnrolmentClient;
use switchboard_proto::agent_link_client::AgentLinkClient;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, DeactivateSoftwareStatementRequest,
    GenerateSoftwareStatementRequest, ListAgentClientsRequest, RegisterAgentRequest, SessionRecord, SessionState,
    SessionType, UnregisterAgentClientRequest,
};
use switchboard_store::Backend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    cluster: Cluster,
    agent_channel: Channel,
    https: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

async fn start() -> Harness {
    switchboard_common::telemetry::init_for_tests();
    let data_dir = tempfile::tempdir().unwrap();
    let config = UpConfig::ephemeral(data_dir.path(), 1);
    let cluster = Cluster::start(config).await.expect("cluster starts");
    // The simulated host enrolled with the cluster's statement and connected.
    cluster.wait_ready(1, WAIT).await.expect("the simulated host enrols and connects");
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cluster.ca_pem)).domain_name("localhost");
    let agent_url = format!("https://localhost:{}", cluster.agent_addr.port());
    let agent_channel = Endpoint::from_shared(agent_url).unwrap().tls_config(tls).unwrap().connect_lazy();
    let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .https_only(true)
        .build()
        .unwrap();
    Harness { cluster, agent_channel, https, _data_dir: data_dir }
}

fn hello(server_id: &str) -> AgentHello {
    AgentHello {
        protocol_version: AGENT_PROTOCOL_VERSION,
        server_id: server_id.to_owned(),
        hostname: server_id.to_owned(),
        dcv_healthy: true,
        ..Default::default()
    }
}

fn basic(client_id: &str, secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    format!("Basic {encoded}")
}

impl Harness {
    async fn generate_statement(&self) -> String {
        let mut admin = self.cluster.admin.agent_admin_client().unwrap();
        admin
            .generate_software_statement(GenerateSoftwareStatementRequest {})
            .await
            .unwrap()
            .into_inner()
            .software_statement
    }

    async fn register(&self, statement: &str) -> Result<(String, String), tonic::Status> {
        let mut enrolment = AgentEnrolmentClient::new(self.agent_channel.clone());
        let request = RegisterAgentRequest { software_statement: statement.to_owned(), client_name: "attacker".into() };
        let response = tokio::time::timeout(WAIT, enrolment.register(request)).await.expect("register answers")?;
        let response = response.into_inner();
        Ok((response.client_id, response.client_secret))
    }

    /// Opens an agent stream with `authorization` (if any) and `hello`; `Ok` once the welcome arrived.
    async fn connect(&self, authorization: Option<&str>, hello: AgentHello) -> Result<(), tonic::Status> {
        let (to_broker, agent_rx) = mpsc::channel(4);
        to_broker.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(agent_rx));
        if let Some(value) = authorization {
            request.metadata_mut().insert("authorization", value.parse().unwrap());
        }
        let mut client = AgentLinkClient::new(self.agent_channel.clone());
        let mut inbound =
            tokio::time::timeout(WAIT, client.connect(request)).await.expect("connect answers")?.into_inner();
        let first = tokio::time::timeout(WAIT, inbound.message()).await.expect("first message")?;
        match first.and_then(|message| message.kind) {
            Some(BrokerKind::Welcome(_)) => Ok(()),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    async fn verify(&self, session_id: &str, token: &str) -> String {
        let url = format!("https://localhost:{}/agent/validate-authentication-token", self.cluster.agent_addr.port());
        let form = [("sessionId", session_id), ("authenticationToken", token), ("clientAddress", "203.0.113.9:50000")];
        let response = self.https.post(url).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 200, "the verifier always answers 200 with its XML");
        response.text().await.unwrap()
    }

    async fn signer(&self) -> Signer {
        let keys = self.cluster.backend.list_signing_keys().await.unwrap();
        let now = switchboard_common::time::now_ms();
        Signer::from_record(switchboard_auth::keys::current_key(&keys, now).expect("a signing key exists")).unwrap()
    }
}

fn expect_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, attack: &str) -> tonic::Status {
    let status = result.expect_err(attack);
    assert_eq!(status.code(), code, "{attack}: {status:?}");
    println!("attack: {attack} -> {:?}: {}", status.code(), status.message());
    status
}

#[tokio::test]
async fn agents_without_valid_credentials_are_refused() {
    let harness = start().await;
    let statement = harness.generate_statement().await;

    // No credentials at all.
    expect_refused(
        harness.connect(None, hello("sec-host-1")).await,
        Code::Unauthenticated,
        "agent without credentials",
    );
    // Garbage and guessed credentials.
    let guessed = basic("00000000-0000-0000-0000-000000000000", "guess");
    expect_refused(harness.connect(Some(&guessed), hello("sec-host-1")).await, Code::Unauthenticated, "guessed client");
    expect_refused(
        harness.connect(Some("Bearer not-an-agent-credential"), hello("sec-host-1")).await,
        Code::Unauthenticated,
        "bearer token instead of agent credentials",
    );
    // A registered client with a wrong secret.
    let (client_id, secret) = harness.register(&statement).await.unwrap();
    let wrong = basic(&client_id, &format!("{secret}x"));
    expect_refused(harness.connect(Some(&wrong), hello("sec-host-1")).await, Code::Unauthenticated, "wrong secret");
    // The right credentials work.
    harness.connect(Some(&basic(&client_id, &secret)), hello("sec-host-1")).await.expect("enrolled agent connects");
    harness.cluster.stop().await;
}

#[tokio::test]
async fn registration_needs_an_active_genuine_statement() {
    let harness = start().await;
    let statement = harness.generate_statement().await;

    let mut admin = harness.cluster.admin.agent_admin_client().unwrap();
    let request = DeactivateSoftwareStatementRequest { software_statement: statement.clone() };
    admin.deactivate_software_statement(request).await.unwrap();
    expect_refused(
        harness.register(&statement).await,
        Code::Unauthenticated,
        "registration with a deactivated statement",
    );

    // A statement with a real id but a forged secret.
    let live = harness.generate_statement().await;
    let body = base64::engine::general_purpose::STANDARD.decode(&live).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["secret"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
    let forged = base64::engine::general_purpose::STANDARD.encode(json.to_string());
    expect_refused(harness.register(&forged).await, Code::Unauthenticated, "registration with a forged statement");
    expect_refused(harness.register("not a statement").await, Code::Unauthenticated, "registration with garbage");
    // Only the simulated host's client exists: refused registrations left nothing behind.
    let clients = admin.list_agent_clients(ListAgentClientsRequest {}).await.unwrap().into_inner().clients;
    assert_eq!(clients.len(), 1, "{clients:?}");
    harness.register(&live).await.expect("an active statement registers");
    drop(admin);
    harness.cluster.stop().await;
}

#[tokio::test]
async fn an_unregistered_agent_client_is_refused() {
    let harness = start().await;
    let statement = harness.generate_statement().await;
    let (client_id, secret) = harness.register(&statement).await.unwrap();
    let credentials = basic(&client_id, &secret);
    harness.connect(Some(&credentials), hello("sec-host-2")).await.expect("connects while registered");

    let mut admin = harness.cluster.admin.agent_admin_client().unwrap();
    admin.unregister_agent_client(UnregisterAgentClientRequest { client_id: client_id.clone() }).await.unwrap();
    expect_refused(
        harness.connect(Some(&credentials), hello("sec-host-2")).await,
        Code::Unauthenticated,
        "agent client used after unregister-agent-client",
    );
    drop(admin);
    harness.cluster.stop().await;
}

#[tokio::test]
async fn an_agent_cannot_speak_for_another_server_id() {
    let harness = start().await;
    let statement = harness.generate_statement().await;
    let (first_id, first_secret) = harness.register(&statement).await.unwrap();
    let first = basic(&first_id, &first_secret);
    harness.connect(Some(&first), hello("sec-host-a")).await.expect("first hello binds sec-host-a");

    expect_refused(
        harness.connect(Some(&first), hello("sec-host-b")).await,
        Code::PermissionDenied,
        "bound agent claims another server id",
    );
    let (second_id, second_secret) = harness.register(&statement).await.unwrap();
    let second = basic(&second_id, &second_secret);
    expect_refused(
        harness.connect(Some(&second), hello("sec-host-a")).await,
        Code::PermissionDenied,
        "new agent claims a server id bound to another agent",
    );
    let simulated = harness.cluster.backend.list_agent_clients().await.unwrap();
    let sim_server = simulated.iter().find(|c| c.client_id != first_id && c.client_id != second_id).unwrap();
    expect_refused(
        harness.connect(Some(&second), hello(&sim_server.server_id)).await,
        Code::PermissionDenied,
        "new agent claims the simulated host's server id",
    );
    // The refused claims bound nothing: the second client still binds a fresh id, and the first keeps its own.
    harness.connect(Some(&second), hello("sec-host-b")).await.expect("second client binds a free id");
    harness.connect(Some(&first), hello("sec-host-a")).await.expect("first client keeps its id");
    harness.cluster.stop().await;
}

#[tokio::test]
async fn connection_tokens_open_only_their_session_for_its_owner_until_they_expire() {
    let harness = start().await;
    let backend = harness.cluster.backend.clone();
    for (id, owner) in [("sec-s1", "alice"), ("sec-s2", "bob")] {
        let session = SessionRecord {
            id: id.into(),
            owner: owner.into(),
            r#type: SessionType::Virtual as i32,
            state: SessionState::Ready as i32,
            ..Default::default()
        };
        backend.insert_session(session, None).await.unwrap();
    }
    let signer = harness.signer().await;
    let now = switchboard_common::time::now_ms() / 1000;
    let alice_s1 = ConnectionTokenSubject { session_id: "sec-s1", session_owner: "alice", user: "alice" };
    let (token, _) = signer.issue_connection_token("switchboard", alice_s1, now, 300).unwrap();

    let yes = harness.verify("sec-s1", &token).await;
    assert_eq!(yes, r#"<auth result="yes"><username>alice</username></auth>"#);
    println!("valid token for its session -> {yes}");

    let mut attacks: Vec<(&str, String, String)> = Vec::new();
    attacks.push(("token replayed for another session", "sec-s2".into(), token.clone()));
    let bob_on_alice = ConnectionTokenSubject { session_id: "sec-s1", session_owner: "bob", user: "bob" };
    attacks.push((
        "token minted for another owner of the session",
        "sec-s1".into(),
        signer.issue_connection_token("switchboard", bob_on_alice, now, 300).unwrap().0,
    ));
    // The user claim edited to another user, signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["dcvSessionUser"] = "mallory".into();
    let edited = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    attacks.push(("token replayed for another user (user claim edited)", "sec-s1".into(), edited));
    attacks.push((
        "expired token",
        "sec-s1".into(),
        signer.issue_connection_token("switchboard", alice_s1, now - 3600, 60).unwrap().0,
    ));
    attacks.push((
        "token from another issuer",
        "sec-s1".into(),
        signer.issue_connection_token("someone-else", alice_s1, now, 300).unwrap().0,
    ));
    attacks.push((
        "api access token presented as a connection token",
        "sec-s1".into(),
        signer.issue("switchboard", "switchboard-api", "alice", now, 300).unwrap().access_token,
    ));
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    attacks.push(("unsigned token (alg none)", "sec-s1".into(), format!("{header}.{}.", parts[1])));
    let stranger = Signer::from_record(&switchboard_auth::keys::generate_signing_key(0).unwrap()).unwrap();
    attacks.push((
        "token signed by an unknown key",
        "sec-s1".into(),
        stranger.issue_connection_token("switchboard", alice_s1, now, 300).unwrap().0,
    ));
    attacks.push(("empty token", "sec-s1".into(), String::new()));
    backend
        .insert_session(
            SessionRecord {
                id: "sec-gone".into(),
                owner: "alice".into(),
                state: SessionState::Deleted as i32,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gone = ConnectionTokenSubject { session_id: "sec-gone", session_owner: "alice", user: "alice" };
    attacks.push((
        "token for a deleted session",
        "sec-gone".into(),
        signer.issue_connection_token("switchboard", gone, now, 300).unwrap().0,
    ));
    for (attack, session_id, token) in attacks {
        let answer = harness.verify(&session_id, &token).await;
        assert!(answer.starts_with(r#"<auth result="no"><message>"#), "{attack}: {answer}");
        println!("attack: {attack} -> {answer}");
    }
    // Malformed requests get the same XML refusal, not an error page.
    let url = format!("https://localhost:{}/agent/validate-authentication-token", harness.cluster.agent_addr.port());
    let response = harness.https.post(&url).body("%%%").header("content-type", "text/plain").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().starts_with(r#"<auth result="no">"#));
    // Without single use (the default), the valid token keeps working until it expires.
    assert!(harness.verify("sec-s1", &token).await.contains(r#"result="yes""#));
    harness.cluster.stop().await;
}

#[tokio::test]
async fn a_single_use_connection_token_is_refused_on_replay() {
    switchboard_common::telemetry::init_for_tests();
    switchboard_common::tls::install_crypto_provider();
    let backend: Arc<dyn Backend> = Arc::new(switchboard_store::embedded::EmbeddedBackend::in_memory().unwrap());
    let key = switchboard_auth::keys::ensure_signing_key(backend.as_ref()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = switchboard_common::tls::DevCa::load_or_create(dir.path(), &[]).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = agent.local_addr().unwrap().port();
    let config = switchboard_session_store::StoreConfig { connection_token_single_use: true, ..Default::default() };
    let shutdown = switchboard_common::Shutdown::new();
    let listeners = switchboard_session_store::Listeners { grpc, agent };
    let server = tokio::spawn(switchboard_session_store::serve(
        config,
        listeners,
        backend.clone(),
        Some(switchboard_common::tls_reload::ReloadingIdentity::from_pem(&tls.server).unwrap()),
        shutdown.clone(),
    ));
    let session = SessionRecord {
        id: "s1".into(),
        owner: "alice".into(),
        state: SessionState::Ready as i32,
        ..Default::default()
    };
    backend.insert_session(session, None).await.unwrap();
    let signer = Signer::from_record(&key).unwrap();
    let now = switchboard_common::time::now_ms() / 1000;
    let subject = ConnectionTokenSubject { session_id: "s1", session_owner: "alice", user: "alice" };
    let (token, _) = signer.issue_connection_token("switchboard", subject, now, 300).unwrap();

    let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(ca).tls_built_in_root_certs(false).build().unwrap();
    let url = format!("https://localhost:{port}/agent/validate-authentication-token");
    let form = [("sessionId", "s1"), ("authenticationToken", token.as_str()), ("clientAddress", "198.51.100.7")];
    let first = https.post(&url).form(&form).send().await.unwrap().text().await.unwrap();
    assert_eq!(first, r#"<auth result="yes"><username>alice</username></auth>"#);
    let replay = https.post(&url).form(&form).send().await.unwrap().text().await.unwrap();
    assert_eq!(replay, r#"<auth result="no"><message>token already used</message></auth>"#);
    println!("attack: single-use token replayed -> {replay}");
    shutdown.cancel();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}
