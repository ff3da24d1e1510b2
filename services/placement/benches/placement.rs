//! Committed placement decisions per second over 5,000 simulated servers.
//!
//! One decision = placement's real code path ([`place::place`]): rank the
//! in-memory fleet view for a 3-clause requirement, then reserve on the best
//! candidate with `SessionStore.AssignSession` over gRPC (loopback), which the
//! store commits atomically in its backend. Sessions are recorded before the
//! clock starts; the fleet view is synced from the store's change feed in the
//! background, as in production.
//!
//! Measured for the embedded backend and for Redis (a `redis-server` started
//! by testkit), each against a **baseline** in the same run: the previous
//! design, which listed every server from the store (`ListServers`, pages of
//! 1,000) for each decision before ranking and reserving.
//!
//! Run: `cargo bench -p switchboard-placement --bench placement`
//! (options: `-- --rounds 5 --decisions 4000 --baseline-decisions 100 --workers 48`). Results and the
//! machine they were measured on: BENCHMARKS.md.
//!
//! **Telemetry overhead** (`-- --overhead`, observability issue): the fleet-view decisions of the embedded
//! backend in three configurations, each a fresh child process of this bench (a process's metrics recorder
//! and tracer cannot be removed), interleaved over `rounds`: telemetry off; metrics recorded (the
//! Prometheus recorder installed) and traces sampled at 1 %; metrics and traces at 100 %. Each decision runs
//! under a root span, as it runs under its API request's span in production, so the sampler decides per
//! decision; spans are exported over OTLP to a receiver this process serves (`OtlpSink`). Prints medians
//! and each configuration's ratio to "off".
//!
//! **Queue drain** (`-- --queue-drain`): the queue worker's path, which a queued create waits on. A placement
//! replica (`switchboard_placement::serve`, production intervals) over the embedded store with the fleet
//! above queues `--queued` requests (default 2,000) in 8 classes that no server fits (each wants
//! `tag:pool = 'q<round>'` and at least 1 to 8 CPUs, so every class fits the same new hosts); then 8 such
//! hosts join with room for all of them, and the clock runs until the queue is empty (every entry placed).
//! Prints, per round and as medians: the time to the first placement (mostly the fleet view's 250 ms sync)
//! and the entries placed per second from then on.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use switchboard_common::grpc::GrpcChannel;
use switchboard_common::{Shutdown, grpc::lazy_channel};
use switchboard_placement::{
    fleet::{Fleet, FleetView},
    place::{self, Assignment, PlacementRequest, StrategyConfig},
    requirements::Requirements,
};
use switchboard_proto::{
    AssignSessionRequest, CommandResult, CpuInfo, CreateSessionSpec, CreateSessionsRequest, HostCommand, HostInfo,
    HostSession, KeyValue, ListServersRequest, MemoryUsage, Os, ServerRecord, SessionRecord, SessionState, SessionType,
    assign_session_response, command_result, host_command, placement_client::PlacementClient,
    session_store_client::SessionStoreClient, session_store_server::SessionStoreServer,
};
use switchboard_session_store::{
    agent_link::hub::AgentHub,
    routing::{CommandRouter, HostCommands, SendFailure},
    service::StoreService,
};
use switchboard_store::{Backend, embedded::EmbeddedBackend, redis::RedisBackend, redis::RedisConfig};

const SERVERS: usize = 5_000;
const REQUIREMENT: &str =
    "tag:pool = 'general' and server:Host.CpuInfo.NumberOfCpus >= 8 and server:Host.Memory.TotalBytes > 16E9";

struct Options {
    /// Compare telemetry configurations instead (see the module doc).
    overhead: bool,
    /// Child of `--overhead`: `off`, or the sampling ratio in percent; and the OTLP receiver.
    child: Option<(String, String)>,
    rounds: usize,
    decisions: usize,
    baseline_decisions: usize,
    workers: usize,
    /// Measure the queue worker instead (see the module doc).
    queue_drain: bool,
    queued: usize,
}

