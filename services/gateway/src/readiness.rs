//! What `/health/ready` knows of the upstreams: each one's gRPC health (auth, placement, session-store),
//! checked every [`CHECK_INTERVAL`](switchboard_common::health::CHECK_INTERVAL) through the same balanced
//! channels the API calls use, and turned into reachable/unreachable by
//! [`health::watch`](switchboard_common::health::watch), so one slow or failed check does not flap the
//! gateway's readiness: an upstream counts as unreachable after three failed checks in a row and as
//! reachable again after two passed ones.

use switchboard_common::Shutdown;
use switchboard_common::health::{Probe, watch};
use tokio::sync::watch::Receiver;

/// Each upstream's reachability, by name.
#[derive(Debug, Default)]
pub struct Readiness {
    upstreams: Vec<(&'static str, Receiver<bool>)>,
}

impl Readiness {
    /// Upstreams that failed their last checks (empty: every upstream answers).
    pub fn unreachable(&self) -> Vec<&'static str> {
        self.upstreams.iter().filter(|(_, reachable)| !*reachable.borrow()).map(|(name, _)| *name).collect()
    }

    /// Checks each `(name, probe)` until `shutdown`. Every upstream starts reachable, as a gateway that
    /// just started has not seen one fail.
    pub fn watch(probes: Vec<(&'static str, Probe)>, shutdown: Shutdown) -> std::sync::Arc<Self> {
        let upstreams =
            probes.into_iter().map(|(name, probe)| (name, watch(format!("upstream {name}"), probe, shutdown.clone())));
        std::sync::Arc::new(Self { upstreams: upstreams.collect() })
    }
}
