//! The webhook role: subscriptions ([`WebhookRecord`], durable) with their delivery progress, and the
//! dead letters of each (the events given up on, the newest [`DEAD_LETTERS_KEPT`]).
//!
//! Session-store's deliverer is the only writer of a subscription's progress (`update_webhook`, under
//! its lease); registration and removal come from the API. `update_webhook` never brings back a removed
//! subscription.

use async_trait::async_trait;
use switchboard_proto::{DeadLetterRecord, WebhookRecord};

use crate::BackendResult;

/// Dead letters kept per subscription; older ones are dropped.
pub const DEAD_LETTERS_KEPT: usize = 100;

/// Most subscriptions; registering more is refused.
pub const WEBHOOKS_MAX: usize = 100;

/// Webhook subscriptions. Every method is atomic.
#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    /// Stores a new subscription; `AlreadyExists` if its id is taken.
    async fn insert_webhook(&self, webhook: WebhookRecord) -> BackendResult<()>;

    /// Every subscription, in id order.
    async fn list_webhooks(&self) -> BackendResult<Vec<WebhookRecord>>;

    /// Replaces a subscription that still exists (its progress); `false` when it was removed.
    async fn update_webhook(&self, webhook: WebhookRecord) -> BackendResult<bool>;

    /// Removes a subscription and its dead letters; `false` if there was none.
    async fn remove_webhook(&self, id: &str) -> BackendResult<bool>;

    /// Adds a dead letter to its subscription's list, keeping the newest [`DEAD_LETTERS_KEPT`].
    async fn add_dead_letter(&self, letter: DeadLetterRecord) -> BackendResult<()>;

    /// A subscription's dead letters, newest first.
    async fn dead_letters(&self, webhook_id: &str) -> BackendResult<Vec<DeadLetterRecord>>;
}
