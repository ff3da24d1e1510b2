//! dcvsm, the built binary, against a real `switchboard up`: every command, the settings' precedence
//! (flags > environment > dcvsmcli.conf), the token cache and the exit codes. Outputs that are
//! deterministic once ids and times are masked are compared with `tests/golden/`.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Harness, bare_command, golden, run, wait_for_state};

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array().unwrap().iter().map(|item| item[key].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_switchboard_up() {
    let h = Harness::start(2).await;

    // describe-servers: both hosts; one per page with --max-results 1, both again with --all.
    let servers = run(h.dcvsm(&["describe-servers"])).await.expect_code(0).json();
    let all_ids = ids(&servers["Servers"], "Id");
    assert_eq!(all_ids.len(), 2, "{servers}");
    let first = run(h.dcvsm(&["describe-servers", "--max-results", "1"])).await.expect_code(0).json();
    assert_eq!(first["Servers"].as_array().unwrap().len(), 1, "{first}");
    let token = first["NextToken"].as_str().expect("a NextToken with more pages").to_owned();
    let second = run(h.dcvsm(&["describe-servers", "--max-results", "1", "--next-token", &token])).await;
    let second = second.expect_code(0).json();
    assert_ne!(first["Servers"][0]["Id"], second["Servers"][0]["Id"]);
    let paged = run(h.dcvsm(&["describe-servers", "--max-results", "1", "--all"])).await.expect_code(0).json();
    assert_eq!(ids(&paged["Servers"], "Id"), all_ids, "--all follows NextToken: {paged}");
    assert!(paged.get("NextToken").is_none(), "{paged}");
    let [a, b]: [String; 2] = all_ids.iter().cloned().collect::<Vec<_>>().try_into().unwrap();
    let listed = run(h.dcvsm(&["describe-servers", "--server-ids", &format!("{a},{b}")])).await.expect_code(0).json();
    assert_eq!(ids(&listed["Servers"], "Id"), all_ids, "comma-separated --server-ids: {listed}");
    // Simulated hosts' ids derive from their host names, so the whole fleet table is stable.
    let fleet = run(h.dcvsm(&["--output-format", "table", "describe-servers"])).await.expect_code(0).stdout;
    golden("describe-servers.table", &fleet);
    let table = run(h.dcvsm(&["--output-format", "table", "describe-servers", "--server-ids", &a])).await;
    let table = table.expect_code(0).stdout;
    assert!(table.starts_with("Id ") && table.contains(&a) && table.lines().count() == 2, "{table}");

    // close-servers / open-servers, seen by explain-placement.
    let closed = run(h.dcvsm(&["close-servers", "--server-ids", &b])).await.expect_code(0).json();
    assert_eq!(ids(&closed["SuccessfulList"], "ServerId"), BTreeSet::from([b.clone()]), "{closed}");
    let explained = run(h.dcvsm(&["explain-placement", "--type", "Virtual"])).await.expect_code(0).json();
    assert_eq!(explained["MatchingServers"], serde_json::json!([a.clone()]), "closed {b} is passed over: {explained}");
    let explained = run(h.dcvsm(&[
        "--output-format",
        "table",
        "explain-placement",
        "--requirements",
        "server:Host.Os.Family = 'linux'",
    ]))
    .await
    .expect_code(0)
    .stdout;
    golden("explain-placement.table", &explained.replace(&a, "<server-a>"));
    let invalid = run(h.dcvsm(&["explain-placement", "--requirements", "server:Host.Os.Family = "])).await;
    let invalid = invalid.expect_code(252).json();
    assert_eq!(invalid["Valid"], false, "{invalid}");
    let opened = run(h.dcvsm(&["open-servers", "--server-ids", &b])).await.expect_code(0).json();
    assert_eq!(ids(&opened["SuccessfulList"], "ServerId"), BTreeSet::from([b.clone()]), "{opened}");
    let forced = run(h.dcvsm(&[
        "--output-format",
        "table",
        "close-servers",
        "--server-ids",
        &format!("{b},no-such-server"),
        "--force",
    ]))
    .await;
    golden("close-servers.table", &forced.expect_code(0).stdout.replace(&b, "<server-b>"));
    run(h.dcvsm(&["open-servers", "--server-ids", &b])).await.expect_code(0);

    // create-session: the API's response as JSON; then READY.
    let created = run(h.dcvsm(&[
        "create-session",
        "--name",
        "cli",
        "--owner",
        "alice",
        "--type",
        "Virtual",
        "--max-concurrents-clients",
        "2",
        "--storage-root",
        "/storage",
        "--enqueue-request",
        "false",
        "--requirements",
        &format!("server:Id = '{a}'"),
    ]))
    .await
    .expect_code(0);
    golden("create-session.json", &created.stdout.replace(&a, "<server-a>"));
    let id = created.json()["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
    let ready = wait_for_state(&h, &id, "READY").await;
    assert_eq!(ready["Server"]["Id"], a.as_str(), "placed on the required server: {ready}");
    assert_eq!(ready["MaxConcurrentClients"], 2, "{ready}");

    // close-servers --drain-timeout-seconds: the server with a session drains; the table says until when.
    let drained = run(h.dcvsm(&[
        "--output-format",
        "table",
        "close-servers",
        "--server-ids",
        &a,
        "--drain-timeout-seconds",
        "600",
    ]))
    .await
    .expect_code(0)
    .stdout;
    let row = drained.lines().nth(2).unwrap_or_default();
    assert!(drained.starts_with("Successful\nServerId") && drained.contains("DrainDeadline"), "{drained}");
    assert!(row.starts_with(&a) && row.ends_with('Z'), "the server and its deadline: {drained}");
    let described = run(h.dcvsm(&["describe-servers", "--server-ids", &a])).await.expect_code(0).json();
    assert_eq!(described["Servers"][0]["Draining"], true, "{described}");
    run(h.dcvsm(&["open-servers", "--server-ids", &a])).await.expect_code(0);

    // The remaining create-session options reach the API as the contract spells them.
    let permissions = h.home.path().join("create.perm");
    std::fs::write(&permissions, "[permissions]\n%owner% allow builtin\n").unwrap();
    let every = run(h.dcvsm(&[
        "--debug",
        "create-session",
        "--name",
        "every",
        "--owner",
        "carol",
        "--type",
        "VIRTUAL",
        "--init-file-path",
        "init.sh",
        "--autorun-file",
        "app.sh",
        "--autorun-file-arguments=--fast,-v",
        "--max_concurrent-clients",
        "3",
        "--dcv-gl-enabled",
        "--permissions-file",
        permissions.to_str().unwrap(),
        "--enqueue-request",
        "--max-idle-seconds",
        "1800",
        "--max-lifetime-seconds",
        "28800",
    ]))
    .await
    .expect_code(0);
    let sent = every.stderr.lines().find_map(|line| line.strip_prefix("dcvsm: request body ")).expect("body");
    let sent: Value = serde_json::from_str(sent).unwrap();
    let expected = serde_json::json!([{
        "Name": "every", "Owner": "carol", "Type": "VIRTUAL", "InitFile": "init.sh", "AutorunFile": "app.sh",
        "AutorunFileArguments": ["--fast", "-v"], "MaxConcurrentClients": 3, "DcvGlEnabled": true,
        "PermissionsFile": "W3Blcm1pc3Npb25zXQolb3duZXIlIGFsbG93IGJ1aWx0aW4K", "EnqueueRequest": true,
        "MaxIdleSeconds": 1800, "MaxLifetimeSeconds": 28800,
    }]);
    assert_eq!(sent, expected, "{}", every.stderr);
    assert_eq!(every.json()["SuccessfulList"][0]["Name"], "every", "{}", every.stdout);

    // A session no server can take, not queued, fails at once and is listed as unsuccessful.
    let refused = run(h.dcvsm(&[
        "create-session",
        "--name",
        "x",
        "--owner",
        "bob",
        "--type",
        "Console",
        "--requirements",
        "server:Id = 'none'",
    ]))
    .await;
    let refused = refused.expect_code(0).json();
    assert_eq!(refused["UnsuccessfulList"][0]["CreateSessionRequestData"]["Name"], "x", "{refused}");

    // describe-sessions: by id, by owner, as a table.
    let by_owner = run(h.dcvsm(&["describe-sessions", "--owner", "alice"])).await.expect_code(0).json();
    // (carol's session, created above, is not listed for alice)
    assert_eq!(ids(&by_owner["Sessions"], "Id"), BTreeSet::from([id.clone()]), "{by_owner}");
    let nobody = run(h.dcvsm(&["describe-sessions", "--owner", "nobody"])).await.expect_code(0).json();
    assert_eq!(nobody["Sessions"], serde_json::json!([]), "{nobody}");
    let table = run(h.dcvsm(&["--output-format", "table", "describe-sessions", "--session-ids", &id])).await;
    golden("describe-sessions.table", &table.expect_code(0).stdout.replace(&a, "<server-a>"));
    let all = run(h.dcvsm(&["describe-sessions", "--max-results", "1", "--all"])).await.expect_code(0).json();
    assert!(ids(&all["Sessions"], "Id").contains(&id), "{all}");

    // get-session-connection-data.
    let data = run(h.dcvsm(&["get-session-connection-data", "--session-id", &id, "--user", "alice"])).await;
    let data = data.expect_code(0).json();
    assert_eq!(data["Session"]["Id"], id.as_str(), "{data}");
    assert!(data["ConnectionToken"].as_str().is_some_and(|token| !token.is_empty()), "{data}");

    // get-session-screenshots: JSON, and images written to files.
    let shots = run(h.dcvsm(&[
        "get-session-screenshots",
        "--session-ids",
        &format!("{id},missing"),
        "--max-width",
        "80",
        "--max-height",
        "50",
    ]))
    .await;
    let shots = shots.expect_code(0).json();
    assert_eq!(shots["SuccessfulList"][0]["SessionScreenshot"]["SessionId"], id.as_str(), "{shots}");
    assert_eq!(shots["UnsuccessfulList"][0]["GetSessionScreenshotRequestData"]["SessionId"], "missing", "{shots}");
    let dir = h.home.path().join("shots");
    let written =
        run(h.dcvsm(&["get-session-screenshots", "--session-ids", &id, "--output-dir", dir.to_str().unwrap()])).await;
    let written = written.expect_code(0).stdout;
    let path = written.lines().next().expect("one path per image");
    let bytes = std::fs::read(path).unwrap();
    let png = bytes.starts_with(b"\x89PNG");
    let jpeg = bytes.starts_with(&[0xff, 0xd8]);
    assert!((png && path.ends_with(".png")) || (jpeg && path.ends_with(".jpeg")), "{path}: {:?}", &bytes[..4]);

    // update-session-permissions: the file is sent base64-encoded (the agent parses it).
    let permissions = h.home.path().join("perm.txt");
    std::fs::write(&permissions, "[groups]\n[aliases]\n[permissions]\nalice allow builtin\n").unwrap();
    let updated = run(h.dcvsm(&[
        "update-session-permissions",
        "--session-id",
        &id,
        "--owner",
        "alice",
        "--permission-file",
        permissions.to_str().unwrap(),
    ]))
    .await;
    let updated = updated.expect_code(0).json();
    assert_eq!(updated["SuccessfulList"][0]["SessionId"], id.as_str(), "{updated}");
    std::fs::write(&permissions, "[permissions]\nthis is not a rule\n").unwrap();
    let refused = run(h.dcvsm(&[
        "update-session-permissions",
        "--session-id",
        &id,
        "--owner",
        "alice",
        "--permissions-file",
        permissions.to_str().unwrap(),
    ]))
    .await;
    let refused = refused.expect_code(0).json();
    assert_eq!(refused["UnsuccessfulList"][0]["SessionId"], id.as_str(), "a bad file is refused: {refused}");

    // delete-session.
    let wrong = run(h.dcvsm(&["delete-session", "--session-id", &id, "--owner", "bob"])).await.expect_code(0).json();
    assert_eq!(wrong["UnsuccessfulList"][0]["SessionId"], id.as_str(), "only the owner deletes: {wrong}");
    let deleted = run(h.dcvsm(&[
        "--output-format",
        "table",
        "delete-session",
        "--session-id",
        &id,
        "--owner",
        "alice",
        "--force",
    ]))
    .await;
    golden("delete-session.table", &deleted.expect_code(0).stdout);
    wait_for_state(&h, &id, "DELETED").await;

    h.stop().await;
}

/// Writes `text` as the dcvsm configuration file at `path`.
fn write_conf(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_environment_which_overrides_the_file() {
    let h = Harness::start(1).await;
    let url = h.cluster.api_url.clone();
    let ca = h.cluster.ca_path.to_str().unwrap().to_owned();
    let unreachable = "https://127.0.0.1:1";
    let xdg_conf = h.config_home().join("dcvsmcli.conf");
    let conf = |broker: &str, password: &str, extra: &str| {
        format!(
            "[output]\noutput-format = table\n{extra}\n[security]\nca-bundle = {ca}\n[authentication]\n\
             client-id = {}\nclient-password = {password}\n[broker]\nurl = {broker}\n",
            h.client_id
        )
    };

    // Everything from $XDG_CONFIG_HOME/dcvsmcli.conf, found without --conf; its output format applies.
    write_conf(&xdg_conf, &conf(&url, &h.client_password, ""));
    let from_file = run(h.bare(&["describe-servers"])).await.expect_code(0).stdout;
    assert!(from_file.starts_with("Id "), "table from the file: {from_file}");
    // A flag overrides the file's output format.
    run(h.bare(&["--output-format", "json", "describe-servers"])).await.expect_code(0).json();

    // The file's broker URL is overridden by --broker-url.
    write_conf(&xdg_conf, &conf(unreachable, &h.client_password, ""));
    run(h.bare(&["describe-servers"])).await.expect_code(255);
    run(h.bare(&["--broker-url", &url, "describe-servers"])).await.expect_code(0);

    // The file's password is overridden by DCV_SM_CLIENT_PASSWORD (and a wrong one is the server's 401: 254).
    write_conf(&xdg_conf, &conf(&url, "wrong-password", ""));
    let refused = run(h.bare(&["describe-servers"])).await.expect_code(254);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let mut with_env = h.bare(&["describe-servers"]);
    with_env.env("DCV_SM_CLIENT_PASSWORD", &h.client_password);
    run(with_env).await.expect_code(0);

    // DCV_SM_AUTH_SERVER_URL overrides the file and --auth-server-url (or --auth-server) overrides it.
    write_conf(&xdg_conf, &conf(&url, &h.client_password, ""));
    let with_bad_auth = |args: &[&str]| {
        let mut command = h.bare(args);
        command.env("DCV_SM_AUTH_SERVER_URL", unreachable);
        command
    };
    run(with_bad_auth(&["describe-servers"])).await.expect_code(255);
    let full_token_url = format!("{url}/oauth2/token?grant_type=client_credentials");
    run(with_bad_auth(&["--auth-server-url", &full_token_url, "describe-servers"])).await.expect_code(0);
    run(with_bad_auth(&["--auth-server", &url, "describe-servers"])).await.expect_code(0);

    // --conf wins over the default location.
    let other = h.home.path().join("other.conf");
    write_conf(&other, &conf(&url, &h.client_password, "").replace("output-format = table", "output-format = json"));
    write_conf(&xdg_conf, &conf(unreachable, &h.client_password, ""));
    run(h.bare(&["--conf", other.to_str().unwrap(), "describe-servers"])).await.expect_code(0).json();

    // DCV_SM_OAUTH2_TOKEN replaces the token request (no credentials anywhere).
    let token_file = std::fs::read_dir(h.cache_home().join("dcvsm")).unwrap().next().unwrap().unwrap().path();
    let cached: Value = serde_json::from_slice(&std::fs::read(token_file).unwrap()).unwrap();
    let mut with_token = bare_command(h.home.path(), &["--broker-url", &url, "--ca-bundle", &ca, "describe-servers"]);
    with_token.env("XDG_CONFIG_HOME", h.home.path().join("empty")).env("XDG_CACHE_HOME", h.home.path().join("empty"));
    with_token.env("DCV_SM_OAUTH2_TOKEN", cached["access_token"].as_str().unwrap());
    run(with_token).await.expect_code(0).json();

    // TLS: without the CA the broker's certificate is refused; --no-verify-ssl or the file's key skips it.
    write_conf(&xdg_conf, &conf(&url, &h.client_password, "").replace(&format!("ca-bundle = {ca}"), ""));
    run(h.bare(&["describe-servers"])).await.expect_code(255);
    run(h.bare(&["--no-verify-ssl", "describe-servers"])).await.expect_code(0);
    write_conf(
        &xdg_conf,
        &conf(&url, &h.client_password, "").replace(&format!("ca-bundle = {ca}"), "no-verify-ssl = true"),
    );
    run(h.bare(&["describe-servers"])).await.expect_code(0);

    // --debug (or debug = true) tells on stderr; stdout stays the result.
    let debug = run(h.bare(&["--debug", "--output-format", "json", "describe-servers"])).await.expect_code(0);
    assert!(debug.stderr.contains("POST") && debug.stderr.contains("describeServers"), "{}", debug.stderr);
    assert!(!debug.stderr.contains(&h.client_password), "no secret in debug output");
    debug.json();
    write_conf(&xdg_conf, &conf(&url, &h.client_password, "debug = true"));
    let debug = run(h.bare(&["describe-servers"])).await.expect_code(0);
    assert!(debug.stderr.contains("describeServers"), "{}", debug.stderr);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_cached_privately_until_refused_or_due() {
    let h = Harness::start(1).await;
    let first = run(h.dcvsm(&["--debug", "describe-servers"])).await.expect_code(0);
    assert!(first.stderr.contains("requesting an access token"), "{}", first.stderr);
    let second = run(h.dcvsm(&["--debug", "describe-servers"])).await.expect_code(0);
    assert!(second.stderr.contains("using the cached access token"), "{}", second.stderr);
    assert!(!second.stderr.contains("requesting an access token"), "{}", second.stderr);

    let files: Vec<_> =
        std::fs::read_dir(h.cache_home().join("dcvsm")).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(file).unwrap();
    assert!(!text.contains(&h.client_password) && !file.to_string_lossy().contains(&h.client_id), "{text}");

    // A cached token the broker refuses is replaced once, transparently.
    let mut cached: Value = serde_json::from_str(&text).unwrap();
    cached["access_token"] = "not-a-token".into();
    std::fs::write(file, cached.to_string()).unwrap();
    let refused = run(h.dcvsm(&["--debug", "describe-servers"])).await.expect_code(0);
    assert!(refused.stderr.contains("refused the cached access token"), "{}", refused.stderr);
    let renewed: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_ne!(renewed["access_token"], "not-a-token");

    // A token due for renewal is not reused.
    let mut due = renewed.clone();
    due["refresh_at"] = 1.into();
    std::fs::write(file, due.to_string()).unwrap();
    let expired = run(h.dcvsm(&["--debug", "describe-servers"])).await.expect_code(0);
    assert!(expired.stderr.contains("requesting an access token"), "{}", expired.stderr);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_the_originals() {
    let home = tempfile::tempdir().unwrap();
    for dir in ["config", "cache"] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
    }
    let dcvsm = |args: &[&str]| bare_command(home.path(), args);

    let version = run(dcvsm(&["--version"])).await.expect_code(0);
    assert_eq!(version.stdout.trim(), format!("dcvsm {}", env!("CARGO_PKG_VERSION")));
    let help = run(dcvsm(&["create-session", "--help"])).await.expect_code(0).stdout;
    for option in ["--init-file-path", "--autorun-file-arguments", "--max-concurrents-clients", "--enqueue-request"] {
        assert!(help.contains(option), "{option} in {help}");
    }
    // 2: the command line cannot be parsed.
    run(dcvsm(&[])).await.expect_code(2);
    run(dcvsm(&["describe-sessions", "--no-such-option"])).await.expect_code(2);
    run(dcvsm(&["delete-session", "--session-id", "s"])).await.expect_code(2);
    // 252: an option value is invalid.
    run(dcvsm(&["describe-sessions", "--max-results", "0"])).await.expect_code(252);
    run(dcvsm(&["describe-servers", "--max-results", "1001"])).await.expect_code(252);
    run(dcvsm(&["close-servers", "--server-ids", "s", "--drain-timeout-seconds", "604801"])).await.expect_code(252);
    run(dcvsm(&["close-servers", "--server-ids", "s", "--force", "--drain-timeout-seconds", "5"])).await.expect_code(2);
    run(dcvsm(&["create-session", "--name", "n", "--owner", "o", "--type", "Desktop"])).await.expect_code(252);
    let missing = home.path().join("missing.txt");
    let args = ["--broker-url", "https://127.0.0.1:1", "update-session-permissions", "--session-id", "s"];
    let mut command = dcvsm(&args);
    command.args(["--owner", "o", "--permission-file", missing.to_str().unwrap()]);
    run(command).await.expect_code(252);
    // 1: the configuration file is missing or corrupt.
    run(dcvsm(&["--conf", missing.to_str().unwrap(), "describe-servers"])).await.expect_code(1);
    let corrupt = home.path().join("corrupt.conf");
    std::fs::write(&corrupt, "[broker\nurl = x\n").unwrap();
    let failed = run(dcvsm(&["--conf", corrupt.to_str().unwrap(), "describe-servers"])).await.expect_code(1);
    assert!(failed.stderr.contains("corrupt.conf"), "{}", failed.stderr);
    // 253: the configuration is incomplete.
    let failed = run(dcvsm(&["describe-servers"])).await.expect_code(253);
    assert!(failed.stderr.contains("--broker-url"), "{}", failed.stderr);
    let failed = run(dcvsm(&["--broker-url", "https://127.0.0.1:1", "describe-servers"])).await.expect_code(253);
    assert!(failed.stderr.contains("DCV_SM_CLIENT_ID"), "{}", failed.stderr);
    // 255: the broker cannot be reached.
    let mut command = dcvsm(&["--broker-url", "https://127.0.0.1:1", "describe-servers"]);
    command.env("DCV_SM_CLIENT_ID", "id").env("DCV_SM_CLIENT_PASSWORD", "pw");
    run(command).await.expect_code(255);
}

/// Webhooks through dcvsm and the REST API of `switchboard up`: registered (an http URL refused), a
/// session's READY delivered to an HTTPS receiver with a valid signature, the status described, and
/// unregistered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_through_dcvsm() {
    use std::sync::{Arc, Mutex};

    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    switchboard_common::tls::install_crypto_provider();
    let receiver_dir = tempfile::tempdir().unwrap();
    let ca = switchboard_common::tls::DevCa::load_or_create(receiver_dir.path(), &[]).unwrap();
    let received: Received = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<Received>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let signature = headers["switchboard-signature"].to_str().unwrap().to_owned();
                    received.lock().unwrap().push((signature, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(received.clone());
    let tls = switchboard_common::tls::https_server_config(&ca.server).unwrap();
    tokio::spawn(async move {
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        axum_server::from_tcp_rustls(listener, tls).unwrap().serve(app.into_make_service()).await.unwrap();
    });
    let ca_path = ca.ca_path.clone();
    let h = Harness::start_with(1, move |config| {
        config.webhooks.webhook_allowed_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
        config.webhooks.webhook_ca_file = Some(ca_path);
    })
    .await;

    let refused = run(h.dcvsm(&["register-webhook", "--url", &format!("http://localhost:{port}/hook")])).await;
    assert_ne!(refused.code, 0, "an http URL is refused: {}", refused.stdout);
    assert!(refused.stderr.contains("Url must be https"), "{}", refused.stderr);
    let url = format!("https://localhost:{port}/hook");
    let registered = run(h.dcvsm(&["register-webhook", "--url", &url, "--event-type", "session.state"])).await;
    let registered = registered.expect_code(0).json();
    let (id, secret) = (registered["Id"].as_str().unwrap(), registered["Secret"].as_str().unwrap());
    assert!(id.starts_with("wh-") && secret.starts_with("whsec_"), "{registered}");

    let created = run(h.dcvsm(&["create-session", "--name", "hooked", "--owner", "dave", "--type", "Virtual"])).await;
    let session = created.expect_code(0).json()["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        let found = received.lock().unwrap().iter().find_map(|(signature, body)| {
            let event: Value = serde_json::from_slice(body).unwrap();
            (event["SessionId"] == session.as_str() && event["State"] == "READY")
                .then(|| (signature.clone(), body.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no READY delivered: {:?}", received.lock().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (t, v1) = ready.0.strip_prefix("t=").unwrap().split_once(",v1=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&ready.1);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "the signature verifies with the secret");

    // The progress is stored once the receiver's answer is in: describe until it shows both deliveries.
    let described = loop {
        let described = run(h.dcvsm(&["describe-webhooks"])).await.expect_code(0).json();
        if described["Webhooks"][0]["Delivered"].as_u64() >= Some(2) || tokio::time::Instant::now() >= deadline {
            break described;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let webhook = &described["Webhooks"][0];
    assert_eq!((webhook["Id"].as_str(), webhook["Url"].as_str()), (Some(id), Some(url.as_str())), "{described}");
    assert!(webhook["Delivered"].as_u64().unwrap() >= 2, "CREATING and READY at least: {described}");
    assert!(webhook.get("Secret").is_none() && webhook.get("LastError").is_none(), "{described}");
    let removed = run(h.dcvsm(&["unregister-webhook", "--id", id])).await.expect_code(0).json();
    assert_eq!(removed["Removed"], true);
    let described = run(h.dcvsm(&["describe-webhooks"])).await.expect_code(0).json();
    assert_eq!(described["Webhooks"], serde_json::json!([]));
}
