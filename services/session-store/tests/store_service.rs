//! The `SessionStore` API over a real server: listing filters and pages,
//! deletes that need no host, placement calls.

use std::sync::Arc;
use std::time::Duration;

use switchboard_common::Shutdown;
use switchboard_common::grpc::lazy_channel;
use switchboard_proto::session_store_client::SessionStoreClient;
use switchboard_proto::{
    AssignSessionRequest, DeleteSessionItem, DeleteSessionsRequest, DequeueSessionRequest, GetSessionsRequest,
    KeyValue, ListSessionsRequest, OwnerSessionCountsRequest, QueuedRequest, RecordSessionsRequest, ServerRecord,
    SessionRecord, SessionState, SessionType, SessionsPage, assign_session_response,
};
use switchboard_session_store::{Listeners, StoreConfig, serve};
use switchboard_store::conformance::{server, session};
use switchboard_store::embedded::EmbeddedBackend;
use switchboard_store::{AssignOutcome, Backend, OWNER_COUNTS_MAX_SERVERS, QueuePush};

async fn start(backend: Arc<dyn Backend>) -> (SessionStoreClient<switchboard_common::grpc::GrpcChannel>, Shutdown) {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let config = StoreConfig { advertised_address: url.clone(), ..StoreConfig::default() };
    let shutdown = Shutdown::new();
    tokio::spawn(serve(config, Listeners { grpc, agent }, backend, None, shutdown.clone()));
    (SessionStoreClient::new(lazy_channel(&url).unwrap()), shutdown)
}

fn ids(page: &switchboard_proto::SessionsPage) -> Vec<&str> {
    page.sessions.iter().map(|s| s.id.as_str()).collect()
}

#[tokio::test]
async fn list_sessions_filters_and_pages() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let gpu = vec![KeyValue { key: "gpu".into(), value: "a100".into() }];
    backend.upsert_server_report(ServerRecord { tags: gpu.clone(), ..server("h-gpu") }, true, None).await.unwrap();
    backend.upsert_server_report(server("h-cpu"), true, None).await.unwrap();
    for (id, owner, host) in
        [("a", "alice", "h-gpu"), ("b", "bob", "h-gpu"), ("c", "alice", "h-cpu"), ("d", "alice", "")]
    {
        backend.insert_session(session(id, owner, SessionType::Virtual), None).await.unwrap();
        if !host.is_empty() {
            assert!(matches!(backend.assign_session(id, host).await.unwrap(), AssignOutcome::Assigned(_)));
        }
    }
    let (mut client, shutdown) = start(backend).await;
    let list = |owner: Option<&str>, tags: Vec<KeyValue>, page_size, after_id: &str| ListSessionsRequest {
        owner: owner.map(str::to_owned),
        tags,
        page_size,
        after_id: after_id.to_owned(),
        page_token: String::new(),
        with_queue_places: false,
    };

    let first = client.list_sessions(list(Some("alice"), vec![], 2, "")).await.unwrap().into_inner();
    assert_eq!(ids(&first), ["a", "c"]);
    assert_eq!(first.last_id, "c", "a full page names its last id");
    let servers: Vec<&str> = first.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(servers, ["h-gpu", "h-cpu"], "referenced servers, once each");
    assert_eq!(first.servers[0].virtual_session_count, 2, "counts are derived");
    let rest = client.list_sessions(list(Some("alice"), vec![], 2, "c")).await.unwrap().into_inner();
    assert_eq!(ids(&rest), ["d"]);
    assert!(rest.last_id.is_empty(), "a short page ends the listing");
    assert!(rest.next_token.is_empty(), "no token at the end");

    // The signed token resumes exactly where after_id does; a forged one is refused.
    assert!(!first.next_token.is_empty(), "a full page has a token");
    let by_token = ListSessionsRequest { page_token: first.next_token.clone(), ..list(Some("alice"), vec![], 2, "") };
    let resumed = client.list_sessions(by_token).await.unwrap().into_inner();
    assert_eq!(ids(&resumed), ["d"], "the token resumes after the last id of the page");
    let mut forged = first.next_token.clone();
    forged.insert(0, 'x');
    let forged = ListSessionsRequest { page_token: forged, ..list(Some("alice"), vec![], 2, "") };
    let status = client.list_sessions(forged).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "Invalid NextToken"));
    assert_eq!(switchboard_common::error::public_message(&status), "Invalid NextToken", "marked for API clients");
    // A broken call contract keeps its wording for the calling service, never for API clients.
    let status = client.list_sessions(list(Some("alice"), vec![], 0, "")).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "page_size must be 1..=1000"));
    assert_eq!(switchboard_common::error::public_message(&status), "Invalid request", "not for API clients");

    let tagged = client.list_sessions(list(None, gpu, 10, "")).await.unwrap().into_inner();
    assert_eq!(ids(&tagged), ["a", "b"], "only sessions on servers carrying every tag");

    let status = client.list_sessions(list(None, vec![], 0, "")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "page_size 0 is refused");
    shutdown.cancel();
}