fn options() -> Options {
    // 48 decisions in flight: below the 64 background placements one replica
    // runs at once (`Placements::CONCURRENCY`).
    let args: Vec<String> = std::env::args().collect();
    let text = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let child = text("--overhead-child").zip(text("--sink"));
    let overhead = args.iter().any(|a| a == "--overhead");
    let queue_drain = args.iter().any(|a| a == "--queue-drain");
    let mut options = Options {
        overhead,
        child,
        rounds: 5,
        decisions: 4_000,
        baseline_decisions: 100,
        workers: 48,
        queue_drain,
        queued: 2_000,
    };
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok());
    if let Some(n) = value("--rounds") {
        options.rounds = n;
    }
    if let Some(n) = value("--decisions") {
        options.decisions = n;
    }
    if let Some(n) = value("--baseline-decisions") {
        options.baseline_decisions = n;
    }
    if let Some(n) = value("--workers") {
        options.workers = n;
    }
    if let Some(n) = value("--queued") {
        options.queued = n;
    }
    options
}

/// Server `i`: 4/5 in pool `general`, 4 to 32 CPUs, 8 to 64 GB: about 30 %
/// satisfy the requirement.
fn server(i: usize) -> ServerRecord {
    let size = 1u64 << (i % 4);
    ServerRecord {
        id: format!("server-{i:05}"),
        hostname: format!("host-{i}.example"),
        open: true,
        reachable: true,
        dcv_healthy: true,
        max_virtual_sessions: 1_000,
        tags: vec![
            KeyValue { key: "pool".into(), value: if i % 5 == 4 { "batch" } else { "general" }.into() },
            KeyValue { key: "rack".into(), value: format!("r{}", i % 40) },
        ],
        host: Some(HostInfo {
            os: Some(Os { family: "linux".into(), name: "Ubuntu".into(), ..Default::default() }),
            memory: Some(MemoryUsage { total_bytes: 8_000_000_000 * size, used_bytes: 1_000_000_000 }),
            cpu_info: Some(CpuInfo { number_of_cpus: 4 * size as u32, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Hosts whose agents are not connected: decisions only reserve, no command is sent.
fn no_agents(backend: &Arc<dyn Backend>) -> Arc<dyn HostCommands> {
    Arc::new(CommandRouter::new("bench".into(), backend.clone(), Arc::new(AgentHub::default()), Duration::from_secs(5)))
}

/// Hosts that create every session at once (`--queue-drain`: the drivers of placed entries finish
/// instead of waiting for agents).
struct InstantHosts;

#[tonic::async_trait]
impl HostCommands for InstantHosts {
    async fn send(
        &self,
        _server_id: &str,
        command: HostCommand,
        _timeout: Option<Duration>,
        _forwarded: bool,
    ) -> Result<CommandResult, SendFailure> {
        let Some(host_command::Action::Create(create)) = command.action else {
            return Ok(CommandResult::default());
        };
        let session = HostSession { id: create.session_id, ..Default::default() };
        Ok(CommandResult { payload: Some(command_result::Payload::Session(session)), ..Default::default() })
    }
}

/// A store with the fleet, served over gRPC on loopback, sending host commands to `hosts`.
async fn start_store(
    backend: Arc<dyn Backend>,
    hosts: Arc<dyn HostCommands>,
    shutdown: &Shutdown,
) -> SessionStoreClient<GrpcChannel> {
    for i in 0..SERVERS {
        backend.upsert_server_report(server(i), true, None).await.expect("server report");
    }
    let service = SessionStoreServer::new(StoreService::new(backend, hosts))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = switchboard_common::grpc::server_builder().unwrap().add_service(service);
    tokio::spawn(switchboard_common::grpc::serve_router(router, listener, shutdown.clone()));
    SessionStoreClient::new(lazy_channel(&url).unwrap())
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// Records `count` CREATING sessions (not timed).
async fn record_sessions(backend: &Arc<dyn Backend>, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("{prefix}-{i:06}");
        let session = SessionRecord {
            id: id.clone(),
            owner: format!("user-{}", i % 500),
            r#type: SessionType::Virtual as i32,
            state: SessionState::Creating as i32,
            substate: "SESSION_PLACING".into(),
            ..Default::default()
        };
        backend.insert_session(session, None).await.expect("insert session");
        ids.push(id);
    }
    ids
}

/// Places every id with `workers` concurrent tasks; decisions per second.
async fn run_decisions<F, Fut>(ids: Vec<String>, workers: usize, decide: F) -> f64
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let committed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (ids, next, committed, decide) = (ids.clone(), next.clone(), committed.clone(), decide.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { return };
                    if decide(id.clone()).await {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let committed = committed.load(Ordering::Relaxed);
    assert_eq!(committed, ids.len(), "every decision must commit (the fleet has room for all)");
    committed as f64 / elapsed
}

/// The fleet view's way: rank the in-memory view, reserve. Each decision the sampler draws runs under a
/// root span, as under its API request in production (none unless `--overhead` installed a tracer).
async fn view_decisions(
    fleet: Arc<FleetView>,
    store: SessionStoreClient<GrpcChannel>,
    ids: Vec<String>,
    workers: usize,
) -> f64 {
    use tracing::Instrument;
    run_decisions(ids, workers, move |id| {
        let (fleet, mut store) = (fleet.clone(), store.clone());
        let span = if switchboard_common::telemetry::sample_new_trace() {
            tracing::info_span!(target: "switchboard_placement", "bench decision")
        } else {
            tracing::Span::none()
        };
        async move {
            let requirements = Requirements::parse(REQUIREMENT).unwrap();
            let excluded = HashMap::new();
            let request = PlacementRequest {
                kind: SessionType::Virtual.into(),
                requirements: &requirements,
                excluded: &excluded,
            };
            let decision = place::place(&mut store, &fleet, &id, &request, &StrategyConfig::default()).await;
            matches!(decision, Ok(Assignment::Assigned { .. }))
        }
        .instrument(span)
    })
    .await
}

/// The baseline: list every server from the store per decision, rank, reserve.
async fn baseline_decisions(store: SessionStoreClient<GrpcChannel>, ids: Vec<String>, workers: usize) -> f64 {
    run_decisions(ids, workers, move |id| {
        let mut store = store.clone();
        async move {
            let mut servers = Vec::new();
            let mut after_id = String::new();
            loop {
                let request =
                    ListServersRequest { server_ids: Vec::new(), page_size: 1000, after_id, ..Default::default() };
                let page = store.list_servers(request).await.unwrap().into_inner();
                servers.extend(page.servers);
                if page.last_id.is_empty() {
                    break;
                }
                after_id = page.last_id;
            }
            let requirements = Requirements::parse(REQUIREMENT).unwrap();
            let excluded = HashMap::new();
            let request = PlacementRequest {
                kind: SessionType::Virtual.into(),
                requirements: &requirements,
                excluded: &excluded,
            };
            let ranking = place::rank(&Fleet::from_servers(servers), &request, &StrategyConfig::default(), 8);
            for server_id in ranking.candidates {
                let assign = AssignSessionRequest { session_id: id.clone(), server_id };
                let outcome = store.assign_session(assign).await.unwrap().into_inner().outcome;
                if matches!(outcome, Some(assign_session_response::Outcome::Session(_))) {
                    return true;
                }
            }
            false
        }
    })
    .await
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn bench(name: &str, backend: Arc<dyn Backend>, options: &Options) {
    let shutdown = Shutdown::new();
    let setup = Instant::now();
    let store = start_store(backend.clone(), no_agents(&backend), &shutdown).await;
    let fleet = Arc::new(FleetView::new(store.clone()));
    fleet.sync().await.expect("initial sync");
    assert_eq!(fleet.read(|f| f.servers().len()), SERVERS);
    let sync = tokio::spawn({
        let (fleet, shutdown) = (fleet.clone(), shutdown.clone());
        async move { fleet.run(Duration::from_millis(250), shutdown).await }
    });
    println!("{name}: {SERVERS} servers ready in {:.1} s", setup.elapsed().as_secs_f64());

    let mut view = Vec::new();
    let mut baseline = Vec::new();
    for round in 0..options.rounds {
        let ids = record_sessions(&backend, &format!("view-{round}"), options.decisions).await;
        let rate = view_decisions(fleet.clone(), store.clone(), ids, options.workers).await;
        let ids = record_sessions(&backend, &format!("base-{round}"), options.baseline_decisions).await;
        let base = baseline_decisions(store.clone(), ids, options.workers).await;
        println!("{name}: round {round}: fleet view {rate:.0} decisions/s, baseline {base:.1} decisions/s");
        view.push(rate);
        baseline.push(base);
    }
    let (view, baseline) = (median(view), median(baseline));
    println!(
        "{name}: MEDIAN fleet view {view:.0} decisions/s; baseline (list the store per decision) {baseline:.1} \
         decisions/s; ratio {:.0}x",
        view / baseline
    );
    shutdown.cancel();
    let _ = sync.await;
}

/// The telemetry configurations of `--overhead`: `off`, or a sampling ratio in percent.
const TELEMETRY: [&str; 3] = ["off", "1", "100"];

/// `--overhead`: spawns this bench once per configuration and round, then prints medians and ratios.
fn overhead(options: &Options) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sink = runtime.block_on(switchboard_testkit::OtlpSink::start()).expect("otlp receiver");
    let exe = std::env::current_exe().unwrap();
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..options.rounds {
        for mode in TELEMETRY {
            let output = std::process::Command::new(&exe)
                .args(["--overhead-child", mode, "--sink", &sink.url])
                .args(["--decisions", &options.decisions.to_string(), "--workers", &options.workers.to_string()])
                .output()
                .expect("run the bench child");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let rate: f64 = stdout
                .lines()
                .find_map(|line| line.strip_prefix("decisions/s: "))
                .and_then(|rate| rate.trim().parse().ok())
                .unwrap_or_else(|| panic!("child {mode} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr)));
            println!("round {round}: telemetry {mode}: {rate:.0} decisions/s");
            rates.entry(mode).or_default().push(rate);
        }
    }
    let off = median(rates["off"].clone());
    println!("\n| telemetry | decisions/s (median of {}) | ratio to off |\n| --- | --- | --- |", options.rounds);
    for mode in TELEMETRY {
        let rate = median(rates[mode].clone());
        let label = if mode == "off" { "off".to_owned() } else { format!("metrics + traces sampled at {mode} %") };
        println!("| {label} | {rate:.0} | {:.3} |", rate / off);
    }
    println!("spans received by the OTLP receiver: {}", sink.spans());
}

/// A child of `--overhead`: telemetry as `mode` says, one measurement of fleet-view decisions (embedded).
async fn overhead_child(mode: &str, sink: &str, options: &Options) {
    if mode != "off" {
        let ratio: f64 = mode.parse::<f64>().expect("a percentage") / 100.0;
        switchboard_common::metrics::recorder().expect("metrics recorder");
        let export = switchboard_common::telemetry::TraceExport {
            endpoint: sink.to_owned(),
            sampling_ratio: ratio,
            service_name: "placement-bench".to_owned(),
        };
        switchboard_common::telemetry::init("warn", Default::default(), Some(&export)).expect("telemetry");
    }
    let shutdown = Shutdown::new();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let store = start_store(backend.clone(), no_agents(&backend), &shutdown).await;
    let fleet = Arc::new(FleetView::new(store.clone()));
    fleet.sync().await.expect("initial sync");
    let warm = record_sessions(&backend, "warm", options.decisions / 4).await;
    view_decisions(fleet.clone(), store.clone(), warm, options.workers).await;
    let ids = record_sessions(&backend, "measured", options.decisions).await;
    let rate = view_decisions(fleet, store, ids, options.workers).await;
    switchboard_common::telemetry::shutdown().await;
    shutdown.cancel();
    println!("decisions/s: {rate}");
}

/// Classes of `--queue-drain`: each wants at least `1..=QUEUE_CLASSES` CPUs.
const QUEUE_CLASSES: usize = 8;

/// `--queue-drain`: queues `options.queued` requests that nothing fits, lets hosts with room for all join,
/// and times the queue worker until the queue is empty; per round, the time to the first placement and
/// the entries placed per second after it.
async fn queue_drain(options: &Options) {
    switchboard_common::telemetry::init_for_tests();
    let shutdown = Shutdown::new();
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
    let store = start_store(backend.clone(), Arc::new(InstantHosts), &shutdown).await;
    let config = switchboard_placement::PlacementConfig {
        create_sessions_queue_max_size: u32::try_from(options.queued).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = switchboard_placement::serve(
        config,
        listener,
        store.clone(),
        backend.clone(),
        backend.clone(),
        shutdown.clone(),
    );
    let service = tokio::spawn(serve);
    let mut placement = PlacementClient::new(lazy_channel(&url).unwrap());
    let (mut first_placed, mut rates) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let pool = format!("q{round}");
        let specs: Vec<CreateSessionSpec> = (0..options.queued)
            .map(|i| CreateSessionSpec {
                name: format!("queued-{i}"),
                owner: format!("user-{}", i % 500),
                r#type: SessionType::Virtual as i32,
                requirements: format!(
                    "tag:pool = '{pool}' and server:Host.CpuInfo.NumberOfCpus >= {}",
                    1 + i % QUEUE_CLASSES
                ),
                enqueue_request: true,
                disable_retry_on_failure: true,
                ..Default::default()
            })
            .collect();
        for (n, chunk) in specs.chunks(100).enumerate() {
            let request = CreateSessionsRequest {
                request_id: format!("{pool}-{n}"),
                specs: chunk.to_vec(),
                ..Default::default()
            };
            placement.create_sessions(request).await.expect("create sessions");
        }
        while backend.queue_len().await.unwrap() < options.queued {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let room = u32::try_from(options.queued.div_ceil(QUEUE_CLASSES)).unwrap_or(u32::MAX);
        for host in 0..QUEUE_CLASSES {
            let mut server = server(4 * host + 3); // 32 CPUs: fits every class
            server.id = format!("{pool}-host-{host}");
            server.max_virtual_sessions = room;
            server.tags = vec![KeyValue { key: "pool".into(), value: pool.clone() }];
            backend.upsert_server_report(server, true, None).await.expect("server report");
        }
        let mut first = None;
        loop {
            let left = backend.queue_len().await.unwrap();
            if left < options.queued && first.is_none() {
                first = Some(started.elapsed());
            }
            if left == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "the queue did not drain: {left} left");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (total, first) = (started.elapsed(), first.unwrap_or_default());
        let rate = options.queued as f64 / (total - first).as_secs_f64();
        println!(
            "queue drain: round {round}: {} entries, first placed after {} ms, all after {} ms: {rate:.0} placed/s",
            options.queued,
            first.as_millis(),
            total.as_millis()
        );
        first_placed.push(first.as_secs_f64() * 1000.0);
        rates.push(rate);
    }
    println!("queue drain: MEDIAN first placed after {:.0} ms; {:.0} placed/s", median(first_placed), median(rates));
    shutdown.cancel();
    let _ = service.await;
}

fn main() {
    let options = options();
    if options.overhead {
        return overhead(&options);
    }
    if let Some((mode, sink)) = options.child.clone() {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        return runtime.block_on(overhead_child(&mode, &sink, &options));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if options.queue_drain {
        return runtime.block_on(queue_drain(&options));
    }
    runtime.block_on(async {
        println!(
            "placement bench: {SERVERS} servers, requirement `{REQUIREMENT}`, {} rounds x {} decisions \
             ({} baseline), {} concurrent workers, {} CPUs",
            options.rounds,
            options.decisions,
            options.baseline_decisions,
            options.workers,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let embedded: Arc<dyn Backend> = Arc::new(EmbeddedBackend::in_memory().unwrap());
        bench("embedded", embedded, &options).await;
        let redis = switchboard_testkit::RedisServer::start();
        let config = RedisConfig { url: redis.url(), key_prefix: "bench:".into(), ..Default::default() };
        let backend: Arc<dyn Backend> = Arc::new(RedisBackend::connect(config).await.expect("connect to redis"));
        bench("redis", backend, &options).await;
    });
}
