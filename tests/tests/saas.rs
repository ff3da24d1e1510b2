//! What SaaS backends rely on, through a two-replica cluster over Redis (docs/saas.md).
//!
//! Events (*Events*): a reader resuming from its cursor through a gateway that was killed and restarted
//! meanwhile misses nothing, as long-poll pages and as a Server-Sent Events stream through the other
//! gateway; an owner-restricted client sees only its owners' session events.
//!
//! Idempotent createSessions across replicas (*Idempotent creates*): one `Idempotency-Key`
//! sent concurrently through both gateways of a two-replica cluster over Redis creates exactly one
//! session; every successful answer names it and the others are told the first request is in progress;
//! a later retry gets the same answer; the key with another body is refused; without a key nothing
//! changes (two requests, two sessions); another client's use of the same key is its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, Service};

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

/// Longest wait for the events of the sessions created.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(60);

/// Every event after `cursor` through gateway `gateway`, read as long-poll pages until `done` says the
/// events seen are enough (or the timeout).
async fn read_pages(
    client: &ApiClient,
    gateway: usize,
    cursor: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let (mut cursor, mut events) = (cursor.to_owned(), Vec::new());
    let deadline = Instant::now() + EVENTS_TIMEOUT;
    while !done(&events) {
        assert!(Instant::now() < deadline, "events missing after {EVENTS_TIMEOUT:?}: {events:#?}");
        let path = format!("/events?after={cursor}&wait=5{query}");
        let (status, page) = client.get_once(gateway, &path, &[]).await.expect("GET /events");
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["Truncated"], false, "nothing was dropped: {page}");
        events.extend(page["Events"].as_array().expect("Events").iter().cloned());
        cursor = page["Cursor"].as_str().expect("Cursor").to_owned();
    }
    events
}

/// The session events per session id: `(Type, State)` in order.
fn by_session(events: &[Value]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sessions: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for event in events.iter().filter(|event| event["SessionId"].is_string()) {
        let kind = event["Type"].as_str().unwrap_or_default().to_owned();
        let state = event["State"].as_str().unwrap_or_default().to_owned();
        sessions.entry(event["SessionId"].as_str().unwrap().to_owned()).or_default().push((kind, state));
    }
    sessions
}

/// Whether every one of `ids` has its READY event among `events`.
fn all_ready(ids: &BTreeSet<String>) -> impl Fn(&[Value]) -> bool + '_ {
    move |events| {
        let ready: BTreeSet<&str> = events
            .iter()
            .filter(|event| event["Type"] == "session.state" && event["State"] == "READY")
            .filter_map(|event| event["SessionId"].as_str())
            .collect();
        ids.iter().all(|id| ready.contains(id.as_str()))
    }
}

