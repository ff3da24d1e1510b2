//! Store traffic follows change: an agent repeating the same update sends no
//! command at all to Redis (read or write); a change costs one script call.
//! Counted by Redis itself (`MONITOR`), whatever code path sends them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::grpc::lazy_channel;
use switchboard_proto::agent_link_client::AgentLinkClient;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::{AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, HostSession, KeyValue};
use switchboard_session_store::{Listeners, StoreConfig, serve};
use switchboard_store::Backend;
use switchboard_store::enrolment as agent_auth;
use switchboard_store::redis::{RedisBackend, RedisConfig};
use switchboard_testkit::RedisServer;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(10);
/// Identical updates sent in the steady state.
const UPDATES: usize = 50;

/// Every command clients send to Redis, as `MONITOR` reports it (commands run inside scripts,
/// reported with the source `lua`, are left out: they are part of their script call).
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    redis_url: String,
}

impl Monitor {
    async fn start(redis: &RedisServer) -> Self {
        let address = redis.url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.unwrap();
        assert_eq!(ok.trim(), "+OK", "MONITOR answers +OK");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            while reader.read_line(&mut line).await.is_ok_and(|read| read > 0) {
                sink.lock().unwrap().push(std::mem::take(&mut line));
            }
        });
        Self { lines, redis_url: redis.url() }
    }

    /// Sends `ECHO marker` on a connection of its own and waits until MONITOR has reported it, so
    /// every command sent before it has been reported too.
    async fn mark(&self, marker: &str) {
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("ECHO").arg(marker).query_async(&mut connection).await.unwrap();
        let quoted = format!("\"ECHO\" \"{marker}\"");
        tokio::time::timeout(WAIT, async {
            while !self.lines.lock().unwrap().iter().any(|line| line.contains(&quoted)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("MONITOR reported the marker");
    }

    /// The client commands reported between the two markers (scripts' own commands and the
    /// markers' connections excluded).
    fn between(&self, start: &str, end: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let position = |marker: &str| {
            let quoted = format!("\"ECHO\" \"{marker}\"");
            lines.iter().position(|line| line.contains(&quoted)).expect("marker reported")
        };
        let (from, to) = (position(start), position(end));
        lines[from + 1..to]
            .iter()
            .filter(|line| !line.contains(" lua] "))
            .filter(|line| !line.contains("\"CLIENT\" \"SETINFO\"") && !line.contains("\"client\" \"setinfo\""))
            .cloned()
            .collect()
    }
}

fn update(tags: Vec<KeyValue>) -> AgentMessage {
    let session = HostSession { id: "s1".into(), owner: "alice".into(), r#type: 2, ..Default::default() };
    AgentMessage {
        kind: Some(AgentKind::Update(AgentUpdate {
            dcv_healthy: true,
            tags,
            sessions: vec![session],
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn an_unchanged_update_costs_no_store_traffic() {
    let redis = RedisServer::start();
    let config = RedisConfig { url: redis.url(), key_prefix: "sb:".into(), ..Default::default() };
    let inner: Arc<dyn Backend> = Arc::new(RedisBackend::connect(config).await.unwrap());

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}", agent.local_addr().unwrap());
    // Long intervals: no lease renewal or sweep runs during the test.
    let store_config = StoreConfig { update_interval_seconds: 3600, agent_lease_seconds: 3600, ..Default::default() };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(store_config, Listeners { grpc, agent }, inner.clone(), None, shutdown.clone()));

    let (to_broker, agent_rx) = mpsc::channel(UPDATES + 8);
    let hello = AgentHello {
        protocol_version: AGENT_PROTOCOL_VERSION,
        server_id: "h1".into(),
        dcv_healthy: true,
        sessions: match update(Vec::new()).kind {
            Some(AgentKind::Update(update)) => update.sessions,
            _ => unreachable!(),
        },
        ..Default::default()
    };
    to_broker.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.unwrap();
    // Enrolled like a real agent (before counting starts to matter: only updates are measured).
    let statement = agent_auth::statements::generate(inner.as_ref()).await.unwrap();
    let enrolled = agent_auth::clients::register(inner.as_ref(), statement.text.expose(), "h1").await.unwrap();
    let authorization =
        agent_auth::clients::basic_authorization(&enrolled.record.client_id, enrolled.client_secret.expose());
    let mut request = tonic::Request::new(ReceiverStream::new(agent_rx));
    request.metadata_mut().insert("authorization", authorization.parse().unwrap());
    let mut client = AgentLinkClient::new(lazy_channel(&agent_url).unwrap());
    let mut from_broker = client.connect(request).await.unwrap().into_inner();
    let welcome = tokio::time::timeout(WAIT, from_broker.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(welcome.kind, Some(BrokerKind::Welcome(_))));

    // The hello was fully applied before the welcome. Steady state from here.
    // Loads the read script the polling below uses, so no NOSCRIPT retry is counted.
    inner.get_servers(&["h1".into()]).await.unwrap();
    let monitor = Monitor::start(&redis).await;
    monitor.mark("steady-state-start").await;
    for _ in 0..UPDATES {
        to_broker.send(update(Vec::new())).await.unwrap();
    }
    // One real change after them: once it is visible, every update before it was handled.
    let gpu = vec![KeyValue { key: "gpu".into(), value: "1".into() }];
    to_broker.send(update(gpu.clone())).await.unwrap();
    let mut polls = 0;
    tokio::time::timeout(WAIT, async {
        loop {
            polls += 1;
            let servers = inner.get_servers(&["h1".into()]).await.unwrap();
            if servers.first().is_some_and(|s| s.tags == gpu) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the changed update was not stored");
    monitor.mark("steady-state-end").await;
    let sent = monitor.between("steady-state-start", "steady-state-end");
    // Each poll is one script call (`get_servers`); everything else is the updates' traffic.
    let commands = sent.len() - polls;

    assert_eq!(
        commands, 1,
        "{UPDATES} unchanged updates read and write nothing; the change is one script call: {sent:#?}"
    );
    println!("redis commands for {UPDATES} unchanged updates + 1 changed one: {commands}");

    drop(to_broker);
    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, task).await;
}
