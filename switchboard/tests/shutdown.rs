//! Stopping `switchboard up` is a clean exit, whichever service notices the
//! shutdown first (the services race the cancellation; repeat to cover it).

use std::time::Duration;

use switchboard::{Cluster, UpConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_shutdown_is_not_reported_as_a_failure() {
    for round in 0..10 {
        // A fresh data dir per round: agent-stream tasks may still be draining (and holding the store
        // file's lock) for a moment after `run_until_stopped` returns; the process exits at that point.
        let data_dir = tempfile::tempdir().unwrap();
        let config = UpConfig::ephemeral(data_dir.path(), 1);
        let cluster = Cluster::start(config).await.unwrap();
        cluster.wait_ready(1, Duration::from_secs(10)).await.unwrap();
        let token = cluster.shutdown_token();
        let run = tokio::spawn(cluster.run_until_stopped());
        token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(20), run).await.expect("stops").unwrap();
        assert!(result.is_ok(), "round {round}: {result:?}");
    }
}