/// Reads Server-Sent Events from `stream` until `done` or the timeout: each as (id, event, data).
async fn read_sse(mut stream: reqwest::Response, done: impl Fn(&[Value]) -> bool) -> Vec<(String, String, Value)> {
    let (mut buffer, mut frames, mut events) = (String::new(), Vec::new(), Vec::new());
    let deadline = Instant::now() + EVENTS_TIMEOUT;
    while !done(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk()).await.expect("SSE events in time").expect("SSE chunk");
        buffer.push_str(std::str::from_utf8(&chunk.expect("the stream stays open")).expect("UTF-8"));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                    id = value.to_owned();
                } else if let Some(value) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                    kind = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data.push_str(value);
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let value: Value = serde_json::from_str(&data).expect("SSE data is JSON");
            assert_ne!(kind, "error", "the stream failed: {value}");
            events.push(value.clone());
            frames.push((id, kind, value));
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_from_a_cursor_across_a_gateway_restart() {
    switchboard_common::telemetry::init_for_tests();
    let mut cluster = ProcessCluster::start(ClusterSpec { replicas: 2, agents: 2, ..Default::default() })
        .await
        .expect("cluster starts");
    let client = ApiClient::register(&cluster, "events").await.expect("client registered");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (alice, bob) = (format!("alice-{run}"), format!("bob-{run}"));
    let (id, secret) = cluster.register_client_for("alice-only", &[&alice]).await.expect("restricted client");
    let alice_only = ApiClient::with_credentials(&cluster, id, secret).expect("restricted client");

    // The cursor now, then a stream through gateway 1 from it.
    let (status, page) = client.get_once(0, "/events?wait=0", &[]).await.expect("GET /events");
    assert_eq!(status, 200, "{page}");
    let cursor = page["Cursor"].as_str().expect("a Cursor").to_owned();
    let stream = client
        .open_stream(1, "/events", &[("Accept", "text/event-stream"), ("Last-Event-ID", cursor.as_str())])
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));

    // Sessions created before, while and after gateway 0 is down.
    let create = |owner: &str, name: &str| create_body(name, owner);
    let mut ids = BTreeSet::new();
    for (owner, name) in [(&alice, "before-1"), (&bob, "before-2")] {
        let (status, answer) = client.post_once(1, "/createSessions", &create(owner, name), &[]).await.expect("create");
        assert_eq!(status, 200, "{answer}");
        ids.insert(created_id(&answer));
    }
    cluster.kill9(Service::Gateway, 0);
    for (owner, name) in [(&alice, "during-1"), (&bob, "during-2")] {
        let (status, answer) = client.post_once(1, "/createSessions", &create(owner, name), &[]).await.expect("create");
        assert_eq!(status, 200, "{answer}");
        ids.insert(created_id(&answer));
    }
    cluster.restart(Service::Gateway, 0).await.expect("gateway 0 restarts");
    let (status, answer) = client.post_once(0, "/createSessions", &create(&alice, "after"), &[]).await.expect("create");
    assert_eq!(status, 200, "{answer}");
    ids.insert(created_id(&answer));

    // Resumed through the restarted gateway: every session's creation, placement and READY, in order.
    let events = read_pages(&client, 0, &cursor, "", all_ready(&ids)).await;
    let sessions = by_session(&events);
    let expected = vec![
        ("session.state".to_owned(), "CREATING".to_owned()),
        ("session.placed".to_owned(), "CREATING".to_owned()),
        ("session.state".to_owned(), "READY".to_owned()),
    ];
    for id in &ids {
        assert_eq!(sessions.get(id), Some(&expected), "the events of session {id}: {events:#?}");
    }
    let event_ids: Vec<&str> = events.iter().map(|event| event["Id"].as_str().expect("an Id")).collect();
    let unique: BTreeSet<&str> = event_ids.iter().copied().collect();
    assert_eq!(unique.len(), event_ids.len(), "no event twice");
    let owners: BTreeMap<&str, &str> = events
        .iter()
        .filter(|event| event["Type"] == "session.state")
        .map(|event| (event["SessionId"].as_str().unwrap(), event["Owner"].as_str().unwrap()))
        .collect();

    // The same events on the stream through the other gateway, with their ids.
    let frames = read_sse(stream, all_ready(&ids)).await;
    for (id, kind, data) in &frames {
        assert_eq!(data["Id"].as_str(), Some(id.as_str()), "the SSE id is the event's Id");
        assert_eq!(data["Type"].as_str(), Some(kind.as_str()), "the SSE event is its Type");
    }
    let streamed: Vec<Value> = frames.into_iter().map(|(_, _, data)| data).collect();
    for id in &ids {
        assert_eq!(by_session(&streamed).get(id), Some(&expected), "streamed events of session {id}");
    }

    // An owner-restricted client, from the same cursor, sees only its owner's session events.
    let alice_ids: BTreeSet<String> = ids.iter().filter(|id| owners[id.as_str()] == alice).cloned().collect();
    assert_eq!(alice_ids.len(), 3);
    let seen = read_pages(&alice_only, 0, &cursor, "&types=session.state", all_ready(&alice_ids)).await;
    assert!(seen.iter().all(|event| event["Owner"] == alice.as_str()), "only alice's events: {seen:#?}");
    assert!(seen.iter().all(|event| event["Type"] == "session.state"), "only the types asked for");
    let servers = format!("/events?after={cursor}&wait=0&types=server.availability");
    let (status, page) = alice_only.get_once(1, &servers, &[]).await.expect("GET /events");
    assert_eq!((status, page["Events"].as_array().map(Vec::len)), (200, Some(0)), "no server events for her");

    // A malformed cursor is refused.
    let (status, answer) = client.get_once(0, "/events?after=latest", &[]).await.expect("GET /events");
    assert_eq!(status, 400, "{answer}");
}
