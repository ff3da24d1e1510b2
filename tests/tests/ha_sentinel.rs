//! Redis failover under load: the services use `redis+sentinel://` over a primary with two replicas and
//! three real `redis-sentinel`s; the primary is killed with SIGKILL [`ROUNDS`] times under a steady mixed
//! load of creates and deletes through both gateways, and a replica is promoted each time.
//!
//! Per failover it prints the time until the sentinels promote a replica and until a create is READY
//! again, client-visible errors, acknowledged sessions lost (`load::lost_sessions`, as a user counts
//! them), double placements, oversubscribed hosts and stray copies on hosts. It asserts correctness:
//! no double placement or oversubscribed host, an API client registered just before the kill still works
//! (registration waits for a replica, `WAIT`), the cluster recovers at all, and every lost session is
//! explained by Redis's asynchronous-replication window (docs/redis.md): its create was acknowledged less
//! than [`REPLICATION_WINDOW`] before the kill. Timing is printed, never asserted beyond "recovers".

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, RedisTopology, STALLED_SESSION_SECONDS};
use switchboard_tests::fleet;
use switchboard_tests::load::{Load, lost_sessions};

/// Failovers per run.
const ROUNDS: usize = 2;
/// Generous bound for "the cluster recovers at all" (the goal, 10 s, is printed against, not asserted).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// Writes the primary acknowledged this long before it died may not have reached a replica. On loopback
/// the replication lag is well under a millisecond; the bound is generous.
const REPLICATION_WINDOW: Duration = Duration::from_secs(1);
/// How long what a fault left behind may take to end: the stalled bound, two agent updates and slack.
const SETTLE: Duration = Duration::from_secs(STALLED_SESSION_SECONDS + 10);
/// How long a create may take to settle in the probe.
const PROBE_SETTLE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_only_the_replication_window() {
    switchboard_common::telemetry::init_for_tests();
    let agents = 4;
    let mut cluster = ProcessCluster::start(ClusterSpec {
        replicas: 2,
        agents,
        max_virtual_sessions: 50,
        metrics: true,
        redis: RedisTopology::Sentinel,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let client = Arc::new(ApiClient::register(&cluster, "load").await.expect("client registered"));
    let load = Load::start(client.clone(), 4, 3);
    let mut failures = Vec::new();
    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_secs(3)).await; // load on the healthy cluster (duration, not sync)
        let calls_before = client.calls.load(Ordering::Relaxed);
        let errors_before = client.errors.load(Ordering::Relaxed);
        // Registered (acknowledged) right before the kill: WAIT made a replica have it.
        let (late_id, late_secret) = cluster.register_client(&format!("late-{round}")).await.expect("registered");

        let killed = Instant::now();
        kills.push(killed);
        let old = cluster.redis.sentinel().kill_primary();
        let promoted = tokio::task::block_in_place(|| cluster.redis.sentinel().wait_promoted(old, RECOVERY_BOUND));
        let promoted_after = killed.elapsed();
        let probe = ApiClient::with_credentials(&cluster, late_id, late_secret).expect("client");
        let recovered = loop {
            if let Ok(Ok(id)) = probe.create("probe").await
                && let Ok((state, _)) = probe.settle(&id, PROBE_SETTLE).await
                && state == "READY"
            {
                let _ = probe.delete(&id, "probe").await;
                break Some(killed.elapsed());
            }
            if killed.elapsed() > RECOVERY_BOUND {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The killed server comes back empty; the sentinels make it a replica of the new primary.
        cluster.redis.sentinel().server(old).restart();
        let rejoined = tokio::task::block_in_place(|| cluster.redis.sentinel().wait_replicas(2, RECOVERY_BOUND));

        let lost = lost_sessions(&client, &load.ledger, SETTLE).await;
        let check = fleet::check(&cluster).await.expect("fleet check");
        let strays = fleet::host_sessions_to_close(&cluster, SETTLE).await.expect("session-store metrics");
        let calls = client.calls.load(Ordering::Relaxed) - calls_before;
        let errors = client.errors.load(Ordering::Relaxed) - errors_before;
        let unexplained: Vec<&(String, String)> = {
            let acknowledged_at = load.ledger.acknowledged_at.lock().unwrap();
            lost.iter()
                .filter(|(id, _)| {
                    let at = acknowledged_at.get(id);
                    !kills.iter().any(|kill| at.is_some_and(|at| *at + REPLICATION_WINDOW >= *kill && at <= kill))
                })
                .collect()
        };
        let rate = if calls == 0 { 0.0 } else { 100.0 * errors as f64 / calls as f64 };
        let show = |elapsed: Option<Duration>| elapsed.map_or("never".to_owned(), |e| format!("{} ms", e.as_millis()));
        println!(
            "sentinel failover {round}: promoted {promoted:?} after {} ms, first READY create after {}, calls {calls}, \
             client-visible errors {errors} ({rate:.1}%), sessions lost {} (outside the replication window {}), \
             double placements {}, oversubscribed hosts {}, stray copies on hosts {strays}, old primary rejoined \
             {rejoined}",
            promoted_after.as_millis(),
            show(recovered),
            lost.len(),
            unexplained.len(),
            check.duplicates,
            check.oversubscribed
        );
        if promoted.is_none()
            || recovered.is_none()
            || !unexplained.is_empty()
            || check.duplicates > 0
            || check.oversubscribed > 0
            || strays > 0.0
        {
            failures.push(format!(
                "round {round}: promoted {promoted:?}, recovered {recovered:?}, lost {lost:?}, unexplained \
                 {unexplained:?}, {check:?}, strays {strays}"
            ));
        }
    }
    let ledger = load.stop().await;
    let ready_seen = ledger.ready.lock().unwrap().len();
    println!("sentinel load: {}, recent errors {:?}", ledger.summary(), client.recent_errors());
    assert!(ready_seen > 0, "the load created sessions");
    assert!(failures.is_empty(), "failovers broke correctness: {failures:#?}\nlogs: {}", cluster.log_dir().display());
}
