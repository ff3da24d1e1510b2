//! Broker restarts while hosts have sessions: real agents (the agent crate with simulated drivers) against
//! a real session-store on 127.0.0.1. The replica is stopped and started again on the same address, once
//! keeping its store and once with an empty store (as after a restart of the embedded backend). Each time the
//! agents reconnect with their full inventory and the broker ends with exactly the hosts' sessions: none
//! lost, none duplicated, each on its own host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_agent::{DcvDriver, SimulatedDriver, simulated_host_options, telemetry::simulated_host};
use switchboard_common::Shutdown;
use switchboard_common::grpc::lazy_channel;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_proto::{CreateSessionSpec, ListSessionsRequest, SessionRecord, SessionState, SessionType};
use switchboard_session_store::{Listeners, StoreConfig, serve};
use switchboard_store::Backend;
use switchboard_store::embedded::EmbeddedBackend;

const HOSTS: usize = 3;
const SESSIONS_PER_HOST: usize = 4;
const WAIT: Duration = Duration::from_secs(30);

struct Broker {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<switchboard_session_store::Result<()>>,
    store: SessionStoreClient<switchboard_common::grpc::GrpcChannel>,
}

/// A session-store replica on `grpc` / `agent` (port 0 picks ports), short update interval and lease.
async fn start(grpc: SocketAddr, agent: SocketAddr, backend: Arc<dyn Backend>) -> (Broker, SocketAddr, SocketAddr) {
    let grpc = tokio::net::TcpListener::bind(grpc).await.unwrap();
    let agent = tokio::net::TcpListener::bind(agent).await.unwrap();
    let (grpc_address, agent_address) = (grpc.local_addr().unwrap(), agent.local_addr().unwrap());
    let config = StoreConfig {
        replica_id: "r1".into(),
        advertised_address: format!("http://{grpc_address}"),
        update_interval_seconds: 1,
        agent_lease_seconds: 3,
        // Enrolment is covered by tests/security_agents.rs; here the hosts are anonymous so that the
        // empty-store restart tests the inventory rebuild alone.
        require_agent_credentials: false,
        ..StoreConfig::default()
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(config, Listeners { grpc, agent }, backend, None, shutdown.clone()));
    let store = SessionStoreClient::new(lazy_channel(&format!("http://{grpc_address}")).unwrap());
    (Broker { shutdown, task, store }, grpc_address, agent_address)
}

impl Broker {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("broker stops").unwrap().unwrap();
    }

    async fn sessions(&mut self) -> Vec<SessionRecord> {
        let mut sessions = Vec::new();
        let mut after_id = String::new();
        loop {
            let request = ListSessionsRequest { page_size: 1000, after_id: after_id.clone(), ..Default::default() };
            let Ok(page) = self.store.list_sessions(request).await else { return Vec::new() };
            let page = page.into_inner();
            let done = page.sessions.is_empty() || page.last_id.is_empty();
            sessions.extend(page.sessions);
            if done {
                return sessions;
            }
            after_id = page.last_id;
        }
    }

    /// Waits until the broker's READY sessions are exactly `expected` (session id → server id), then checks
    /// that no session id appears twice.
    async fn converge(&mut self, expected: &BTreeMap<String, String>, when: &str) {
        let reached = tokio::time::timeout(WAIT, async {
            loop {
                let ready: BTreeMap<String, String> = self
                    .sessions()
                    .await
                    .into_iter()
                    .filter(|s| s.state() == SessionState::Ready)
                    .map(|s| (s.id, s.server_id))
                    .collect();
                if &ready == expected {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let sessions = self.sessions().await;
        assert!(reached.is_ok(), "{when}: the broker never showed exactly the hosts' sessions: {sessions:?}");
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        let distinct: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), distinct.len(), "{when}: a session is listed twice");
        assert_eq!(sessions.len(), expected.len(), "{when}: sessions beyond the hosts' ones: {sessions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_and_duplicate_no_session() {
    switchboard_common::telemetry::init_for_tests();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (mut broker, grpc, agent) = start(any, any, backend.clone()).await;

    // Hosts with sessions, connected to the broker.
    let agents_shutdown = Shutdown::new();
    let mut expected = BTreeMap::new();
    let mut agents = Vec::new();
    for index in 0..HOSTS {
        let driver = Arc::new(SimulatedDriver::new(0));
        let options = simulated_host_options(100 + index, &format!("http://{agent}"), None);
        for n in 0..SESSIONS_PER_HOST {
            let id = format!("h{index}-s{n}");
            let spec = CreateSessionSpec {
                owner: format!("user{n}"),
                r#type: SessionType::Virtual as i32,
                ..Default::default()
            };
            driver.create_session(&id, &spec).await.unwrap();
            expected.insert(id, options.server_id.clone());
        }
        let seed = index as u64;
        agents.push(tokio::spawn(switchboard_agent::run(
            options,
            driver as Arc<dyn DcvDriver>,
            move || simulated_host(seed),
            agents_shutdown.clone(),
        )));
    }
    broker.converge(&expected, "before any restart").await;

    // Restart keeping the store: the agents reconnect and re-send their inventories.
    broker.stop().await;
    let (restarted, _, _) = start(grpc, agent, backend).await;
    broker = restarted;
    broker.converge(&expected, "after a restart keeping the store").await;

    // Restart with an empty store: the fleet is rebuilt from the agents' hellos alone.
    broker.stop().await;
    let empty: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let (restarted, _, _) = start(grpc, agent, empty).await;
    broker = restarted;
    broker.converge(&expected, "after a restart with an empty store").await;

    agents_shutdown.cancel();
    for agent in agents {
        tokio::time::timeout(WAIT, agent).await.expect("agent stops").unwrap().unwrap();
    }
    broker.stop().await;
}
