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
    let config = UpConfig::ephemeral(data_dir.path(), 0);
    let cluster = Cluster::start(config).await.unwrap();
    cluster.wait_ready(0, Duration::from_secs(10)).await.unwrap();

    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        // `-cn`: the original CLI's short form, as its console setup wizard writes it.
        move || switchboard(&["register-api-client", "-cn", "ci", "--data-dir", &dir])
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
    assert_eq!(String::from_utf8_lossy(&removed.stdout), format!("Client {client_id} unregistered.\n"));
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

/// Runs the binary off the async runtime.
async fn run(args: Vec<String>) -> (bool, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        switchboard(&args)
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_server_key_and_scope_commands_also_work_with_an_auth_url_and_token_file() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = UpConfig::ephemeral(data_dir.path(), 0);
    let cluster = Cluster::start(config).await.unwrap();
    cluster.wait_ready(0, Duration::from_secs(10)).await.unwrap();
    // As in a Kubernetes auth pod: no admin.json, the auth URL and the mounted token file instead.
    let elsewhere = tempfile::tempdir().unwrap();
    let token_file = elsewhere.path().join("admin-token");
    std::fs::write(&token_file, format!("{}\n", cluster.admin.token.expose())).unwrap();
    let remote = |command: &[&str]| {
        let mut list = args(command);
        list.extend(args(&["--data-dir", elsewhere.path().to_str().unwrap(), "--auth-url", &cluster.admin.auth_url]));
        list.extend(args(&["--admin-token-file", token_file.to_str().unwrap()]));
        list
    };

    let (ok, out, err) =
        run(remote(&["register-api-client", "--client-name", "portal", "--read-only", "--allowed-owner", "bob,alice"]))
            .await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out, err) = run(remote(&["describe-api-clients"])).await;
    assert!(ok, "{err}");
    let (heading, listed) = out.split_once('\n').expect("a heading line and JSON");
    assert_eq!(heading, "Api clients", "the original broker's heading: {out}");
    let listed: serde_json::Value = serde_json::from_str(listed).expect("a JSON array");
    let portal = listed.as_array().unwrap().iter().find(|c| c["name"] == "portal").expect("portal listed");
    assert_eq!(portal["active"], true, "{out}");
    assert!(portal["id"].is_string(), "{out}");
    assert_eq!(portal["scope"], "read-only owners=alice,bob", "{out}");

    let url = "https://idp.example.com/.well-known/jwks.json";
    let (ok, out, err) = run(remote(&[
        "register-auth-server",
        "--url",
        url,
        "--algorithm",
        "RS256",
        "--issuer",
        "https://idp.example.com/",
    ]))
    .await;
    assert!(ok && out == "Jwk url registered.\n", "the original's text: {out} {err}");
    let (_, out, _) = run(remote(&["list-auth-servers"])).await;
    assert!(out.starts_with(&format!("Urls: [{url}]\n")), "the original's first line: {out}");
    assert!(out.contains("algorithm: RS256") && out.contains("audience: (any)"), "then ours: {out}");
    let (ok, _, err) = run(remote(&["register-auth-server", "--url", "http://idp.example.com/jwks"])).await;
    assert!(!ok && err.contains("https"), "plain http to a remote host is refused: {err}");
    let (ok, _, err) = run(remote(&["unregister-auth-server", "--url", url])).await;
    assert!(ok, "{err}");
    let (_, out, _) = run(remote(&["list-auth-servers"])).await;
    assert!(!out.contains(url), "{out}");
    let (ok, _, err) = run(remote(&["unregister-auth-server", "--url", url])).await;
    assert!(!ok && err.contains("not found"), "{err}");

    let (ok, out, err) = run(remote(&["renew-auth-server-api-key"])).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("Keys renewed.\nnew key: ") && out.contains("retiring key: "), "{out}");

    // The agent enrolment commands take the same target.
    let (ok, out, err) = run(remote(&["generate-software-statement"])).await;
    assert!(ok, "{err}");
    let statement = out.trim().strip_prefix("software-statement: ").expect("software-statement line").to_owned();
    let (ok, out, err) = run(remote(&["describe-software-statements"])).await;
    assert!(ok && out.starts_with("Software Statements\n") && out.contains("\"is-active\": \"true\""), "{out} {err}");
    let (ok, out, err) = run(remote(&["deactivate-software-statement", "--software-statement", &statement])).await;
    assert!(ok && out.contains("deactivated"), "{out} {err}");
    let (ok, out, err) = run(remote(&["describe-software-statements"])).await;
    assert!(ok && out.contains("\"is-active\": \"false\""), "{out} {err}");
    let (ok, out, err) = run(remote(&["describe-agent-clients"])).await;
    assert!(ok && out.starts_with("Session manager agent clients\n"), "{out} {err}");
    let (ok, _, err) = run(remote(&["unregister-agent-client", "--client-id", "no-such-client"])).await;
    assert!(!ok && !err.is_empty(), "an unknown agent client is an error: {err}");

    // DNS mappings: the original's file, output texts and listing.
    let file = data_dir.path().join("mappings.json");
    std::fs::write(
        &file,
        r#"[{"ServerIdType": "Ip", "ServerId": "192.168.0.1", "DnsNames": {"InternalDnsName": "internal1", "ExternalDnsName": "external1"}},
            {"ServerIdType": "Host.Aws.Ec2InstanceId", "ServerId": "i-0648aee30bc78bdff", "DnsNames": {"InternalDnsName": "internal2"}}]"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (ok, out, err) = run(remote(&["register-server-dns-mappings", "--file-path", path])).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("Successfully loaded 2 server id - dns name mappings from file {path}\n"));
    let (ok, out, err) = run(remote(&["describe-server-dns-mappings"])).await;
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            { "serverIdType": "Ip", "serverId": "192.168.0.1", "dnsNames": { "internalDnsName": "internal1", "externalDnsName": "external1" } },
            { "serverIdType": "Host.Aws.Ec2InstanceId", "serverId": "i-0648aee30bc78bdff", "dnsNames": { "internalDnsName": "internal2" } },
        ])
    );
    std::fs::write(
        &file,
        r#"[{"ServerIdType": "Ip", "ServerId": "10.0.0.1", "DnsNames": {"InternalDnsName": "bad name"}}]"#,
    )
    .unwrap();
    let (ok, _, err) = run(remote(&["register-server-dns-mappings", "--file-path", path])).await;
    assert!(!ok && err.contains("mapping 0: DnsNames.InternalDnsName `bad name` is not a DNS name"), "{err}");

    // The same commands through admin.json.
    let (ok, out, err) = run(args(&["list-auth-servers", "--data-dir", data_dir.path().to_str().unwrap()])).await;
    assert!(ok && out == "Urls: []\n", "none registered: {out} {err}");

    let (ok, _, err) =
        run(args(&["list-auth-servers", "--data-dir", elsewhere.path().to_str().unwrap(), "--auth-url", "http://x:1"]))
            .await;
    assert!(!ok && err.contains("--admin-token-file"), "{err}");
    cluster.stop().await;
}

