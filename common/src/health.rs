//! Honest health: what a service reports, and what a client concludes, from repeated checks.
//!
//! - [`keep`] runs beside a gRPC service and sets its `grpc.health.v1` status: `NOT_SERVING` as soon as
//!   shutdown starts (so balancers and our own clients stop choosing it while in-flight calls finish), and
//!   while a [`Probe`] of what it depends on (its storage backend) fails; `SERVING` again once the probe
//!   passes. The overall status (service name `""`) follows the same state.
//! - [`Hysteresis`] turns a series of check results into a state that one slow or failed check does not
//!   flip: [`FAILURES_TO_FLIP`] failures in a row to go down, [`SUCCESSES_TO_FLIP`] passes to come back.
//!   The gateway's `/health/ready` uses it over its upstreams' health (`switchboard_gateway::readiness`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// A check of what a service depends on: `Err` with the reason when it is unreachable.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How often [`keep`] runs its probe.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Failed checks in a row before a healthy state turns unhealthy.
pub const FAILURES_TO_FLIP: u32 = 3;

/// Passed checks in a row before an unhealthy state turns healthy again.
pub const SUCCESSES_TO_FLIP: u32 = 2;

/// A healthy/unhealthy state fed one check result at a time; starts healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self { healthy: true, streak: 0 }
    }
}

impl Hysteresis {
    /// The current state.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Takes one check result; `Some(state)` when the state changed with it.
    pub fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { FAILURES_TO_FLIP } else { SUCCESSES_TO_FLIP };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(passed)
    }
}

/// Runs one probe, bounded by [`CHECK_TIMEOUT`].
pub async fn run_probe(probe: &Probe) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, probe()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Runs `probe` every [`CHECK_INTERVAL`] until `shutdown` and publishes its [`Hysteresis`] state (starting
/// healthy), logging each change under `what`. The one checking loop of [`keep`] and the gateway's
/// readiness.
pub fn watch(what: String, probe: Probe, shutdown: Shutdown) -> tokio::sync::watch::Receiver<bool> {
    let (healthy, receiver) = tokio::sync::watch::channel(true);
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
            match state.observe(result.is_ok()) {
                Some(true) => tracing::info!(%what, "reachable again"),
                Some(false) => tracing::warn!(%what, reason = %result.err().unwrap_or_default(), "unreachable"),
                None => continue,
            }
            if healthy.send(state.healthy()).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Keeps the health status of `services` (gRPC service names, e.g. `switchboard.v1.Auth`) and of the
/// overall service `""` honest until shutdown: `SERVING` while `probe` passes (always, without one),
/// `NOT_SERVING` after [`FAILURES_TO_FLIP`] failed probes in a row ([`watch`]) and from the moment
/// `shutdown` is cancelled. Marks them `SERVING` before returning, so call it before serving; the task it
/// spawns ends with shutdown.
pub async fn keep(reporter: HealthReporter, services: Vec<&'static str>, probe: Option<Probe>, shutdown: Shutdown) {
    let names: Vec<&'static str> = std::iter::once("").chain(services).collect();
    set(&reporter, &names, ServingStatus::Serving).await;
    let mut healthy = probe.map(|probe| watch(format!("the backend of {names:?}"), probe, shutdown.clone()));
    tokio::spawn(async move {
        loop {
            let changed = async {
                match &mut healthy {
                    Some(healthy) => healthy.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                still = changed => if !still { break },
            }
            let serving = healthy.as_mut().is_some_and(|healthy| *healthy.borrow_and_update());
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            set(&reporter, &names, status).await;
        }
        set(&reporter, &names, ServingStatus::NotServing).await;
    });
}

/// A probe asking the gRPC health service behind `channel` whether it serves (its overall status, `""`):
/// for a balanced channel, whether the replica the call reached does.
pub fn grpc_probe(channel: crate::grpc::GrpcChannel) -> Probe {
    Arc::new(move || {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        Box::pin(async move {
            let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
            let status = client.check(request).await.map_err(|status| status.message().to_owned())?.into_inner().status;
            if status == ServingStatus::Serving as i32 { Ok(()) } else { Err("not serving".to_owned()) }
        })
    })
}

/// `GET /health` over plain HTTP for load balancers that speak no gRPC: `200 {"status":"SERVING"}` or
/// `503 {"status":"NOT_SERVING"}`, the overall status `reporter` keeps ([`keep`]).
pub fn http_router(reporter: HealthReporter) -> axum::Router {
    use tonic_health::pb::health_server::Health;
    let health = Arc::new(tonic_health::server::HealthService::from_health_reporter(reporter));
    axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let health = health.clone();
            async move {
                let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest { service: String::new() });
                let serving = health
                    .check(request)
                    .await
                    .is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32);
                let (status, text) = if serving {
                    (http::StatusCode::OK, "SERVING")
                } else {
                    (http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
                };
                (status, axum::Json(serde_json::json!({ "status": text })))
            }
        }),
    )
}