#[tokio::test]
async fn deletes_without_a_host_and_placement_calls() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    // The liveness sweep's first pass comes one update interval after start, after this test.
    let h1 = ServerRecord { last_seen_unix_ms: switchboard_common::time::now_ms(), ..server("h1") };
    backend.upsert_server_report(h1, true, None).await.unwrap();
    let (mut client, shutdown) = start(backend.clone()).await;

    let sessions = ["placing", "placed", "forced"].map(|id| session(id, "alice", SessionType::Virtual)).to_vec();
    let recorded = client.record_sessions(RecordSessionsRequest { sessions }).await.unwrap().into_inner().sessions;
    assert!(recorded.iter().all(|s| s.revision == 1 && s.state_since_unix_ms > 0), "{recorded:?}");
    let duplicate = RecordSessionsRequest { sessions: vec![session("placed", "alice", SessionType::Virtual)] };
    assert_eq!(client.record_sessions(duplicate).await.unwrap_err().code(), tonic::Code::AlreadyExists);

    for id in ["placed", "forced"] {
        let request = AssignSessionRequest { session_id: id.into(), server_id: "h1".into() };
        let outcome = client.assign_session(request).await.unwrap().into_inner().outcome.unwrap();
        assert!(matches!(outcome, assign_session_response::Outcome::Session(s) if s.server_id == "h1"));
    }
    let request = AssignSessionRequest { session_id: "placed".into(), server_id: "h1".into() };
    let outcome = client.assign_session(request).await.unwrap().into_inner().outcome.unwrap();
    assert_eq!(outcome, assign_session_response::Outcome::Rejected("SESSION_NOT_PLACEABLE".into()));

    let item = |id: &str, force| DeleteSessionItem { session_id: id.into(), owner: "alice".into(), force };
    let items = vec![item("placing", false), item("forced", true), item("missing", false)];
    let outcomes = client.delete_sessions(DeleteSessionsRequest { items }).await.unwrap().into_inner().outcomes;
    assert_eq!(outcomes[0].state(), SessionState::Deleted, "an unplaced session is deleted at once");
    assert_eq!(outcomes[1].state(), SessionState::Deleted, "force deletes without the host");
    assert_eq!(outcomes[2].failure_reason, "The requested dcvSession does not exist");
    let again = vec![item("forced", true)];
    let outcomes = client.delete_sessions(DeleteSessionsRequest { items: again }).await.unwrap().into_inner().outcomes;
    assert_eq!(outcomes[0].failure_reason, "The requested dcvSession does not exist", "DELETED counts as gone");

    // No agent is connected: the close cannot be sent, the session stays DELETING with the reason.
    let items = vec![item("placed", false)];
    let outcomes = client.delete_sessions(DeleteSessionsRequest { items }).await.unwrap().into_inner().outcomes;
    assert_eq!(outcomes[0].state(), SessionState::Deleting);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let record = backend.get_sessions(&["placed".into()]).await.unwrap().remove(0);
            if !record.state_reason.is_empty() {
                assert_eq!(record.state(), SessionState::Deleting);
                assert!(record.state_reason.contains("not connected"), "{}", record.state_reason);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("close failure recorded");
    shutdown.cancel();
}

