//! Store traffic follows change: an agent repeating the same update costs no
//! backend call and no Redis command; a change costs one write.

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::grpc::lazy_channel;
use switchboard_proto::agent_link_client::AgentLinkClient;
use switchboard_proto::agent_message::Kind as AgentKind;
use switchboard_proto::broker_message::Kind as BrokerKind;
use switchboard_proto::{AGENT_PROTOCOL_VERSION, AgentHello, AgentMessage, AgentUpdate, HostSession, KeyValue};
use switchboard_session_store::backend::Backend;
use switchboard_session_store::backend::redis::{RedisBackend, RedisConfig};
use switchboard_session_store::{Listeners, StoreConfig, agent_auth, serve};
use switchboard_testkit::{CountingBackend, RedisServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(10);
/// Identical updates sent in the steady state.
const UPDATES: usize = 50;

/// `cmdstat_evalsha` calls so far, from `INFO commandstats`.
async fn evalsha_calls(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await.unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
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
    let config = RedisConfig { url: redis.url(), key_prefix: "sb:".into() };
    let inner: Arc<dyn Backend> = Arc::new(RedisBackend::connect(config).await.unwrap());
    let counting = Arc::new(CountingBackend::new(inner.clone()));

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}", agent.local_addr().unwrap());
    // Long intervals: no lease renewal or sweep runs during the test.
    let store_config = StoreConfig { update_interval_seconds: 3600, agent_lease_seconds: 3600, ..Default::default() };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(store_config, Listeners { grpc, agent }, counting.clone(), None, shutdown.clone()));

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
    let before = counting.counts();
    let evalsha_before = evalsha_calls(&redis).await;
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
    let after = counting.counts();
    let redis_commands = evalsha_calls(&redis).await - evalsha_before - polls;

    assert_eq!(after.reads - before.reads, 0, "unchanged updates read nothing");
    assert_eq!(after.writes - before.writes, 1, "{UPDATES} unchanged updates write nothing; the change writes once");
    assert_eq!(redis_commands, 1, "Redis sees one script call for {UPDATES} unchanged updates plus one change");
    println!("redis commands for {UPDATES} unchanged updates + 1 changed one: {redis_commands}");

    drop(to_broker);
    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, task).await;
}
