//! The agent against a fake broker served on 127.0.0.1 without TLS.

use std::sync::Arc;

use switchboard_agent::{DcvDriver, SimulatedDriver, simulated_host_options, telemetry::simulated_host};
use switchboard_common::Shutdown;
use switchboard_proto::{
    AGENT_PROTOCOL_VERSION, BrokerWelcome, CloseSessionCommand, CreateSessionCommand, agent_message, broker_message,
    command_result, host_command,
};

mod support;

use support::{WAIT, fake_broker, next_connection, serve_fake_broker, session_ids, virtual_spec};

#[tokio::test]
async fn hello_welcome_updates_commands_and_reconnect_keep_the_inventory() {
    switchboard_common::telemetry::init_for_tests();
    let broker_shutdown = Shutdown::new();
    let (url, mut connections_rx) = fake_broker(broker_shutdown.clone()).await;

    let driver = Arc::new(SimulatedDriver::new(0));
    driver.create_session("existing", &virtual_spec("alice")).await.unwrap();
    let options = simulated_host_options(7, &url, None);
    let server_id = options.server_id.clone();
    let agent_shutdown = Shutdown::new();
    let agent = tokio::spawn(switchboard_agent::run(
        options,
        driver.clone() as Arc<dyn DcvDriver>,
        || simulated_host(7),
        agent_shutdown.clone(),
    ));

    // The hello comes first and carries identity and the full inventory.
    let mut first = next_connection(&mut connections_rx).await;
    let hello = first.hello().await;
    assert_eq!(hello.protocol_version, AGENT_PROTOCOL_VERSION);
    assert_eq!(hello.server_id, server_id);
    assert_eq!(hello.hostname, "sim-host-7");
    assert_eq!(hello.endpoints.len(), 1);
    assert_eq!(hello.endpoints[0].port, 8443);
    assert!(hello.dcv_healthy);
    assert!(hello.host.is_some());
    assert!(hello.tags.iter().any(|t| t.key == "index" && t.value == "7"));
    assert_eq!(session_ids(&hello), ["existing"]);

    // A short interval in the welcome brings updates.
    let welcome = BrokerWelcome { update_interval_seconds: 1, broker_id: "fake".into(), epoch: 1 };
    first.send(broker_message::Kind::Welcome(welcome)).await;
    match first.next().await {
        agent_message::Kind::Update(update) => {
            assert_eq!(update.sessions.len(), 1);
            assert!(update.host.is_some());
        }
        other => panic!("expected an update, got {other:?}"),
    }

    // A create gets exactly its result, with the session.
    let create = CreateSessionCommand { session_id: "new".into(), spec: Some(virtual_spec("bob")) };
    first.command("c1", host_command::Action::Create(create)).await;
    let result = first.result("c1").await;
    assert_eq!(result.error, "");
    match result.payload {
        Some(command_result::Payload::Session(session)) => {
            assert_eq!((session.id.as_str(), session.owner.as_str()), ("new", "bob"))
        }
        other => panic!("expected a session payload, got {other:?}"),
    }

    // A failing command is answered with its error.
    first.command("c2", host_command::Action::Close(CloseSessionCommand { session_id: "nope".into() })).await;
    assert_eq!(first.result("c2").await.error, "session not found: nope");

    // The broker drops the stream: the agent reconnects and its hello has both sessions.
    drop(first);
    let mut second = next_connection(&mut connections_rx).await;
    let hello = second.hello().await;
    assert_eq!(hello.server_id, server_id);
    assert_eq!(session_ids(&hello), ["existing", "new"]);

    // Shutdown ends the agent.
    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}

