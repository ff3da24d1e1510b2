//! The fake broker the agent's stream tests talk to: a real `AgentLink` server on 127.0.0.1 that hands every
//! agent stream to the test. Shared by `link.rs` and `failover.rs`; not every test binary uses every helper.
#![allow(dead_code)]

use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_proto::agent_link_server::{AgentLink, AgentLinkServer};
use switchboard_proto::{
    AgentHello, AgentMessage, BrokerMessage, CommandResult, CreateSessionSpec, HostCommand, SessionType, agent_message,
    broker_message, host_command,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub const WAIT: Duration = Duration::from_secs(20);

/// One agent stream as the fake broker sees it: what the agent sends and a way to answer.
pub struct Connection {
    pub inbound: Streaming<AgentMessage>,
    pub to_agent: mpsc::Sender<Result<BrokerMessage, Status>>,
}

impl Connection {
    pub async fn next(&mut self) -> agent_message::Kind {
        let message = tokio::time::timeout(WAIT, self.inbound.message()).await.expect("agent message in time");
        message.expect("stream ok").expect("stream open").kind.expect("message kind set")
    }

    pub async fn hello(&mut self) -> AgentHello {
        match self.next().await {
            agent_message::Kind::Hello(hello) => hello,
            other => panic!("the first message is not a hello: {other:?}"),
        }
    }

    pub async fn send(&self, kind: broker_message::Kind) {
        self.to_agent.send(Ok(BrokerMessage { kind: Some(kind) })).await.expect("agent stream open");
    }

    pub async fn command(&self, command_id: &str, action: host_command::Action) {
        let command = HostCommand { command_id: command_id.into(), action: Some(action), traceparent: String::new() };
        self.send(broker_message::Kind::Command(command)).await;
    }

    /// The result of `command_id`, skipping updates.
    pub async fn result(&mut self, command_id: &str) -> CommandResult {
        loop {
            match self.next().await {
                agent_message::Kind::Result(result) if result.command_id == command_id => return result,
                agent_message::Kind::Result(result) => panic!("unexpected result {result:?}"),
                agent_message::Kind::Update(_) => {}
                agent_message::Kind::Hello(_) => panic!("a second hello on one stream"),
            }
        }
    }
}

/// Hands every incoming stream to the test.
pub struct FakeBroker {
    pub connections_tx: mpsc::UnboundedSender<Connection>,
}

#[tonic::async_trait]
impl AgentLink for FakeBroker {
    type ConnectStream = ReceiverStream<Result<BrokerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (to_agent, to_agent_rx) = mpsc::channel(16);
        let connection = Connection { inbound: request.into_inner(), to_agent };
        self.connections_tx.send(connection).map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(to_agent_rx)))
    }
}

/// Serves a fake broker on an ephemeral port; returns its URL and the stream of agent connections.
pub async fn fake_broker(shutdown: Shutdown) -> (String, mpsc::UnboundedReceiver<Connection>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, serve_fake_broker(switchboard_common::grpc::server_builder().unwrap(), listener, shutdown))
}

pub fn serve_fake_broker(
    server: switchboard_common::grpc::GrpcServer,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> mpsc::UnboundedReceiver<Connection> {
    spawn_fake_broker(server, listener, shutdown).0
}

/// Like [`serve_fake_broker`], also returning the server task; aborting it kills the broker (its listener
/// closes, so new connections are refused).
pub fn spawn_fake_broker(
    mut server: switchboard_common::grpc::GrpcServer,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> (mpsc::UnboundedReceiver<Connection>, tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
    let (connections_tx, connections_rx) = mpsc::unbounded_channel();
    let router = server.add_service(AgentLinkServer::new(FakeBroker { connections_tx }));
    let task = tokio::spawn(switchboard_common::grpc::serve_router(router, listener, shutdown));
    (connections_rx, task)
}

pub async fn next_connection(connections_rx: &mut mpsc::UnboundedReceiver<Connection>) -> Connection {
    tokio::time::timeout(WAIT, connections_rx.recv()).await.expect("agent connects in time").expect("broker up")
}

pub fn session_ids(hello: &AgentHello) -> Vec<&str> {
    hello.sessions.iter().map(|s| s.id.as_str()).collect()
}

pub fn virtual_spec(owner: &str) -> CreateSessionSpec {
    CreateSessionSpec { owner: owner.into(), r#type: SessionType::Virtual as i32, ..Default::default() }
}
