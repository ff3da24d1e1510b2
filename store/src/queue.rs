//! The create-sessions queue role: entries ordered by a backend-assigned sequence, grouped by
//! requirement class, worked on under claims with leases.

use async_trait::async_trait;
use switchboard_proto::QueuedRequest;

use crate::BackendResult;

/// Outcome of [`Backend::queue_push`].
#[derive(Debug, Clone, PartialEq)]
pub enum QueuePush {
    /// Queued; the stored entry (sequence and times set).
    Queued(QueuedRequest),
    /// The queue already holds `max_size` entries.
    Full,
    /// The session is queued already; nothing changed.
    AlreadyQueued,
}

/// How much one requirement class has waiting ([`CreateQueue::queue_depths`]): what an autoscaler adds
/// hosts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// The requirement class.
    pub class_id: String,
    /// Entries of the class in the queue (claimed or not).
    pub entries: usize,
    /// When the oldest of them was queued, ms since epoch.
    pub oldest_enqueued_unix_ms: i64,
}

/// The create-sessions queue.
///
/// Entries are ordered by a sequence the backend assigns and grouped by `class_id`; a claim (id +
/// lease) gives one caller the right to work on an entry, and a lapsed claim may be taken over.
/// Times use the backend's clock.
#[async_trait]
pub trait CreateQueue: Send + Sync + 'static {
    /// Appends an entry for `entry.session_id` unless the queue holds
    /// `max_size` entries (`Full`) or the session is queued (`AlreadyQueued`).
    /// Sets `sequence`, `enqueued_unix_ms` and `deadline_unix_ms` (now +
    /// `max_wait_ms`); clears the claim.
    async fn queue_push(&self, entry: QueuedRequest, max_wait_ms: u64, max_size: usize) -> BackendResult<QueuePush>;

    /// The first `per_class` entries of every class that are not under a
    /// live claim, in sequence order per class.
    async fn queue_heads(&self, per_class: usize) -> BackendResult<Vec<QueuedRequest>>;

    /// Claims one entry for `lease_ms` unless another live claim holds it;
    /// returns the entry with its claim, `None` if held or not queued.
    async fn queue_claim(
        &self,
        session_id: &str,
        claim_id: &str,
        lease_ms: u64,
    ) -> BackendResult<Option<QueuedRequest>>;

    /// Claims up to `limit` entries whose deadline has passed and that no live
    /// claim holds, oldest deadline first.
    async fn queue_claim_expired(
        &self,
        claim_id: &str,
        lease_ms: u64,
        limit: usize,
    ) -> BackendResult<Vec<QueuedRequest>>;

    /// Ends a claim, keeping the entry in its place; `false` if `claim_id`
    /// does not hold it (taken over after its lease lapsed, or removed).
    async fn queue_release(&self, session_id: &str, claim_id: &str) -> BackendResult<bool>;

    /// Removes an entry whatever its claim; `false` if it was not queued.
    async fn queue_remove(&self, session_id: &str) -> BackendResult<bool>;

    /// Entries in the queue.
    async fn queue_len(&self) -> BackendResult<usize>;

    /// For every class with entries, how many and since when the oldest waits, in class id order.
    async fn queue_depths(&self) -> BackendResult<Vec<QueueDepth>>;
}
