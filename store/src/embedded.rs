//! The embedded backend: one process, durable where it matters.
//!
//! API clients, signing keys, server `open` flags (and drain deadlines), agent enrolment and DNS mappings live in
//! a redb file (`<dir>/switchboard.redb`, see [`durable`]) and survive
//! restarts. Sessions, server reports and agent ownership live in memory:
//! after a restart every agent reconnects and its hello carries the full
//! inventory, which rebuilds them (a server's stored `open` flag is applied
//! when it reports again). The fleet change feed lives in memory too (a new
//! generation after a restart tells readers to read it again).
//!
//! Two in-memory structures are also written through to the redb file, since
//! no agent could rebuild them, and are read back by [`EmbeddedBackend::open`]:
//! - the create-sessions queue: each entry, the record of its session (a
//!   queued session is on no host yet) and the last sequence handed out, so
//!   FIFO per class holds across a restart. Claims are not stored: they are
//!   leases of live workers, and a restarted process has none.
//! - the used single-use token ids with their expiry (expired ids are dropped
//!   on open and pruned as the map grows), so a restart opens no replay window.
//!
//! CreateSessions' idempotency records live in the file only (see [`durable`]): a claim is one redb
//! write transaction, which redb serialises, so it is atomic without the memory lock, and a completed
//! key's answer survives a restart for its whole TTL. Expired records are ignored on read and pruned a
//! few per claim.
//!
//! Queue writes hit the file while the memory lock is held, before memory
//! changes, so the file and memory agree and a failed write changes nothing.
//!
//! The in-memory state sits behind one `std::sync::Mutex`: every operation is
//! a short critical section with no `.await` inside, which is also what makes
//! `assign_session` (check limits, then assign) atomic.

mod durable;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use switchboard_common::time::now_ms;
use switchboard_proto::{
    DeadLetterRecord, DnsMappingRecord, DnsMappingSet, EventRecord, QueuedRequest, ServerRecord, SessionRecord,
    SessionState, SessionType, WebhookRecord,
};

use crate::events;
use crate::queue::{PLACEMENT_RATE_SAMPLES, PLACEMENT_RATE_WINDOW_MS};
use crate::{
    AgentClientRecord, AgentOwnership, ApiClientRecord, ApiRegistry, AssignOutcome, AssignRejection, AuthServerRecord,
    BackendError, BackendResult, CloseOutcome, CreateQueue, DnsMappings, Enrolment, EventPage, Events, Fence,
    Idempotency, IdempotencyClaim, QueueDepth, QueuePosition, QueuePush, Reachable, Secrets, ServerChanges, Servers,
    Sessions, SigningKeyRecord, SoftwareStatementRecord, StreamOwnership, Webhooks,
};
use durable::Durable;

#[cfg(test)]
mod tests;

use switchboard_proto::contract::substate::PENDING_PREPARATION;

/// The in-process backend of the all-in-one deployment.
pub struct EmbeddedBackend {
    durable: Durable,
    memory: Mutex<Memory>,
    /// Orders the file writes of used token ids like their memory changes:
    /// taken before the memory lock is released, held across the write (lock
    /// order: `memory`, then this).
    token_writes: Mutex<()>,
}

/// Everything that is rebuilt from agents after a restart, except `queue`
/// (with its sessions' records) and `used_tokens`, which are written through
/// to the file and restored from it.
#[derive(Default)]
struct Memory {
    sessions: BTreeMap<String, SessionRecord>,
    /// Session ids per server id (any state).
    by_server: HashMap<String, BTreeSet<String>>,
    /// Live (non-DELETED) sessions per server id, kept with `by_server` by `index`/`unindex`: what a server's
    /// counts and the per-user limit read, at the cost of a lookup whatever the sessions stored.
    counts: HashMap<String, ServerCounts>,
    /// Server reports; counts are filled in on read.
    servers: BTreeMap<String, ServerRecord>,
    owners: HashMap<String, AgentOwnership>,
    /// Last epoch handed out per server, kept after release so epochs only grow.
    last_epoch: HashMap<String, u64>,
    feed: Feed,
    queue: Queue,
    /// Single-use token ids already used, with their expiry (ms).
    used_tokens: HashMap<String, i64>,
    /// Size of `used_tokens` at which expired ids are pruned next.
    used_tokens_prune_at: usize,
    events: EventLog,
}

/// Live sessions on one server, by type and by owner.
#[derive(Debug, Default)]
struct ServerCounts {
    console: u32,
    virtual_sessions: u32,
    by_owner: HashMap<String, u32>,
}

impl ServerCounts {
    /// Adds (`delta` 1) or removes (`delta` -1) one live session.
    fn apply(&mut self, session: &SessionRecord, delta: i32) {
        let add = |count: &mut u32| *count = count.saturating_add_signed(delta);
        match session.r#type() {
            SessionType::Console => add(&mut self.console),
            SessionType::Virtual => add(&mut self.virtual_sessions),
            SessionType::Unspecified => {}
        }
        let owned = self.by_owner.entry(session.owner.clone()).or_default();
        add(owned);
        if *owned == 0 {
            self.by_owner.remove(&session.owner);
        }
    }

    fn is_empty(&self) -> bool {
        self.console == 0 && self.virtual_sessions == 0 && self.by_owner.is_empty()
    }
}

/// The fleet change feed: each server's latest feed revision.
struct Feed {
    generation: String,
    revision: u64,
    by_revision: BTreeMap<u64, String>,
    revision_of: HashMap<String, u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            generation: uuid::Uuid::new_v4().to_string(),
            revision: 0,
            by_revision: BTreeMap::new(),
            revision_of: HashMap::new(),
        }
    }
}

impl Feed {
    /// Gives `server_id` a new feed revision.
    fn touch(&mut self, server_id: &str) {
        if server_id.is_empty() {
            return;
        }
        self.revision += 1;
        if let Some(old) = self.revision_of.insert(server_id.to_owned(), self.revision) {
            self.by_revision.remove(&old);
        }
        self.by_revision.insert(self.revision, server_id.to_owned());
    }
}

