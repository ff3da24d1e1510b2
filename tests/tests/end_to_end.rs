//! The core loop end to end, through the real architecture: an in-process
//! all-in-one cluster on ephemeral ports, two simulated hosts, and a real
//! HTTPS client trusting the generated CA.
//!
//! register client → token → createSessions → READY → describeSessions →
//! deleteSessions → DELETED.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Cluster, UpConfig};

struct Harness {
    cluster: Cluster,
    http: reqwest::Client,
    data_dir: tempfile::TempDir,
}

impl Harness {
    async fn start(sim_hosts: usize) -> Harness {
        Self::start_in(tempfile::tempdir().unwrap(), sim_hosts).await
    }

    /// A cluster on `data_dir` (a restart: the same dir again).
    async fn start_in(data_dir: tempfile::TempDir, sim_hosts: usize) -> Harness {
        Self::start_with(data_dir, sim_hosts, |_| {}).await
    }

    /// A cluster on `data_dir` with settings changed by `change`.
    async fn start_with(data_dir: tempfile::TempDir, sim_hosts: usize, change: impl FnOnce(&mut UpConfig)) -> Harness {
        switchboard_common::telemetry::init_for_tests();
        let mut config = UpConfig::ephemeral(data_dir.path(), sim_hosts);
        change(&mut config);
        let cluster = Cluster::start(config).await.expect("cluster starts");
        cluster.wait_ready(sim_hosts, Duration::from_secs(20)).await.expect("hosts connect");
        let ca = reqwest::Certificate::from_pem(cluster.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .https_only(true)
            .build()
            .unwrap();
        Harness { cluster, http, data_dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.api_url)
    }

    async fn register_client(&self) -> (String, String) {
        let response = self
            .cluster
            .admin
            .client()
            .unwrap()
            .register_api_client(switchboard_proto::RegisterApiClientRequest {
                client_name: "e2e".into(),
                ..Default::default()
            })
            .await
            .expect("register api client")
            .into_inner();
        (response.client_id, response.client_secret)
    }

    async fn token(&self) -> String {
        let (id, secret) = self.register_client().await;
        let response = self
            .http
            .post(self.url("/oauth2/token?grant_type=client_credentials"))
            .basic_auth(&id, Some(&secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().unwrap() > 0);
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, body) = self.send(token, reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Any method, any body; the status and the JSON body (every answer is JSON).
    async fn send(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        (status, body)
    }

    /// A raw body with a JSON content type.
    async fn send_raw(&self, token: &str, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
    }

    /// Creates one VIRTUAL session of alice's and waits until it is READY; its id and its server's id.
    async fn create_ready(&self, token: &str) -> (String, String) {
        let created = self.call(token, "/createSessions", json!([{ "Owner": "alice", "Type": "VIRTUAL" }])).await;
        let id = created["SuccessfulList"][0]["Id"].as_str().unwrap_or_else(|| panic!("created: {created}")).to_owned();
        let ready = self.wait_for_state(token, &id, "READY").await;
        let server = ready["Server"]["Id"].as_str().unwrap_or_else(|| panic!("on a server: {ready}")).to_owned();
        (id, server)
    }

    /// Polls describeServers until `check` holds for server `id`; its last description.
    async fn wait_for_server(&self, token: &str, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.call(token, "/describeServers", json!({ "ServerIds": [id] })).await;
            let server = &body["Servers"][0];
            if check(server) {
                return server.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "server {id} never {what}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls describeSessions until the session reaches `state`.
    async fn wait_for_state(&self, token: &str, session_id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.call(token, "/describeSessions", json!({ "SessionIds": [session_id] })).await;
            if let Some(session) = body["Sessions"].as_array().and_then(|s| s.first())
                && session["State"] == state
            {
                return session.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "session {session_id} never became {state}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_delete_over_https() {
    let harness = Harness::start(2).await;

    // Every API call needs a token.
    let response = harness.http.post(harness.url("/describeSessions")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "error": "No authorization header" }));
    let response = harness.http.post(harness.url("/describeSessions")).bearer_auth("not-a-jwt").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let token = harness.token().await;

    // Create: accepted as CREATING / SESSION_PLACING.
    let created =
        harness.call(&token, "/createSessions", json!([{ "Name": "e2e", "Owner": "alice", "Type": "VIRTUAL" }])).await;
    assert!(created["RequestId"].is_string());
    assert_eq!(created["UnsuccessfulList"], json!([]), "{created}");
    let session = &created["SuccessfulList"][0];
    assert_eq!(session["State"], "CREATING");
    assert_eq!(session["Substate"], "SESSION_PLACING");
    assert_eq!(session["Owner"], "alice");
    let id = session["Id"].as_str().unwrap().to_owned();

    // The agent creates it: READY, on a simulated host.
    let ready = harness.wait_for_state(&token, &id, "READY").await;
    assert_eq!(ready["Name"], "e2e");
    assert_eq!(ready["Type"], "VIRTUAL");
    assert!(ready["Server"]["Hostname"].as_str().unwrap().starts_with("sim-host-"), "{ready}");
    assert!(ready["Server"]["Port"].is_string(), "Server.Port is a string on the wire: {ready}");
    assert!(ready["CreationTime"].as_str().unwrap().ends_with('Z'));

    // Filter by owner.
    let mine =
        harness.call(&token, "/describeSessions", json!({ "Filters": [{ "Key": "owner", "Value": "alice" }] })).await;
    assert!(mine["Sessions"].as_array().unwrap().iter().any(|s| s["Id"] == id.as_str()), "{mine}");
    let theirs =
        harness.call(&token, "/describeSessions", json!({ "Filters": [{ "Key": "owner", "Value": "bob" }] })).await;
    assert!(theirs["Sessions"].as_array().unwrap().iter().all(|s| s["Id"] != id.as_str()), "{theirs}");

    // Delete: wrong owner refused, right owner → DELETING → DELETED.
    let refused = harness.call(&token, "/deleteSessions", json!([{ "SessionId": id, "Owner": "mallory" }])).await;
    assert_eq!(refused["UnsuccessfulList"][0]["SessionId"], id.as_str(), "{refused}");
    let deleted = harness.call(&token, "/deleteSessions", json!([{ "SessionId": id, "Owner": "alice" }])).await;
    assert_eq!(deleted["SuccessfulList"][0], json!({ "SessionId": id, "State": "DELETING" }), "{deleted}");
    harness.wait_for_state(&token, &id, "DELETED").await;

    harness.cluster.stop().await;
}

/// `up`'s placement settings take effect: the `AutorunFileArguments` limits refuse an item over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_applies_the_autorun_limits() {
    let harness = Harness::start_with(tempfile::tempdir().unwrap(), 1, |config| {
        config.placement.autorun_file_arguments_max_size = 1;
        config.placement.autorun_file_arguments_max_argument_length = 4;
    })
    .await;
    let token = harness.token().await;
    let item = |args: Value| json!({ "Name": "autorun", "Owner": "alice", "Type": "VIRTUAL", "AutorunFile": "run.sh", "AutorunFileArguments": args });
    let created = harness
        .call(
            &token,
            "/createSessions",
            json!([item(json!(["a", "b"])), item(json!(["toolong"])), item(json!(["ok"]))]),
        )
        .await;
    let reasons: Vec<&str> = created["UnsuccessfulList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["FailureReason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{created}");
    assert!(reasons.iter().any(|r| r.contains("at most 1 items")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains('4')), "{reasons:?}");
    assert_eq!(created["SuccessfulList"].as_array().unwrap().len(), 1, "{created}");
    harness.cluster.stop().await;
}

/// `register-server-dns-mappings`: the resolver answers the mapped internal name, connection data
/// shows the external one, an unmapped host keeps its address, and a new registration replaces the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mappings_name_servers_for_the_gateway_and_clients() {
    use switchboard_proto::{ListServerDnsMappingsRequest, RegisterServerDnsMappingsRequest};
    let harness = Harness::start(1).await;
    let token = harness.token().await;
    let created =
        harness.call(&token, "/createSessions", json!([{ "Name": "dns", "Owner": "alice", "Type": "VIRTUAL" }])).await;
    let id = created["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
    let ready = harness.wait_for_state(&token, &id, "READY").await;
    let ip = ready["Server"]["Ip"].as_str().unwrap();
    let servers = harness.call(&token, "/describeServers", json!({})).await;
    let host = servers["Servers"][0]["Id"].as_str().unwrap().to_owned();
    let resolver = format!("https://localhost:{}", harness.cluster.resolver_addr.unwrap().port());
    let endpoint = || async {
        let url = format!("{resolver}/resolveSession?sessionId={id}&transport=HTTP");
        let response = harness.http.post(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["DcvServerEndpoint"].as_str().unwrap().to_owned()
    };
    let dns_name = || async {
        let (status, body) =
            harness.send(&token, reqwest::Method::GET, &format!("/sessionConnectionData/{id}/bob"), None).await;
        assert_eq!(status, 200, "{body}");
        body["Session"]["Server"]["DefaultDnsName"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(endpoint().await, ip, "without a mapping the resolver answers the address");

    // The original's file, read by the admin command's own parser.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mappings.json");
    let text = json!([
        { "ServerIdType": "Id", "ServerId": host, "DnsNames": { "InternalDnsName": "dcv-1.corp.internal", "ExternalDnsName": "dcv-1.example.com" } },
        { "ServerIdType": "Host.Aws.Ec2InstanceId", "ServerId": "i-0648aee30bc78bdff", "DnsNames": { "InternalDnsName": "other.internal" } },
    ]);
    std::fs::write(&file, text.to_string()).unwrap();
    let mappings = switchboard::dns_cli::read_file(&file).unwrap();
    let mut admin = harness.cluster.admin.agent_admin_client().unwrap();
    let registered = admin.register_server_dns_mappings(RegisterServerDnsMappingsRequest { mappings }).await.unwrap();
    assert_eq!(registered.into_inner().count, 2);
    let listed = admin.list_server_dns_mappings(ListServerDnsMappingsRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.mappings[0].internal_dns_name, "dcv-1.corp.internal");

    // Each replica re-reads the mappings within dns_names::REFRESH (2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while endpoint().await != "dcv-1.corp.internal" {
        assert!(tokio::time::Instant::now() < deadline, "the resolver never answered the mapped name");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(dns_name().await, "dcv-1.example.com", "connection data shows the external name");

    // A malformed set is refused whole; the registered one stays.
    let bad = switchboard_proto::DnsMappingRecord { server_id_type: "Mac".into(), ..Default::default() };
    let refused = admin.register_server_dns_mappings(RegisterServerDnsMappingsRequest { mappings: vec![bad] }).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);

    // A registration replaces the set: an empty one removes every mapping.
    admin.register_server_dns_mappings(RegisterServerDnsMappingsRequest { mappings: vec![] }).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while endpoint().await != ip {
        assert!(tokio::time::Instant::now() < deadline, "the mapping outlived its removal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(dns_name().await, "dcv-1.example.com");
    drop((admin, endpoint, dns_name));
    harness.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_spread_one_per_host() {
    let harness = Harness::start(2).await;
    let token = harness.token().await;
    let body = json!([
        { "Name": "c1", "Owner": "u1", "Type": "CONSOLE" },
        { "Name": "c2", "Owner": "u2", "Type": "CONSOLE" },
    ]);
    let created = harness.call(&token, "/createSessions", body).await;
    let ids: Vec<String> =
        created["SuccessfulList"].as_array().unwrap().iter().map(|s| s["Id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{created}");
    let mut hosts = Vec::new();
    for id in &ids {
        let ready = harness.wait_for_state(&token, id, "READY").await;
        hosts.push(ready["Server"]["Id"].as_str().unwrap().to_owned());
    }
    assert_ne!(hosts[0], hosts[1], "one console session per host");

    // A third console session has nowhere to go.
    let third =
        harness.call(&token, "/createSessions", json!([{ "Name": "c3", "Owner": "u3", "Type": "CONSOLE" }])).await;
    let failed_at_once = third["UnsuccessfulList"].as_array().is_some_and(|list| !list.is_empty());
    if !failed_at_once {
        let id = third["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
        let ended = harness.wait_for_state(&token, &id, "DELETED").await;
        assert!(!ended["StateReason"].as_str().unwrap_or_default().is_empty(), "{ended}");
    }
    harness.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_no_token() {
    let harness = Harness::start(1).await;
    let (id, _secret) = harness.register_client().await;
    let response = harness
        .http
        .post(harness.url("/oauth2/token?grant_type=client_credentials"))
        .basic_auth(&id, Some("wrong"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    harness.cluster.stop().await;
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn png_size(data: &str) -> (u32, u32) {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Every operation of the official API over HTTPS, with the guide's error texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_over_https() {
    use reqwest::Method;
    let harness = Harness::start(2).await;
    let token = harness.token().await;

    // The served spec needs no token and is the official document plus additions.
    let spec = harness.http.get(harness.url("/dcv-session-manager-api.yaml")).send().await.unwrap();
    assert_eq!(spec.status(), 200);
    let spec = spec.text().await.unwrap();
    assert!(spec.contains("operationId: GetSessionConnectionData") || spec.contains("GetSessionConnectionData"));
    assert!(spec.contains("ErrorResponse"), "additions are merged in");

    // describeServers: the full Server, paged with a signed NextToken.
    let servers = harness.call(&token, "/describeServers", json!({})).await;
    let list = servers["Servers"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{servers}");
    assert!(servers.get("NextToken").is_none(), "one page holds everything: {servers}");
    let server = &list[0];
    assert_eq!(server["Availability"], "AVAILABLE", "{server}");
    assert!(server.get("UnavailabilityReason").is_none());
    assert!(server["Port"].is_string() && server["Endpoints"][0]["Port"].is_u64(), "{server}");
    for key in ["Id", "Ip", "Hostname", "Version", "SessionManagerAgentVersion", "Host", "Tags"] {
        assert!(server.get(key).is_some(), "Server.{key} missing: {server}");
    }
    assert!(server["Host"]["Os"]["Family"].is_string() && server["Host"]["Memory"]["TotalBytes"].is_u64(), "{server}");
    let first = harness.call(&token, "/describeServers", json!({ "MaxResults": 1 })).await;
    let next = first["NextToken"].as_str().expect("a full page has a NextToken").to_owned();
    let second = harness.call(&token, "/describeServers", json!({ "MaxResults": 1, "NextToken": next })).await;
    assert_ne!(first["Servers"][0]["Id"], second["Servers"][0]["Id"]);
    assert!(second.get("NextToken").is_none() || second["Servers"].as_array().unwrap().len() == 1);
    let mut tampered = next.clone();
    tampered.insert(0, 'A');
    let (status, body) =
        harness.send(&token, Method::POST, "/describeServers", Some(json!({ "NextToken": tampered }))).await;
    assert_eq!((status, body), (400, json!({ "error": "Invalid NextToken" })));
    let (status, body) = harness.send(&token, Method::POST, "/describeServers", Some(json!({ "MaxResults": 0 }))).await;
    assert_eq!((status, body), (400, json!({ "error": "MaxResults must be between 1 and 1000" })));
    let server_ids: Vec<String> = list.iter().map(|s| s["Id"].as_str().unwrap().to_owned()).collect();

    // createSessions: each item on its own; bad items echo the request with a precise reason.
    let created = harness
        .call(
            &token,
            "/createSessions",
            json!([
                { "Name": "ok", "Owner": "alice", "Type": "VIRTUAL", "InitFile": "init.sh", "AutorunFile": "app.sh",
                  "AutorunFileArguments": ["-v"], "MaxConcurrentClients": 3, "DcvGlEnabled": true,
                  "PermissionsFile": "W3Blcm1pc3Npb25zXQ==", "StorageRoot": "/home/alice", "EnqueueRequest": false,
                  "DisableRetryOnFailure": false, "Requirements": "server:Host.Os.Family = 'linux'" },
                { "Name": "bad-type", "Owner": "alice", "Type": "DESKTOP" },
                { "Name": "escape", "Owner": "alice", "Type": "VIRTUAL", "InitFilePath": "../../etc/passwd" },
                { "Name": "gl", "Owner": "alice", "Type": "CONSOLE", "DcvGlEnabled": true },
            ]),
        )
        .await;
    assert_eq!(created["SuccessfulList"].as_array().unwrap().len(), 1, "{created}");
    let failures: Vec<(&str, &str)> = created["UnsuccessfulList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["CreateSessionRequestData"]["Name"].as_str().unwrap(), f["FailureReason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        failures,
        [
            ("bad-type", "Invalid session type \"DESKTOP\": Type must be CONSOLE or VIRTUAL"),
            ("escape", "InitFile must not contain '..': it is relative to the agent's folder"),
            ("gl", "DcvGlEnabled is supported with VIRTUAL sessions only"),
        ],
        "{created}"
    );
    assert_eq!(created["UnsuccessfulList"][1]["CreateSessionRequestData"]["InitFilePath"], "../../etc/passwd");
    let id = created["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
    let ready = harness.wait_for_state(&token, &id, "READY").await;
    assert_eq!(ready["MaxConcurrentClients"], 3, "{ready}");
    assert_eq!(ready["StorageRoot"], "/home/alice", "{ready}");
    let host = ready["Server"]["Id"].as_str().unwrap().to_owned();

    // describeSessions pages with NextToken across the whole listing.
    let other =
        harness.call(&token, "/createSessions", json!([{ "Name": "b", "Owner": "bob", "Type": "VIRTUAL" }])).await;
    let other_id = other["SuccessfulList"][0]["Id"].as_str().unwrap().to_owned();
    harness.wait_for_state(&token, &other_id, "READY").await;
    let page = harness.call(&token, "/describeSessions", json!({ "MaxResults": 1 })).await;
    let next = page["NextToken"].as_str().expect("NextToken on a full page").to_owned();
    let rest = harness.call(&token, "/describeSessions", json!({ "MaxResults": 1, "NextToken": next })).await;
    let mut seen = vec![page["Sessions"][0]["Id"].clone(), rest["Sessions"][0]["Id"].clone()];
    seen.sort_by_key(|v| v.as_str().unwrap().to_owned());
    let mut expected = vec![json!(id), json!(other_id)];
    expected.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(seen, expected, "two pages of one session each");
    let (status, body) =
        harness.send(&token, Method::POST, "/describeSessions", Some(json!({ "NextToken": "forged" }))).await;
    assert_eq!((status, body), (400, json!({ "error": "Invalid NextToken" })));

    // updateSessionPermissions: applied by the agent; owner must match.
    let (status, updated) = harness
        .send(
            &token,
            Method::PUT,
            "/sessionPermissions",
            Some(json!([
                { "SessionId": id, "Owner": "alice", "PermissionsFile": "W3Blcm1pc3Npb25zXQo=" },
                { "SessionId": id, "Owner": "mallory", "PermissionsFile": "W3Blcm1pc3Npb25zXQo=" },
                { "SessionId": id, "Owner": "alice", "PermissionsFile": "%%%" },
            ])),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["SuccessfulList"], json!([{ "SessionId": id }]), "{updated}");
    assert_eq!(
        updated["UnsuccessfulList"],
        json!([
            { "SessionId": id, "FailureReason": "The requested dcvSession does not exist" },
            { "SessionId": id, "FailureReason": "PermissionsFile is not valid base64" },
        ])
    );

    // getSessionConnectionData: the session plus a signed token with the DCV claims.
    let (status, connection) =
        harness.send(&token, Method::GET, &format!("/sessionConnectionData/{id}/bob"), None).await;
    assert_eq!(status, 200, "{connection}");
    assert_eq!(connection["Session"]["Id"], id.as_str());
    let claims = jwt_claims(connection["ConnectionToken"].as_str().unwrap());
    assert_eq!((&claims["dcvSessionId"], &claims["dcvSessionOwner"]), (&json!(id), &json!("alice")), "{claims}");
    assert_eq!(claims["dcvSessionUser"], "bob");
    assert_eq!(claims["aud"], "dcv-connection");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["jti"].is_string());
    let (status, body) = harness.send(&token, Method::GET, "/sessionConnectionData/nope/bob", None).await;
    assert_eq!((status, body), (404, json!({ "error": "The requested dcvSession does not exist" })));

    // getSessionScreenshots: 160x100 by default, never larger than asked.
    let shots = harness
        .call(
            &token,
            "/getSessionScreenshots",
            json!([
                { "SessionId": id },
                { "SessionId": id, "MaxWidth": 64, "MaxHeight": 64 },
                { "SessionId": id, "MaxWidth": 0 },
                { "SessionId": "nope" },
            ]),
        )
        .await;
    let images: Vec<&Value> = shots["SuccessfulList"].as_array().unwrap().iter().collect();
    assert_eq!(images.len(), 2, "{shots}");
    let image = &images[0]["SessionScreenshot"]["Images"][0];
    assert_eq!((image["Format"].as_str(), image["Primary"].as_bool()), (Some("png"), Some(true)));
    assert!(image["CreationTime"].as_str().unwrap().ends_with('Z'));
    let (w, h) = png_size(image["Data"].as_str().unwrap());
    assert!(w <= 160 && h <= 100 && (w == 160 || h == 100), "{w}x{h}");
    let (w, h) = png_size(images[1]["SessionScreenshot"]["Images"][0]["Data"].as_str().unwrap());
    assert!(w <= 64 && h <= 64, "{w}x{h}");
    let failures: Vec<&str> =
        shots["UnsuccessfulList"].as_array().unwrap().iter().map(|f| f["FailureReason"].as_str().unwrap()).collect();
    assert_eq!(failures, ["MaxWidth must be greater than 0", "Dcv session not found."]);
    assert_eq!(
        shots["UnsuccessfulList"][0]["GetSessionScreenshotRequestData"],
        json!({ "SessionId": id, "MaxWidth": 0 })
    );

    // The Connection Gateway resolver.
    let resolver = format!("https://localhost:{}", harness.cluster.resolver_addr.unwrap().port());
    let response = harness
        .http
        .post(format!("{resolver}/resolveSession?sessionId={id}&transport=HTTP&clientIpAddress=10.1.2.3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let resolved: Value = response.json().await.unwrap();
    assert_eq!(resolved["SessionId"], id.as_str());
    assert_eq!(resolved["TransportProtocol"], "HTTP");
    assert!(
        resolved["Port"].is_u64() && resolved["DcvServerEndpoint"].is_string() && resolved["WebUrlPath"].is_string()
    );
    let response =
        harness.http.post(format!("{resolver}/resolveSession?sessionId=nope&transport=HTTP")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // The simulated hosts serve HTTP only (no QUIC endpoint in their dcv.conf), so QUIC does not resolve.
    let response =
        harness.http.post(format!("{resolver}/resolveSession?sessionId={id}&transport=quic")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response =
        harness.http.post(format!("{resolver}/resolveSession?sessionId={id}&transport=UDP")).send().await.unwrap();
    assert_eq!(response.status(), 400);

    // closeServers: refused while sessions run unless forced; openServers undoes it.
    let closed = harness.call(&token, "/closeServers", json!([{ "ServerId": host }, { "ServerId": "nope" }])).await;
    assert_eq!(closed["SuccessfulList"], json!([]), "{closed}");
    assert_eq!(closed["UnsuccessfulList"][0]["CloseServerRequestData"], json!({ "ServerId": host }));
    assert_eq!(
        closed["UnsuccessfulList"][1],
        json!({ "CloseServerRequestData": { "ServerId": "nope" }, "FailureCode": "DCV_SERVER_NOT_FOUND", "FailureReason": "Dcv server not found." })
    );
    let closed = harness.call(&token, "/closeServers", json!([{ "ServerId": host, "Force": true }])).await;
    assert_eq!(closed["SuccessfulList"], json!([{ "ServerId": host }]), "{closed}");
    let described = harness.call(&token, "/describeServers", json!({ "ServerIds": [host] })).await;
    assert_eq!(described["Servers"][0]["UnavailabilityReason"], "SERVER_CLOSED", "{described}");
    let opened = harness.call(&token, "/openServers", json!([{ "ServerId": host }, { "ServerId": "nope" }])).await;
    assert_eq!(opened["SuccessfulList"], json!([{ "ServerId": host }]));
    assert_eq!(
        opened["UnsuccessfulList"],
        json!([{ "OpenServerRequestData": { "ServerId": "nope" }, "FailureCode": "DCV_SERVER_NOT_FOUND", "FailureReason": "Dcv server not found." }])
    );
    assert_eq!(server_ids.len(), 2);

    // deleteSessions: exact unknown-id text; Force forgets at once.
    let deleted = harness
        .call(&token, "/deleteSessions", json!([{ "SessionId": "nope", "Owner": "alice" }, { "SessionId": other_id, "Owner": "bob", "Force": true }]))
        .await;
    assert_eq!(
        deleted["UnsuccessfulList"],
        json!([{ "SessionId": "nope", "FailureReason": "The requested dcvSession does not exist" }])
    );
    assert_eq!(deleted["SuccessfulList"][0]["SessionId"], other_id.as_str(), "{deleted}");

    // Bad input: never a 5xx, always a JSON error.
    for (path, body, expected) in [
        ("/createSessions", "[{", "Malformed JSON"),
        ("/createSessions", r#"[{"Owner":"a","Foo":1}]"#, "Unrecognized field \"Foo\""),
        ("/createSessions", r#"[{"Owner":5}]"#, "Invalid request"),
        ("/createSessions", "", "Request body is required"),
        ("/describeSessions", r#"{"MaxResults":"ten"}"#, "Invalid request"),
        ("/openServers", r#"{"ServerId":"x"}"#, "Invalid request"),
        ("/getSessionScreenshots", r#"[{"SessionId":"x","MaxWidth":1.5}]"#, "Invalid request"),
    ] {
        let (status, answer) = harness.send_raw(&token, path, body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer["error"].as_str().unwrap().starts_with(expected), "{path} {body}: {answer}");
    }
    let (status, answer) = harness.send_raw(&token, "/createSessions", vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!((status, answer), (413, json!({ "error": "Request body is too large" })));
    let (status, answer) = harness.send(&token, Method::GET, "/createSessions", None).await;
    assert_eq!((status, answer), (405, json!({ "error": "Method not allowed" })));

    harness.cluster.stop().await;
}

/// A queued create request survives a restart of the all-in-one (embedded store): both hosts closed, the
/// request is queued; after the restart it is still CREATING and queued, and opening a host places it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_survives_a_restart() {
    let harness = Harness::start(2).await;
    let token = harness.token().await;
    let servers = harness.call(&token, "/describeServers", json!({})).await;
    let ids: Vec<String> =
        servers["Servers"].as_array().unwrap().iter().map(|s| s["Id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2, "{servers}");
    let closed = harness
        .call(&token, "/closeServers", json!(ids.iter().map(|id| json!({ "ServerId": id })).collect::<Vec<_>>()))
        .await;
    assert_eq!(closed["UnsuccessfulList"], json!([]), "{closed}");
    let created = harness
        .call(&token, "/createSessions", json!([{ "Owner": "alice", "Type": "VIRTUAL", "EnqueueRequest": true }]))
        .await;
    let id = created["SuccessfulList"][0]["Id"].as_str().unwrap_or_else(|| panic!("queued: {created}")).to_owned();
    let queued = |session: &Value| {
        session["State"] == "CREATING" && session["StateReason"].as_str().is_some_and(|r| r.starts_with("queued:"))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = harness.call(&token, "/describeSessions", json!({ "SessionIds": [id] })).await;
        if queued(&body["Sessions"][0]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never queued: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restart on the same data dir: clients, keys, open flags and the queue are durable.
    let Harness { cluster, data_dir, .. } = harness;
    cluster.stop().await;
    let harness = Harness::start_in(data_dir, 2).await;
    let token = harness.token().await;
    let body = harness.call(&token, "/describeSessions", json!({ "SessionIds": [id] })).await;
    assert!(queued(&body["Sessions"][0]), "still queued after the restart: {body}");
    // Where it stands (docs/saas.md, "Queue position and ETA"): first of one, and no estimate before any
    // placement of its class.
    let session = &body["Sessions"][0];
    assert_eq!((session["QueuePosition"].as_u64(), session["QueueLength"].as_u64()), (Some(1), Some(1)), "{body}");
    assert!(session["StateReason"].as_str().is_some_and(|r| r.ends_with(" (position 1 of 1)")), "{body}");
    assert!(session.get("QueueEstimatedStartTime").is_none(), "no rate known: {body}");

    let opened = harness.call(&token, "/openServers", json!([{ "ServerId": ids[1] }])).await;
    assert_eq!(opened["UnsuccessfulList"], json!([]), "{opened}");
    let ready = harness.wait_for_state(&token, &id, "READY").await;
    assert_eq!(ready["Server"]["Id"], ids[1].as_str(), "{ready}");
    harness.cluster.stop().await;
}

/// Graceful drain (docs/saas.md, "Drain"): closed without Force with a drain timeout, a host with a session
/// drains (a success that says so; describeServers shows it; new sessions go elsewhere) and closes when its
/// last session ends; with a short timeout it closes at the deadline, its session still running; openServers
/// cancels a drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_closed_without_force_drains() {
    let harness = Harness::start(2).await;
    let token = harness.token().await;
    let (first, busy) = harness.create_ready(&token).await;
    let servers = harness.call(&token, "/describeServers", json!({})).await;
    let other = servers["Servers"].as_array().unwrap().iter().map(|s| s["Id"].as_str().unwrap()).find(|id| *id != busy);
    let other = other.unwrap_or_else(|| panic!("two hosts: {servers}")).to_owned();
    let drain = |id: &str, seconds: u32| json!([{ "ServerId": id, "DrainTimeoutSeconds": seconds }]);
    let draining = |server: &Value| server["Draining"] == true;

    let closed = harness.call(&token, "/closeServers", drain(&busy, 3600)).await;
    assert_eq!(closed["UnsuccessfulList"], json!([]), "{closed}");
    let entry = &closed["SuccessfulList"][0];
    assert_eq!(
        (entry["ServerId"].as_str(), entry["Draining"].as_bool()),
        (Some(busy.as_str()), Some(true)),
        "{closed}"
    );
    assert!(entry["DrainDeadline"].as_str().is_some_and(|t| t.ends_with('Z')), "{closed}");
    let described = harness.call(&token, "/describeServers", json!({ "ServerIds": [busy] })).await;
    let server = &described["Servers"][0];
    assert!(draining(server), "{described}");
    assert_eq!(server["UnavailabilityReason"], "SERVER_CLOSED", "closed for placement: {described}");
    assert_eq!(server["DrainDeadline"], entry["DrainDeadline"], "{described}");
    assert!(server["DrainSecondsLeft"].as_u64().is_some_and(|left| left > 0 && left <= 3600), "{described}");

    // New sessions go to the other host.
    for _ in 0..2 {
        let (_, server) = harness.create_ready(&token).await;
        assert_eq!(server, other, "no new session on the draining host");
    }

    // Its last session ends: it is closed, no longer draining.
    harness.call(&token, "/deleteSessions", json!([{ "SessionId": first, "Owner": "alice" }])).await;
    harness.wait_for_state(&token, &first, "DELETED").await;
    let closed = harness.wait_for_server(&token, &busy, "closed", |s| !draining(s)).await;
    assert_eq!(closed["UnavailabilityReason"], "SERVER_CLOSED", "{closed}");
    assert!(closed.get("DrainDeadline").is_none() && closed.get("DrainSecondsLeft").is_none(), "{closed}");

    // A short deadline: closed with its session still running.
    harness.call(&token, "/openServers", json!([{ "ServerId": busy }])).await;
    harness.call(&token, "/closeServers", json!([{ "ServerId": other, "Force": true }])).await;
    let (running, server) = harness.create_ready(&token).await;
    assert_eq!(server, busy, "the only open host");
    let closed = harness.call(&token, "/closeServers", drain(&busy, 1)).await;
    assert_eq!(closed["SuccessfulList"][0]["Draining"], true, "{closed}");
    let closed = harness.wait_for_server(&token, &busy, "closed at its deadline", |s| !draining(s)).await;
    assert_eq!(closed["UnavailabilityReason"], "SERVER_CLOSED", "{closed}");
    harness.wait_for_state(&token, &running, "READY").await;

    // openServers cancels a drain.
    harness.call(&token, "/openServers", json!([{ "ServerId": busy }])).await;
    let closed = harness.call(&token, "/closeServers", drain(&busy, 3600)).await;
    assert_eq!(closed["SuccessfulList"][0]["Draining"], true, "{closed}");
    let opened = harness.call(&token, "/openServers", json!([{ "ServerId": busy }])).await;
    assert_eq!(opened["SuccessfulList"], json!([{ "ServerId": busy }]), "{opened}");
    let described = harness.call(&token, "/describeServers", json!({ "ServerIds": [busy] })).await;
    let server = &described["Servers"][0];
    assert!(server.get("Draining").is_none(), "{described}");
    assert_ne!(server["UnavailabilityReason"], "SERVER_CLOSED", "open again: {described}");
    harness.cluster.stop().await;
}

/// The event stream of the all-in-one (embedded store): a session's creation, placement and READY, a
/// permissions update, a forced close and a reopen of its host, and its deletion, in order, by long poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_what_happens() {
    let harness = Harness::start(1).await;
    let token = harness.token().await;
    let (status, start) = harness.send(&token, reqwest::Method::GET, "/events?wait=0", None).await;
    assert_eq!(status, 200, "{start}");
    let mut cursor = start["Cursor"].as_str().unwrap().to_owned();
    let (id, server) = harness.create_ready(&token).await;
    let update = json!([{ "SessionId": id, "Owner": "alice", "PermissionsFile": "W3Blcm1pc3Npb25zXQo=" }]);
    let (status, answer) = harness.send(&token, reqwest::Method::PUT, "/sessionPermissions", Some(update)).await;
    assert_eq!((status, answer["UnsuccessfulList"].as_array().map(Vec::len)), (200, Some(0)), "{answer}");
    harness.call(&token, "/closeServers", json!([{ "ServerId": server, "Force": true }])).await;
    harness.call(&token, "/openServers", json!([{ "ServerId": server }])).await;
    harness.call(&token, "/deleteSessions", json!([{ "SessionId": id, "Owner": "alice" }])).await;

    let expected = [
        ("session.state", "CREATING"),
        ("session.placed", "CREATING"),
        ("session.state", "READY"),
        ("session.permissions", ""),
        ("server.availability", "SERVER_CLOSED"),
        ("server.availability", "AVAILABLE"),
        ("session.state", "DELETING"),
        ("session.state", "DELETED"),
    ];
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < expected.len() {
        assert!(tokio::time::Instant::now() < deadline, "events missing: {seen:?}");
        let path = format!("/events?after={cursor}&wait=5");
        let (status, page) = harness.send(&token, reqwest::Method::GET, &path, None).await;
        assert_eq!((status, &page["Truncated"]), (200, &json!(false)), "{page}");
        for event in page["Events"].as_array().unwrap() {
            let kind = event["Type"].as_str().unwrap().to_owned();
            let about = if kind == "server.availability" {
                assert_eq!(event["ServerId"], server.as_str());
                event["UnavailabilityReason"].as_str().or(event["Availability"].as_str()).unwrap().to_owned()
            } else {
                assert_eq!((&event["SessionId"], &event["Owner"]), (&json!(id), &json!("alice")), "{event}");
                event["State"].as_str().unwrap_or_default().to_owned()
            };
            seen.push((kind, about));
        }
        cursor = page["Cursor"].as_str().unwrap().to_owned();
    }
    let expected: Vec<(String, String)> = expected.iter().map(|(k, a)| (k.to_string(), a.to_string())).collect();
    assert_eq!(seen, expected, "the events in order");
}