async fn set(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_does_not_flip_a_healthy_state() {
        let mut state = Hysteresis::default();
        assert_eq!(state.observe(false), None);
        assert_eq!(state.observe(true), None);
        assert_eq!(state.observe(false), None);
        assert_eq!(state.observe(false), None);
        assert!(state.healthy(), "two failures in a row are not enough");
        assert_eq!(state.observe(false), Some(false));
        assert!(!state.healthy());
        assert_eq!(state.observe(true), None);
        assert_eq!(state.observe(false), None, "a failure restarts the count back up");
        assert_eq!(state.observe(true), None);
        assert_eq!(state.observe(true), Some(true));
        assert!(state.healthy());
    }

    async fn status(health: &tonic_health::server::HealthService, service: &str) -> i32 {
        use tonic_health::pb::health_server::Health;
        let request = tonic_health::pb::HealthCheckRequest { service: service.to_owned() };
        health.check(tonic::Request::new(request)).await.unwrap().into_inner().status
    }

    #[tokio::test(start_paused = true)]
    async fn not_serving_while_the_probe_fails_and_from_shutdown() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let reporter = HealthReporter::new();
        let health = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let reachable = Arc::new(AtomicBool::new(true));
        let probed = reachable.clone();
        let probe: Probe = Arc::new(move || {
            let up = probed.load(Ordering::SeqCst);
            Box::pin(async move { if up { Ok(()) } else { Err("backend down".to_owned()) } })
        });
        let shutdown = Shutdown::new();
        keep(reporter, vec!["switchboard.v1.Test"], Some(probe), shutdown.clone()).await;
        let (serving, not_serving) = (ServingStatus::Serving as i32, ServingStatus::NotServing as i32);
        let health = &health;
        let both = |expected: i32| async move {
            assert_eq!(status(health, "switchboard.v1.Test").await, expected);
            assert_eq!(status(health, "").await, expected, "the overall status follows");
        };
        both(serving).await;

        reachable.store(false, Ordering::SeqCst);
        // The first tick probes at once: failures at 0 s and 1 s are two, not enough.
        tokio::time::sleep(CHECK_INTERVAL + CHECK_INTERVAL / 2).await;
        both(serving).await;
        tokio::time::sleep(CHECK_INTERVAL).await;
        both(not_serving).await;

        reachable.store(true, Ordering::SeqCst);
        tokio::time::sleep(CHECK_INTERVAL * 2).await;
        both(serving).await;

        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(10)).await;
        both(not_serving).await;
    }

    #[tokio::test]
    async fn the_http_endpoint_answers_the_overall_status() {
        use tower::ServiceExt;
        let reporter = HealthReporter::new();
        let get = |reporter: HealthReporter| async move {
            let request = http::Request::get("/health").body(axum::body::Body::empty()).unwrap();
            let response = http_router(reporter).oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        reporter.set_service_status("", ServingStatus::Serving).await;
        assert_eq!(get(reporter.clone()).await, (http::StatusCode::OK, r#"{"status":"SERVING"}"#.to_owned()));
        reporter.set_service_status("", ServingStatus::NotServing).await;
        let answer = get(reporter.clone()).await;
        assert_eq!(answer, (http::StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"NOT_SERVING"}"#.to_owned()));
    }
}