#[tokio::test]
async fn the_agent_waits_for_a_broker_that_starts_late() {
    switchboard_common::telemetry::init_for_tests();
    // Reserve a port, release it, and start the broker there only after the agent has begun dialing.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let agent_shutdown = Shutdown::new();
    let options = simulated_host_options(1, &format!("http://{address}"), None);
    let driver: Arc<dyn DcvDriver> = Arc::new(SimulatedDriver::new(0));
    let agent = tokio::spawn(switchboard_agent::run(options, driver, || simulated_host(1), agent_shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let broker_shutdown = Shutdown::new();
    let mut connections_rx =
        serve_fake_broker(switchboard_common::grpc::server_builder().unwrap(), listener, broker_shutdown.clone());

    let mut connection = next_connection(&mut connections_rx).await;
    assert_eq!(connection.hello().await.hostname, "sim-host-1");
    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}

#[tokio::test]
async fn a_broker_that_sends_no_welcome_first_is_left() {
    switchboard_common::telemetry::init_for_tests();
    let broker_shutdown = Shutdown::new();
    let (url, mut connections_rx) = fake_broker(broker_shutdown.clone()).await;
    let agent_shutdown = Shutdown::new();
    let driver: Arc<dyn DcvDriver> = Arc::new(SimulatedDriver::new(0));
    let options = simulated_host_options(2, &url, None);
    let agent = tokio::spawn(switchboard_agent::run(options, driver, || simulated_host(2), agent_shutdown.clone()));

    let mut first = next_connection(&mut connections_rx).await;
    first.hello().await;
    let create = CreateSessionCommand { session_id: "early".into(), spec: Some(virtual_spec("alice")) };
    first.command("early", host_command::Action::Create(create)).await;
    // The agent drops the stream and says hello again on a new one; the early command was never run.
    let mut second = next_connection(&mut connections_rx).await;
    assert!(second.hello().await.sessions.is_empty());
    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}

#[tokio::test]
async fn https_brokers_are_verified_against_the_configured_ca() {
    switchboard_common::telemetry::init_for_tests();
    switchboard_common::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = switchboard_common::tls::DevCa::load_or_create(dir.path(), &[]).unwrap();
    let identity = tonic::transport::Identity::from_pem(&ca.server.cert_pem, &ca.server.key_pem);
    let server = switchboard_common::grpc::server_builder()
        .unwrap()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let broker_shutdown = Shutdown::new();
    let mut connections_rx = serve_fake_broker(server, listener, broker_shutdown.clone());

    let agent_shutdown = Shutdown::new();
    let options = simulated_host_options(
        3,
        &url,
        Some(switchboard_common::tls_reload::ReloadingCa::from_pem(&ca.ca_pem).unwrap()),
    );
    let driver: Arc<dyn DcvDriver> = Arc::new(SimulatedDriver::new(0));
    let agent = tokio::spawn(switchboard_agent::run(options, driver, || simulated_host(3), agent_shutdown.clone()));

    let mut connection = next_connection(&mut connections_rx).await;
    assert_eq!(connection.hello().await.hostname, "sim-host-3");
    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}

/// A simulated driver whose creates wait until the test lets them finish.
struct Gated {
    inner: SimulatedDriver,
    started: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[tonic::async_trait]
impl DcvDriver for Gated {
    async fn health(&self) -> bool {
        true
    }
    async fn version(&self) -> String {
        self.inner.version().await
    }
    async fn list_sessions(&self) -> switchboard_agent::driver::Result<Vec<switchboard_proto::HostSession>> {
        self.inner.list_sessions().await
    }
    async fn create_session(
        &self,
        id: &str,
        spec: &switchboard_proto::CreateSessionSpec,
    ) -> switchboard_agent::driver::Result<switchboard_proto::HostSession> {
        self.started.notify_one();
        let _permit = self.release.acquire().await.unwrap();
        self.inner.create_session(id, spec).await
    }
    async fn close_session(&self, id: &str) -> switchboard_agent::driver::Result<()> {
        self.inner.close_session(id).await
    }
    async fn set_permissions(&self, id: &str, permissions: &[u8]) -> switchboard_agent::driver::Result<()> {
        self.inner.set_permissions(id, permissions).await
    }
    async fn screenshot(
        &self,
        id: &str,
        w: u32,
        h: u32,
        format: &str,
    ) -> switchboard_agent::driver::Result<Vec<switchboard_proto::ScreenshotImage>> {
        self.inner.screenshot(id, w, h, format).await
    }
}

#[tokio::test]
async fn shutdown_lets_a_running_command_answer_before_closing() {
    switchboard_common::telemetry::init_for_tests();
    let broker_shutdown = Shutdown::new();
    let (url, mut connections_rx) = fake_broker(broker_shutdown.clone()).await;
    let driver = Arc::new(Gated {
        inner: SimulatedDriver::new(0),
        started: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let agent_shutdown = Shutdown::new();
    let options = simulated_host_options(9, &url, None);
    let agent = tokio::spawn(switchboard_agent::run(
        options,
        driver.clone() as Arc<dyn DcvDriver>,
        || simulated_host(9),
        agent_shutdown.clone(),
    ));
    let mut connection = next_connection(&mut connections_rx).await;
    connection.hello().await;
    let welcome = BrokerWelcome { update_interval_seconds: 3600, broker_id: "fake".into(), epoch: 1 };
    connection.send(broker_message::Kind::Welcome(welcome)).await;
    let create = CreateSessionCommand { session_id: "late".into(), spec: Some(virtual_spec("alice")) };
    connection.command("c1", host_command::Action::Create(create)).await;

    // The command is running when shutdown comes; it finishes afterwards and its result still goes out.
    tokio::time::timeout(WAIT, driver.started.notified()).await.expect("the create starts");
    agent_shutdown.cancel();
    driver.release.add_permits(1);
    let result = connection.result("c1").await;
    assert_eq!(result.error, "");
    assert!(matches!(result.payload, Some(command_result::Payload::Session(ref s)) if s.id == "late"));
    // Then the agent half-closes the stream and stops.
    let end = tokio::time::timeout(WAIT, connection.inbound.message()).await.expect("stream ends in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}
