//! Background creation of one session: place, create on the host, record.
//!
//! The loop: rank servers, `AssignSession` on the best candidate that accepts,
//! send the host a `CreateSessionCommand` through session-store, then record
//! READY. If the host fails, the session is un-assigned (server id cleared,
//! back to SESSION_PLACING) and tried on another host, up to
//! `create_sessions_number_of_retries_on_failure` more times unless the item set
//! `DisableRetryOnFailure`. When no attempt is left, or no host fits, the
//! session becomes DELETED with the reason in `StateReason` — unless it asked
//! to be queued (`EnqueueRequest`) and no host fits: then it enters the
//! create-sessions queue (see [`crate::queue`]) and stays CREATING /
//! SESSION_PLACING with `queued: <why>` as its `StateReason`.
//!
//! Every record write is a compare-and-set on the revision read just before,
//! retried on conflict, and only applies while the session is still CREATING
//! on the expected host: a concurrent DeleteSessions always wins.
//!
//! Known gap (later issue): a host that times out may still create the
//! session; the retry then places a second copy elsewhere. The agent's
//! inventory reports the stray copy, and reconciling it is session-store's job.

use std::{collections::HashMap, sync::Arc, time::Duration};

use switchboard_common::time::now_ms;
use switchboard_proto::contract::substate::SESSION_PLACING;
use switchboard_proto::{
    CreateSessionCommand, CreateSessionSpec, EnqueueOutcome, EnqueueSessionRequest, GetSessionsRequest, HostCommand,
    HostSession, QueuedRequest, SendCommandRequest, SessionRecord, SessionState, UpdateSessionRequest,
    command_result::Payload, host_command::Action, session_store_client::SessionStoreClient,
};
use tokio::sync::Notify;
use tonic::{Code, transport::Channel};

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

/// Attempts of one read-modify-write before giving up on conflicts.
const CAS_ATTEMPTS: usize = 5;
/// Extra time allowed beyond the host timeout for the store round trip.
const SEND_COMMAND_SLACK: Duration = Duration::from_secs(5);

