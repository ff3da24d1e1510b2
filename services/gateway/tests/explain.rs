//! `POST /explainPlacement` through `router()`, against the fake placement.

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use support::{post_json, send, start_fakes};
use switchboard_gateway::GatewayConfig;

#[tokio::test]
async fn explain_placement_needs_a_token_and_maps_the_answer() {
    let upstream = start_fakes().await;
    let router = upstream.router(GatewayConfig::default());
    let anonymous = Request::post("/explainPlacement").body(Body::from("{}")).unwrap();
    assert_eq!(send(&router, anonymous).await.0, StatusCode::UNAUTHORIZED);

    let (status, body) =
        send(&router, post_json("/explainPlacement", r#"{"Requirements": "tag:gpu = 'a100'", "Type": "console"}"#))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Valid"], json!(true));
    assert_eq!(body["MatchingServers"], json!(["Console"]), "the type reaches placement");
    assert_eq!((body["TotalServers"].clone(), body["MatchingCount"].clone()), (json!(3), json!(1)));
    assert_eq!(body["Rejections"], json!({ "closed": 2 }));
    assert!(body.get("Error").is_none());

    let (status, body) = send(&router, post_json("/explainPlacement", r#"{"Requirements": "bad"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["Valid"].clone(), body["ErrorColumn"].clone()), (json!(false), json!(5)));
    assert_eq!(body["Error"], json!("requirements: column 5: bad"));

    let (status, body) = send(&router, post_json("/explainPlacement", r#"{"Type": "GPU"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("CONSOLE or VIRTUAL"));
    let (status, _) = send(&router, post_json("/explainPlacement", r#"{"Nope": 1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields are refused");
}
