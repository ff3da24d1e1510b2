//! The create-sessions queue worker (one per placement replica).
//!
//! A request with `EnqueueRequest: true` that nothing fits is queued by its
//! driver: an entry in session-store's backend (durable there, shared by all
//! replicas), bounded by `create_sessions_queue_max_size`, due after `queue_max_time`; the
//! session stays CREATING / SESSION_PLACING with `queued: <why>`.
//!
//! Entries are grouped by **requirement class** (session kind — type, and
//! whether a console session has an `AutorunFile` — plus canonical
//! requirements, [`crate::driver::class_id`]): FIFO holds within a class, and
//! classes are served independently, so a head that cannot be placed never
//! blocks another class (no head-of-line blocking between classes).
//!
//! **Fair turns with aging.** Classes that compete for the same hosts are
//! served in turns (`queue/turns.rs`): each turn places one entry of every
//! class still going, the class whose head has waited longest first (by
//! sequence, which grows with time), until every class is blocked or out of
//! entries. So a class with many entries cannot take all the capacity that
//! frees up: another class gets the next slot of the same turn, and once its
//! head is older than the long class's, the first slot of every turn.
//!
//! **Waking without rescanning.** The worker keeps the first few entries of
//! each class (`QueueHeads`, refreshed every `queue_poll_interval` and when
//! this replica queues something). A class is retried only when it is new or
//! when the fleet view reports a changed server (a host opened, an agent
//! joined, a session ended, telemetry changed) that the class's requirements
//! and session kind would fit; the work per event is one check per class per
//! changed server, never per queued request. A queue entry carries the type
//! but not the `AutorunFile`: a class learns whether it is a console-autorun
//! class from the first of its sessions the worker reads, and until then
//! wakes as a plain console class would (more often, never less). Each entry
//! is placed by its own session's spec.
//!
//! **Claims.** Before working on an entry the worker claims it (an atomic
//! claim with a lease in the backend), so replicas never work on the same
//! entry; a replica that dies loses its claims when their leases lapse. A
//! placed entry is dequeued and its creation continues in a background
//! [`Driver`]; a blocked one is released and keeps its place.
//!
//! **Timeouts.** Every poll claims the entries past their deadline and fails
//! their sessions (DELETED with a StateReason that gives the wait and the
//! current explanation). The failure is a compare-and-set from CREATING, so a
//! request times out exactly once however many replicas race.
//!
//! **Cancellation.** DeleteSessions on a queued session makes it DELETED and
//! removes its entry (session-store's deletion path); an entry whose session
//! is no longer waiting is dropped when next seen.

use std::{collections::HashMap, sync::Arc, time::Duration};

use switchboard_common::Shutdown;
use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::{
    ClaimQueuedRequest, DequeueSessionRequest, GetSessionsRequest, QueueHeadsRequest, QueuedRequest,
    ReleaseQueuedRequest, SessionState, SessionType, TakeOverUnplacedRequest, session_store_client::SessionStoreClient,
};
use tokio::sync::Notify;

mod turns;

use turns::{Step, Turns};

use crate::{
    Error, PlacementConfig, Placements, Result,
    driver::Driver,
    fleet::FleetView,
    place::{self, Assignment, PlacementRequest, SessionKind, Verdict},
    requirements::Requirements,
};

/// Entries per class the worker keeps in view.
const HEADS_PER_CLASS: u32 = 16;
/// Timed-out entries claimed per poll.
const EXPIRED_PER_POLL: u32 = 100;
/// Most sessions left unplaced by other replicas taken over per poll.
const TAKEOVER_PER_POLL: u32 = 200;

/// What is known of one requirement class.
struct Class {
    session_type: SessionType,
    /// Whether its console sessions have an `AutorunFile`: learnt from the
    /// first session read (`None` before; wakes as `false` would).
    console_autorun: Option<bool>,
    requirements: Requirements,
    heads: Vec<QueuedRequest>,
    /// Worth trying now: new heads, or a fitting server changed.
    dirty: bool,
}

impl Class {
    /// The kind its wake-up is judged by.
    fn kind(&self) -> SessionKind {
        SessionKind { session_type: self.session_type, console_autorun: self.console_autorun.unwrap_or(false) }
    }
}