/// Places and creates one session.
pub struct Driver {
    config: Arc<PlacementConfig>,
    store: SessionStoreClient<Channel>,
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
        store: SessionStoreClient<Channel>,
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
            match self.finish_deleted(&session_id, &reason).await {
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
                    let decision =
                        place::place(&mut self.store, &self.fleet, &session_id, &request, &self.config.strategy)
                            .await?;
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
                            self.finish_deleted(&session_id, &reason).await?;
                            return Ok(());
                        }
                    }
                }
            };
            attempts += 1;
            tracing::info!(%session_id, %server_id, attempt = attempts, "creating session on host");
            match self.create_on_host(&server_id, &session_id, &spec).await {
                Ok(host_session) => {
                    if !self.mark_ready(&session_id, &server_id, host_session).await? {
                        tracing::info!(%session_id, "session changed while being created; leaving it as is");
                    }
                    return Ok(());
                }
                Err(failure) => {
                    let reason = format!("session creation failed on server {server_id}: {failure}");
                    tracing::warn!(%session_id, %reason, "host failed to create session");
                    if attempts >= max_attempts {
                        self.finish_deleted(&session_id, &reason).await?;
                        return Ok(());
                    }
                    if !self.unassign(&session_id, &server_id, &reason).await? {
                        return Ok(());
                    }
                    excluded.insert(server_id, Exclusion::CreationFailed);
                    last_failure = Some(reason);
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
                let reason = format!("queued: {why}");
                tracing::info!(%session_id, %reason, "session queued");
                self.update(session_id, |record| {
                    if record.state() != SessionState::Creating || !record.server_id.is_empty() {
                        return false;
                    }
                    record.state_reason = reason.clone();
                    true
                })
                .await?;
                self.queue_wake.notify_one();
            }
            EnqueueOutcome::Full | EnqueueOutcome::Unspecified => {
                let reason = format!(
                    "the create-sessions queue is full ({} requests; create-sessions-queue-max-size); {why}",
                    self.config.create_sessions_queue_max_size
                );
                tracing::info!(%session_id, %reason, "queue full");
                self.finish_deleted(session_id, &reason).await?;
            }
        }
        Ok(())
    }

    /// Fails a queued session that waited too long: DELETED with `reason`,
    /// only while it is still CREATING and unplaced (compare-and-set, so
    /// however many replicas try, it fails once).
    pub(crate) async fn fail_queued(&mut self, session_id: &str, reason: &str) -> Result<bool> {
        self.update(session_id, |record| {
            if record.state() != SessionState::Creating || !record.server_id.is_empty() {
                return false;
            }
            record.state = SessionState::Deleted as i32;
            record.substate.clear();
            record.state_reason = reason.to_owned();
            record.ended_unix_ms = now_ms();
            true
        })
        .await
    }

    /// Asks the host to create the session; `Err` is a human-readable reason.
    async fn create_on_host(
        &mut self,
        server_id: &str,
        session_id: &str,
        spec: &CreateSessionSpec,
    ) -> Result<Option<HostSession>, String> {
        let timeout = self.config.create_timeout();
        let request = SendCommandRequest {
            server_id: server_id.to_owned(),
            command: Some(HostCommand {
                command_id: String::new(),
                action: Some(Action::Create(CreateSessionCommand {
                    session_id: session_id.to_owned(),
                    spec: Some(spec.clone()),
                })),
            }),
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let answer = tokio::time::timeout(timeout + SEND_COMMAND_SLACK, self.store.send_command(request)).await;
        let result = match answer {
            Err(_) => return Err("timed out waiting for the host".into()),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    Code::DeadlineExceeded => "timed out waiting for the host".into(),
                    Code::Unavailable => "the host's agent is not connected".into(),
                    Code::NotFound => "the host is not known".into(),
                    _ => format!("the command could not be delivered ({:?})", status.code()),
                });
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        if !result.error.is_empty() {
            return Err(result.error);
        }
        Ok(match result.payload {
            Some(Payload::Session(session)) => Some(session),
            _ => None,
        })
    }

    async fn mark_ready(&mut self, session_id: &str, server_id: &str, host: Option<HostSession>) -> Result<bool> {
        self.update(session_id, |record| {
            if record.state() != SessionState::Creating || record.server_id != server_id {
                return false;
            }
            record.state = SessionState::Ready as i32;
            record.substate.clear();
            record.state_reason.clear();
            if let Some(host) = &host {
                record.num_of_connections = host.num_of_connections;
                if host.creation_time_unix_ms != 0 {
                    record.creation_time_unix_ms = host.creation_time_unix_ms;
                }
                record.last_disconnection_time_unix_ms = host.last_disconnection_time_unix_ms;
                if host.max_concurrent_clients != 0 {
                    record.max_concurrent_clients = host.max_concurrent_clients;
                }
                if !host.storage_root.is_empty() {
                    record.storage_root = host.storage_root.clone();
                }
            }
            true
        })
        .await
    }

    async fn unassign(&mut self, session_id: &str, server_id: &str, reason: &str) -> Result<bool> {
        self.update(session_id, |record| {
            if record.state() != SessionState::Creating || record.server_id != server_id {
                return false;
            }
            record.server_id.clear();
            record.substate = SESSION_PLACING.into();
            record.state_reason = format!("retrying after: {reason}");
            true
        })
        .await
    }

    async fn finish_deleted(&mut self, session_id: &str, reason: &str) -> Result<bool> {
        self.update(session_id, |record| {
            if record.state() != SessionState::Creating {
                return false;
            }
            record.state = SessionState::Deleted as i32;
            record.substate.clear();
            record.state_reason = reason.to_owned();
            record.ended_unix_ms = now_ms();
            true
        })
        .await
    }

    /// Compare-and-set read-modify-write. `change` returns `false` to leave the
    /// record alone; the result says whether a write happened.
    async fn update(&mut self, session_id: &str, mut change: impl FnMut(&mut SessionRecord) -> bool) -> Result<bool> {
        for _ in 0..CAS_ATTEMPTS {
            let page = self
                .store
                .get_sessions(GetSessionsRequest { session_ids: vec![session_id.to_owned()] })
                .await
                .map_err(Error::Store)?
                .into_inner();
            let Some(mut record) = page.sessions.into_iter().find(|s| s.id == session_id) else {
                return Ok(false);
            };
            if !change(&mut record) {
                return Ok(false);
            }
            let expected_revision = record.revision;
            let request = UpdateSessionRequest { session: Some(record), expected_revision };
            match self.store.update_session(request).await {
                Ok(_) => return Ok(true),
                Err(status) if status.code() == Code::Aborted => continue,
                Err(status) if status.code() == Code::NotFound => return Ok(false),
                Err(status) => return Err(Error::Store(status)),
            }
        }
        Err(Error::Conflict(session_id.to_owned()))
    }
}
