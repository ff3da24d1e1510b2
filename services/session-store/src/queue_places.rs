//! Where queued sessions stand in the create-sessions queue: their 1-based place in their requirement
//! class and an **estimate** of their wait (their position over the class's recent placement rate,
//! `switchboard_store::QueuePosition::estimated_wait_ms`). describeSessions shows it; an event about a
//! queued session can say the same by calling [`queue_places`] with its record.

use switchboard_proto::{QueuePlace, SessionRecord};
use switchboard_store::{BackendResult, CreateQueue};

use crate::lifecycle;

/// Where each of `sessions` that waits in the queue stands, in one atomic store read for all of them
/// (none when none waits); the others are left out.
pub async fn queue_places<Q: CreateQueue + ?Sized>(
    queue: &Q,
    sessions: &[SessionRecord],
) -> BackendResult<Vec<QueuePlace>> {
    let queued: Vec<String> =
        sessions.iter().filter(|session| lifecycle::is_queued(session)).map(|session| session.id.clone()).collect();
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let positions = queue.queue_positions(&queued).await?;
    Ok(positions
        .into_iter()
        .map(|position| QueuePlace {
            estimated_wait_ms: position.estimated_wait_ms(),
            session_id: position.session_id,
            position: u32::try_from(position.position).unwrap_or(u32::MAX),
            class_entries: u32::try_from(position.class_entries).unwrap_or(u32::MAX),
        })
        .collect())
}
