//! Background creation of one session: place, create on the host, record.
//!
//! Placement decides *where*; session-store carries the session there. The
//! loop: rank servers, `AssignSession` on the best candidate that accepts,
//! then one `StartSession` call: session-store sends the host the create
//! command, waits for the agent and records the outcome. If the host refused
//! (or the command certainly never left), session-store put the session back
//! to SESSION_PLACING and it is tried on another host, up to
//! `create_sessions_number_of_retries_on_failure` more times unless the item
//! set `DisableRetryOnFailure`; the last attempt's failure ends it (DELETED
//! with the reason). A create that may have reached the host (a timeout, a
//! replica dying mid-call) is not retried elsewhere: the host's inventory
//! decides, within session-store's stalled bound. When no host fits, the
//! session becomes DELETED with the reason in `StateReason` — unless it asked
//! to be queued (`EnqueueRequest`): then it enters the create-sessions queue
//! (see [`crate::queue`]) and stays CREATING / SESSION_PLACING with
//! `queued: <why>` as its `StateReason` (`SettleUnplaced`).
//!
//! Placement writes no record itself: every transition is session-store's
//! (`lifecycle`), a compare-and-set that only applies while the session is
//! still where the call expects it, so a concurrent DeleteSessions always wins.

use std::{collections::HashMap, sync::Arc, time::Duration};

use switchboard_common::grpc::GrpcChannel;
use switchboard_proto::{
    CreateSessionSpec, EnqueueOutcome, EnqueueSessionRequest, QueuedRequest, SessionRecord, SettleUnplacedRequest,
    StartSessionRequest, session_store_client::SessionStoreClient, settle_unplaced_request::Action,
    start_session_response::Outcome,
};
use tokio::sync::Notify;

use crate::{
    Error, PlacementConfig, Result,
    fleet::FleetView,
    place::{self, Assignment, Exclusion, PlacementRequest, SessionKind},
    requirements::Requirements,
};

/// Exponential backoff (100 ms doubling to 2 s) until a deadline.
struct TransientBackoff {
    delay: Duration,
    deadline: tokio::time::Instant,
}

impl TransientBackoff {
    fn new(deadline: tokio::time::Instant) -> Self {
        Self { delay: Duration::from_millis(100), deadline }
    }

    /// Sleeps before the next try; `false` once the deadline would pass.
    async fn wait(&mut self) -> bool {
        if tokio::time::Instant::now() + self.delay > self.deadline {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(2));
        true
    }
}

/// Extra time allowed beyond the host timeout for the store round trip.
const START_SESSION_SLACK: Duration = Duration::from_secs(5);

/// Places and creates one session.
pub struct Driver {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<GrpcChannel>,
    fleet: Arc<FleetView>,
    /// Wakes the queue worker after this driver queued a session.
    queue_wake: Arc<Notify>,
}

/// Where a run starts.
#[derive(Debug, Clone)]
enum Start {
    /// Not placed yet.
    Unplaced,
    /// Already assigned to this server (by the queue worker).
    Assigned(String),
}

/// The queue class of a request: its [`SessionKind`] (type, and whether a
/// console session has an `AutorunFile`) and canonical requirements, hashed
/// (FNV-1a, 64 bits) to a short stable id. Requests of one class are judged
/// alike by every rule, so FIFO within a class never holds back a request
/// that another host could serve.
pub fn class_id(kind: SessionKind, requirements: &Requirements) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let autorun = if kind.console_autorun { "+AUTORUN" } else { "" };
    let text = format!("{}{autorun}|{}", kind.session_type.as_str_name(), requirements.canonical());
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

impl Driver {
    /// A driver using `store` for every read and write and `fleet` for choices.
    pub fn new(
        config: Arc<PlacementConfig>,
        store: SessionStoreClient<GrpcChannel>,
        fleet: Arc<FleetView>,
        queue_wake: Arc<Notify>,
    ) -> Self {
        Self { config, store, fleet, queue_wake }
    }

    /// Runs placement to the end; failures are recorded on the session, or
    /// logged when even that is impossible. While session-store is
    /// unreachable (a replica died mid-call) the work is retried with backoff
    /// for up to `create_timeout`, so a replica failure never strands a
    /// session in CREATING. Re-running `place` is safe: a session already
    /// assigned is `NotPlaceable`, and its host's inventory completes it.
    pub async fn run(self, session: SessionRecord) {
        self.run_from(session, Start::Unplaced).await;
    }

    /// Like [`Driver::run`] for a session the queue worker already assigned
    /// to `server_id`: creates it there, with the usual retries elsewhere.
    pub async fn run_assigned(self, session: SessionRecord, server_id: String) {
        self.run_from(session, Start::Assigned(server_id)).await;
    }

    async fn run_from(mut self, session: SessionRecord, start: Start) {
        let session_id = session.id.clone();
        let deadline = tokio::time::Instant::now() + self.config.create_timeout();
        let mut backoff = TransientBackoff::new(deadline);
        let mut start = Some(start);
        let failure = loop {
            match self.place(session.clone(), start.take().unwrap_or(Start::Unplaced)).await {
                Ok(()) => return,
                Err(error) if error.is_transient() && backoff.wait().await => {
                    tracing::warn!(%session_id, %error, "session-store unavailable during placement; retrying");
                }
                Err(error) => break error,
            }
        };
        tracing::warn!(%session_id, error = %failure, "placement failed");
        let reason = format!("placement failed: {failure}");
        let mut backoff = TransientBackoff::new(tokio::time::Instant::now() + self.config.create_timeout());
        loop {
            match self.settle(&session_id, Action::Fail, &reason).await {
                Ok(_) => return,
                Err(error) if error.is_transient() && backoff.wait().await => {}
                Err(error) => {
                    tracing::error!(%session_id, %error, "recording placement failure failed; session stays CREATING");
                    return;
                }
            }
        }
    }

