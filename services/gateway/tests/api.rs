//! The REST API through `router()` with `oneshot`, against fake upstream gRPC servers.

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::{post_json, send, start_fakes};
use switchboard_gateway::GatewayConfig;

#[tokio::test]
async fn api_routes_need_an_authorization_header() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    for (method, uri) in [
        ("POST", "/createSessions"),
        ("POST", "/describeSessions"),
        ("POST", "/deleteSessions"),
        ("PUT", "/sessionPermissions"),
        ("GET", "/sessionConnectionData/known-1/bob"),
        ("POST", "/getSessionScreenshots"),
        ("POST", "/describeServers"),
        ("POST", "/openServers"),
        ("POST", "/closeServers"),
    ] {
        let request = Request::builder().method(method).uri(uri).body(Body::from("[]")).unwrap();
        let (status, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(body, json!({ "error": "No authorization header" }), "{uri}");
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_json_error() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let request =
        Request::post("/describeSessions").header("authorization", "Bearer forged").body(Body::empty()).unwrap();
    assert_eq!(send(&router, request).await, (StatusCode::UNAUTHORIZED, json!({ "error": "Invalid access token" })));
    let request = Request::post("/describeSessions").header("authorization", "Basic abc").body(Body::empty()).unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
}

#[tokio::test]
async fn health_needs_no_token() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    for uri in ["/health", "/health/ready", "/health/live"] {
        let (status, body) = send(&router, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })), "{uri}");
    }
}

