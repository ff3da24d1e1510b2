//! The agent across broker replicas: when the replica it is connected to dies, it reconnects to the next
//! configured one (round-robin), re-sending its full inventory, and skips replicas that stay down.

use std::sync::Arc;

use switchboard_agent::{DcvDriver, SimulatedDriver, simulated_host_options, telemetry::simulated_host};
use switchboard_common::Shutdown;
use switchboard_proto::{
    BrokerWelcome, CreateSessionCommand, CreateSessionSpec, HostCommand, SessionType, agent_message, broker_message,
    host_command,
};
use tokio::sync::mpsc;

mod support;

use support::{Connection, WAIT, session_ids, spawn_fake_broker};

/// A fake broker replica on an ephemeral port. Aborting `server` kills it: the listener closes, so new
/// connections are refused.
struct Replica {
    url: String,
    connections_rx: mpsc::UnboundedReceiver<Connection>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Replica {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (connections_rx, server) =
            spawn_fake_broker(switchboard_common::grpc::server_builder().unwrap(), listener, Shutdown::new());
        Self { url, connections_rx, server }
    }

    async fn next_connection(&mut self) -> Connection {
        let connection = tokio::time::timeout(WAIT, self.connections_rx.recv()).await;
        connection.expect("agent connects in time").expect("replica up")
    }
}

#[tokio::test]
async fn the_agent_moves_to_the_next_replica_when_its_replica_dies() {
    switchboard_common::telemetry::init_for_tests();
    let mut first = Replica::start().await;
    let mut second = Replica::start().await;
    let mut options = simulated_host_options(4, &first.url, None);
    options.fallback_broker_urls = vec![second.url.clone()];
    let driver = Arc::new(SimulatedDriver::new(0));
    let agent_shutdown = Shutdown::new();
    let agent = tokio::spawn(switchboard_agent::run(
        options,
        driver.clone() as Arc<dyn DcvDriver>,
        || simulated_host(4),
        agent_shutdown.clone(),
    ));

    // The agent starts on the first replica, which creates a session on it.
    let mut on_first = first.next_connection().await;
    assert!(on_first.hello().await.sessions.is_empty());
    on_first
        .send(broker_message::Kind::Welcome(BrokerWelcome { update_interval_seconds: 30, ..Default::default() }))
        .await;
    let spec = CreateSessionSpec { owner: "alice".into(), r#type: SessionType::Virtual as i32, ..Default::default() };
    let create = CreateSessionCommand { session_id: "s1".into(), spec: Some(spec) };
    let command = HostCommand {
        command_id: "c1".into(),
        action: Some(host_command::Action::Create(create)),
        traceparent: String::new(),
    };
    on_first.send(broker_message::Kind::Command(command)).await;
    match on_first.next().await {
        agent_message::Kind::Result(result) => {
            assert_eq!((result.command_id.as_str(), result.error.as_str()), ("c1", ""))
        }
        other => panic!("expected the command result, got {other:?}"),
    }

    // The first replica dies (listener gone, stream ended): the agent says hello to the second one, with
    // the session it created on the first.
    first.server.abort();
    drop(on_first);
    let mut on_second = second.next_connection().await;
    assert_eq!(session_ids(&on_second.hello().await), ["s1"]);

    // The second replica drops the stream too: the agent tries the dead first replica, fails, and comes
    // back to the second.
    drop(on_second);
    let mut again = second.next_connection().await;
    assert_eq!(session_ids(&again.hello().await), ["s1"]);
    assert!(first.connections_rx.try_recv().is_err(), "the dead replica accepted nothing");

    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
}

#[tokio::test]
async fn a_replica_that_is_down_at_start_is_skipped() {
    switchboard_common::telemetry::init_for_tests();
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", reserved.local_addr().unwrap());
    drop(reserved);
    let mut alive = Replica::start().await;
    let mut options = simulated_host_options(5, &dead_url, None);
    options.fallback_broker_urls = vec![alive.url.clone()];
    let driver: Arc<dyn DcvDriver> = Arc::new(SimulatedDriver::new(0));
    let agent_shutdown = Shutdown::new();
    let agent = tokio::spawn(switchboard_agent::run(options, driver, || simulated_host(5), agent_shutdown.clone()));

    let mut connection = alive.next_connection().await;
    assert_eq!(connection.hello().await.hostname, "sim-host-5");
    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
}
