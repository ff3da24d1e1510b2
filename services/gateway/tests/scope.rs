//! Scoped API clients, rate limits and the header limit, through `router()` against fake upstreams.

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use support::{send, start_fakes};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::limits::LimitsConfig;

fn post_as(token: &str, uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn read_only_clients_may_describe_but_not_change() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let (status, body) = send(&router, post_as("read-only", "/describeSessions", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Sessions"][0]["Id"], "known-1");

    let create = json!([{ "Name": "n", "Owner": "user1", "Type": "VIRTUAL" }]).to_string();
    let (status, body) = send(&router, post_as("read-only", "/createSessions", &create)).await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({ "error": "The API client is read-only and may not call CreateSessions" }))
    );
    let delete = json!([{ "SessionId": "known-1", "Owner": "user1" }]).to_string();
    let (status, _) = send(&router, post_as("read-only", "/deleteSessions", &delete)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(upstream.fakes.seen.lock().unwrap().create_requests.is_empty(), "nothing reached placement");
}

#[tokio::test]
async fn owner_restricted_clients_only_touch_their_owners_sessions() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());

    let foreign = json!([{ "Name": "n", "Owner": "user1", "Type": "VIRTUAL" }, { "Name": "m", "Owner": "mallory", "Type": "VIRTUAL" }]);
    let (status, body) = send(&router, post_as("tenant", "/createSessions", &foreign.to_string())).await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({ "error": "The API client may not act for owner \"mallory\"" }))
    );
    assert!(upstream.fakes.seen.lock().unwrap().create_requests.is_empty());
    let own = json!([{ "Name": "n", "Owner": "user2", "Type": "VIRTUAL" }]).to_string();
    let (status, body) = send(&router, post_as("tenant", "/createSessions", &own)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["SuccessfulList"][0]["Owner"], "user2");

    // Describing another owner's sessions finds nothing (and asks the store for nothing).
    let others = json!({ "Filters": [{ "Key": "owner", "Value": "mallory" }] }).to_string();
    let (status, body) = send(&router, post_as("tenant", "/describeSessions", &others)).await;
    assert_eq!((status, body["Sessions"].clone()), (StatusCode::OK, json!([])));
    assert!(upstream.fakes.seen.lock().unwrap().list_requests.is_empty());
    // Without a filter the store is asked and only the allowed owners' sessions come back.
    let (status, body) = send(&router, post_as("tenant", "/describeSessions", "")).await;
    assert_eq!(status, StatusCode::OK);
    let owners: Vec<&str> = body["Sessions"].as_array().unwrap().iter().map(|s| s["Owner"].as_str().unwrap()).collect();
    assert!(owners.iter().all(|owner| ["user1", "user2"].contains(owner)), "{owners:?}");
    let by_id = json!({ "SessionIds": ["known-7"] }).to_string();
    let (_, body) = send(&router, post_as("tenant", "/describeSessions", &by_id)).await;
    assert_eq!(body["Sessions"][0]["Owner"], "user1");

    let delete_foreign = json!([{ "SessionId": "known-1", "Owner": "mallory" }]).to_string();
    let (status, _) = send(&router, post_as("tenant", "/deleteSessions", &delete_foreign)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let delete_without_owner = json!([{ "SessionId": "known-1" }]).to_string();
    let (status, _) = send(&router, post_as("tenant", "/deleteSessions", &delete_without_owner)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let delete_own = json!([{ "SessionId": "known-1", "Owner": "user1" }]).to_string();
    let (status, body) = send(&router, post_as("tenant", "/deleteSessions", &delete_own)).await;
    assert_eq!((status, body["SuccessfulList"][0]["SessionId"].clone()), (StatusCode::OK, json!("known-1")));
}

#[tokio::test]
async fn api_calls_over_the_per_client_limit_get_429_with_retry_after() {
    let upstream = start_fakes().await;
    let limits = LimitsConfig { api_rate_per_minute: 1, api_rate_burst: 2, ..LimitsConfig::default() };
    let router = upstream.router(GatewayConfig { limits, ..GatewayConfig::default() });
    for _ in 0..2 {
        assert_eq!(send(&router, post_as("valid", "/describeSessions", "")).await.0, StatusCode::OK);
    }
    let response = tower::ServiceExt::oneshot(router.clone(), post_as("valid", "/describeSessions", "")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body, json!({ "error": "Too many requests from this API client; retry later" }));
    // Another client has its own budget.
    assert_eq!(send(&router, post_as("read-only", "/describeSessions", "")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_flooding_gets_429_with_retry_after() {
    let upstream = start_fakes().await;
    let limits =
        LimitsConfig { token_rate_overall_per_minute: 1, token_rate_overall_burst: 3, ..LimitsConfig::default() };
    let router = upstream.router(GatewayConfig { limits, ..GatewayConfig::default() });
    let token_request = || {
        Request::post("/oauth2/token?grant_type=client_credentials")
            .header("authorization", "Basic Z29vZDpwdw==")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(send(&router, token_request()).await.0, StatusCode::OK);
    }
    let response = tower::ServiceExt::oneshot(router.clone(), token_request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[tokio::test]
async fn oversized_headers_get_431_json() {
    let upstream = start_fakes().await;
    let limits = LimitsConfig { max_header_bytes: 1024, ..LimitsConfig::default() };
    let router = upstream.router(GatewayConfig { limits, ..GatewayConfig::default() });
    let request = Request::post("/describeSessions")
        .header("authorization", "Bearer valid")
        .header("x-padding", "p".repeat(2048))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!(
        (status, body),
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, json!({ "error": "Request headers are too large" }))
    );
}

#[tokio::test]
async fn session_owner_checks_by_id_for_restricted_callers() {
    use std::collections::BTreeSet;
    use switchboard_gateway::auth::{Caller, Scope};
    let upstream = start_fakes().await;
    let mut store = upstream.upstreams.store.clone();
    let ids = vec!["known-1".to_owned(), "unknown-9".to_owned()];
    let restricted = |owners: &[&str]| {
        let allowed_owners = Some(owners.iter().map(|o| o.to_string()).collect::<BTreeSet<_>>());
        Caller::with_scope("c", Scope { read_only: false, allowed_owners })
    };
    // known-1 belongs to user1 in the fakes; unknown ids pass.
    restricted(&["user1"]).require_session_owners(&mut store, &ids).await.unwrap();
    let refused = restricted(&["mallory"]).require_session_owners(&mut store, &ids).await.unwrap_err();
    assert_eq!(refused.to_string(), "The API client may not access session \"known-1\"");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    Caller::full("c").require_session_owners(&mut store, &ids).await.unwrap();
}

#[tokio::test]
async fn owner_restricted_clients_see_only_their_owners_events() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let get_as = |token: &str, uri: &str| {
        Request::get(uri).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
    };
    let kinds_and_owners = |body: &serde_json::Value| -> Vec<(String, String)> {
        body["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["Type"].as_str().unwrap().to_owned(), e["Owner"].as_str().unwrap_or("-").to_owned()))
            .collect()
    };
    let (status, body) = send(&router, get_as("read-only", "/events?after=0-0&wait=0")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        kinds_and_owners(&body),
        [("session.state", "user1"), ("session.state", "mallory"), ("server.availability", "-")]
            .map(|(kind, owner)| (kind.to_owned(), owner.to_owned())),
        "an unrestricted (read-only) client sees every event"
    );
    let (status, body) = send(&router, get_as("tenant", "/events?after=0-0&wait=0")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kinds_and_owners(&body), [("session.state".to_owned(), "user1".to_owned())], "only user1's session");
    assert_eq!(body["Cursor"], "1-2", "the cursor passes the events filtered out");
    let (status, _) = send(&router, get_as("tenant", "/events?after=0-0&wait=99")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "wait is bounded");
}
