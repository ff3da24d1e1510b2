//! A steady mixed load (create → wait READY → describe → delete the oldest) through every gateway, and
//! the ledger of what it saw, to count lost sessions after faults.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_common::Shutdown;
use tokio::task::JoinSet;

use crate::client::ApiClient;

/// How long a create may take to settle before it counts as failed.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The load's own settle bound: shorter, so a create stuck in CREATING by a fault does not stall a worker.
const LOAD_SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the load saw.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sessions seen READY.
    pub ready: Mutex<HashSet<String>>,
    /// Sessions deliberately deleted (recorded before the delete call).
    pub deleted: Mutex<HashSet<String>>,
    /// Creates that did not end READY (UnsuccessfulList, DELETED, or still CREATING at the timeout).
    pub failed_creates: AtomicU64,
}

impl Ledger {
    /// Sessions seen READY and not deliberately deleted.
    pub fn expected_ready(&self) -> Vec<String> {
        let deleted = self.deleted.lock().expect("not poisoned").clone();
        self.ready.lock().expect("not poisoned").iter().filter(|id| !deleted.contains(*id)).cloned().collect()
    }

    /// Whether `id` was deliberately deleted.
    pub fn was_deleted(&self, id: &str) -> bool {
        self.deleted.lock().expect("not poisoned").contains(id)
    }
}

/// Running load workers; stop them with [`Load::stop`].
pub struct Load {
    /// What they saw.
    pub ledger: Arc<Ledger>,
    stop: Shutdown,
    workers: JoinSet<()>,
}

impl Load {
    /// Starts `workers` workers on `client`, each keeping at most `keep` of its sessions.
    pub fn start(client: Arc<ApiClient>, workers: usize, keep: usize) -> Self {
        let ledger = Arc::new(Ledger::default());
        let stop = Shutdown::new();
        let mut set = JoinSet::new();
        for worker in 0..workers {
            set.spawn(run_worker(client.clone(), ledger.clone(), format!("load-{worker}"), keep, stop.clone()));
        }
        Self { ledger, stop, workers: set }
    }

    /// Stops the workers after their current operation.
    pub async fn stop(mut self) -> Arc<Ledger> {
        self.stop.cancel();
        while self.workers.join_next().await.is_some() {}
        self.ledger
    }
}

async fn run_worker(client: Arc<ApiClient>, ledger: Arc<Ledger>, owner: String, keep: usize, stop: Shutdown) {
    let mut mine: VecDeque<String> = VecDeque::new();
    while !stop.is_cancelled() {
        match client.create(&owner).await {
            Ok(Ok(id)) => match client.settle(&id, LOAD_SETTLE_TIMEOUT).await {
                Ok((state, _)) if state == "READY" => {
                    ledger.ready.lock().expect("not poisoned").insert(id.clone());
                    mine.push_back(id);
                }
                _ => {
                    ledger.failed_creates.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Err(_)) => {
                ledger.failed_creates.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {} // counted by the client
        }
        if mine.len() > keep
            && let Some(oldest) = mine.pop_front()
        {
            ledger.deleted.lock().expect("not poisoned").insert(oldest.clone());
            let _ = client.delete(&oldest, &owner).await;
        }
    }
}

/// Sessions expected READY that are not READY within `timeout` (transient UNKNOWN while a host
/// reconnects is allowed): the lost sessions.
pub async fn lost_sessions(client: &ApiClient, ledger: &Ledger, timeout: Duration) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut lost = Vec::new();
        for id in ledger.expected_ready() {
            let state = client.state(&id).await.ok().flatten().map(|(state, reason)| format!("{state} {reason}"));
            let state = state.unwrap_or_else(|| "unknown to describeSessions".to_owned());
            if !state.starts_with("READY") && !ledger.was_deleted(&id) {
                lost.push((id, state));
            }
        }
        if lost.is_empty() || tokio::time::Instant::now() >= deadline {
            return lost;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
