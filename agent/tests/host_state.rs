//! What a real host reports as it changes under a running agent: tags re-read on SIGHUP reach the broker
//! in the next update on the same stream, and a DCV server that stops answering makes the host unhealthy
//! without losing its sessions. The DCV server is the fake `dcv` of `tests/fake-dcv`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchboard_agent::driver::dcv::{DcvCliDriver, DcvCliSettings};
use switchboard_agent::tags::{SharedTags, read_tags, reload_on_sighup};
use switchboard_agent::{DcvDriver, simulated_host_options, telemetry::simulated_host};
use switchboard_common::Shutdown;
use switchboard_proto::{AgentUpdate, BrokerWelcome, KeyValue, agent_message, broker_message};

mod support;

use support::{Connection, WAIT, fake_broker, next_connection, virtual_spec};

fn pairs(tags: &[KeyValue]) -> Vec<(&str, &str)> {
    tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect()
}

async fn welcome(connection: &Connection) {
    let welcome = BrokerWelcome { update_interval_seconds: 1, broker_id: "fake".into(), epoch: 1 };
    connection.send(broker_message::Kind::Welcome(welcome)).await;
}

/// The next update on `connection` for which `done` holds, skipping others (bounded by `WAIT` each).
async fn update_where(connection: &mut Connection, done: impl Fn(&AgentUpdate) -> bool) -> AgentUpdate {
    tokio::time::timeout(WAIT * 3, async {
        loop {
            match connection.next().await {
                agent_message::Kind::Update(update) if done(&update) => return update,
                agent_message::Kind::Update(_) => {}
                other => panic!("expected updates, got {other:?}"),
            }
        }
    })
    .await
    .expect("the expected update in time")
}

#[tokio::test]
async fn sighup_reloads_the_tags_without_reconnecting() {
    switchboard_common::telemetry::init_for_tests();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("a.toml"), "gpu = \"t4\"\n").unwrap();
    let broker_shutdown = Shutdown::new();
    let (url, mut connections_rx) = fake_broker(broker_shutdown.clone()).await;
    let mut options = simulated_host_options(11, &url, None);
    options.tags = SharedTags::new(read_tags(folder.path()).unwrap());
    let agent_shutdown = Shutdown::new();
    reload_on_sighup(folder.path().to_owned(), options.tags.clone(), agent_shutdown.clone()).unwrap();
    let driver: Arc<dyn DcvDriver> = Arc::new(switchboard_agent::SimulatedDriver::new(0));
    let agent = tokio::spawn(switchboard_agent::run(options, driver, || simulated_host(11), agent_shutdown.clone()));

    let mut connection = next_connection(&mut connections_rx).await;
    assert_eq!(pairs(&connection.hello().await.tags), [("gpu", "t4")]);
    welcome(&connection).await;

    // New files: alphabetical order, the last file wins.
    std::fs::write(folder.path().join("b.toml"), "gpu = \"a100\"\nzone = \"z1\"\n").unwrap();
    let status = std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    assert!(status.success());
    let update = update_where(&mut connection, |u| u.tags.len() == 2).await;
    assert_eq!(pairs(&update.tags), [("gpu", "a100"), ("zone", "z1")]);

    // A broken file keeps the previous tags.
    std::fs::write(folder.path().join("c.toml"), "broken = \n").unwrap();
    std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    let update = update_where(&mut connection, |_| true).await;
    assert_eq!(pairs(&update.tags), [("gpu", "a100"), ("zone", "z1")]);
    assert!(connections_rx.try_recv().is_err(), "no reconnect happened");

    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}

#[tokio::test]
async fn a_stopped_dcv_server_is_reported_unhealthy_with_the_last_inventory() {
    switchboard_common::telemetry::init_for_tests();
    let state = tempfile::tempdir().unwrap();
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-dcv/dcv");
    std::os::unix::fs::symlink(fake, state.path().join("dcv")).unwrap();
    let driver = Arc::new(DcvCliDriver::new(DcvCliSettings {
        timeout: Duration::from_secs(20),
        ..DcvCliSettings::new(state.path().join("dcv"))
    }));
    driver.create_session("s1", &virtual_spec("alice")).await.unwrap();

    let broker_shutdown = Shutdown::new();
    let (url, mut connections_rx) = fake_broker(broker_shutdown.clone()).await;
    let agent_shutdown = Shutdown::new();
    let options = simulated_host_options(12, &url, None);
    let agent = tokio::spawn(switchboard_agent::run(
        options,
        driver.clone() as Arc<dyn DcvDriver>,
        || simulated_host(12),
        agent_shutdown.clone(),
    ));
    let mut connection = next_connection(&mut connections_rx).await;
    let hello = connection.hello().await;
    assert!(hello.dcv_healthy && !hello.inventory_unavailable);
    assert_eq!(hello.dcv_version, "2024.0.17979");
    assert_eq!(hello.sessions.len(), 1);
    welcome(&connection).await;

    // The DCV server stops: updates say unhealthy, inventory unavailable, with the last sessions known.
    std::fs::write(state.path().join("down"), "").unwrap();
    let update = update_where(&mut connection, |u| !u.dcv_healthy).await;
    assert!(update.inventory_unavailable);
    assert_eq!(update.sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s1"]);

    // It comes back: healthy again with the real inventory.
    std::fs::remove_file(state.path().join("down")).unwrap();
    let update = update_where(&mut connection, |u| u.dcv_healthy).await;
    assert!(!update.inventory_unavailable);
    assert_eq!(update.sessions.len(), 1);

    agent_shutdown.cancel();
    tokio::time::timeout(WAIT, agent).await.expect("agent stops in time").unwrap().unwrap();
    broker_shutdown.cancel();
}
