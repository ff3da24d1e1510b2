//! `kill -9` of one replica of each service in turn, [`ROUNDS`] times, under a steady mixed load of creates
//! and deletes through both gateways. Per fault: client-visible errors after retries, time until a create
//! succeeds again with the replica still down (it must, within a generous bound: no single point of
//! failure), lost sessions counted as a user counts them (an acknowledged create or delete that never
//! reaches an end state, see `load::lost_sessions`), double placements, oversubscribed hosts and stray copies
//! left on hosts (`fleet::host_sessions_to_close`).
//! Assertions are on correctness only; the numbers are printed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, STALLED_SESSION_SECONDS, Service};
use switchboard_tests::fleet;
use switchboard_tests::load::{Load, lost_sessions};

/// How long the cluster gets to recover with the killed replica still down.
const DEGRADED_BOUND: Duration = Duration::from_secs(20);
/// Generous bound for the healthy cluster's first session; exceeding it fails the test (not a speed assertion).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// How long one probe session may stay CREATING.
const PROBE_SETTLE: Duration = Duration::from_secs(8);
/// Kills of each service.
const ROUNDS: usize = 3;
/// How long what a fault left behind may take to end: the stalled bound, two agent updates and slack.
const SETTLE: Duration = Duration::from_secs(STALLED_SESSION_SECONDS + 10);

/// Creates sessions until one is READY, for at most `bound`; `true` when one did.
async fn probe(client: &ApiClient, bound: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < bound {
        if let Ok(Ok(id)) = client.create("probe").await
            && let Ok((state, _)) = client.settle(&id, PROBE_SETTLE).await
            && state == "READY"
        {
            let _ = client.delete(&id, "probe").await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_any_one_replica_loses_nothing() {
    switchboard_common::telemetry::init_for_tests();
    let agents = 4;
    let mut cluster = ProcessCluster::start(ClusterSpec {
        replicas: 2,
        agents,
        max_virtual_sessions: 50,
        metrics: true,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let client = Arc::new(ApiClient::register(&cluster, "load").await.expect("client registered"));
    let probe_client = ApiClient::register(&cluster, "probe").await.expect("probe client registered");
    assert!(probe(&probe_client, RECOVERY_BOUND).await, "the cluster works before any fault");

    let load = Load::start(client.clone(), 4, 3);
    let mut failures = Vec::new();
    let faults = (0..ROUNDS).flat_map(|round| Service::ALL.map(|service| (round, service)));
    for (round, service) in faults {
        let calls_before = client.calls.load(Ordering::Relaxed);
        let errors_before = client.errors.load(Ordering::Relaxed);
        let failed_before = load.ledger.failed_creates.load(Ordering::Relaxed);
        // Let the load run on the healthy cluster first (load duration, not synchronisation).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        cluster.kill9(service, 0);
        // First with the replica down: the other replica should take over.
        let degraded = probe(&probe_client, DEGRADED_BOUND).await.then(|| killed.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await; // keep the load on the degraded cluster
        cluster.restart(service, 0).await.expect("replica restarts");
        cluster.wait_reachable(agents, Duration::from_secs(60)).await.expect("every host reachable again");
        // No single point of failure: the surviving replica must take over while the killed one is down.
        let recovery = match degraded {
            Some(elapsed) => Ok(format!("{} ms with the replica down", elapsed.as_millis())),
            None => Err(format!("no create succeeded within {DEGRADED_BOUND:?} with the replica down")),
        };
        let lost = lost_sessions(&client, &load.ledger, SETTLE).await;
        let check = fleet::check(&cluster).await.expect("fleet check");
        let strays = fleet::host_sessions_to_close(&cluster, SETTLE).await.expect("session-store metrics");
        let calls = client.calls.load(Ordering::Relaxed) - calls_before;
        let errors = client.errors.load(Ordering::Relaxed) - errors_before;
        let failed = load.ledger.failed_creates.load(Ordering::Relaxed) - failed_before;
        let rate = if calls == 0 { 0.0 } else { 100.0 * errors as f64 / calls as f64 };
        let recovery_text = match &recovery {
            Ok(text) | Err(text) => text.clone(),
        };
        println!(
            "ha fault {round}: kill -9 {} replica 0: calls {calls}, client-visible errors {errors} ({rate:.1}%), failed \
             creates {failed}, recovery {recovery_text}, sessions lost {}, double placements {}, oversubscribed \
             hosts {}, stray copies on hosts {strays}",
            service.binary_name(),
            lost.len(),
            check.duplicates,
            check.oversubscribed
        );
        if recovery.is_err() || !lost.is_empty() || check.duplicates > 0 || check.oversubscribed > 0 || strays > 0.0 {
            let ids: Vec<String> = lost.iter().map(|(id, _)| id.clone()).collect();
            let records = fleet::records(&cluster, &ids).await;
            failures.push(format!(
                "round {round} {service:?}: recovery {recovery_text}, lost {lost:?}, {check:?}, strays {strays}, \
                 records {records:?}"
            ));
        }
    }
    let ledger = load.stop().await;
    let ready_seen = ledger.ready.lock().unwrap().len();
    println!("ha load: {}, recent errors {:?}", ledger.summary(), client.recent_errors());
    assert!(ready_seen > 0, "the load created sessions");
    assert!(failures.is_empty(), "faults broke correctness: {failures:#?}\nlogs: {}", cluster.log_dir().display());
}
