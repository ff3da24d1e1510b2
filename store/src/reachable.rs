//! The reachability role: whether the backend answers at all, for health checks
//! (`switchboard_common::health`).

use async_trait::async_trait;

use crate::BackendResult;

/// A trivial round trip to the backend.
#[async_trait]
pub trait Reachable: Send + Sync + 'static {
    /// `Ok` when the backend answers now: Redis a `PING`, the embedded store a read transaction.
    /// `Unavailable` otherwise; no state is read or changed.
    async fn ping(&self) -> BackendResult<()>;
}

/// `backend`'s ping as a health probe (`switchboard_common::health::keep`).
pub fn probe(backend: std::sync::Arc<dyn Reachable>) -> switchboard_common::health::Probe {
    std::sync::Arc::new(move || {
        let backend = backend.clone();
        Box::pin(async move { backend.ping().await.map_err(|error| error.to_string()) })
    })
}
