//! A steady mixed load (create → wait READY → describe → delete the oldest) through every gateway, and
//! the ledger of what it saw, to count lost sessions after faults.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Creates the API acknowledged (an id in the SuccessfulList).
    pub acknowledged: Mutex<HashSet<String>>,
    /// When each create was acknowledged (to tell losses inside a failover's replication window).
    pub acknowledged_at: Mutex<HashMap<String, Instant>>,
    /// Deletes the API acknowledged (the id in the SuccessfulList).
    pub delete_acknowledged: Mutex<HashSet<String>>,
    /// Sessions seen READY.
    pub ready: Mutex<HashSet<String>>,
    /// Sessions deliberately deleted (recorded before the delete call).
    pub deleted: Mutex<HashSet<String>>,
    /// Creates that did not end READY (UnsuccessfulList, DELETED, or still CREATING at the timeout).
    pub failed_creates: AtomicU64,
}

impl Ledger {
    /// One line of what the load saw (acknowledged creates, READY, acknowledged deletes).
    pub fn summary(&self) -> String {
        format!(
            "creates acknowledged {}, READY {}, deletes acknowledged {}",
            self.acknowledged.lock().expect("not poisoned").len(),
            self.ready.lock().expect("not poisoned").len(),
            self.delete_acknowledged.lock().expect("not poisoned").len()
        )
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
            Ok(Ok(id)) => {
                ledger.acknowledged.lock().expect("not poisoned").insert(id.clone());
                ledger.acknowledged_at.lock().expect("not poisoned").insert(id.clone(), Instant::now());
                match client.settle(&id, LOAD_SETTLE_TIMEOUT).await {
                    Ok((state, _)) if state == "READY" => {
                        ledger.ready.lock().expect("not poisoned").insert(id.clone());
                        mine.push_back(id);
                    }
                    _ => {
                        ledger.failed_creates.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Err(_)) => {
                ledger.failed_creates.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {} // counted by the client
        }
        if mine.len() > keep
            && let Some(oldest) = mine.pop_front()
        {
            ledger.deleted.lock().expect("not poisoned").insert(oldest.clone());
            if let Ok(true) = client.delete(&oldest, &owner).await {
                ledger.delete_acknowledged.lock().expect("not poisoned").insert(oldest);
            }
        }
    }
}

/// The acknowledged requests that never reached an end state within `timeout`, as a user counts them:
/// a create still CREATING (or unknown to describeSessions), a delete still DELETING or READY, a session
/// seen READY that is no longer READY without being deleted on purpose, anything UNKNOWN at the end. A
/// create that ended DELETED with a StateReason is a failed create, not a lost one. `(id, what it is)`.
///
/// The requests checked are those acknowledged when it is called (the load may go on meanwhile); each pass
/// reads the ledger before it asks describeSessions, so a delete acknowledged during a pass is not held
/// against the state that pass read.
pub async fn lost_sessions(client: &ApiClient, ledger: &Ledger, timeout: Duration) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let acknowledged: Vec<String> = ledger.acknowledged.lock().expect("not poisoned").iter().cloned().collect();
    loop {
        let lost = unended(client, ledger, &acknowledged).await;
        if lost.is_empty() || tokio::time::Instant::now() >= deadline {
            return lost;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn unended(client: &ApiClient, ledger: &Ledger, acknowledged: &[String]) -> Vec<(String, String)> {
    let ready = ledger.ready.lock().expect("not poisoned").clone();
    let delete_acknowledged = ledger.delete_acknowledged.lock().expect("not poisoned").clone();
    let states = match client.states(acknowledged).await {
        Ok(states) => states,
        Err(error) => return vec![(String::new(), format!("describeSessions failed: {error:#}"))],
    };
    let mut lost = Vec::new();
    for id in acknowledged.iter().cloned() {
        let Some((state, reason)) = states.get(&id) else {
            lost.push((id, "acknowledged create unknown to describeSessions".to_owned()));
            continue;
        };
        let deleted_on_purpose = ledger.was_deleted(&id);
        let what = match state.as_str() {
            "CREATING" => Some("acknowledged create still CREATING"),
            "DELETING" => Some("acknowledged delete still DELETING"),
            "READY" if delete_acknowledged.contains(&id) => Some("acknowledged delete but READY"),
            "READY" => None,
            "DELETED" if ready.contains(&id) && !deleted_on_purpose => Some("READY session gone without a delete"),
            "DELETED" => None,
            _ => Some("not in an end state"),
        };
        if let Some(what) = what {
            lost.push((id, format!("{what}: {state} {reason}")));
        }
    }
    lost
}