/// The event stream (`crate::events`), in memory: a restart begins a new log, and a reader whose cursor
/// is from before it is told its events were dropped.
struct EventLog {
    entries: VecDeque<EventRecord>,
    /// The newest id handed out.
    last: (u64, u64),
    /// Ids up to this one were dropped for retention ((0, 0): none).
    dropped_through: (u64, u64),
    /// The first id this process could hand out: a cursor other than `0-0` below it is from before a
    /// restart.
    started: (u64, u64),
    retained: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        let started = (u64::try_from(now_ms()).unwrap_or_default(), 0);
        Self {
            entries: VecDeque::new(),
            last: (started.0, 0),
            dropped_through: (0, 0),
            started,
            retained: crate::events::EVENTS_RETAINED,
        }
    }
}

impl EventLog {
    /// Appends `event` with the next id; returns the id.
    fn append(&mut self, mut event: EventRecord) -> String {
        let now = u64::try_from(now_ms()).unwrap_or_default();
        self.last = if now > self.last.0 { (now, 0) } else { (self.last.0, self.last.1 + 1) };
        event.id = events::format_id(self.last);
        event.at_unix_ms = i64::try_from(self.last.0).unwrap_or(i64::MAX);
        let id = event.id.clone();
        self.entries.push_back(event);
        while self.entries.len() > self.retained {
            if let Some(dropped) = self.entries.pop_front() {
                self.dropped_through = events::parse_id(&dropped.id).unwrap_or(self.dropped_through);
            }
        }
        id
    }

    fn read(&self, after: (u64, u64), limit: usize) -> EventPage {
        let start = self.entries.partition_point(|event| events::parse_id(&event.id).is_ok_and(|id| id <= after));
        EventPage {
            events: self.entries.range(start..).take(limit).cloned().collect(),
            truncated: after < self.dropped_through || (after != (0, 0) && after < self.started),
            last_id: self.entries.back().map(|event| event.id.clone()).unwrap_or_default(),
        }
    }

    /// A `session.state` event when `new` is a new session or changed state, and a `session.placed`
    /// event when it gained a host.
    fn session_written(&mut self, old: Option<&SessionRecord>, new: &SessionRecord) {
        if old.is_none_or(|old| old.state != new.state) {
            self.append(EventRecord {
                kind: events::kind::SESSION_STATE.to_owned(),
                session_id: new.id.clone(),
                owner: new.owner.clone(),
                server_id: new.server_id.clone(),
                state: new.state,
                previous_state: old.map_or(0, |old| old.state),
                reason: new.state_reason.clone(),
                ..Default::default()
            });
        }
    }

    /// A `server.availability` event when the availability of `server_id` went from `old` to `new`
    /// (`None`: not known / removed).
    fn server_changed(&mut self, server_id: &str, old: Option<(bool, bool, bool)>, new: Option<(bool, bool, bool)>) {
        let view = |flags: Option<(bool, bool, bool)>| {
            flags.map(|(reachable, open, healthy)| events::server_availability(reachable, open, healthy))
        };
        let (before, after) = (view(old), view(new));
        if before == after {
            return;
        }
        let (availability, reason) = after.unwrap_or(("UNAVAILABLE", events::SERVER_REMOVED));
        self.append(EventRecord {
            kind: events::kind::SERVER_AVAILABILITY.to_owned(),
            server_id: server_id.to_owned(),
            availability: availability.to_owned(),
            reason: reason.to_owned(),
            ..Default::default()
        });
    }
}

/// What a server's availability event depends on.
fn availability_flags(server: &ServerRecord) -> (bool, bool, bool) {
    (server.reachable, server.open, server.dcv_healthy)
}

/// The create-sessions queue: entries by session, and per class by sequence.
#[derive(Default)]
struct Queue {
    sequence: u64,
    entries: HashMap<String, QueuedRequest>,
    classes: BTreeMap<String, BTreeMap<u64, String>>,
    /// Recent placement times per class, newest first (at most `PLACEMENT_RATE_SAMPLES`, none older than
    /// `PLACEMENT_RATE_WINDOW_MS`): only an estimate's input, so kept in memory, not in the file.
    placed: HashMap<String, VecDeque<i64>>,
}

impl Queue {
    fn is_claimed(entry: &QueuedRequest, now: i64) -> bool {
        !entry.claim_id.is_empty() && entry.claimed_until_unix_ms > now
    }

    fn claim(entry: &mut QueuedRequest, claim_id: &str, lease_ms: u64, now: i64) -> QueuedRequest {
        entry.claim_id = claim_id.to_owned();
        entry.claimed_until_unix_ms = now.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        entry.clone()
    }

    /// Takes the entry of `session_id` out of memory (the file is the caller's).
    fn remove(&mut self, session_id: &str) -> Option<QueuedRequest> {
        let entry = self.entries.remove(session_id)?;
        if let Some(members) = self.classes.get_mut(&entry.class_id) {
            members.remove(&entry.sequence);
            if members.is_empty() {
                self.classes.remove(&entry.class_id);
            }
        }
        Some(entry)
    }

    /// Counts a placement of `class_id` at `now`, dropping what fell out of the window (of every
    /// class, so classes that stopped placing leave no record behind).
    fn count_placement(&mut self, class_id: &str, now: i64) {
        let since = now.saturating_sub(PLACEMENT_RATE_WINDOW_MS);
        self.placed.retain(|_, times| {
            while times.back().is_some_and(|&time| time <= since) {
                times.pop_back();
            }
            !times.is_empty()
        });
        let times = self.placed.entry(class_id.to_owned()).or_default();
        times.push_front(now);
        times.truncate(PLACEMENT_RATE_SAMPLES);
    }

