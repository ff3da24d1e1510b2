//! 200 concurrent creates through both gateways and both placement replicas against capacity for exactly
//! 100 sessions (10 agents × `max_virtual_sessions = 10`): exactly 100 READY, the rest rejected, no host
//! oversubscribed, no session on two hosts.

use std::sync::Arc;
use std::time::Instant;

use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster};
use switchboard_tests::fleet;
use switchboard_tests::load::SETTLE_TIMEOUT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_fill_exactly_one_hundred_slots() {
    switchboard_common::telemetry::init_for_tests();
    let spec = ClusterSpec { replicas: 2, agents: 10, max_virtual_sessions: 10, ..Default::default() };
    let cluster = ProcessCluster::start(spec).await.expect("cluster starts");
    let client = Arc::new(ApiClient::register(&cluster, "capacity").await.expect("client registered"));

    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for index in 0..200 {
        let client = client.clone();
        creates.spawn(async move {
            match client.create(&format!("user-{index}")).await {
                Ok(Ok(id)) => client.settle(&id, SETTLE_TIMEOUT).await.map(|(state, reason)| (Some(id), state, reason)),
                Ok(Err(reason)) => Ok((None, "UNSUCCESSFUL".to_owned(), reason)),
                Err(error) => Err(error),
            }
        });
    }
    let (mut ready, mut rejected, mut errors, mut other) = (0, 0, 0, Vec::new());
    while let Some(joined) = creates.join_next().await {
        match joined.expect("create task") {
            Ok((_, state, _)) if state == "READY" => ready += 1,
            Ok((_, state, reason)) if state == "UNSUCCESSFUL" || state == "DELETED" => {
                assert!(!reason.is_empty(), "a rejection says why");
                rejected += 1;
            }
            Ok((id, state, reason)) => other.push(format!("{id:?} {state} {reason}")),
            Err(error) => {
                errors += 1;
                other.push(format!("{error:#}"));
            }
        }
    }
    let elapsed = started.elapsed();
    let check = fleet::check(&cluster).await.expect("fleet check");
    println!(
        "ha capacity: 200 concurrent creates via 2 gateways / 2 placement replicas, capacity 100: ready {ready}, \
         rejected {rejected}, client-visible errors {errors}, oversubscribed hosts {}, duplicates {}, \
         hosts' session counts sum {}, settled in {} ms",
        check.oversubscribed,
        check.duplicates,
        check.inventory_sum,
        elapsed.as_millis()
    );
    assert!(other.is_empty(), "unexpected outcomes: {other:?}");
    assert_eq!(ready, 100, "exactly the capacity is READY");
    assert_eq!(rejected, 100, "everything else is rejected");
    assert_eq!(check.ready, 100, "session-store agrees");
    assert_eq!(check.oversubscribed, 0);
    assert_eq!(check.duplicates, 0);
    assert_eq!(check.inventory_sum, 100, "hosts' counts sum to the READY sessions");
}
