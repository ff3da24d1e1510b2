//! Idempotent createSessions across replicas (docs/saas.md, *Idempotent creates*): one `Idempotency-Key`
//! sent concurrently through both gateways of a two-replica cluster over Redis creates exactly one
//! session; every successful answer names it and the others are told the first request is in progress;
//! a later retry gets the same answer; the key with another body is refused; without a key nothing
//! changes (two requests, two sessions); another client's use of the same key is its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster};

/// Concurrent attempts with one key, alternating the two gateways.
const ATTEMPTS: usize = 10;

/// A createSessions body of one virtual session named `name` for `owner`.
fn create_body(name: &str, owner: &str) -> String {
    json!([{ "Name": name, "Owner": owner, "Type": "VIRTUAL" }]).to_string()
}

/// The id of the one session an answer created.
fn created_id(answer: &Value) -> String {
    let successful = answer["SuccessfulList"].as_array().expect("SuccessfulList");
    assert_eq!(successful.len(), 1, "one session per answer: {answer}");
    successful[0]["Id"].as_str().expect("an Id").to_owned()
}

/// Ids of `owner`'s sessions named `name`, any state.
async fn sessions_named(client: &ApiClient, owner: &str, name: &str) -> BTreeSet<String> {
    let answer = client
        .call("/describeSessions", json!({ "Filters": [{ "Key": "owner", "Value": owner }] }))
        .await
        .expect("describeSessions");
    let sessions = answer["Sessions"].as_array().expect("Sessions");
    sessions
        .iter()
        .filter(|session| session["Name"] == name)
        .map(|session| session["Id"].as_str().expect("an Id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_creates_one_session_through_every_gateway() {
    switchboard_common::telemetry::init_for_tests();
    let cluster = ProcessCluster::start(ClusterSpec { replicas: 2, agents: 2, ..Default::default() })
        .await
        .expect("cluster starts");
    let client = Arc::new(ApiClient::register(&cluster, "idempotent").await.expect("client registered"));
    let owner = format!("owner-{}", uuid::Uuid::new_v4().simple());
    let body = create_body("once", &owner);
    let key = format!("create-{}", uuid::Uuid::new_v4());
    for _ in 0..2 {
        // One call through each gateway first (with retries): both know the token's key before the race.
        client.call("/describeSessions", json!({})).await.expect("describeSessions");
    }

    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|attempt| {
            let (client, body, key) = (client.clone(), body.clone(), key.clone());
            tokio::spawn(async move {
                client.post_once(attempt, "/createSessions", &body, &[("Idempotency-Key", key.as_str())]).await
            })
        })
        .collect();
    let mut answers: Vec<(u16, Value)> = Vec::with_capacity(ATTEMPTS);
    for attempt in attempts {
        answers.push(attempt.await.expect("attempt task").expect("answered"));
    }
    let mut ids = BTreeSet::new();
    for (status, answer) in &answers {
        match status {
            200 => {
                ids.insert(created_id(answer));
            }
            409 => {
                let error = answer["error"].as_str().unwrap_or_default();
                assert!(error.contains("Idempotency-Key is in progress"), "a 409 says why: {answer}");
            }
            other => panic!("an attempt answered {other}: {answer}\nlogs: {}", cluster.log_dir().display()),
        }
    }
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    println!("idempotency: {ATTEMPTS} concurrent attempts answered {statuses:?}");
    assert_eq!(ids.len(), 1, "every successful attempt names the same session: {answers:?}");
    let id = ids.pop_first().unwrap();
    assert_eq!(
        sessions_named(&client, &owner, "once").await,
        BTreeSet::from([id.clone()]),
        "exactly one session was created"
    );

    // Later, once the session settled, a retry through either gateway still gets the first answer.
    let (state, reason) = client.settle(&id, std::time::Duration::from_secs(60)).await.expect("settles");
    assert_eq!(state, "READY", "the session was created: {reason}");
    for gateway in 0..2 {
        let (status, answer) =
            client.post_once(gateway, "/createSessions", &body, &[("Idempotency-Key", &key)]).await.expect("retry");
        assert_eq!(status, 200, "a later retry succeeds: {answer}");
        assert_eq!(created_id(&answer), id, "a later retry names the first session");
    }

    // The key with another body is refused, and creates nothing.
    let other = create_body("other", &owner);
    let (status, answer) =
        client.post_once(0, "/createSessions", &other, &[("Idempotency-Key", &key)]).await.expect("reuse");
    assert_eq!(status, 422, "a reused key with another body: {answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("used with a different request"), "the 422 says why: {answer}");
    assert!(sessions_named(&client, &owner, "other").await.is_empty(), "the refused request created nothing");
    assert_eq!(sessions_named(&client, &owner, "once").await.len(), 1, "still one session");

    // Another API client's use of the same key is its own.
    let second = ApiClient::register(&cluster, "second").await.expect("second client");
    let (status, answer) =
        second.post_once(1, "/createSessions", &body, &[("Idempotency-Key", &key)]).await.expect("second client");
    assert_eq!(status, 200, "another client's key is independent: {answer}");
    assert_ne!(created_id(&answer), id, "another client gets its own session");

    // A malformed key is refused before anything happens.
    let long = "k".repeat(256);
    let (status, answer) =
        client.post_once(0, "/createSessions", &body, &[("Idempotency-Key", &long)]).await.expect("long key");
    assert_eq!(status, 400, "a key of 256 characters: {answer}");

    // Without a key, as before: two requests, two sessions.
    let plain = create_body("plain", &owner);
    let (first, first_answer) = client.post_once(0, "/createSessions", &plain, &[]).await.expect("first");
    let (second_status, second_answer) = client.post_once(1, "/createSessions", &plain, &[]).await.expect("second");
    assert_eq!((first, second_status), (200, 200), "{first_answer} {second_answer}");
    let plain_ids = BTreeSet::from([created_id(&first_answer), created_id(&second_answer)]);
    assert_eq!(plain_ids.len(), 2, "two requests without a key create two sessions");
    assert_eq!(sessions_named(&client, &owner, "plain").await, plain_ids);
}