    /// Where `session_id` stands, or `None` when it is not queued.
    fn position(&self, session_id: &str, now: i64) -> Option<QueuePosition> {
        let entry = self.entries.get(session_id)?;
        let members = self.classes.get(&entry.class_id)?;
        let ahead = members.range(..entry.sequence).count();
        let since = now.saturating_sub(PLACEMENT_RATE_WINDOW_MS);
        let recent: Vec<i64> =
            self.placed.get(&entry.class_id).into_iter().flatten().copied().filter(|&time| time > since).collect();
        Some(QueuePosition {
            session_id: session_id.to_owned(),
            class_id: entry.class_id.clone(),
            position: ahead + 1,
            class_entries: members.len(),
            recent_placements: recent.len(),
            recent_span_ms: recent.iter().min().map_or(0, |&oldest| now.saturating_sub(oldest).max(0)),
        })
    }
}

/// Least size of the used-token map before expired ids are pruned.
const USED_TOKENS_PRUNE_MIN: usize = 1024;

impl EmbeddedBackend {
    /// Opens the backend with its durable file `<dir>/switchboard.redb`
    /// (created if missing), restoring the create-sessions queue and the used
    /// token ids stored there.
    pub fn open(dir: &Path) -> BackendResult<Self> {
        Self::restored(Durable::open(dir)?)
    }

    /// A backend that writes nothing to disk (tests).
    pub fn in_memory() -> BackendResult<Self> {
        Self::restored(Durable::in_memory()?)
    }

