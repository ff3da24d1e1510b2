//! Traces as an operator sees them: every service process of a cluster (one replica each, Redis) and a
//! real `switchboard-agent` process export to an OTLP receiver that this test serves itself (the OTLP
//! `TraceService` of `opentelemetry-proto`, over tonic, on loopback). One `createSessions` sent with a
//! `traceparent` of a known trace id must come back as one trace: spans from the gateway, placement,
//! session-store and the agent, every span's parent either the caller's span or a span that was received,
//! and the agent's create command linked up to the caller through session-store, placement and the
//! gateway; an agent's handshake is linked across the stream too (`AgentHello.traceparent`). The services'
//! JSON log lines written for the request carry its trace id. And `switchboard up`
//! exports the same trace as the one service `switchboard`; with a sampling ratio of 0 it exports only the
//! traces a caller sampled.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};
use switchboard_tests::client::ApiClient;
use switchboard_tests::cluster::{ClusterSpec, ProcessCluster, binary, free_port};
use tonic::{Request, Response, Status};

/// The caller's trace, as an API client's own tracing would send it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// How long the processes get to export (batches leave every 5 s).
const EXPORTED: Duration = Duration::from_secs(60);

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// The test's OTLP receiver: keeps every span exported to it.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let attributes = resource_spans.resource.map(|resource| resource.attributes).unwrap_or_default();
            let service = attributes
                .into_iter()
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value?.value)
                .map(|value| match value {
                    AnyValue::StringValue(name) => name,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Receiver {
    /// Serves the receiver on a loopback port; its `http://` URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder().add_service(TraceServiceServer::new(self.clone()));
        tokio::spawn(server.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
        url
    }

    fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().iter().filter(|span| span.trace_id == trace_id).cloned().collect()
    }
}

/// A REST client with a token, for calls with a `traceparent`.
struct Api {
    http: reqwest::Client,
    gateway: String,
    token: String,
}

impl Api {
    async fn new(ca_pem: &str, gateway: &str, client_id: &str, client_secret: &str) -> Self {
        let certificate = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder().add_root_certificate(certificate).build().unwrap();
        let token: Value = http
            .post(format!("{gateway}/oauth2/token?grant_type=client_credentials"))
            .basic_auth(client_id, Some(client_secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap_or_else(|| panic!("a token: {token}")).to_owned();
        Self { http, gateway: gateway.to_owned(), token }
    }

    async fn post(&self, path: &str, body: Value, traceparent: Option<String>) -> Value {
        let mut request = self.http.post(format!("{}{path}", self.gateway)).bearer_auth(&self.token).json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// One createSessions in the trace `trace_id`, as span [`CALLER_SPAN_ID`] of the caller; the session id.
    async fn create_traced(&self, trace_id: &str) -> String {
        let body = json!([{ "Name": "traced", "Owner": "alice", "Type": "VIRTUAL" }]);
        let answer = self.post("/createSessions", body, Some(format!("00-{trace_id}-{CALLER_SPAN_ID}-01"))).await;
        answer["SuccessfulList"][0]["Id"].as_str().unwrap_or_else(|| panic!("created: {answer}")).to_owned()
    }

    /// The session's state once it left CREATING (30 s at most).
    async fn settle(&self, id: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.post("/describeSessions", json!({ "SessionIds": [id] }), None).await;
            let state = answer["Sessions"][0]["State"].as_str().unwrap_or_default().to_owned();
            if state != "CREATING" || tokio::time::Instant::now() >= deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A span whose parent is neither the caller's span nor a span that was received, if any.
fn broken_link(spans: &[ReceivedSpan]) -> Option<&ReceivedSpan> {
    let ids: BTreeSet<&str> = spans.iter().map(|span| span.span_id.as_str()).collect();
    spans.iter().find(|span| span.parent_span_id != CALLER_SPAN_ID && !ids.contains(span.parent_span_id.as_str()))
}

/// What is wrong with `spans` as the trace of one createSessions, or `None` when nothing is.
fn problems(spans: &[ReceivedSpan]) -> Option<String> {
    let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    for service in ["switchboard-gateway", "switchboard-placement", "switchboard-session-store", "switchboard-agent"] {
        if !services.contains(service) {
            return Some(format!("no span from {service}"));
        }
    }
    if let Some(span) = broken_link(spans) {
        return Some(format!("the parent of {span:?} was not received"));
    }
    let by_id: HashMap<&str, &ReceivedSpan> = spans.iter().map(|span| (span.span_id.as_str(), span)).collect();
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|span| span.parent_span_id == CALLER_SPAN_ID).collect();
    if roots.len() != 1 || roots[0].service != "switchboard-gateway" || roots[0].name != "POST /createSessions" {
        return Some(format!("the caller's span is not the parent of exactly the gateway's operation: {roots:?}"));
    }
    // The agent's create command, up to the caller through every service.
    let Some(create) = spans.iter().find(|span| span.service == "switchboard-agent" && span.name == "agent create")
    else {
        return Some("no `agent create` span from the agent".to_owned());
    };
    let mut path = vec![create.service.as_str()];
    let mut current = create;
    while current.parent_span_id != CALLER_SPAN_ID {
        current = by_id[current.parent_span_id.as_str()];
        if path.last() != Some(&current.service.as_str()) {
            path.push(current.service.as_str());
        }
    }
    let expected = ["switchboard-agent", "switchboard-session-store", "switchboard-placement", "switchboard-gateway"];
    (path != expected).then(|| format!("the agent's span goes up through {path:?}, not {expected:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_is_one_trace_from_the_caller_to_the_agent() {
    switchboard_common::telemetry::init_for_tests();
    let receiver = Receiver::default();
    let endpoint = receiver.serve().await;
    let spec = ClusterSpec { replicas: 1, agents: 1, otlp_endpoint: Some(endpoint), ..Default::default() };
    let cluster = ProcessCluster::start(spec).await.expect("cluster starts");
    let (client_id, client_secret) = cluster.register_client("tracing").await.unwrap();
    let client = ApiClient::with_credentials(&cluster, client_id.clone(), client_secret.clone()).unwrap();

    // One createSessions inside the caller's trace.
    let api = Api::new(&cluster.ca_pem, &cluster.gateway_urls()[0], &client_id, &client_secret).await;
    let id = api.create_traced(TRACE_ID).await;
    let (state, reason) = client.settle(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state, "READY", "{reason}");

    // The trace, once every process has exported its part.
    let deadline = tokio::time::Instant::now() + EXPORTED;
    let spans = loop {
        let spans = receiver.trace(TRACE_ID);
        let Some(problem) = problems(&spans) else { break spans };
        if tokio::time::Instant::now() >= deadline {
            let all = receiver.spans.lock().unwrap().len();
            panic!("{problem}\nspans of the trace: {spans:#?}\n({all} spans received in all)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let names: BTreeSet<String> = spans.iter().map(|span| format!("{}: {}", span.service, span.name)).collect();
    println!("tracing: {} spans of the trace: {names:#?}", spans.len());

    // The agent's handshake is a trace too: session-store's `agent hello` is the child of the agent's
    // `agent connect`, whose context the hello carried.
    let deadline = tokio::time::Instant::now() + EXPORTED;
    loop {
        let all = receiver.spans.lock().unwrap().clone();
        let is_parent = |hello: &ReceivedSpan, connect: &ReceivedSpan| {
            connect.service == "switchboard-agent"
                && connect.name == "agent connect"
                && (connect.trace_id.as_str(), connect.span_id.as_str())
                    == (hello.trace_id.as_str(), hello.parent_span_id.as_str())
        };
        let linked = all.iter().any(|hello| {
            hello.service == "switchboard-session-store"
                && hello.name == "agent hello"
                && all.iter().any(|connect| is_parent(hello, connect))
        });
        if linked {
            break;
        }
        let handshakes: Vec<&ReceivedSpan> = all.iter().filter(|span| span.name.starts_with("agent ")).collect();
        assert!(tokio::time::Instant::now() < deadline, "no `agent hello` under an `agent connect`: {handshakes:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The log lines written for the request carry its trace id (JSON logs).
    let log = std::fs::read_to_string(cluster.log_dir().join("switchboard-placement-0.log")).unwrap();
    let line = format!("\"trace_id\":\"{TRACE_ID}\"");
    assert!(
        log.lines().any(|entry| entry.contains(&line) && entry.contains("session accepted")),
        "placement's `session accepted` line has no {line}:\n{log}"
    );
}

/// `switchboard up` with one simulated host and `--otlp-sampling-ratio ratio`, exporting to `receiver`;
/// the process (killed on drop), its temporary directory and a client, once the host is connected.
async fn start_up(receiver: &Receiver, ratio: &str) -> (KillOnDrop, tempfile::TempDir, Api) {
    let endpoint = receiver.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (api_port, agent_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let up = std::process::Command::new(binary("switchboard").unwrap())
        .arg("up")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{api_port}"), "--agent-listen", &format!("127.0.0.1:{agent_port}")])
        .args(["--resolver-listen", "off", "--sim-hosts", "1", "--otlp-endpoint", &endpoint])
        .args(["--otlp-sampling-ratio", ratio])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let up = KillOnDrop(up);

    // Ready once its admin channel exists and the API answers.
    let gateway = format!("https://localhost:{api_port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ca_pem = loop {
        if let Ok(ca_pem) = std::fs::read_to_string(data_dir.join("tls/ca.pem"))
            && data_dir.join("admin.json").exists()
        {
            let certificate = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
            let http = reqwest::Client::builder().add_root_certificate(certificate).build().unwrap();
            let ready = http.get(format!("{gateway}/health/ready")).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break ca_pem;
            }
        }
        let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
        assert!(tokio::time::Instant::now() < deadline, "switchboard up not ready:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let registered = std::process::Command::new(binary("switchboard").unwrap())
        .args(["register-api-client", "--client-name", "tracing"])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&registered.stdout);
    let field = |name: &str| stdout.lines().find_map(|line| line.strip_prefix(name)).map(str::trim).unwrap_or_default();
    let api = Api::new(&ca_pem, &gateway, field("client-id:"), field("client-password:")).await;

    // Wait until the simulated host is connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while api.post("/describeServers", json!({}), None).await["Servers"].as_array().is_none_or(Vec::is_empty) {
        assert!(tokio::time::Instant::now() < deadline, "no simulated host connected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (up, dir, api)
}

/// `switchboard up` (every service and the simulated hosts in one process) exports its spans as one
/// service, `switchboard`, the simulated agent's command included, linked as in the separate processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_up_exports_one_trace_as_one_service() {
    const UP_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
    let receiver = Receiver::default();
    let (_up, _dir, api) = start_up(&receiver, "1").await;
    let id = api.create_traced(UP_TRACE_ID).await;
    assert_eq!(api.settle(&id).await, "READY");

    let expected = ["POST /createSessions", "/switchboard.v1.Placement/CreateSessions", "agent create"];
    let deadline = tokio::time::Instant::now() + EXPORTED;
    loop {
        let spans = receiver.trace(UP_TRACE_ID);
        let names: BTreeSet<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
        let complete = expected.iter().all(|name| names.contains(name)) && broken_link(&spans).is_none();
        if complete {
            assert_eq!(services, BTreeSet::from(["switchboard"]), "one service name in the all-in-one");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "incomplete trace from switchboard up: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sampling is decided at a trace's root: with `--otlp-sampling-ratio 0` the broker starts no trace of its
/// own (requests without `traceparent`, unsampled ones, the agent's connect), yet still follows a caller
/// whose `traceparent` says sampled, the whole way to the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_of_zero_records_only_what_a_caller_sampled() {
    const SAMPLED: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
    const UNSAMPLED: &str = "6bf92f3577b34da6a3ce929d0e0e4736";
    let receiver = Receiver::default();
    let (_up, _dir, api) = start_up(&receiver, "0").await;
    let body = || json!([{ "Name": "untraced", "Owner": "alice", "Type": "VIRTUAL" }]);
    let untraced = api.post("/createSessions", body(), None).await;
    let unsampled = api.post("/createSessions", body(), Some(format!("00-{UNSAMPLED}-{CALLER_SPAN_ID}-00"))).await;
    for answer in [&untraced, &unsampled] {
        let id = answer["SuccessfulList"][0]["Id"].as_str().unwrap_or_else(|| panic!("created: {answer}"));
        assert_eq!(api.settle(id).await, "READY");
    }
    let id = api.create_traced(SAMPLED).await;
    assert_eq!(api.settle(&id).await, "READY");

    let deadline = tokio::time::Instant::now() + EXPORTED;
    loop {
        let all = receiver.spans.lock().unwrap().clone();
        let others: Vec<&ReceivedSpan> = all.iter().filter(|span| span.trace_id != SAMPLED).collect();
        assert!(others.is_empty(), "spans of traces nobody sampled: {others:#?}");
        let names: BTreeSet<&str> = all.iter().map(|span| span.name.as_str()).collect();
        if ["POST /createSessions", "agent create"].iter().all(|name| names.contains(name)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sampled caller's trace is incomplete: {all:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let a later export (every 5 s) bring anything left behind, then look again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let all = receiver.spans.lock().unwrap().clone();
    assert!(all.iter().all(|span| span.trace_id == SAMPLED), "spans of traces nobody sampled: {all:#?}");
}

/// Kills the child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