#[tokio::test]
async fn token_endpoint_issues_tokens_for_good_credentials_only() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let basic = |credentials: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
    };
    let request = Request::post("/oauth2/token?grant_type=client_credentials")
        .header("authorization", basic("good:pw"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "access_token": "jwt-for-good", "token_type": "Bearer", "expires_in": 3600 }));

    // Everything in the form body instead.
    let request = Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials&client_id=good&client_secret=pw"))
        .unwrap();
    assert_eq!(send(&router, request).await.0, StatusCode::OK);

    let request = Request::post("/oauth2/token?grant_type=client_credentials")
        .header("authorization", basic("good:wrong"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")));

    let request = Request::post("/oauth2/token?grant_type=password")
        .header("authorization", basic("good:pw"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type")));

    let request = Request::post("/oauth2/token?grant_type=client_credentials").body(Body::empty()).unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")));
}

#[tokio::test]
async fn create_sessions_answers_with_the_contract_envelope() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([
        { "Name": "s1", "Owner": "user1", "Type": "VIRTUAL", "PermissionsFile": "aGVsbG8=" },
        { "Name": "s2", "Owner": "nohost", "Type": "CONSOLE" },
        { "Name": "s3", "Owner": "user1", "Type": "BOGUS" },
        { "Name": "s4", "Owner": "user1", "Type": "VIRTUAL", "PermissionsFile": "not base64!" },
    ]);
    let (status, response) = send(&router, post_json("/createSessions", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(uuid::Uuid::parse_str(response["RequestId"].as_str().unwrap()).is_ok());
    assert_eq!(
        response["SuccessfulList"],
        json!([{
            "Id": "session-0",
            "Name": "s1",
            "Owner": "user1",
            "Type": "VIRTUAL",
            "State": "CREATING",
            "Substate": "SESSION_PLACING",
            "CreationTime": "2020-10-06T10:15:31.633Z",
            "NumOfConnections": 0
        }])
    );
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            {
                "CreateSessionRequestData": { "Name": "s2", "Owner": "nohost", "Type": "CONSOLE" },
                "FailureReason": "no server can host the session: no servers are registered"
            },
            {
                "CreateSessionRequestData": { "Name": "s3", "Owner": "user1", "Type": "BOGUS" },
                "FailureReason": "Invalid session type \"BOGUS\": Type must be CONSOLE or VIRTUAL"
            },
            {
                "CreateSessionRequestData": { "Name": "s4", "Owner": "user1", "Type": "VIRTUAL", "PermissionsFile": "not base64!" },
                "FailureReason": "PermissionsFile is not valid base64"
            }
        ])
    );
    let seen = upstream.fakes.seen.lock().unwrap();
    let specs = &seen.create_requests[0].specs;
    assert_eq!(specs.len(), 2, "items failing JSON-level checks never reach placement");
    assert_eq!(specs[0].permissions_file, b"hello");
    assert_eq!(seen.create_requests[0].request_id, response["RequestId"].as_str().unwrap());
}

#[tokio::test]
async fn create_sessions_rejects_bad_bodies_with_json_errors() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig { max_batch: 2, ..Default::default() });
    let unknown = post_json("/createSessions", r#"[{"Owner":"a","Type":"VIRTUAL","Foo":1}]"#);
    assert_eq!(
        send(&router, unknown).await,
        (StatusCode::BAD_REQUEST, json!({ "error": "Unrecognized field \"Foo\"" }))
    );

    let (status, body) = send(&router, post_json("/createSessions", "[{\"Owner\":")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("Malformed JSON"), "{body}");

    let (status, body) = send(&router, post_json("/createSessions", "[]")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "The request must contain at least one session");

    let (status, body) = send(&router, post_json("/createSessions", r#"[{},{},{}]"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "The request may contain at most 2 sessions");
    assert!(upstream.fakes.seen.lock().unwrap().create_requests.is_empty());
}

#[tokio::test]
async fn create_sessions_passes_an_idempotency_key_with_the_body_hash_and_the_client() {
    use sha2::Digest;
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = r#"[{"Name":"s1","Owner":"user1","Type":"VIRTUAL"}]"#;
    let with_key = |key: &str| {
        let mut request = post_json("/createSessions", body);
        request.headers_mut().insert("idempotency-key", key.parse().unwrap());
        request
    };
    assert_eq!(send(&router, with_key("retry-1")).await.0, StatusCode::OK);
    assert_eq!(send(&router, post_json("/createSessions", body)).await.0, StatusCode::OK);
    // Every item failing JSON-level checks: placement still records the key with this body.
    let mut refused = post_json("/createSessions", r#"[{"Owner":"user1","Type":"BOGUS"}]"#);
    refused.headers_mut().insert("idempotency-key", "retry-2".parse().unwrap());
    assert_eq!(send(&router, refused).await.0, StatusCode::OK);
    {
        let seen = upstream.fakes.seen.lock().unwrap();
        let keyed = &seen.create_requests[0];
        assert_eq!(keyed.idempotency_key, "retry-1");
        assert_eq!(keyed.body_sha256, sha2::Sha256::digest(body.as_bytes()).to_vec(), "the raw body's SHA-256");
        assert_eq!(keyed.client_id, "client-1", "the key is scoped by the calling client");
        let plain = &seen.create_requests[1];
        assert!(
            plain.idempotency_key.is_empty() && plain.body_sha256.is_empty() && plain.client_id.is_empty(),
            "without a key, placement's request is as before"
        );
        assert_eq!(
            (seen.create_requests[2].idempotency_key.as_str(), seen.create_requests[2].specs.len()),
            ("retry-2", 0)
        );
    }

    for bad in [String::new(), "k".repeat(256), "tab\there".to_owned(), " lead".to_owned()] {
        let mut request = post_json("/createSessions", body);
        request.headers_mut().insert("idempotency-key", bad.parse().unwrap());
        let (status, answer) = send(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "key {bad:?}");
        assert_eq!(answer["error"], switchboard_proto::contract::IDEMPOTENCY_KEY_INVALID);
    }
    let mut twice = post_json("/createSessions", body);
    twice.headers_mut().append("idempotency-key", "a".parse().unwrap());
    twice.headers_mut().append("idempotency-key", "b".parse().unwrap());
    assert_eq!(send(&router, twice).await.0, StatusCode::BAD_REQUEST, "two keys");
    assert_eq!(upstream.fakes.seen.lock().unwrap().create_requests.len(), 3, "refused keys never reach placement");
}

#[tokio::test]
async fn oversized_bodies_get_413_json() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig { max_body_bytes: 64, ..Default::default() });
    let big = format!(r#"[{{"Name":"{}"}}]"#, "x".repeat(200));
    let (status, body) = send(&router, post_json("/createSessions", &big)).await;
    assert_eq!((status, body), (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": "Request body is too large" })));
}

#[tokio::test]
async fn describe_sessions_accepts_an_empty_body_and_pages_with_next_token() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let request =
        Request::post("/describeSessions").header("authorization", "Bearer valid").body(Body::empty()).unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);
    let session = &body["Sessions"][0];
    assert_eq!(session["Id"], "known-1");
    assert_eq!(session["State"], "READY");
    assert_eq!(session["Server"]["Port"], "8443", "Server.Port is a string in the contract");
    assert_eq!(session["Server"]["Endpoints"][0]["Port"], 8443);
    assert_eq!(session["Server"]["Tags"], json!([{ "Key": "os", "Value": "windows" }]));
    assert!(session.get("LastDisconnectionTime").is_none(), "absent fields are omitted, not null");
    let token = body["NextToken"].as_str().unwrap().to_owned();

    let next = json!({ "NextToken": token, "MaxResults": 10, "Filters": [{ "Key": "owner", "Value": "user1" }, { "Key": "tag:os", "Value": "windows" }] });
    let (status, body) = send(&router, post_json("/describeSessions", &next.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("NextToken").is_none());
    let seen = upstream.fakes.seen.lock().unwrap();
    let second = &seen.list_requests[1];
    assert_eq!(
        (second.page_token.as_str(), second.page_size, second.owner.as_deref()),
        ("signed-known-1", 10, Some("user1")),
        "the store's signed token is passed back verbatim"
    );
    assert_eq!(second.tags[0].key, "os");
}

/// Reaping's additions: the items' limits reach placement, an out-of-range item fails alone, and a
/// session whose reap is announced says when and why (others keep the official shape).
#[tokio::test]
async fn reap_limits_are_passed_on_and_an_announced_reap_is_described() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([
        { "Owner": "user1", "Type": "VIRTUAL", "MaxIdleSeconds": 1800, "MaxLifetimeSeconds": 0 },
        { "Owner": "user1", "Type": "VIRTUAL" },
        { "Owner": "user1", "Type": "VIRTUAL", "MaxLifetimeSeconds": 31_536_001 },
    ]);
    let (status, response) = send(&router, post_json("/createSessions", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        response["UnsuccessfulList"],
        json!([{
            "CreateSessionRequestData": { "Owner": "user1", "Type": "VIRTUAL", "MaxLifetimeSeconds": 31_536_001 },
            "FailureReason": "MaxLifetimeSeconds must be between 0 and 31536000"
        }])
    );
    {
        let seen = upstream.fakes.seen.lock().unwrap();
        let limits: Vec<_> =
            seen.create_requests[0].specs.iter().map(|s| (s.max_idle_seconds, s.max_lifetime_seconds)).collect();
        assert_eq!(limits, [(Some(1800), Some(0)), (None, None)], "absent stays absent: the settings apply");
    }

    let ids = json!({ "SessionIds": ["known-reaping-1", "known-1"] });
    let (status, body) = send(&router, post_json("/describeSessions", &ids.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let reaping = &body["Sessions"][0];
    assert_eq!(
        (reaping["ReapAt"].as_str(), reaping["ReapReason"].as_str()),
        (Some("2023-11-14T22:13:20.000Z"), Some("IDLE"))
    );
    let plain = &body["Sessions"][1];
    assert!(plain.get("ReapAt").is_none() && plain.get("ReapReason").is_none(), "{plain}");
}

#[tokio::test]
async fn describe_sessions_shows_where_a_queued_session_stands() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let ids = json!({ "SessionIds": ["known-queued-1", "known-1"] });
    let (status, body) = send(&router, post_json("/describeSessions", &ids.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let queued = &body["Sessions"][0];
    assert_eq!((queued["QueuePosition"].as_u64(), queued["QueueLength"].as_u64()), (Some(2), Some(5)), "{queued}");
    assert_eq!(queued["StateReason"], "queued: no server matches (position 2 of 5)");
    assert_eq!(queued["QueueEstimatedWaitSeconds"], 60, "{queued}");
    assert!(queued["QueueEstimatedStartTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{queued}");
    let plain = &body["Sessions"][1];
    for field in ["QueuePosition", "QueueLength", "QueueEstimatedStartTime", "QueueEstimatedWaitSeconds"] {
        assert!(plain.get(field).is_none(), "the official shape for a session not queued: {plain}");
    }
}

#[tokio::test]
async fn describe_sessions_validates_its_parameters() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    for (body, message) in [
        (r#"{"MaxResults":0}"#, "MaxResults must be between 1 and 1000"),
        (r#"{"MaxResults":1001}"#, "MaxResults must be between 1 and 1000"),
        (r#"{"NextToken":"%%%"}"#, "Invalid NextToken"),
        (
            r#"{"Filters":[{"Key":"color","Value":"red"}]}"#,
            "Unsupported filter \"color\": supported filters are owner and tag:<key>",
        ),
    ] {
        assert_eq!(
            send(&router, post_json("/describeSessions", body)).await,
            (StatusCode::BAD_REQUEST, json!({ "error": message }))
        );
    }
    let (status, body) = send(&router, post_json("/describeSessions", r#"{"SessionIds":["known-2","missing"]}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Sessions"].as_array().unwrap().len(), 1);
    assert_eq!(body["Sessions"][0]["Id"], "known-2");
}

#[tokio::test]
async fn delete_sessions_passes_store_reasons_through() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([
        { "SessionId": "known-1", "Owner": "user1" },
        { "SessionId": "SessionIdabc", "Owner": "user99", "Force": true },
        { "Owner": "user1" },
    ]);
    let (status, response) = send(&router, post_json("/deleteSessions", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["SuccessfulList"], json!([{ "SessionId": "known-1", "State": "DELETING" }]));
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            { "SessionId": "SessionIdabc", "FailureReason": "The requested dcvSession does not exist" },
            { "SessionId": "", "FailureReason": "SessionId is required" },
        ])
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({ "error": "Not found" })));
    let (status, _) = send(&router, Request::get("/createSessions").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn internal_upstream_detail_never_leaks() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, post_json("/describeSessions", r#"{"SessionIds":["explode"]}"#)).await;
    assert_eq!((status, body), (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": "Internal error" })));
}

fn put_json(uri: &str, body: &str) -> Request<Body> {
    Request::put(uri)
        .header("authorization", "Bearer valid")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).header("authorization", "Bearer valid").body(Body::empty()).unwrap()
}

#[tokio::test]
async fn describe_servers_returns_full_servers_and_the_stores_token() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, post_json("/describeServers", r#"{"MaxResults":1}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Servers"][0]["Id"], "server-1");
    assert_eq!(body["Servers"][0]["Port"], "8443");
    assert_eq!(body["NextToken"], "signed-server-1");
    let (status, body) = send(&router, post_json("/describeServers", r#"{"NextToken":"signed-server-1"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("NextToken").is_none());
    let request = Request::post("/describeServers").header("authorization", "Bearer valid").body(Body::empty());
    assert_eq!(send(&router, request.unwrap()).await.0, StatusCode::OK, "the body is optional");
    {
        let seen = upstream.fakes.seen.lock().unwrap();
        let pages: Vec<(u32, &str)> =
            seen.server_list_requests.iter().map(|r| (r.page_size, r.page_token.as_str())).collect();
        assert_eq!(pages, [(1, ""), (1000, "signed-server-1"), (1000, "")]);
    }
    for (body, message) in [
        (r#"{"MaxResults":0}"#, "MaxResults must be between 1 and 1000"),
        (r#"{"ServerIds":"x"}"#, "Invalid request: invalid type: string \"x\", expected a sequence"),
        (r#"{"Bogus":1}"#, "Unrecognized field \"Bogus\""),
    ] {
        assert_eq!(
            send(&router, post_json("/describeServers", body)).await,
            (StatusCode::BAD_REQUEST, json!({ "error": message })),
            "{body}"
        );
    }
}

#[tokio::test]
async fn open_and_close_servers_keep_item_order_and_echo_failures() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([{ "ServerId": "server-1" }, { "ServerId": "nope" }, {}]);
    let (status, response) = send(&router, post_json("/openServers", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["SuccessfulList"], json!([{ "ServerId": "server-1" }]));
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            { "OpenServerRequestData": { "ServerId": "nope" }, "FailureCode": "DCV_SERVER_NOT_FOUND", "FailureReason": "Dcv server not found." },
            { "OpenServerRequestData": {}, "FailureCode": "INVALID_REQUEST", "FailureReason": "ServerId is required" },
        ])
    );
    let body = json!([{ "ServerId": "server-1" }, { "ServerId": "server-1", "Force": true }]);
    let (status, response) = send(&router, post_json("/closeServers", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["SuccessfulList"], json!([{ "ServerId": "server-1" }]));
    assert_eq!(response["UnsuccessfulList"][0]["CloseServerRequestData"], json!({ "ServerId": "server-1" }));
    assert_eq!(response["UnsuccessfulList"][0]["FailureCode"], "SERVER_HAS_SESSIONS");
    let seen = upstream.fakes.seen.lock().unwrap();
    let closes: Vec<(bool, bool)> = seen.open_requests.iter().skip(1).map(|r| (r.open, r.force)).collect();
    assert_eq!(closes, [(false, true), (false, false)], "one call for the forced items, one for the others");
}

#[tokio::test]
async fn close_servers_drains_with_a_timeout_and_checks_it_per_item() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([
        { "ServerId": "server-1", "DrainTimeoutSeconds": 600 },
        { "ServerId": "server-1", "DrainTimeoutSeconds": 0 },
        { "ServerId": "server-1" },
        { "ServerId": "nope", "DrainTimeoutSeconds": 600 },
        { "ServerId": "server-1", "DrainTimeoutSeconds": -1 },
        { "ServerId": "server-1", "DrainTimeoutSeconds": 604_801 },
        { "ServerId": "server-1", "Force": true, "DrainTimeoutSeconds": 5 },
    ]);
    let (status, response) = send(&router, post_json("/closeServers", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        response["SuccessfulList"],
        json!([
            { "ServerId": "server-1", "Draining": true, "DrainDeadline": "2023-11-14T22:23:20.000Z" },
            { "ServerId": "server-1" },
        ]),
        "a drain is a success that says so; Force ignores the timeout"
    );
    let has_sessions = |item: Value| json!({ "CloseServerRequestData": item, "FailureCode": "SERVER_HAS_SESSIONS", "FailureReason": "Dcv server has sessions; close it with force to proceed." });
    let out_of_range = |item: Value| json!({ "CloseServerRequestData": item, "FailureCode": "INVALID_REQUEST", "FailureReason": "DrainTimeoutSeconds must be between 0 and 604800" });
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            has_sessions(json!({ "ServerId": "server-1", "DrainTimeoutSeconds": 0 })),
            has_sessions(json!({ "ServerId": "server-1" })),
            { "CloseServerRequestData": { "ServerId": "nope", "DrainTimeoutSeconds": 600 }, "FailureCode": "DCV_SERVER_NOT_FOUND", "FailureReason": "Dcv server not found." },
            out_of_range(json!({ "ServerId": "server-1", "DrainTimeoutSeconds": -1 })),
            out_of_range(json!({ "ServerId": "server-1", "DrainTimeoutSeconds": 604_801 })),
        ])
    );
    let seen = upstream.fakes.seen.lock().unwrap();
    let calls: Vec<(bool, Option<u32>, usize)> =
        seen.open_requests.iter().map(|r| (r.force, r.drain_timeout_seconds, r.server_ids.len())).collect();
    assert_eq!(
        calls,
        [(true, None, 1), (false, None, 1), (false, Some(0), 1), (false, Some(600), 2)],
        "one call per kind of item; the store's default when the item gives none"
    );
}

#[tokio::test]
async fn describe_servers_shows_a_drain_with_the_time_left() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, post_json("/describeServers", r#"{"ServerIds":["draining-1"]}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let server = &body["Servers"][0];
    assert_eq!(server["Draining"], true, "{server}");
    assert_eq!(
        (server["Availability"].as_str(), server["UnavailabilityReason"].as_str()),
        (Some("UNAVAILABLE"), Some("SERVER_CLOSED"))
    );
    assert!(server["DrainDeadline"].as_str().is_some_and(|t| t.ends_with('Z')), "{server}");
    let left = server["DrainSecondsLeft"].as_u64().unwrap();
    assert!((1..=90).contains(&left), "at most the 90 s the fake set: {server}");
    let (_, body) = send(&router, post_json("/describeServers", r#"{"ServerIds":["server-1"]}"#)).await;
    for field in ["Draining", "DrainDeadline", "DrainSecondsLeft"] {
        assert!(body["Servers"][0].get(field).is_none(), "{field} only while draining: {body}");
    }
}

#[tokio::test]
async fn update_session_permissions_checks_each_item_and_sends_the_file_to_the_host() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let encode = |text: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    let body = json!([
        { "SessionId": "known-1", "Owner": "user1", "PermissionsFile": encode(b"[permissions]") },
        { "SessionId": "known-2", "Owner": "someone", "PermissionsFile": encode(b"[permissions]") },
        { "SessionId": "unknown", "Owner": "user1", "PermissionsFile": encode(b"[permissions]") },
        { "SessionId": "known-3", "Owner": "user1", "PermissionsFile": encode(b"bad file") },
        { "SessionId": "known-4", "Owner": "user1" },
    ]);
    let (status, response) = send(&router, put_json("/sessionPermissions", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["SuccessfulList"], json!([{ "SessionId": "known-1" }]));
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            { "SessionId": "known-2", "FailureReason": "The requested dcvSession does not exist" },
            { "SessionId": "unknown", "FailureReason": "The requested dcvSession does not exist" },
            { "SessionId": "known-3", "FailureReason": "invalid permissions file: line 1" },
            { "SessionId": "known-4", "FailureReason": "PermissionsFile is required" },
        ])
    );
    {
        let seen = upstream.fakes.seen.lock().unwrap();
        assert_eq!(seen.commands.len(), 2, "only valid items reach the host");
        assert_eq!(seen.commands[0].server_id, "server-1");
    }
    let (status, _) = send(&router, post_json("/sessionPermissions", "[]")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "PUT only, as in the contract");
}

#[tokio::test]
async fn session_connection_data_returns_the_session_and_a_token() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, get("/sessionConnectionData/known-1/bob")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Session"]["Id"], "known-1");
    assert_eq!(body["Session"]["Server"]["Ip"], "1.1.1.123");
    assert_eq!(body["ConnectionToken"], "conn-known-1-bob");
    {
        let seen = upstream.fakes.seen.lock().unwrap();
        let request = &seen.connection_requests[0];
        assert_eq!((request.session_owner.as_str(), request.user.as_str()), ("user1", "bob"));
    }
    assert_eq!(
        send(&router, get("/sessionConnectionData/missing/bob")).await,
        (StatusCode::NOT_FOUND, json!({ "error": "The requested dcvSession does not exist" }))
    );
    let long = "u".repeat(300);
    let (status, body) = send(&router, get(&format!("/sessionConnectionData/known-1/{long}"))).await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, json!({ "error": "user must be 1 to 256 characters" })));
    assert_eq!(send(&router, get("/sessionConnectionData/known-1")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn screenshots_use_the_configured_defaults_and_report_failures_per_item() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let body = json!([
        { "SessionId": "known-1" },
        { "SessionId": "known-2", "MaxWidth": 640, "MaxHeight": 480 },
        { "SessionId": "missing" },
        { "SessionId": "known-3", "MaxHeight": 0 },
    ]);
    let (status, response) = send(&router, post_json("/getSessionScreenshots", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let image = &response["SuccessfulList"][0]["SessionScreenshot"];
    assert_eq!(image["SessionId"], "known-1");
    assert_eq!(
        image["Images"][0],
        json!({ "Format": "png", "Data": "aW1hZ2U=", "CreationTime": "2020-10-06T10:15:31.633Z", "Primary": true })
    );
    assert_eq!(
        response["UnsuccessfulList"],
        json!([
            { "GetSessionScreenshotRequestData": { "SessionId": "missing" }, "FailureReason": "Dcv session not found." },
            { "GetSessionScreenshotRequestData": { "SessionId": "known-3", "MaxHeight": 0 }, "FailureReason": "MaxHeight must be greater than 0" },
        ])
    );
    let seen = upstream.fakes.seen.lock().unwrap();
    let sizes: Vec<(u32, u32, String)> = seen
        .commands
        .iter()
        .map(|c| match c.command.as_ref().and_then(|c| c.action.clone()) {
            Some(switchboard_proto::host_command::Action::Screenshot(s)) => (s.max_width, s.max_height, s.format),
            other => panic!("unexpected command {other:?}"),
        })
        .collect();
    let mut sizes = sizes;
    sizes.sort();
    assert_eq!(sizes, [(160, 100, "png".to_owned()), (640, 480, "png".to_owned())]);
}

/// `session-screenshot-max-width`, `-max-height` and `-format` set to other values than the defaults reach
/// the host's screenshot command for an item without `MaxWidth`/`MaxHeight`.
#[tokio::test]
async fn screenshot_settings_other_than_the_defaults_reach_the_host() {
    let upstream = start_fakes().await;
    let config = GatewayConfig {
        session_screenshot_max_width: 320,
        session_screenshot_max_height: 200,
        session_screenshot_format: "jpeg".to_owned(),
        ..GatewayConfig::default()
    };
    let router = upstream.router(config);
    let body = json!([{ "SessionId": "known-1" }]);
    let (status, response) = send(&router, post_json("/getSessionScreenshots", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let seen = upstream.fakes.seen.lock().unwrap();
    let sizes: Vec<(u32, u32, String)> = seen
        .commands
        .iter()
        .filter_map(|c| match c.command.as_ref().and_then(|c| c.action.clone()) {
            Some(switchboard_proto::host_command::Action::Screenshot(s)) => Some((s.max_width, s.max_height, s.format)),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [(320, 200, "jpeg".to_owned())]);
}

#[tokio::test]
async fn the_served_spec_needs_no_token_and_is_yaml() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let response =
        tower::ServiceExt::oneshot(router, Request::get("/dcv-session-manager-api.yaml").body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let served = switchboard_gateway::spec::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert_eq!(served, switchboard_gateway::spec::merged().unwrap());
}
