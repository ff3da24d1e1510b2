//! Switchboard's storage: everything kept as shared state, behind role traits.
//!
//! Module map — one role trait per kind of state, each atomic per call so any number of replicas of
//! any service may call it at once:
//! - [`sessions`]: [`Sessions`], session records, compare-and-set updates and the atomic host
//!   assignment ([`AssignOutcome`]);
//! - [`servers`]: [`Servers`], what agents report of their hosts, the durable open flag (and drain) and the fleet
//!   change feed ([`ServerChanges`]);
//! - [`queue`]: [`CreateQueue`], the create-sessions queue with claims and leases;
//! - [`ownership`]: [`StreamOwnership`], which session-store replica owns each agent stream, and the
//!   [`Fence`] that writes on behalf of a stream carry;
//! - [`registry`]: [`ApiRegistry`], API clients, signing keys and trusted authorization servers
//!   (durable);
//! - [`enrolment`]: [`Enrolment`], software statements and agent clients (durable), with the
//!   registration and credential logic over them ([`enrolment::statements`], [`enrolment::clients`]);
//! - [`dns`]: [`DnsMappings`], the server - DNS names mappings for the Connection Gateway (durable);
//! - [`secrets`]: [`Secrets`], shared secrets and single-use token ids (durable);
//! - [`idempotency`]: [`Idempotency`], CreateSessions' `Idempotency-Key` records: claims and stored
//!   answers, expiring (durable);
//! - [`events`]: [`Events`], the bounded event stream: session states, placements, server
//!   availability and queue events appended by the backends in the same atomic step as the change;
//! - [`webhooks`]: [`Webhooks`], webhook subscriptions with their delivery progress, and dead letters
//!   (durable);
//! - [`error`]: [`BackendError`], mapped once to an `ErrorCode`;
//! - [`open`]: [`BackendConfig`] and [`open_backend`];
//! - [`observed`]: [`Observed`], a span and the per-call metrics around any backend;
//! - the implementations: [`embedded::EmbeddedBackend`] (in-process, durable on disk under the data
//!   dir; the all-in-one default) and [`redis::RedisBackend`] (shared by every replica, multi-key
//!   invariants in Lua scripts);
//! - [`conformance`]: the one suite every implementation passes, organised by role.
//!
//! [`Backend`] is every role at once, what a backend implements; a service takes only the roles it
//! uses (an `Arc<dyn Backend>` coerces to `Arc<dyn Sessions>` and the other roles).
//!
//! Records are protobuf messages of `switchboard-proto` (`types.proto`, `records.proto`), stored with
//! protobuf encoding; contract constants are in `switchboard_proto::contract`.

pub mod conformance;
pub mod dns;
pub mod embedded;
pub mod enrolment;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod observed;
pub mod open;
pub mod ownership;
pub mod queue;
pub mod reachable;
pub mod redis;
pub mod registry;
pub mod secrets;
pub mod servers;
pub mod sessions;
pub mod webhooks;

pub use dns::DnsMappings;
pub use enrolment::Enrolment;
pub use error::{BackendError, BackendResult};
pub use events::{EventPage, Events};
pub use idempotency::{Idempotency, IdempotencyClaim};
pub use observed::Observed;
pub use open::{BackendConfig, open_backend};
pub use ownership::{AgentOwnership, Fence, StreamOwnership};
pub use queue::{CreateQueue, QueueDepth, QueuePosition, QueuePush};
pub use reachable::Reachable;
pub use registry::ApiRegistry;
pub use secrets::Secrets;
pub use servers::{CloseOutcome, ServerChanges, Servers};
pub use sessions::{AssignOutcome, AssignRejection, Sessions};
pub use switchboard_proto::contract::OWNER_COUNTS_MAX_SERVERS;
pub use switchboard_proto::{
    AgentClientRecord, ApiClientRecord, AuthServerRecord, SigningKeyRecord, SoftwareStatementRecord,
};
pub use webhooks::Webhooks;

/// Every role: what a storage implementation provides. Implemented for every type that implements
/// all the roles.
pub trait Backend:
    Sessions
    + Servers
    + CreateQueue
    + StreamOwnership
    + ApiRegistry
    + Enrolment
    + Secrets
    + DnsMappings
    + Idempotency
    + Events
    + Webhooks
    + Reachable
{
}

impl<T> Backend for T where
    T: Sessions
        + Servers
        + CreateQueue
        + StreamOwnership
        + ApiRegistry
        + Enrolment
        + Secrets
        + DnsMappings
        + Idempotency
        + Events
        + Webhooks
        + Reachable
{
}
