//! Placement's in-memory view of the fleet, kept current from session-store's
//! change feed (`SessionStore.ServerChanges`).
//!
//! Every write that changes what placement sees of a server (report, open
//! flag, removal, and the session counts) gives the server a new feed
//! revision in the store; [`FleetView::sync`] asks only for servers changed
//! since the revision it has seen, so a decision never lists the fleet. A
//! background task syncs every `fleet_sync_interval`; placement also syncs on
//! demand before it concludes that nothing fits, and after the store rejects
//! a candidate (the view was stale). A new feed generation (the store
//! restarted or lost its data) makes the view read everything again.
//!
//! The view is advisory: the store's atomic `AssignSession` stays the
//! authority, so several placement replicas with slightly different views
//! never oversubscribe a host. After its own assignment a replica bumps the
//! chosen server's count locally so that the next decisions spread before the
//! next sync confirms it.
//!
//! Servers that changed are also collected for the queue worker
//! ([`FleetView::take_changes`]), which wakes queued requests whose class one
//! of them could now serve.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use switchboard_common::Shutdown;
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::{ServerChangesRequest, ServerRecord, SessionType, session_store_client::SessionStoreClient};
use tokio::sync::Notify;

use crate::{Error, Result, place::SessionKind, requirements::Requirements};

/// Servers asked for per `ServerChanges` page.
const PAGE_SIZE: u32 = 1000;

/// The servers as last synced.
#[derive(Debug, Default)]
pub struct Fleet {
    generation: String,
    revision: u64,
    servers: Vec<ServerRecord>,
    index: HashMap<String, usize>,
    /// Servers per OS family (lower case), for "rare OS" scarcity.
    os_families: HashMap<String, usize>,
    /// Grows whenever a server is added or removed, or changes in anything
    /// but its session counts: what eligibility caches are keyed on.
    static_epoch: u64,
}

impl Fleet {
    /// A view holding `servers` (tests and benchmarks).
    pub fn from_servers(servers: impl IntoIterator<Item = ServerRecord>) -> Self {
        let mut fleet = Self::default();
        for server in servers {
            fleet.upsert(server);
        }
        fleet
    }

    /// Every server, in no particular order.
    pub fn servers(&self) -> &[ServerRecord] {
        &self.servers
    }

    /// One server by id.
    pub fn get(&self, id: &str) -> Option<&ServerRecord> {
        self.index.get(id).map(|&slot| &self.servers[slot])
    }

    /// The feed revision the view reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// See the field: changes when eligibility (anything but room) may change.
    pub fn static_epoch(&self) -> u64 {
        self.static_epoch
    }

    /// The OS families (lower case) below `percent` of the fleet.
    pub fn rare_os_families(&self, percent: u8) -> Vec<&str> {
        let total = self.servers.len();
        self.os_families
            .iter()
            .filter(|(_, count)| **count * 100 < total * usize::from(percent))
            .map(|(family, _)| family.as_str())
            .collect()
    }

    /// Servers whose OS family is `family` (lower case).
    pub fn os_family_count(&self, family: &str) -> usize {
        self.os_families.get(family).copied().unwrap_or_default()
    }

    fn family(server: &ServerRecord) -> Option<String> {
        let family = server.host.as_ref()?.os.as_ref()?.family.to_ascii_lowercase();
        (!family.is_empty()).then_some(family)
    }

    fn count_family(&mut self, server: &ServerRecord, delta: isize) {
        if let Some(family) = Self::family(server) {
            let count = self.os_families.entry(family.clone()).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.os_families.remove(&family);
            }
        }
    }

    /// Adds or replaces a server.
    pub fn upsert(&mut self, server: ServerRecord) {
        self.count_family(&server, 1);
        match self.index.get(&server.id) {
            Some(&slot) => {
                let old = std::mem::replace(&mut self.servers[slot], server);
                if !only_counts_differ(&old, &self.servers[slot]) {
                    self.static_epoch += 1;
                }
                self.count_family(&old, -1);
            }
            None => {
                self.static_epoch += 1;
                self.index.insert(server.id.clone(), self.servers.len());
                self.servers.push(server);
            }
        }
    }

    /// Drops a server.
    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.index.remove(id) else { return };
        self.static_epoch += 1;
        let old = self.servers.swap_remove(slot);
        self.count_family(&old, -1);
        if let Some(moved) = self.servers.get(slot) {
            self.index.insert(moved.id.clone(), slot);
        }
    }

    fn reset(&mut self, generation: String) {
        *self = Self { generation, static_epoch: self.static_epoch + 1, ..Self::default() };
    }
}

/// Whether two records of one server differ only in what assignments change
/// (session counts, revision, last seen).
fn only_counts_differ(old: &ServerRecord, new: &ServerRecord) -> bool {
    let mut old = old.clone();
    old.console_session_count = new.console_session_count;
    old.virtual_session_count = new.virtual_session_count;
    old.revision = new.revision;
    old.last_seen_unix_ms = new.last_seen_unix_ms;
    old == *new
}

/// Servers that pass every rule but room for one requirement class and
/// session kind, cached until the fleet's static epoch moves.
#[derive(Debug)]
struct Eligible {
    /// Keeps the compiled expression (and so the key's address) alive.
    _requirements: Requirements,
    epoch: u64,
    slots: Arc<Vec<u32>>,
}

/// Most classes whose eligible servers are cached.
const ELIGIBLE_CLASSES: usize = 256;

/// Servers changed since the queue worker last looked.
#[derive(Debug, Default)]
pub struct Changes {
    /// The whole view was reloaded: treat every server as changed.
    pub everything: bool,
    /// Ids of changed (or removed) servers.
    pub ids: HashSet<String>,
}

