//! The one conformance suite every [`Backend`] must pass, organised by role: one module per role
//! trait, each with its own checks.
//!
//! Compiled in normal builds (not `cfg(test)`) so each backend's tests, in this crate or another,
//! call [`run_all`] with a factory of fresh backends. Every check panics with a message naming the
//! behaviour that broke. A new storage operation gets its checks in its role's module.

pub mod dns;
mod enrolment;
mod events;
mod idempotency;
mod owner_counts;
mod ownership;
mod queue;
mod reachable;
mod registry;
mod secrets;
mod servers;
mod sessions;
mod webhooks;

use std::future::Future;
use std::sync::Arc;

use switchboard_proto::{ServerRecord, SessionRecord, SessionState, SessionType};

use crate::Backend;

/// Runs every check of every role, each against a fresh backend from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Backend>>,
{
    sessions::run(&make).await;
    servers::run(&make).await;
    queue::run(&make).await;
    ownership::run(&make).await;
    registry::run(&make).await;
    enrolment::run(&make).await;
    secrets::run(&make).await;
    dns::run(&make).await;
    idempotency::run(&make).await;
    events::run(&make).await;
    webhooks::run(&make).await;
    reachable::run(&make).await;
}

/// A CREATING, unplaced session.
pub fn session(id: &str, owner: &str, session_type: SessionType) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        name: format!("name-{id}"),
        owner: owner.to_owned(),
        r#type: session_type as i32,
        state: SessionState::Creating as i32,
        substate: "SESSION_PLACING".to_owned(),
        ..Default::default()
    }
}

/// A reachable, healthy server report without limits.
pub fn server(id: &str) -> ServerRecord {
    ServerRecord {
        id: id.to_owned(),
        hostname: format!("{id}.example"),
        reachable: true,
        dcv_healthy: true,
        ..Default::default()
    }
}