#[tokio::test]
async fn owner_session_counts_answers_per_server_and_validates() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    backend.upsert_server_report(server("h1"), true, None).await.unwrap();
    backend.upsert_server_report(server("h2"), true, None).await.unwrap();
    for (id, owner, host) in [("a", "alice", "h1"), ("b", "alice", "h1"), ("c", "alice", "h2"), ("d", "bob", "h2")] {
        backend.insert_session(session(id, owner, SessionType::Virtual), None).await.unwrap();
        assert!(matches!(backend.assign_session(id, host).await.unwrap(), AssignOutcome::Assigned(_)));
    }
    let (mut client, shutdown) = start(backend).await;
    let request = |owner: &str, ids: &[&str]| OwnerSessionCountsRequest {
        owner: owner.to_owned(),
        server_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
    };

    let alice = client.owner_session_counts(request("alice", &["h2", "h1", "nowhere"])).await.unwrap();
    assert_eq!(alice.into_inner().counts, [1, 2, 0], "per server id, in the order asked");
    let bob = client.owner_session_counts(request("bob", &["h1", "h2"])).await.unwrap();
    assert_eq!(bob.into_inner().counts, [0, 1]);
    let none = client.owner_session_counts(request("alice", &[])).await.unwrap();
    assert!(none.into_inner().counts.is_empty());

    let invalid = |status: tonic::Status| status.code() == tonic::Code::InvalidArgument;
    assert!(invalid(client.owner_session_counts(request("", &["h1"])).await.unwrap_err()), "owner is required");
    let long = "x".repeat(1025);
    assert!(invalid(client.owner_session_counts(request(&long, &["h1"])).await.unwrap_err()), "owner is bounded");
    let longest = "x".repeat(1024);
    let at_bound = client.owner_session_counts(request(&longest, &["h1"])).await.unwrap();
    assert_eq!(at_bound.into_inner().counts, [0]);
    let too_many = vec!["h1"; OWNER_COUNTS_MAX_SERVERS + 1];
    assert!(invalid(client.owner_session_counts(request("alice", &too_many)).await.unwrap_err()), "ids are bounded");
    let most = vec!["h1"; OWNER_COUNTS_MAX_SERVERS];
    let answered = client.owner_session_counts(request("alice", &most)).await.unwrap().into_inner().counts;
    assert_eq!((answered.len(), answered[0]), (OWNER_COUNTS_MAX_SERVERS, 2));
    shutdown.cancel();
}

#[tokio::test]
async fn describe_reads_say_where_queued_sessions_stand() {
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let queued = |id: &str| SessionRecord {
        state_reason: "queued: no server matches".into(),
        ..session(id, "alice", SessionType::Virtual)
    };
    for id in ["q1", "q2", "q3"] {
        backend.insert_session(queued(id), None).await.unwrap();
        let entry = QueuedRequest { session_id: id.into(), class_id: "A".into(), ..Default::default() };
        assert!(matches!(backend.queue_push(entry, 60_000, 10).await.unwrap(), QueuePush::Queued(_)));
    }
    backend.insert_session(session("placing", "alice", SessionType::Virtual), None).await.unwrap();
    let (mut client, shutdown) = start(backend.clone()).await;
    let ids: Vec<String> = ["q2", "placing", "q3"].map(String::from).to_vec();
    let places = |page: &SessionsPage| -> Vec<(String, u32, u32, Option<i64>)> {
        page.queue_places
            .iter()
            .map(|p| (p.session_id.clone(), p.position, p.class_entries, p.estimated_wait_ms))
            .collect()
    };

    let plain = GetSessionsRequest { session_ids: ids.clone(), with_queue_places: false };
    let page = client.get_sessions(plain).await.unwrap().into_inner();
    assert!(page.queue_places.is_empty(), "internal reads do not pay for queue places");
    let asked = GetSessionsRequest { session_ids: ids.clone(), with_queue_places: true };
    let page = client.get_sessions(asked.clone()).await.unwrap().into_inner();
    assert_eq!(
        places(&page),
        [("q2".into(), 2, 3, None), ("q3".into(), 3, 3, None)],
        "only queued sessions, 1-based in their class; no estimate before any placement"
    );

    let placed = DequeueSessionRequest { session_id: "q1".into(), placed: true };
    assert!(client.dequeue_session(placed).await.unwrap().into_inner().removed);
    let page = client.get_sessions(asked).await.unwrap().into_inner();
    let moved: Vec<(String, u32, u32)> = places(&page).into_iter().map(|(id, p, n, _)| (id, p, n)).collect();
    assert_eq!(moved, [("q2".into(), 1, 2), ("q3".into(), 2, 2)], "the line moved up");
    assert!(page.queue_places.iter().all(|p| p.estimated_wait_ms.is_some()), "a placement gives a rate: {page:?}");

    let list = ListSessionsRequest { page_size: 10, with_queue_places: true, ..Default::default() };
    let page = client.list_sessions(list).await.unwrap().into_inner();
    let listed: Vec<&str> = page.queue_places.iter().map(|p| p.session_id.as_str()).collect();
    assert_eq!(listed, ["q2", "q3"], "a listed page says the same");
    shutdown.cancel();
}