/// The shared, synced view.
#[derive(Debug)]
pub struct FleetView {
    fleet: RwLock<Fleet>,
    store: SessionStoreClient<GrpcChannel>,
    /// One sync at a time; callers arriving meanwhile sync after it.
    sync_lock: tokio::sync::Mutex<()>,
    changes: Mutex<Changes>,
    changed: Notify,
    /// Keyed by the compiled expression's address and the [`SessionKind`]
    /// (type and console autorun): everything `place::eligible` reads of the
    /// request.
    eligible: Mutex<HashMap<(usize, SessionKind), Eligible>>,
}

impl FleetView {
    /// An empty view that syncs from `store`.
    pub fn new(store: SessionStoreClient<GrpcChannel>) -> Self {
        Self {
            fleet: RwLock::default(),
            store,
            sync_lock: tokio::sync::Mutex::new(()),
            changes: Mutex::default(),
            changed: Notify::new(),
            eligible: Mutex::default(),
        }
    }

    /// Runs `read` on the current view (a short read lock; never await inside).
    pub fn read<T>(&self, read: impl FnOnce(&Fleet) -> T) -> T {
        read(&self.fleet.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The slots of `fleet` (the view as read under its lock) that pass every
    /// rule but room for this class and kind; computed once per class, kind
    /// and static epoch.
    pub fn eligible(&self, fleet: &Fleet, kind: SessionKind, requirements: &Requirements) -> Arc<Vec<u32>> {
        let key = (requirements.expression().map_or(0, |e| e as *const _ as usize), kind);
        let mut cache = self.eligible.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = cache.get(&key).filter(|entry| entry.epoch == fleet.static_epoch) {
            return entry.slots.clone();
        }
        let slots: Vec<u32> = (0..fleet.servers.len() as u32)
            .filter(|&slot| crate::place::eligible(&fleet.servers[slot as usize], kind, requirements))
            .collect();
        let slots = Arc::new(slots);
        if cache.len() >= ELIGIBLE_CLASSES {
            cache.clear();
        }
        let entry = Eligible { _requirements: requirements.clone(), epoch: fleet.static_epoch, slots: slots.clone() };
        cache.insert(key, entry);
        slots
    }

    /// Counts a session this replica just assigned, until the next sync
    /// brings the store's count.
    pub fn note_assigned(&self, server_id: &str, session_type: SessionType) {
        let mut fleet = self.fleet.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&slot) = fleet.index.get(server_id) {
            let server = &mut fleet.servers[slot];
            match session_type {
                SessionType::Console => server.console_session_count += 1,
                _ => server.virtual_session_count += 1,
            }
        }
    }

    /// Applies every change since the last sync; returns how many servers changed.
    pub async fn sync(&self) -> Result<usize> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut store = self.store.clone();
        let mut changed = 0;
        loop {
            let (generation, after) = self.read(|fleet| (fleet.generation.clone(), fleet.revision));
            let page = store
                .server_changes(ServerChangesRequest { after_revision: after, page_size: PAGE_SIZE })
                .await
                .map_err(Error::Store)?
                .into_inner();
            let restarted = page.generation != generation || page.revision < after;
            if restarted && after != 0 {
                tracing::info!(generation = %page.generation, "fleet feed restarted; reloading the fleet view");
                self.fleet.write().unwrap_or_else(PoisonError::into_inner).reset(page.generation);
                self.changes.lock().unwrap_or_else(PoisonError::into_inner).everything = true;
                continue;
            }
            changed += page.servers.len() + page.removed_server_ids.len();
            {
                let mut fleet = self.fleet.write().unwrap_or_else(PoisonError::into_inner);
                fleet.generation = page.generation;
                fleet.revision = page.revision;
                let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
                for id in page.removed_server_ids {
                    fleet.remove(&id);
                    changes.ids.insert(id);
                }
                for server in page.servers {
                    changes.ids.insert(server.id.clone());
                    fleet.upsert(server);
                }
            }
            if !page.more {
                break;
            }
        }
        if changed > 0 {
            self.changed.notify_one();
        }
        Ok(changed)
    }

    /// Takes the servers changed since the last call.
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves at the next sync that changed something.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Syncs every `interval` until `shutdown`; failures are logged and retried.
    pub async fn run(&self, interval: Duration, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.sync().await {
                tracing::debug!(%error, "fleet sync failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, family: &str) -> ServerRecord {
        let os = switchboard_proto::Os { family: family.into(), ..Default::default() };
        ServerRecord {
            id: id.into(),
            host: Some(switchboard_proto::HostInfo { os: Some(os), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn upsert_and_remove_keep_the_index_and_family_counts() {
        let mut fleet = Fleet::from_servers([server("a", "linux"), server("b", "Windows"), server("c", "linux")]);
        assert_eq!((fleet.os_family_count("linux"), fleet.os_family_count("windows")), (2, 1));
        fleet.upsert(server("a", "windows"));
        assert_eq!((fleet.os_family_count("linux"), fleet.os_family_count("windows")), (1, 2));
        fleet.remove("a");
        assert_eq!(fleet.servers().len(), 2);
        assert!(fleet.get("a").is_none());
        assert_eq!(fleet.get("c").unwrap().id, "c", "the moved slot is re-indexed");
        assert_eq!(fleet.get("b").unwrap().id, "b");
        assert_eq!(fleet.os_family_count("windows"), 1);
        fleet.remove("missing");
        assert_eq!(fleet.servers().len(), 2);
    }
}
