//! Redis restarts (`kill -9`, then start again on its append-only file) under load: registered API clients
//! survive, every host is reachable again and reports its sessions, and no READY session is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, STALLED_SESSION_SECONDS};
use switchboard_tests::fleet;
use switchboard_tests::load::{Load, SETTLE_TIMEOUT, lost_sessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_clients_and_sessions() {
    switchboard_common::telemetry::init_for_tests();
    let agents = 4;
    let mut cluster =
        ProcessCluster::start(ClusterSpec { replicas: 2, agents, max_virtual_sessions: 50, ..Default::default() })
            .await
            .expect("cluster starts");
    let (client_id, client_secret) = cluster.register_client("survivor").await.expect("client registered");
    let client =
        Arc::new(ApiClient::with_credentials(&cluster, client_id.clone(), client_secret.clone()).expect("client"));
    let load = Load::start(client.clone(), 3, 3);
    tokio::time::sleep(Duration::from_secs(3)).await; // load before the fault (duration, not synchronisation)

    let calls_before = client.calls.load(Ordering::Relaxed);
    let errors_before = client.errors.load(Ordering::Relaxed);
    let killed = Instant::now();
    cluster.redis.server().restart();
    // A brand-new client object with the old credentials must get a token: the registry survived.
    let fresh = ApiClient::with_credentials(&cluster, client_id, client_secret).expect("client");
    let recovery = loop {
        if let Ok(Ok(id)) = fresh.create("probe").await
            && let Ok((state, _)) = fresh.settle(&id, SETTLE_TIMEOUT).await
            && state == "READY"
        {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(90), "no READY session within 90 s of the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.wait_reachable(agents, Duration::from_secs(60)).await.expect("hosts reachable again");
    tokio::time::sleep(Duration::from_secs(2)).await; // load on the recovered cluster
    let ledger = load.stop().await;
    let lost = lost_sessions(&client, &ledger, Duration::from_secs(STALLED_SESSION_SECONDS + 10)).await;
    let check = fleet::check(&cluster).await.expect("fleet check");
    let calls = client.calls.load(Ordering::Relaxed) - calls_before;
    let errors = client.errors.load(Ordering::Relaxed) - errors_before;
    let rate = if calls == 0 { 0.0 } else { 100.0 * errors as f64 / calls as f64 };
    println!(
        "ha fault: restart redis (AOF): calls {calls}, client-visible errors {errors} ({rate:.1}%), recovery {} ms, \
         API client kept yes, hosts reachable {}/{agents}, sessions READY {}, sessions lost {}, double placements \
         {}, oversubscribed hosts {}",
        recovery.as_millis(),
        cluster.reachable_hosts().await.unwrap_or(0),
        check.ready,
        lost.len(),
        check.duplicates,
        check.oversubscribed
    );
    assert!(lost.is_empty(), "lost sessions: {lost:?}\nlogs: {}", cluster.log_dir().display());
    assert_eq!(check.duplicates, 0);
    assert_eq!(check.oversubscribed, 0);
}

/// Redis loses everything (as a restart without persistence would; simulated with `FLUSHALL` so the test
/// does not depend on restart timing): the fleet — every host and every running session — is rebuilt from
/// the agents' reports. API clients and agent enrolments are lost, as docs/redis.md says happens without
/// persistence, so the operator re-enrols the agents (a new software statement) before they are let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_all_redis_data_rebuilds_the_fleet_from_agent_reports() {
    switchboard_common::telemetry::init_for_tests();
    let agents = 4;
    let mut cluster =
        ProcessCluster::start(ClusterSpec { replicas: 2, agents, max_virtual_sessions: 50, ..Default::default() })
            .await
            .expect("cluster starts");
    let (client_id, client_secret) = cluster.register_client("before").await.expect("client registered");
    let client = ApiClient::with_credentials(&cluster, client_id.clone(), client_secret.clone()).expect("client");
    let mut running = Vec::new();
    for _ in 0..6 {
        let id = client.create("rebuilt").await.expect("create call").expect("create accepted");
        let (state, reason) = client.settle(&id, SETTLE_TIMEOUT).await.expect("session settles");
        assert_eq!(state, "READY", "{id}: {reason}");
        running.push(id);
    }

    let flushed = Instant::now();
    let status = std::process::Command::new("redis-cli")
        .args(["-p", &cluster.redis.server().port().to_string(), "FLUSHALL"])
        .status()
        .expect("redis-cli runs");
    assert!(status.success());
    // The agents' credentials are gone with the data: they are refused until re-enrolled.
    cluster.reenrol_agents().await.expect("agents re-enrolled");

    cluster.wait_reachable(agents, Duration::from_secs(60)).await.expect("every host reports again");
    // Admin calls still work (auth recreates its signing key); a new client sees the rebuilt sessions.
    let after = ApiClient::register(&cluster, "after").await.expect("client registered after the loss");
    let mut rebuilt = 0;
    let mut rebuilt_after = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        rebuilt = 0;
        for id in &running {
            if let Ok(Some((state, _))) = after.state(id).await
                && state == "READY"
            {
                rebuilt += 1;
            }
        }
        if rebuilt == running.len() {
            rebuilt_after = flushed.elapsed();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let check = fleet::check(&cluster).await.expect("fleet check");
    // Tokens already issued stay valid until they expire (they are self-contained JWTs); new tokens for the
    // lost client are refused.
    let old_credentials = ApiClient::with_credentials(&cluster, client_id, client_secret).expect("client");
    let old_client_works =
        old_credentials.create("old-credentials").await.map(|answer| answer.is_ok()).unwrap_or(false);
    println!(
        "ha fault: redis data lost (FLUSHALL): hosts reachable {}/{agents}, sessions rebuilt from agents {rebuilt}/{} \
         in {} ms, API client kept {} (expected without persistence), double placements {}, oversubscribed hosts {}",
        cluster.reachable_hosts().await.unwrap_or(0),
        running.len(),
        rebuilt_after.as_millis(),
        if old_client_works { "yes" } else { "no" },
        check.duplicates,
        check.oversubscribed
    );
    assert_eq!(
        rebuilt,
        running.len(),
        "every running session is re-cached from its agent\nlogs: {}",
        cluster.log_dir().display()
    );
    assert!(!old_client_works, "without persistence the client registry is gone, as documented");
    assert_eq!(check.duplicates, 0);
    assert_eq!(check.oversubscribed, 0);
}
