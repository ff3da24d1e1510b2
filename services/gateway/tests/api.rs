//! The REST API through `router()` with `oneshot`, against fake upstream gRPC servers.

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use support::{post_json, send, start_fakes};
use switchboard_gateway::GatewayConfig;

#[tokio::test]
async fn api_routes_need_an_authorization_header() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    for uri in ["/createSessions", "/describeSessions", "/deleteSessions"] {
        let request = Request::post(uri).body(Body::from("[]")).unwrap();
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
    assert_eq!((second.after_id.as_str(), second.page_size, second.owner.as_deref()), ("known-1", 10, Some("user1")));
    assert_eq!(second.tags[0].key, "os");
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