/// The classes marked worth trying, their marks cleared.
fn take_marked(classes: &mut HashMap<String, Class>) -> Vec<String> {
    let mut marked = Vec::new();
    for (id, class) in classes.iter_mut().filter(|(_, class)| class.dirty) {
        class.dirty = false;
        marked.push(id.clone());
    }
    marked
}

/// Outcome of working on one entry.
enum Served {
    /// Assigned to a host; creation continues in the background.
    Placed,
    /// Its session is not waiting any more: drop the entry.
    Gone,
    /// Nothing fits it now.
    Blocked,
}

/// The queue worker of one placement replica.
pub struct QueueWorker {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<GrpcChannel>,
    fleet: Arc<FleetView>,
    wake: Arc<Notify>,
    placements: Placements,
}

impl QueueWorker {
    /// A worker sharing the service's store client, fleet view and wake-up.
    pub(crate) fn new(
        config: Arc<PlacementConfig>,
        store: SessionStoreClient<GrpcChannel>,
        fleet: Arc<FleetView>,
        wake: Arc<Notify>,
        placements: Placements,
    ) -> Self {
        Self { config, store, fleet, wake, placements }
    }

    fn lease_ms(&self) -> u64 {
        // Long enough for a few store round trips; a dead replica's claims
        // lapse quickly.
        u64::try_from((self.config.create_timeout() / 2).as_millis()).unwrap_or(30_000).clamp(1_000, 30_000)
    }

    fn driver(&self) -> Driver {
        Driver::new(self.config.clone(), self.store.clone(), self.fleet.clone(), self.wake.clone())
    }