/// The original broker's properties, under their own names (dashes, and its names where ours differ), in
/// `up`'s settings file: each reaches the setting it names (`--dump-config` prints the effective values).
#[test]
fn up_reads_the_original_broker_property_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    let properties = [
        ("session-screenshot-max-width", "320", "session_screenshot_max_width"),
        ("session-screenshot-max-height", "200", "session_screenshot_max_height"),
        ("session-screenshot-format", "\"jpeg\"", "session_screenshot_format"),
        ("create-sessions-queue-max-size", "7", "create_sessions_queue_max_size"),
        ("create-sessions-queue-max-time-seconds", "90", "create_sessions_queue_max_time_seconds"),
        ("create-sessions-number-of-retries-on-failure", "0", "create_sessions_number_of_retries_on_failure"),
        ("autorun-file-arguments-max-size", "3", "autorun_file_arguments_max_size"),
        ("autorun-file-arguments-max-argument-length", "40", "autorun_file_arguments_max_argument_length"),
        ("connect-session-token-duration-minutes", "15", "connect_session_token_duration_minutes"),
        ("delete-session-duration-seconds", "120", "deleted_session_retention_seconds"),
        ("seconds-before-deleting-unreachable-dcv-server", "600", "seconds_before_deleting_unreachable_server"),
        (
            "seconds-before-deleting-sessions-unreachable-server",
            "300",
            "seconds_before_deleting_sessions_unreachable_server",
        ),
    ];
    let text: String = properties.iter().map(|(name, value, _)| format!("{name} = {value}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let output = switchboard(&["up", "--config", file.to_str().unwrap(), "--dump-config"]);
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{err}");
    for (name, value, key) in properties {
        assert!(out.lines().any(|line| line == format!("{key} = {value}")), "{name} → {key} = {value}:\n{out}");
    }
    // The same as flags, where the name differs from ours.
    let output = switchboard(&["up", "--delete-session-duration-seconds", "42", "--dump-config"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted_session_retention_seconds = 42\n"));
    // A misspelt property is refused, not ignored.
    std::fs::write(&file, "create-session-queue-max-size = 7\n").unwrap();
    let output = switchboard(&["up", "--config", file.to_str().unwrap(), "--dump-config"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown setting `create-session-queue-max-size`"));
}
