//! Correctness checks over the whole fleet, read from session-store: sessions per host against the
//! hosts' limits, and sessions that moved between hosts (a session on two hosts would be re-cached from
//! both agents' reports in turn).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use switchboard_proto::{ListSessionsRequest, SessionRecord, SessionState, session_store_client::SessionStoreClient};

use crate::cluster::{ProcessCluster, Service};

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct FleetCheck {
    /// Sessions READY now.
    pub ready: usize,
    /// Hosts holding more live sessions than their `max_virtual_sessions`.
    pub oversubscribed: usize,
    /// READY sessions whose host changed between two snapshots one agent-update apart.
    pub duplicates: usize,
    /// Sum of the hosts' session counts, as reconciled from their reports.
    pub inventory_sum: u64,
}

/// Every session record.
pub async fn all_sessions(cluster: &ProcessCluster) -> anyhow::Result<Vec<SessionRecord>> {
    let channel = switchboard_common::grpc::replica_channel(&cluster.grpc_urls(Service::SessionStore))?;
    let mut store = SessionStoreClient::new(channel);
    let mut sessions = Vec::new();
    let mut after_id = String::new();
    loop {
        let request = ListSessionsRequest { page_size: 500, after_id: after_id.clone(), ..Default::default() };
        let page = tokio::time::timeout(Duration::from_secs(5), store.list_sessions(request)).await??.into_inner();
        let done = page.sessions.is_empty() || page.last_id.is_empty();
        sessions.extend(page.sessions);
        if done {
            return Ok(sessions);
        }
        after_id = page.last_id;
    }
}

/// The store's records of `ids` (for the failure message of a fault test: revision, state, timestamps).
pub async fn records(cluster: &ProcessCluster, ids: &[String]) -> anyhow::Result<Vec<SessionRecord>> {
    let channel = switchboard_common::grpc::replica_channel(&cluster.grpc_urls(Service::SessionStore))?;
    let request = switchboard_proto::GetSessionsRequest { session_ids: ids.to_vec(), with_queue_places: false };
    let mut store = SessionStoreClient::new(channel);
    let page = tokio::time::timeout(Duration::from_secs(5), store.get_sessions(request)).await??;
    let mut sessions = page.into_inner().sessions;
    for session in &mut sessions {
        session.spec = None;
    }
    Ok(sessions)
}

fn live(session: &SessionRecord) -> bool {
    !matches!(session.state(), SessionState::Deleted | SessionState::Unspecified) && !session.server_id.is_empty()
}

/// Snapshots the fleet twice, two agent updates apart, and checks limits and placements.
pub async fn check(cluster: &ProcessCluster) -> anyhow::Result<FleetCheck> {
    let first = all_sessions(cluster).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // two agent updates (interval 1 s): not synchronisation
    let second = all_sessions(cluster).await?;
    let servers = cluster.servers().await?;

    let hosts_before: HashMap<&str, &str> = first
        .iter()
        .filter(|s| s.state() == SessionState::Ready)
        .map(|s| (s.id.as_str(), s.server_id.as_str()))
        .collect();
    let duplicates = second
        .iter()
        .filter(|s| s.state() == SessionState::Ready)
        .filter(|s| hosts_before.get(s.id.as_str()).is_some_and(|host| *host != s.server_id))
        .count();
    let mut per_host: BTreeMap<&str, u32> = BTreeMap::new();
    for session in second.iter().filter(|s| live(s)) {
        *per_host.entry(session.server_id.as_str()).or_default() += 1;
    }
    let limit = cluster.max_virtual_sessions;
    let oversubscribed = per_host.values().filter(|count| **count > limit).count()
        + servers.iter().filter(|server| server.virtual_session_count > limit).count();
    Ok(FleetCheck {
        ready: second.iter().filter(|s| s.state() == SessionState::Ready).count(),
        oversubscribed,
        duplicates,
        inventory_sum: servers.iter().map(|server| u64::from(server.virtual_session_count)).sum(),
    })
}

/// Sessions hosts still list but should not have (stray copies, unconfirmed closes), summed over the
/// session-store replicas' `switchboard_host_sessions_to_close` gauges; waits up to `settle` for 0 and
/// returns what is left. Needs a cluster started with `metrics`.
pub async fn host_sessions_to_close(cluster: &ProcessCluster, settle: Duration) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let mut held = 0.0;
        let stores = cluster.metrics_urls().into_iter().filter(|(label, _)| label.contains("session-store"));
        let mut replicas = 0;
        for (label, url) in stores {
            replicas += 1;
            let text = http.get(&url).timeout(Duration::from_secs(5)).send().await?.text().await?;
            let sample = text.lines().find_map(|line| line.strip_prefix("switchboard_host_sessions_to_close "));
            let sample = sample.ok_or_else(|| anyhow::anyhow!("{label} does not expose the gauge"))?;
            held += sample.trim().parse::<f64>()?;
        }
        anyhow::ensure!(replicas > 0, "the cluster serves no session-store metrics");
        if held == 0.0 || tokio::time::Instant::now() >= deadline {
            return Ok(held);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
