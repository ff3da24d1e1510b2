//! What `/health/ready` knows of the upstreams: each one's gRPC health (auth, placement, session-store),
//! checked every [`CHECK_INTERVAL`](switchboard_common::health::CHECK_INTERVAL) through the same balanced
//! channels the API calls use, and turned into reachable/unreachable with
//! [`Hysteresis`](switchboard_common::health::Hysteresis), so one slow or failed check does not flap the
//! gateway's readiness: an upstream counts as unreachable after three failed checks in a row and as
//! reachable again after two passed ones.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use switchboard_common::Shutdown;
use switchboard_common::health::{CHECK_INTERVAL, Hysteresis, Probe, run_probe};

/// The upstreams currently unreachable, by name.
#[derive(Debug, Default)]
pub struct Readiness {
    unreachable: Mutex<BTreeSet<&'static str>>,
}

impl Readiness {
    /// Upstreams that failed their last checks (empty: every upstream answers).
    pub fn unreachable(&self) -> Vec<&'static str> {
        self.unreachable.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect()
    }

    /// Checks each `(name, probe)` until `shutdown`, one task each. Every upstream starts reachable, as a
    /// gateway that just started has not seen one fail.
    pub fn watch(probes: Vec<(&'static str, Probe)>, shutdown: Shutdown) -> Arc<Self> {
        let readiness = Arc::new(Self::default());
        for (name, probe) in probes {
            let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut state = Hysteresis::default();
                let mut tick = tokio::time::interval(CHECK_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let result = run_probe(&probe).await;
                    let Some(reachable) = state.observe(result.is_ok()) else { continue };
                    let mut unreachable = readiness.unreachable.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if reachable {
                        tracing::info!(upstream = name, "upstream reachable again; ready");
                        unreachable.remove(name);
                    } else {
                        let reason = result.err().unwrap_or_default();
                        tracing::warn!(upstream = name, %reason, "upstream unreachable; not ready");
                        unreachable.insert(name);
                    }
                }
            });
        }
        readiness
    }
}