    /// Rebuilds the written-through part of memory from `durable`.
    fn restored(durable: Durable) -> BackendResult<Self> {
        let restored = durable.restore(now_ms())?;
        let mut memory = Memory::default();
        let queued: BTreeSet<&str> = restored.queue.iter().map(|e| e.session_id.as_str()).collect();
        // A record is stored only while its entry is; never restore one without it.
        for session in restored.sessions.into_iter().filter(|s| queued.contains(s.id.as_str())) {
            memory.index(&session);
            memory.sessions.insert(session.id.clone(), session);
        }
        let queue = &mut memory.queue;
        queue.sequence = restored.queue_sequence;
        for entry in restored.queue {
            queue.classes.entry(entry.class_id.clone()).or_default().insert(entry.sequence, entry.session_id.clone());
            queue.entries.insert(entry.session_id.clone(), entry);
        }
        memory.used_tokens = restored.used_tokens.into_iter().collect();
        memory.used_tokens_prune_at = memory.used_tokens.len() * 2;
        Ok(Self { durable, memory: Mutex::new(memory), token_writes: Mutex::default() })
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot leave a half-applied write:
        // every operation validates first and mutates last.
        self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EmbeddedBackend {
    /// Writes `session` through to the file when it is queued (memory lock
    /// held, before memory changes).
    fn write_queued_session(&self, memory: &Memory, session: &SessionRecord) -> BackendResult<()> {
        if memory.queue.entries.contains_key(&session.id) {
            self.durable.put_queued_session(session)?;
        }
        Ok(())
    }
}

fn is_live(session: &SessionRecord) -> bool {
    session.state() != SessionState::Deleted
}

impl Memory {
    /// Checks `fence` (if any) against the current ownership.
    fn check_fence(&self, fence: Option<&Fence>) -> BackendResult<()> {
        match fence {
            Some(fence) if !fence.admits(self.owners.get(fence.server_id()), now_ms()) => Err(fence.refused()),
            _ => Ok(()),
        }
    }

    /// `owner`'s sessions counted against `max_concurrent_sessions_per_user`
    /// on `server_id`: its non-DELETED sessions there (what both
    /// `check_assign` and `owner_session_counts` use). Walks the server's
    /// index entry only, never the whole store.
    fn owned_on(&self, server_id: &str, owner: &str) -> usize {
        let owned = self.counts.get(server_id).and_then(|counts| counts.by_owner.get(owner));
        owned.map_or(0, |count| *count as usize)
    }

    /// A server record with its counts of live sessions.
    fn server_view(&self, server: &ServerRecord) -> ServerRecord {
        let mut view = server.clone();
        let counts = self.counts.get(&server.id);
        view.console_session_count = counts.map_or(0, |c| c.console);
        view.virtual_session_count = counts.map_or(0, |c| c.virtual_sessions);
        view
    }

    /// Writes a known server's operator state, durable first (a failed write changes nothing), with a
    /// new revision and a feed change; returns its view. The caller holds the lock across the write.
    fn set_server_state(
        &mut self,
        durable: &Durable,
        server_id: &str,
        open: bool,
        drain_deadline_unix_ms: i64,
    ) -> BackendResult<ServerRecord> {
        durable.set_server_state(server_id, Some((open, drain_deadline_unix_ms)))?;
        let server = self.servers.get_mut(server_id).expect("the caller checked the server is known");
        let before = availability_flags(server);
        server.open = open;
        server.drain_deadline_unix_ms = drain_deadline_unix_ms;
        server.revision += 1;
        let server = server.clone();
        self.feed.touch(server_id);
        self.events.server_changed(server_id, Some(before), Some(availability_flags(&server)));
        Ok(self.server_view(&server))
    }

    fn index(&mut self, session: &SessionRecord) {
        self.feed.touch(&session.server_id);
        if !session.server_id.is_empty() {
            self.by_server.entry(session.server_id.clone()).or_default().insert(session.id.clone());
            if is_live(session) {
                self.counts.entry(session.server_id.clone()).or_default().apply(session, 1);
            }
        }
    }

    fn unindex(&mut self, session: &SessionRecord) {
        self.feed.touch(&session.server_id);
        if let Some(ids) = self.by_server.get_mut(&session.server_id) {
            ids.remove(&session.id);
            if ids.is_empty() {
                self.by_server.remove(&session.server_id);
            }
        }
        if is_live(session)
            && let Some(counts) = self.counts.get_mut(&session.server_id)
        {
            counts.apply(session, -1);
            if counts.is_empty() {
                self.counts.remove(&session.server_id);
            }
        }
    }

    /// `queue.position` events for the requests of `removed`'s class that moved up into the first
    /// [`events::QUEUE_POSITION_EVENTS`] places.
    fn queue_moved(&mut self, removed: &QueuedRequest) {
        let Some(members) = self.queue.classes.get(&removed.class_id) else { return };
        let moved: Vec<(u32, &QueuedRequest)> = members
            .iter()
            .take(events::QUEUE_POSITION_EVENTS)
            .enumerate()
            .filter(|(_, (sequence, _))| **sequence > removed.sequence)
            .filter_map(|(index, (_, id))| Some((u32::try_from(index + 1).ok()?, self.queue.entries.get(id)?)))
            .collect();
        let moved: Vec<EventRecord> = moved
            .into_iter()
            .map(|(position, entry)| EventRecord {
                kind: events::kind::QUEUE_POSITION.to_owned(),
                session_id: entry.session_id.clone(),
                owner: entry.owner.clone(),
                detail: entry.class_id.clone(),
                queue_position: position,
                ..Default::default()
            })
            .collect();
        for event in moved {
            self.events.append(event);
        }
    }

    /// Checks every placement rule for `session` on `server`.
    fn check_assign(&self, session: &SessionRecord, server_id: &str) -> Option<AssignRejection> {
        if session.state() != SessionState::Creating || !session.server_id.is_empty() {
            return Some(AssignRejection::SessionNotPlaceable);
        }
        let Some(server) = self.servers.get(server_id) else {
            return Some(AssignRejection::ServerNotFound);
        };
        if !server.open {
            return Some(AssignRejection::ServerClosed);
        }
        if !server.reachable {
            return Some(AssignRejection::ServerUnreachable);
        }
        if !server.dcv_healthy {
            return Some(AssignRejection::DcvUnhealthy);
        }
        let counts = self.counts.get(server_id);
        match session.r#type() {
            SessionType::Console if counts.is_some_and(|c| c.console > 0) => {
                return Some(AssignRejection::ConsoleTaken);
            }
            SessionType::Virtual
                if server.max_virtual_sessions > 0
                    && counts.map_or(0, |c| c.virtual_sessions) >= server.max_virtual_sessions =>
            {
                return Some(AssignRejection::VirtualLimit);
            }
            _ => {}
        }
        if server.max_concurrent_sessions_per_user > 0 {
            let owned = self.owned_on(server_id, &session.owner);
            if owned >= server.max_concurrent_sessions_per_user as usize {
                return Some(AssignRejection::UserLimit);
            }
        }
        None
    }
}

#[async_trait]
impl Sessions for EmbeddedBackend {
    async fn insert_session(&self, mut session: SessionRecord, fence: Option<&Fence>) -> BackendResult<SessionRecord> {
        let mut memory = self.memory();
        memory.check_fence(fence)?;
        if memory.sessions.contains_key(&session.id) {
            return Err(BackendError::AlreadyExists(format!("session {}", session.id)));
        }
        session.revision = 1;
        self.write_queued_session(&memory, &session)?;
        memory.index(&session);
        memory.events.session_written(None, &session);
        memory.sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    async fn insert_sessions(&self, mut sessions: Vec<SessionRecord>) -> BackendResult<Vec<SessionRecord>> {
        if let Some(error) = crate::sessions::check_insert_batch(&sessions) {
            return Err(error);
        }
        let mut memory = self.memory();
        if let Some(taken) = sessions.iter().find(|session| memory.sessions.contains_key(&session.id)) {
            return Err(BackendError::AlreadyExists(format!("session {}", taken.id)));
        }
        for session in &mut sessions {
            session.revision = 1;
            self.write_queued_session(&memory, session)?;
            memory.index(session);
            memory.events.session_written(None, session);
            memory.sessions.insert(session.id.clone(), session.clone());
        }
        Ok(sessions)
    }

    async fn get_sessions(&self, ids: &[String]) -> BackendResult<Vec<SessionRecord>> {
        let memory = self.memory();
        Ok(ids.iter().filter_map(|id| memory.sessions.get(id).cloned()).collect())
    }

    async fn list_sessions(&self, after_id: &str, limit: usize) -> BackendResult<Vec<SessionRecord>> {
        let memory = self.memory();
        let start = if after_id.is_empty() { Bound::Unbounded } else { Bound::Excluded(after_id.to_owned()) };
        Ok(memory.sessions.range((start, Bound::Unbounded)).take(limit).map(|(_, s)| s.clone()).collect())
    }

    async fn sessions_on_server(&self, server_id: &str) -> BackendResult<Vec<SessionRecord>> {
        let memory = self.memory();
        let ids = memory.by_server.get(server_id).into_iter().flatten();
        Ok(ids.filter_map(|id| memory.sessions.get(id).cloned()).collect())
    }

    async fn update_session(
        &self,
        mut session: SessionRecord,
        expected_revision: u64,
        fence: Option<&Fence>,
    ) -> BackendResult<SessionRecord> {
        let mut memory = self.memory();
        memory.check_fence(fence)?;
        let Some(stored) = memory.sessions.get(&session.id) else {
            return Err(BackendError::NotFound(format!("session {}", session.id)));
        };
        if stored.revision != expected_revision {
            return Err(BackendError::Conflict(format!("session {}", session.id)));
        }
        let stored = stored.clone();
        session.revision = stored.revision + 1;
        self.write_queued_session(&memory, &session)?;
        memory.unindex(&stored);
        memory.index(&session);
        memory.events.session_written(Some(&stored), &session);
        memory.sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    async fn remove_session(&self, id: &str) -> BackendResult<()> {
        let mut memory = self.memory();
        if memory.sessions.contains_key(id) && memory.queue.entries.contains_key(id) {
            self.durable.remove_queued_sessions(&[id])?;
        }
        if let Some(stored) = memory.sessions.remove(id) {
            memory.unindex(&stored);
        }
        Ok(())
    }

    async fn remove_deleted_sessions(&self, ended_before_ms: i64, limit: usize) -> BackendResult<usize> {
        let mut memory = self.memory();
        let expired: Vec<SessionRecord> = memory
            .sessions
            .values()
            .filter(|s| s.state() == SessionState::Deleted && s.ended_unix_ms < ended_before_ms)
            .take(limit)
            .cloned()
            .collect();
        let queued: Vec<&str> =
            expired.iter().map(|s| s.id.as_str()).filter(|id| memory.queue.entries.contains_key(*id)).collect();
        self.durable.remove_queued_sessions(&queued)?;
        for session in &expired {
            memory.sessions.remove(&session.id);
            memory.unindex(session);
        }
        Ok(expired.len())
    }

    async fn assign_session(&self, session_id: &str, server_id: &str) -> BackendResult<AssignOutcome> {
        let mut memory = self.memory();
        let Some(session) = memory.sessions.get(session_id) else {
            return Ok(AssignOutcome::Rejected(AssignRejection::SessionNotPlaceable));
        };
        if let Some(rejection) = memory.check_assign(session, server_id) {
            return Ok(AssignOutcome::Rejected(rejection));
        }
        let mut session = session.clone();
        session.server_id = server_id.to_owned();
        session.substate = PENDING_PREPARATION.to_owned();
        session.revision += 1;
        self.write_queued_session(&memory, &session)?;
        memory.index(&session);
        memory.events.append(EventRecord {
            kind: events::kind::SESSION_PLACED.to_owned(),
            session_id: session.id.clone(),
            owner: session.owner.clone(),
            server_id: session.server_id.clone(),
            state: session.state,
            previous_state: session.state,
            ..Default::default()
        });
        memory.sessions.insert(session.id.clone(), session.clone());
        Ok(AssignOutcome::Assigned(session))
    }

    async fn owner_session_counts(&self, owner: &str, server_ids: &[String]) -> BackendResult<Vec<u32>> {
        if let Some(error) = crate::sessions::check_owner_counts_ids(server_ids) {
            return Err(error);
        }
        let memory = self.memory();
        Ok(server_ids.iter().map(|id| u32::try_from(memory.owned_on(id, owner)).unwrap_or(u32::MAX)).collect())
    }
}

#[async_trait]
impl Servers for EmbeddedBackend {
    async fn upsert_server_report(
        &self,
        mut report: ServerRecord,
        default_open: bool,
        fence: Option<&Fence>,
    ) -> BackendResult<ServerRecord> {
        // Read the durable state before locking: only needed for servers not in memory.
        let known = self.memory().servers.contains_key(&report.id);
        let stored = if known { None } else { self.durable.server_state(&report.id)? };
        let mut memory = self.memory();
        memory.check_fence(fence)?;
        let before = memory.servers.get(&report.id).map(availability_flags);
        match memory.servers.get(&report.id) {
            Some(existing) => {
                report.open = existing.open;
                report.drain_deadline_unix_ms = existing.drain_deadline_unix_ms;
                report.revision = existing.revision + 1;
            }
            None => {
                (report.open, report.drain_deadline_unix_ms) = stored.unwrap_or((default_open, 0));
                report.revision = 1;
            }
        }
        memory.feed.touch(&report.id);
        memory.events.server_changed(&report.id, before, Some(availability_flags(&report)));
        memory.servers.insert(report.id.clone(), report.clone());
        Ok(memory.server_view(&report))
    }

    async fn get_servers(&self, ids: &[String]) -> BackendResult<Vec<ServerRecord>> {
        let memory = self.memory();
        Ok(ids.iter().filter_map(|id| memory.servers.get(id)).map(|s| memory.server_view(s)).collect())
    }

    async fn list_servers(&self, after_id: &str, limit: usize) -> BackendResult<Vec<ServerRecord>> {
        let memory = self.memory();
        let start = if after_id.is_empty() { Bound::Unbounded } else { Bound::Excluded(after_id.to_owned()) };
        Ok(memory.servers.range((start, Bound::Unbounded)).take(limit).map(|(_, s)| memory.server_view(s)).collect())
    }

    async fn set_server_open(&self, server_id: &str, open: bool) -> BackendResult<ServerRecord> {
        // The lock is held across the (synchronous, rare) redb write so the
        // durable state and the in-memory one cannot disagree.
        let mut memory = self.memory();
        if !memory.servers.contains_key(server_id) {
            return Err(BackendError::NotFound(format!("server {server_id}")));
        }
        Ok(memory.set_server_state(&self.durable, server_id, open, 0)?)
    }

    async fn close_server(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<CloseOutcome> {
        // One hold of the lock for the check and the write: `assign_session` takes it too.
        let mut memory = self.memory();
        let Some(server) = memory.servers.get(server_id) else {
            return Err(BackendError::NotFound(format!("server {server_id}")));
        };
        let counts = memory.counts.get(server_id);
        let has_sessions = counts.is_some_and(|c| c.console + c.virtual_sessions > 0);
        if has_sessions && drain_deadline_unix_ms <= 0 {
            return Ok(CloseOutcome::HasSessions);
        }
        if !server.open && server.drain_deadline_unix_ms == 0 {
            let server = server.clone();
            return Ok(CloseOutcome::Closed(memory.server_view(&server)));
        }
        if !has_sessions {
            return Ok(CloseOutcome::Closed(memory.set_server_state(&self.durable, server_id, false, 0)?));
        }
        let server = memory.set_server_state(&self.durable, server_id, false, drain_deadline_unix_ms)?;
        Ok(CloseOutcome::Draining(server))
    }

    async fn finish_drain(&self, server_id: &str, drain_deadline_unix_ms: i64) -> BackendResult<bool> {
        let mut memory = self.memory();
        let draining = memory.servers.get(server_id).is_some_and(|server| {
            drain_deadline_unix_ms > 0 && server.drain_deadline_unix_ms == drain_deadline_unix_ms
        });
        if draining {
            memory.set_server_state(&self.durable, server_id, false, 0)?;
        }
        Ok(draining)
    }

    async fn remove_server(&self, server_id: &str) -> BackendResult<()> {
        let mut memory = self.memory();
        self.durable.set_server_state(server_id, None)?;
        if let Some(removed) = memory.servers.remove(server_id) {
            memory.feed.touch(server_id);
            memory.events.server_changed(server_id, Some(availability_flags(&removed)), None);
        }
        Ok(())
    }

    async fn forget_server(&self, server_id: &str, expected_revision: u64) -> BackendResult<()> {
        let mut memory = self.memory();
        let Some(server) = memory.servers.get(server_id) else { return Ok(()) };
        if server.revision != expected_revision {
            return Err(BackendError::Conflict(format!("server {server_id}")));
        }
        memory.check_fence(Some(&Fence::unowned(server_id)))?;
        if let Some(removed) = memory.servers.remove(server_id) {
            memory.events.server_changed(server_id, Some(availability_flags(&removed)), None);
        }
        memory.feed.touch(server_id);
        Ok(())
    }

    async fn server_changes(&self, after_revision: u64, limit: usize) -> BackendResult<ServerChanges> {
        let memory = self.memory();
        let feed = &memory.feed;
        let mut changes = ServerChanges { generation: feed.generation.clone(), ..Default::default() };
        let mut pending = feed.by_revision.range(after_revision.saturating_add(1)..);
        for (revision, server_id) in pending.by_ref().take(limit.max(1)) {
            match memory.servers.get(server_id) {
                Some(server) => changes.servers.push(memory.server_view(server)),
                None => changes.removed.push(server_id.clone()),
            }
            changes.revision = *revision;
        }
        changes.more = pending.next().is_some();
        if changes.servers.is_empty() && changes.removed.is_empty() {
            changes.revision = feed.revision;
        }
        Ok(changes)
    }
}

#[async_trait]
impl CreateQueue for EmbeddedBackend {
    async fn queue_push(
        &self,
        mut entry: QueuedRequest,
        max_wait_ms: u64,
        max_size: usize,
    ) -> BackendResult<QueuePush> {
        let mut memory = self.memory();
        if memory.queue.entries.contains_key(&entry.session_id) {
            return Ok(QueuePush::AlreadyQueued);
        }
        if memory.queue.entries.len() >= max_size {
            return Ok(QueuePush::Full);
        }
        let now = now_ms();
        entry.sequence = memory.queue.sequence + 1;
        entry.enqueued_unix_ms = now;
        entry.deadline_unix_ms = now.saturating_add(i64::try_from(max_wait_ms).unwrap_or(i64::MAX));
        entry.claim_id.clear();
        entry.claimed_until_unix_ms = 0;
        self.durable.queue_push(&entry, memory.sessions.get(&entry.session_id))?;
        let queue = &mut memory.queue;
        queue.sequence = entry.sequence;
        let class = queue.classes.entry(entry.class_id.clone()).or_default();
        class.insert(entry.sequence, entry.session_id.clone());
        let position = u32::try_from(class.len()).unwrap_or(u32::MAX);
        queue.entries.insert(entry.session_id.clone(), entry.clone());
        memory.events.append(EventRecord {
            kind: events::kind::QUEUE_ENQUEUED.to_owned(),
            session_id: entry.session_id.clone(),
            owner: entry.owner.clone(),
            detail: entry.class_id.clone(),
            queue_position: position,
            ..Default::default()
        });
        Ok(QueuePush::Queued(entry))
    }

    async fn queue_heads(&self, per_class: usize) -> BackendResult<Vec<QueuedRequest>> {
        let memory = self.memory();
        let queue = &memory.queue;
        let now = now_ms();
        let mut heads = Vec::new();
        for members in queue.classes.values() {
            let unclaimed = members
                .values()
                .filter_map(|id| queue.entries.get(id))
                .filter(|entry| !Queue::is_claimed(entry, now))
                .take(per_class);
            heads.extend(unclaimed.cloned());
        }
        Ok(heads)
    }

    async fn queue_claim(
        &self,
        session_id: &str,
        claim_id: &str,
        lease_ms: u64,
    ) -> BackendResult<Option<QueuedRequest>> {
        let mut memory = self.memory();
        let now = now_ms();
        Ok(match memory.queue.entries.get_mut(session_id) {
            Some(entry) if !Queue::is_claimed(entry, now) => Some(Queue::claim(entry, claim_id, lease_ms, now)),
            _ => None,
        })
    }

    async fn queue_claim_expired(
        &self,
        claim_id: &str,
        lease_ms: u64,
        limit: usize,
    ) -> BackendResult<Vec<QueuedRequest>> {
        let mut memory = self.memory();
        let now = now_ms();
        let mut expired: Vec<(i64, u64, String)> = memory
            .queue
            .entries
            .values()
            .filter(|entry| entry.deadline_unix_ms <= now && !Queue::is_claimed(entry, now))
            .map(|entry| (entry.deadline_unix_ms, entry.sequence, entry.session_id.clone()))
            .collect();
        expired.sort();
        let mut claimed = Vec::new();
        for (_, _, id) in expired.into_iter().take(limit) {
            if let Some(entry) = memory.queue.entries.get_mut(&id) {
                claimed.push(Queue::claim(entry, claim_id, lease_ms, now));
            }
        }
        Ok(claimed)
    }

    async fn queue_release(&self, session_id: &str, claim_id: &str) -> BackendResult<bool> {
        let mut memory = self.memory();
        match memory.queue.entries.get_mut(session_id) {
            Some(entry) if !claim_id.is_empty() && entry.claim_id == claim_id => {
                entry.claim_id.clear();
                entry.claimed_until_unix_ms = 0;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn queue_remove(&self, session_id: &str) -> BackendResult<bool> {
        let mut memory = self.memory();
        if !memory.queue.entries.contains_key(session_id) {
            return Ok(false);
        }
        self.durable.queue_remove(session_id)?;
        let Some(entry) = memory.queue.remove(session_id) else { return Ok(false) };
        memory.queue_moved(&entry);
        Ok(true)
    }

    async fn queue_remove_placed(&self, session_id: &str) -> BackendResult<bool> {
        let mut memory = self.memory();
        if !memory.queue.entries.contains_key(session_id) {
            return Ok(false);
        }
        self.durable.queue_remove(session_id)?;
        let Some(entry) = memory.queue.remove(session_id) else { return Ok(false) };
        memory.queue.count_placement(&entry.class_id, now_ms());
        memory.queue_moved(&entry);
        Ok(true)
    }

    async fn queue_positions(&self, session_ids: &[String]) -> BackendResult<Vec<QueuePosition>> {
        let memory = self.memory();
        let now = now_ms();
        Ok(session_ids.iter().filter_map(|id| memory.queue.position(id, now)).collect())
    }

    async fn queue_len(&self) -> BackendResult<usize> {
        Ok(self.memory().queue.entries.len())
    }

    async fn queue_depths(&self) -> BackendResult<Vec<QueueDepth>> {
        let memory = self.memory();
        let queue = &memory.queue;
        Ok(queue
            .classes
            .iter()
            .filter_map(|(class_id, by_sequence)| {
                let oldest = queue.entries.get(by_sequence.values().next()?)?;
                Some(QueueDepth {
                    class_id: class_id.clone(),
                    entries: by_sequence.len(),
                    oldest_enqueued_unix_ms: oldest.enqueued_unix_ms,
                })
            })
            .collect())
    }
}

#[async_trait]
impl StreamOwnership for EmbeddedBackend {
    async fn claim_agent(
        &self,
        server_id: &str,
        owner_id: &str,
        owner_address: &str,
        lease_ms: i64,
    ) -> BackendResult<AgentOwnership> {
        let mut memory = self.memory();
        let now = now_ms();
        // Seeded from the clock so epochs keep growing across restarts too.
        let last = memory.last_epoch.get(server_id).copied().unwrap_or(0);
        let epoch = (last + 1).max(u64::try_from(now).unwrap_or(0));
        memory.last_epoch.insert(server_id.to_owned(), epoch);
        let ownership = AgentOwnership {
            owner_id: owner_id.to_owned(),
            owner_address: owner_address.to_owned(),
            epoch,
            lease_until_ms: now + lease_ms,
        };
        memory.owners.insert(server_id.to_owned(), ownership.clone());
        Ok(ownership)
    }

    async fn renew_agent(&self, server_id: &str, epoch: u64, lease_ms: i64) -> BackendResult<AgentOwnership> {
        let mut memory = self.memory();
        match memory.owners.get_mut(server_id) {
            Some(ownership) if ownership.epoch == epoch => {
                ownership.lease_until_ms = now_ms() + lease_ms;
                Ok(ownership.clone())
            }
            _ => Err(BackendError::Conflict(format!("agent {server_id} epoch {epoch}"))),
        }
    }

    async fn agent_owner(&self, server_id: &str) -> BackendResult<Option<AgentOwnership>> {
        let memory = self.memory();
        Ok(memory.owners.get(server_id).filter(|o| o.lease_until_ms > now_ms()).cloned())
    }

    async fn release_agent(&self, server_id: &str, epoch: u64) -> BackendResult<()> {
        let mut memory = self.memory();
        if memory.owners.get(server_id).is_some_and(|o| o.epoch == epoch) {
            memory.owners.remove(server_id);
        }
        Ok(())
    }
}

#[async_trait]
impl ApiRegistry for EmbeddedBackend {
    async fn insert_api_client(&self, client: ApiClientRecord) -> BackendResult<()> {
        self.durable.insert_api_client(&client)
    }

    async fn get_api_client(&self, client_id: &str) -> BackendResult<Option<ApiClientRecord>> {
        self.durable.get_api_client(client_id)
    }

    async fn list_api_clients(&self) -> BackendResult<Vec<ApiClientRecord>> {
        self.durable.list_api_clients()
    }

    async fn remove_api_client(&self, client_id: &str) -> BackendResult<bool> {
        self.durable.remove_api_client(client_id)
    }

    async fn put_signing_key(&self, key: SigningKeyRecord) -> BackendResult<()> {
        self.durable.put_signing_key(&key)
    }

    async fn list_signing_keys(&self) -> BackendResult<Vec<SigningKeyRecord>> {
        self.durable.list_signing_keys()
    }

    async fn remove_signing_key(&self, kid: &str) -> BackendResult<()> {
        self.durable.remove_signing_key(kid)
    }

    async fn put_auth_server(&self, server: AuthServerRecord) -> BackendResult<()> {
        self.durable.put_auth_server(&server)
    }

    async fn list_auth_servers(&self) -> BackendResult<Vec<AuthServerRecord>> {
        self.durable.list_auth_servers()
    }

    async fn remove_auth_server(&self, url: &str) -> BackendResult<bool> {
        self.durable.remove_auth_server(url)
    }
}

#[async_trait]
impl Enrolment for EmbeddedBackend {
    async fn insert_software_statement(&self, statement: SoftwareStatementRecord) -> BackendResult<()> {
        self.durable.insert_software_statement(&statement)
    }

    async fn get_software_statement(&self, id: &str) -> BackendResult<Option<SoftwareStatementRecord>> {
        self.durable.get_software_statement(id)
    }

    async fn list_software_statements(&self) -> BackendResult<Vec<SoftwareStatementRecord>> {
        self.durable.list_software_statements()
    }

    async fn deactivate_software_statement(&self, id: &str) -> BackendResult<bool> {
        self.durable.deactivate_software_statement(id)
    }

    async fn register_agent_client(&self, client: AgentClientRecord) -> BackendResult<()> {
        self.durable.register_agent_client(&client)
    }

    async fn get_agent_client(&self, client_id: &str) -> BackendResult<Option<AgentClientRecord>> {
        self.durable.get_agent_client(client_id)
    }

    async fn list_agent_clients(&self) -> BackendResult<Vec<AgentClientRecord>> {
        self.durable.list_agent_clients()
    }

    async fn remove_agent_client(&self, client_id: &str) -> BackendResult<bool> {
        self.durable.remove_agent_client(client_id)
    }

    async fn bind_agent_server(&self, client_id: &str, server_id: &str) -> BackendResult<()> {
        self.durable.bind_agent_server(client_id, server_id)
    }
}

#[async_trait]
impl DnsMappings for EmbeddedBackend {
    async fn replace_dns_mappings(&self, mappings: Vec<DnsMappingRecord>) -> BackendResult<()> {
        self.durable.replace_dns_mappings(&DnsMappingSet { mappings })
    }

    async fn list_dns_mappings(&self) -> BackendResult<Vec<DnsMappingRecord>> {
        Ok(self.durable.dns_mappings()?.mappings)
    }
}

#[async_trait]
impl Reachable for EmbeddedBackend {
    async fn ping(&self) -> BackendResult<()> {
        self.durable.ping()
    }
}

#[async_trait]
impl Secrets for EmbeddedBackend {
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> BackendResult<Vec<u8>> {
        self.durable.shared_secret(name, &candidate)
    }

    async fn use_token_once(&self, token_id: &str, expires_at_ms: i64) -> BackendResult<bool> {
        let now = now_ms();
        let mut expired = Vec::new();
        let written = {
            let mut memory = self.memory();
            if memory.used_tokens.get(token_id).is_some_and(|expires| *expires > now) {
                return Ok(false);
            }
            if memory.used_tokens.len() >= memory.used_tokens_prune_at.max(USED_TOKENS_PRUNE_MIN) {
                // Pruned from memory here and from the file by the write below.
                memory.used_tokens.retain(|id, expires| {
                    let keep = *expires > now;
                    if !keep {
                        expired.push(id.clone());
                    }
                    keep
                });
                memory.used_tokens_prune_at = memory.used_tokens.len() * 2;
            }
            // Taken in memory first: concurrent uses see it as used while the
            // file is written outside the memory lock (an fsync per token).
            memory.used_tokens.insert(token_id.to_owned(), expires_at_ms);
            let _order = self.token_writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            drop(memory);
            self.durable.use_token(token_id, expires_at_ms, &expired)
        };
        if let Err(error) = written {
            // Not recorded, so not accepted: give the id back so a retry can use it.
            let mut memory = self.memory();
            if memory.used_tokens.get(token_id) == Some(&expires_at_ms) {
                memory.used_tokens.remove(token_id);
            }
            return Err(error);
        }
        Ok(true)
    }
}

#[async_trait]
impl Idempotency for EmbeddedBackend {
    async fn claim_idempotency_key(
        &self,
        scope_key: &str,
        body_sha256: &[u8],
        claim_ttl: std::time::Duration,
    ) -> BackendResult<IdempotencyClaim> {
        let ttl_ms = crate::idempotency::ttl_ms(claim_ttl);
        self.durable.claim_idempotency_key(scope_key, body_sha256, ttl_ms, now_ms())
    }

    async fn complete_idempotency_key(
        &self,
        scope_key: &str,
        answer: Vec<u8>,
        ttl: std::time::Duration,
    ) -> BackendResult<bool> {
        self.durable.complete_idempotency_key(scope_key, &answer, crate::idempotency::ttl_ms(ttl), now_ms())
    }

    async fn release_idempotency_key(&self, scope_key: &str) -> BackendResult<()> {
        self.durable.release_idempotency_key(scope_key)
    }
}

#[async_trait]
impl Events for EmbeddedBackend {
    async fn append_event(&self, event: EventRecord) -> BackendResult<String> {
        Ok(self.memory().events.append(event))
    }

    async fn read_events(&self, after: &str, limit: usize) -> BackendResult<EventPage> {
        let after = events::parse_id(after)?;
        Ok(self.memory().events.read(after, limit.clamp(1, events::READ_EVENTS_MAX)))
    }
}

impl EmbeddedBackend {
    /// Keeps only the newest `retained` events (tests of retention; the default is
    /// [`events::EVENTS_RETAINED`]).
    pub fn with_events_retained(self, retained: usize) -> Self {
        self.memory().events.retained = retained.max(1);
        self
    }
}

#[async_trait]
impl Webhooks for EmbeddedBackend {
    async fn insert_webhook(&self, webhook: WebhookRecord) -> BackendResult<()> {
        self.durable.put_webhook(&webhook, false).map(|_| ())
    }

    async fn list_webhooks(&self) -> BackendResult<Vec<WebhookRecord>> {
        self.durable.list_webhooks()
    }

    async fn update_webhook(&self, webhook: WebhookRecord) -> BackendResult<bool> {
        self.durable.put_webhook(&webhook, true)
    }

    async fn remove_webhook(&self, id: &str) -> BackendResult<bool> {
        self.durable.remove_webhook(id)
    }

    async fn add_dead_letter(&self, letter: DeadLetterRecord) -> BackendResult<()> {
        self.durable.add_dead_letter(&letter, crate::webhooks::DEAD_LETTERS_KEPT)
    }

    async fn dead_letters(&self, webhook_id: &str) -> BackendResult<Vec<DeadLetterRecord>> {
        self.durable.dead_letters(webhook_id)
    }
}