    /// Serves the queue until `shutdown`; and takes over the sessions other replicas left unplaced
    /// (`take_over`).
    pub async fn run(self, shutdown: Shutdown) {
        let mut classes: HashMap<String, Class> = HashMap::new();
        let mut poll = tokio::time::interval(self.config.queue_poll_interval());
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let takeover_every = (self.config.create_timeout() / 4).max(Duration::from_secs(1));
        let mut takeover = tokio::time::interval_at(tokio::time::Instant::now() + takeover_every, takeover_every);
        takeover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let refresh = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = poll.tick() => true,
                () = self.wake.notified() => true,
                () = self.fleet.changed() => false,
                _ = takeover.tick() => {
                    if let Err(error) = self.take_over().await {
                        tracing::debug!(%error, "takeover of unplaced sessions failed; retrying later");
                    }
                    continue;
                }
            };
            if let Err(error) = self.round(&mut classes, refresh).await {
                tracing::debug!(%error, "queue round failed; retrying at the next poll");
            }
        }
    }

    async fn round(&self, classes: &mut HashMap<String, Class>, refresh: bool) -> Result<()> {
        if refresh {
            self.expire().await?;
            self.refresh_heads(classes).await?;
        }
        let head = |classes: &HashMap<String, Class>, id: &str| classes.get(id)?.heads.first().map(|e| e.sequence);
        let mut turns = Turns::default();
        let mut exhausted = false;
        // First the classes `refresh_heads` marked; then, before every entry, those a fleet change fits.
        let mut marked = true;
        loop {
            // The fleet view syncs on its own: a server that changed since the last look may fit a
            // class not in this round, which joins the turn in progress (`Turns::join`).
            marked |= self.mark_fitting(classes);
            if std::mem::take(&mut marked) {
                turns.join(take_marked(classes), |id| head(classes, id));
            }
            let Some(id) = turns.next(|id| head(classes, id)) else { break };
            let Some(class) = classes.get_mut(&id) else { continue };
            let step = self.serve_next(class).await?;
            exhausted |= step == Step::Exhausted;
            turns.served(id, step);
        }
        if exhausted {
            // A class placed every entry it knew: fetch the next ones now.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Marks the classes a server changed since the last look would fit; whether any server changed.
    fn mark_fitting(&self, classes: &mut HashMap<String, Class>) -> bool {
        let changes = self.fleet.take_changes();
        if !changes.everything && changes.ids.is_empty() {
            return false;
        }
        self.fleet.read(|fleet| {
            for class in classes.values_mut().filter(|class| !class.dirty) {
                class.dirty = changes.everything
                    || changes
                        .ids
                        .iter()
                        .filter_map(|id| fleet.get(id))
                        .any(|server| place::judge(server, class.kind(), &class.requirements) == Verdict::Fits);
            }
        });
        true
    }

    /// Re-reads the heads of every class; new heads make their class dirty.
    async fn refresh_heads(&self, classes: &mut HashMap<String, Class>) -> Result<()> {
        let response = self
            .store
            .clone()
            .queue_heads(QueueHeadsRequest { per_class: HEADS_PER_CLASS })
            .await
            .map_err(Error::Store)?
            .into_inner();
        let mut fresh: HashMap<String, Vec<QueuedRequest>> = HashMap::new();
        for entry in response.entries {
            fresh.entry(entry.class_id.clone()).or_default().push(entry);
        }
        classes.retain(|id, _| fresh.contains_key(id));
        for (id, mut heads) in fresh {
            heads.sort_by_key(|entry| entry.sequence);
            match classes.get_mut(&id) {
                Some(class) => {
                    let same = class.heads.iter().map(|e| &e.session_id).eq(heads.iter().map(|e| &e.session_id));
                    class.dirty |= !same;
                    class.heads = heads;
                }
                None => {
                    let first = &heads[0];
                    let session_type = SessionType::try_from(first.r#type).unwrap_or(SessionType::Virtual);
                    let Ok(requirements) = Requirements::parse(&first.requirements) else {
                        // Validated before queueing; an unreadable entry is dropped with its session failed.
                        for entry in &heads {
                            self.fail(entry, "the queued request's requirements no longer parse").await?;
                        }
                        continue;
                    };
                    let class = Class { session_type, console_autorun: None, requirements, heads, dirty: true };
                    classes.insert(id, class);
                }
            }
        }
        Ok(())
    }

    /// Serves the next entry of a class (FIFO within it).
    async fn serve_next(&self, class: &mut Class) -> Result<Step> {
        let mut store = self.store.clone();
        let Some(entry) = class.heads.first().cloned() else { return Ok(Step::Exhausted) };
        let claim_id = uuid::Uuid::new_v4().to_string();
        let claim = ClaimQueuedRequest {
            session_id: entry.session_id.clone(),
            claim_id: claim_id.clone(),
            lease_ms: self.lease_ms(),
            limit: 0,
        };
        let claimed = store.claim_queued(claim).await.map_err(Error::Store)?.into_inner().entries.pop();
        if claimed.is_none() {
            // Another replica is serving this class (or the entry left the
            // queue): leave the class to it; the next poll shows what is left.
            return Ok(Step::Stopped);
        }
        let served = self.serve_entry(&entry, class).await;
        match served {
            Ok(served @ (Served::Placed | Served::Gone)) => {
                let placed = matches!(served, Served::Placed);
                let dequeue = DequeueSessionRequest { session_id: entry.session_id.clone(), placed };
                store.dequeue_session(dequeue).await.map_err(Error::Store)?;
                class.heads.remove(0);
                Ok(if class.heads.is_empty() { Step::Exhausted } else { Step::Progressed })
            }
            Ok(Served::Blocked) | Err(_) => {
                let release = ReleaseQueuedRequest { session_id: entry.session_id.clone(), claim_id };
                let released = store.release_queued(release).await;
                served?;
                released.map_err(Error::Store)?;
                Ok(Step::Stopped)
            }
        }
    }

    async fn serve_entry(&self, entry: &QueuedRequest, class: &mut Class) -> Result<Served> {
        let mut store = self.store.clone();
        let page = store
            .get_sessions(GetSessionsRequest { session_ids: vec![entry.session_id.clone()], with_queue_places: false })
            .await
            .map_err(Error::Store)?
            .into_inner();
        let Some(session) = page.sessions.into_iter().find(|s| s.id == entry.session_id) else {
            return Ok(Served::Gone);
        };
        if session.state() != SessionState::Creating || !session.server_id.is_empty() {
            return Ok(Served::Gone);
        }
        let kind = session.spec.as_ref().map_or_else(|| class.session_type.into(), SessionKind::of);
        class.console_autorun = Some(kind.console_autorun);
        let excluded = HashMap::new();
        let request = PlacementRequest { kind, requirements: &class.requirements, excluded: &excluded };
        let started = std::time::Instant::now();
        let decision = place::place(&mut store, &self.fleet, &session.id, &request, &self.config.strategy).await?;
        crate::metrics::decision(&decision, started.elapsed());
        match decision {
            Assignment::Assigned { server_id, session } => {
                tracing::info!(session_id = %session.id, %server_id, "queued session placed");
                crate::metrics::queue_event("placed");
                self.placements.spawn(tracing::Span::none(), self.driver().run_assigned(*session, server_id));
                Ok(Served::Placed)
            }
            Assignment::NotPlaceable => Ok(Served::Gone),
            Assignment::NoHost(_) => Ok(Served::Blocked),
        }
    }

    /// Places again the sessions whose placement made no progress for `create_timeout` (the placement
    /// replica that accepted them died before it assigned them a host): session-store claims each for this
    /// replica with a compare-and-set, so only one replica drives it.
    async fn take_over(&self) -> Result<()> {
        let idle_ms = i64::try_from(self.config.create_timeout().as_millis()).unwrap_or(i64::MAX).max(1);
        let request = TakeOverUnplacedRequest { idle_ms, limit: TAKEOVER_PER_POLL };
        let sessions =
            self.store.clone().take_over_unplaced(request).await.map_err(Error::Store)?.into_inner().sessions;
        for session in sessions {
            tracing::info!(session_id = %session.id, "placing a session another replica left unplaced");
            crate::metrics::takeover();
            self.placements.spawn(tracing::Span::none(), self.driver().run(session));
        }
        Ok(())
    }

    /// Claims the entries past their deadline and fails their sessions.
    async fn expire(&self) -> Result<()> {
        let claim = ClaimQueuedRequest {
            session_id: String::new(),
            claim_id: uuid::Uuid::new_v4().to_string(),
            lease_ms: self.lease_ms(),
            limit: EXPIRED_PER_POLL,
        };
        let expired = self.store.clone().claim_queued(claim).await.map_err(Error::Store)?.into_inner().entries;
        if expired.is_empty() {
            return Ok(());
        }
        // The explanation judges by each session's own kind (its AutorunFile
        // is in the session's spec, not in the entry).
        let session_ids = expired.iter().map(|entry| entry.session_id.clone()).collect();
        let sessions = self
            .store
            .clone()
            .get_sessions(GetSessionsRequest { session_ids, with_queue_places: false })
            .await
            .map_err(Error::Store)?;
        let kinds: HashMap<String, SessionKind> = sessions
            .into_inner()
            .sessions
            .into_iter()
            .filter_map(|session| Some((session.id, SessionKind::of(session.spec.as_ref()?))))
            .collect();
        for entry in expired {
            let why = Requirements::parse(&entry.requirements)
                .map(|requirements| {
                    let session_type = SessionType::try_from(entry.r#type).unwrap_or(SessionType::Virtual);
                    let kind = kinds.get(&entry.session_id).copied().unwrap_or_else(|| session_type.into());
                    let excluded = HashMap::new();
                    let request = PlacementRequest { kind, requirements: &requirements, excluded: &excluded };
                    self.fleet.read(|fleet| place::rank(fleet, &request, &self.config.strategy, 1)).census.explanation()
                })
                .unwrap_or_else(|reason| reason);
            let waited = Duration::from_millis(
                u64::try_from(entry.deadline_unix_ms.saturating_sub(entry.enqueued_unix_ms)).unwrap_or_default(),
            );
            let reason =
                format!("not placed within {} s (create-sessions-queue-max-time-seconds); {why}", waited.as_secs());
            self.fail(&entry, &reason).await?;
        }
        Ok(())
    }

    async fn fail(&self, entry: &QueuedRequest, reason: &str) -> Result<()> {
        if self.driver().fail_queued(&entry.session_id, reason).await? {
            tracing::info!(session_id = %entry.session_id, reason, "queued session failed");
        }
        let dequeue = DequeueSessionRequest { session_id: entry.session_id.clone(), placed: false };
        self.store.clone().dequeue_session(dequeue).await.map_err(Error::Store)?;
        Ok(())
    }
}
