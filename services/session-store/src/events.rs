//! The event stream as session-store serves it (`ReadEvents`): reads of the store's event log
//! (`switchboard_store::events`, which the backends and this crate append to), with long polls.
//!
//! A long poll that finds nothing waits on [`EventFeed`]'s watch of the newest event id, which one
//! poller per replica refreshes every [`POLL_INTERVAL`] while anyone waits (and not at all otherwise): a
//! waiting reader costs the store nothing, and an event reaches it within about one interval.

use std::sync::{Arc, Weak};
use std::time::Duration;

use switchboard_proto::{EventRecord, ReadEventsResponse};
use switchboard_store::events::READ_EVENTS_MAX;
use switchboard_store::{Backend, BackendResult};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a replica looks for new events while a long poll waits: the latency it adds.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Events per read when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// Reads of the event log, and the watch long polls wait on.
pub struct EventFeed {
    backend: Arc<dyn Backend>,
    newest: watch::Receiver<String>,
}

impl EventFeed {
    /// The feed over `backend`; its poller ends once the feed and its waiters are dropped.
    pub fn start(backend: Arc<dyn Backend>) -> Arc<Self> {
        let (sender, newest) = watch::channel(String::new());
        tokio::spawn(poll(Arc::downgrade(&backend), sender));
        Arc::new(Self { backend, newest })
    }

    /// Up to `limit` events after `after` (empty: the newest now, so only later events), waiting up to
    /// `wait` (at most [`MAX_WAIT`]) for one when there is none.
    pub async fn read(&self, after: &str, limit: usize, wait: Duration) -> BackendResult<ReadEventsResponse> {
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit.min(READ_EVENTS_MAX) };
        // Subscribed before the first read, so an event appended after it wakes this poll.
        let mut newest = self.newest.clone();
        newest.mark_unchanged();
        let after = match after {
            "" => Some(self.backend.read_events("0-0", 1).await?.last_id).filter(|id| !id.is_empty()),
            after => Some(after.to_owned()),
        }
        .unwrap_or_else(|| "0-0".to_owned());
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let page = self.backend.read_events(&after, limit).await?;
            if !page.events.is_empty() || page.truncated || Instant::now() >= deadline {
                let cursor = page.events.last().map_or(after, |event| event.id.clone());
                return Ok(ReadEventsResponse { events: page.events, truncated: page.truncated, cursor });
            }
            match tokio::time::timeout_at(deadline, newest.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                // Cannot happen while `self` holds a receiver; answer at the deadline with what there is.
                Ok(Err(_)) => tokio::time::sleep_until(deadline).await,
            }
        }
    }
}

/// Appends a service's event (a change this crate made outside the store's atomic writes, right after
/// it); a failure is logged, not returned: the change it reports is done and stays done.
pub async fn record(backend: &dyn Backend, event: EventRecord) {
    let kind = event.kind.clone();
    if let Err(error) = backend.append_event(event).await {
        tracing::warn!(%error, kind, "event not recorded");
    }
}

/// Refreshes `sender` with the newest event id every [`POLL_INTERVAL`] while a reader waits on it, until
/// the feed is dropped. It holds the backend weakly, so it never keeps a store open (the embedded store's
/// file lock) after the service is gone.
async fn poll(backend: Weak<dyn Backend>, sender: watch::Sender<String>) {
    while !sender.is_closed() {
        tokio::time::sleep(POLL_INTERVAL).await;
        // The feed itself holds one receiver: more means a long poll is waiting.
        if sender.receiver_count() <= 1 {
            continue;
        }
        let Some(backend) = backend.upgrade() else { return };
        match backend.read_events("0-0", 1).await {
            Ok(page) => {
                sender.send_if_modified(|newest| {
                    let changed = *newest != page.last_id;
                    newest.clone_from(&page.last_id);
                    changed
                });
            }
            Err(error) => tracing::debug!(%error, "event poll failed"),
        }
    }
}
