//! The admin commands, run as the real binary against an in-process cluster.

use std::{process::Command, time::Duration};

use switchboard::{Cluster, UpConfig};

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().expect("run switchboard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_describe_unregister_api_client() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap().to_owned();
    let config = UpConfig {
        data_dir: data_dir.path().to_owned(),
        sim_hosts: 0,
        listen: "127.0.0.1:0".parse().unwrap(),
        agent_listen: "127.0.0.1:0".parse().unwrap(),
        ..UpConfig::default()
    };
    let cluster = Cluster::start(config).await.unwrap();
    cluster.wait_ready(0, Duration::from_secs(10)).await.unwrap();

    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || switchboard(&["register-api-client", "--client-name", "ci", "--data-dir", &dir])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "exactly two lines: {stdout:?}");
    let client_id = lines[0].strip_prefix("client-id: ").expect("client-id line");
    let password = lines[1].strip_prefix("client-password: ").expect("client-password line");
    assert!(!client_id.is_empty() && password.len() >= 43, "a 256-bit secret is at least 43 base64 chars");

    let listed = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || switchboard(&["describe-api-clients", "--data-dir", &dir])
    })
    .await
    .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains(client_id) && !listed.contains(password), "{listed}");

    let id = client_id.to_owned();
    let removed = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || switchboard(&["unregister-api-client", "--client-id", &id, "--data-dir", &dir])
    })
    .await
    .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let listed =
        tokio::task::spawn_blocking(move || switchboard(&["describe-api-clients", "--data-dir", &dir])).await.unwrap();
    assert!(!String::from_utf8(listed.stdout).unwrap().contains(client_id));

    cluster.stop().await;
}

#[test]
fn admin_command_without_a_cluster_explains_what_to_do() {
    let data_dir = tempfile::tempdir().unwrap();
    let output =
        switchboard(&["register-api-client", "--client-name", "x", "--data-dir", data_dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("switchboard up"), "{stderr}");
    assert!(output.stdout.is_empty());
}