    async fn place(&mut self, session: SessionRecord, start: Start) -> Result<()> {
        let session_id = session.id;
        let spec = session.spec.unwrap_or_default();
        let requirements = Requirements::parse(&spec.requirements)
            .map_err(|reason| Error::Protocol(format!("accepted spec with invalid requirements: {reason}")))?;
        let max_attempts = if spec.disable_retry_on_failure {
            1
        } else {
            1 + self.config.create_sessions_number_of_retries_on_failure
        };
        let mut excluded = HashMap::new();
        let mut last_failure: Option<String> = None;
        let mut attempts = 0;
        let mut assigned = match start {
            Start::Assigned(server_id) => Some(server_id),
            Start::Unplaced => None,
        };
        loop {
            let server_id = match assigned.take() {
                Some(server_id) => server_id,
                None => {
                    let request = PlacementRequest {
                        kind: SessionKind::of(&spec),
                        requirements: &requirements,
                        excluded: &excluded,
                    };
                    let started = std::time::Instant::now();
                    let decision =
                        place::place(&mut self.store, &self.fleet, &session_id, &request, &self.config.strategy)
                            .await?;
                    crate::metrics::decision(&decision, started.elapsed());
                    match decision {
                        Assignment::Assigned { server_id, .. } => server_id,
                        Assignment::NotPlaceable => {
                            tracing::info!(%session_id, "session no longer waiting for placement; stopping");
                            return Ok(());
                        }
                        Assignment::NoHost(census) => {
                            let mut reason = census.explanation();
                            if let Some(failure) = &last_failure {
                                reason = format!("{failure}; {reason}");
                            }
                            if spec.enqueue_request {
                                return self.enqueue(&session_id, &spec, &requirements, &reason).await;
                            }
                            tracing::info!(%session_id, %reason, "no host for session");
                            self.settle(&session_id, Action::Fail, &reason).await?;
                            return Ok(());
                        }
                    }
                }
            };
            attempts += 1;
            tracing::debug!(%session_id, %server_id, attempt = attempts, "creating session on host");
            let timeout = self.config.create_timeout();
            let request = StartSessionRequest {
                session_id: session_id.clone(),
                server_id: server_id.clone(),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                last_attempt: attempts >= max_attempts,
            };
            let started = tokio::time::timeout(timeout + START_SESSION_SLACK, self.store.start_session(request))
                .await
                .map_err(|_| Error::Protocol("StartSession did not answer within the create timeout".into()))?
                .map_err(Error::Store)?
                .into_inner();
            crate::metrics::attempt(started.outcome());
            match started.outcome() {
                Outcome::Retry => {
                    tracing::info!(%session_id, reason = %started.reason, "retrying on another host");
                    excluded.insert(server_id, Exclusion::CreationFailed);
                    last_failure = Some(started.reason);
                }
                Outcome::Ready | Outcome::Ended | Outcome::Unconfirmed | Outcome::Gone | Outcome::Unspecified => {
                    return Ok(());
                }
            }
        }
    }

    /// Puts the session in the create-sessions queue (it stays CREATING /
    /// SESSION_PLACING with `queued: <why>` as StateReason), or fails it when
    /// the queue is full.
    async fn enqueue(
        &mut self,
        session_id: &str,
        spec: &CreateSessionSpec,
        requirements: &Requirements,
        why: &str,
    ) -> Result<()> {
        let entry = QueuedRequest {
            session_id: session_id.to_owned(),
            class_id: class_id(SessionKind::of(spec), requirements),
            requirements: spec.requirements.clone(),
            r#type: spec.r#type,
            owner: spec.owner.clone(),
            ..Default::default()
        };
        let request = EnqueueSessionRequest {
            entry: Some(entry),
            max_wait_ms: u64::try_from(self.config.create_sessions_queue_max_time().as_millis()).unwrap_or(u64::MAX),
            max_size: self.config.create_sessions_queue_max_size,
        };
        let response = self.store.enqueue_session(request).await.map_err(Error::Store)?.into_inner();
        match response.outcome() {
            EnqueueOutcome::Queued | EnqueueOutcome::AlreadyQueued => {
                crate::metrics::queue_event("enqueued");
                tracing::info!(%session_id, reason = why, "session queued");
                self.settle(session_id, Action::Queued, why).await?;
                self.queue_wake.notify_one();
            }
            EnqueueOutcome::Full | EnqueueOutcome::Unspecified => {
                crate::metrics::queue_event("refused_full");
                let reason = format!(
                    "the create-sessions queue is full ({} requests; create-sessions-queue-max-size); {why}",
                    self.config.create_sessions_queue_max_size
                );
                tracing::info!(%session_id, %reason, "queue full");
                self.settle(session_id, Action::Fail, &reason).await?;
            }
        }
        Ok(())
    }

    /// Fails a queued session that waited too long: DELETED with `reason`,
    /// only while it is still CREATING and unplaced (compare-and-set, so
    /// however many replicas try, it fails once).
    pub(crate) async fn fail_queued(&mut self, session_id: &str, reason: &str) -> Result<bool> {
        let failed = self.settle(session_id, Action::Fail, reason).await?;
        if failed {
            crate::metrics::queue_event("expired");
        }
        Ok(failed)
    }

    /// `SettleUnplaced`: whether the record changed.
    async fn settle(&mut self, session_id: &str, action: Action, reason: &str) -> Result<bool> {
        let request = SettleUnplacedRequest {
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
            action: action as i32,
        };
        Ok(self.store.settle_unplaced(request).await.map_err(Error::Store)?.into_inner().changed)
    }
}
