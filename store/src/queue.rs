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

/// How far back placements count towards a class's recent placement rate ([`QueuePosition`]).
pub const PLACEMENT_RATE_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Most placements kept per class for the rate: the record stays small however busy the class.
pub const PLACEMENT_RATE_SAMPLES: usize = 32;
/// Least span a rate is measured over, so a burst just now does not promise an instant start.
const PLACEMENT_RATE_MIN_SPAN_MS: i64 = 1_000;

/// Where one queued session stands ([`CreateQueue::queue_positions`]), read in one atomic step: its
/// place in its requirement class and that class's recent placement rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePosition {
    /// The queued session.
    pub session_id: String,
    /// Its requirement class.
    pub class_id: String,
    /// 1-based place in its class by sequence; entries under a claim still count (they are being tried).
    pub position: usize,
    /// Entries of its class in the queue (claimed or not).
    pub class_entries: usize,
    /// Entries of its class placed within the last [`PLACEMENT_RATE_WINDOW_MS`] (at most
    /// [`PLACEMENT_RATE_SAMPLES`]), counted by [`CreateQueue::queue_remove_placed`].
    pub recent_placements: usize,
    /// Milliseconds from the oldest of those placements to now, on the backend's clock; 0 without any.
    pub recent_span_ms: i64,
}

impl QueuePosition {
    /// An **estimate** of how long until the session is placed: its position over the class's recent
    /// placement rate (`recent_placements` per `recent_span_ms`, at least a second). `None` when no
    /// entry of the class was placed recently: there is no rate to go by.
    pub fn estimated_wait_ms(&self) -> Option<i64> {
        if self.recent_placements == 0 {
            return None;
        }
        let span = self.recent_span_ms.max(PLACEMENT_RATE_MIN_SPAN_MS);
        let position = i64::try_from(self.position).unwrap_or(i64::MAX);
        let placements = i64::try_from(self.recent_placements).unwrap_or(i64::MAX);
        Some(position.saturating_mul(span) / placements)
    }
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

    /// Removes a **placed** entry, as [`CreateQueue::queue_remove`], and in the same step counts the
    /// placement towards its class's recent placement rate (a bounded record per class: the last
    /// [`PLACEMENT_RATE_SAMPLES`] placement times within [`PLACEMENT_RATE_WINDOW_MS`]); `false`, and
    /// nothing counted, if it was not queued.
    async fn queue_remove_placed(&self, session_id: &str) -> BackendResult<bool>;

    /// Where each of `session_ids` stands in the queue, in one atomic read (the order of the answer is
    /// that of `session_ids`; sessions not queued are left out). For describeSessions: a page of at
    /// most a few hundred ids costs one call.
    async fn queue_positions(&self, session_ids: &[String]) -> BackendResult<Vec<QueuePosition>>;

    /// Entries in the queue.
    async fn queue_len(&self) -> BackendResult<usize>;

    /// For every class with entries, how many and since when the oldest waits, in class id order.
    async fn queue_depths(&self) -> BackendResult<Vec<QueueDepth>>;
}

#[cfg(test)]
mod tests {
    use super::QueuePosition;

    fn position(position: usize, recent_placements: usize, recent_span_ms: i64) -> QueuePosition {
        QueuePosition {
            session_id: "s".into(),
            class_id: "A".into(),
            position,
            class_entries: position,
            recent_placements,
            recent_span_ms,
        }
    }

    #[test]
    fn the_estimate_is_the_position_over_the_recent_rate() {
        assert_eq!(position(3, 0, 0).estimated_wait_ms(), None, "no placement, no rate, no estimate");
        assert_eq!(position(3, 6, 60_000).estimated_wait_ms(), Some(30_000), "6 a minute: 3 take 30 s");
        assert_eq!(position(1, 2, 0).estimated_wait_ms(), Some(500), "a burst counts over at least a second");
    }
}
