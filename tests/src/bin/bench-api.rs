//! `bench-api`: the API's end-to-end numbers on this machine (BENCHMARKS.md, "API"). Not a test: it
//! prints medians and ratios, never asserts a time.
//!
//! Starts `switchboard up` (the release binary beside this one, simulated hosts that create sessions at
//! once, rate limits off) and measures, in one run:
//! - create→READY: `concurrent` single-item `createSessions` sent at once (after one warm-up round that
//!   opens the connections); each session's time from its request to the first `describeSessions` poll
//!   (every 2 ms from the moment its create is answered, all pending ids in one call) that shows it READY;
//!   p50/p99/max, and when the last create was answered;
//! - bulk: `bulk` sessions in requests of 100, 8 requests in flight, until every one is READY; sessions/s;
//! - describeSessions throughput for one id and for a page of 100, with `describe-small` and then
//!   `describe-large` sessions stored, against `GET /health/live` of the same gateway measured the same way
//!   (8 connections, closed loop, `seconds` each); requests/s and the ratio to `/health/live`;
//! - then create→READY again against two replicas of every service over a `redis-server` (separate
//!   processes, both gateways in turn).
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/bench-api [--concurrent 200] [--bulk 10000] [--seconds 5]
//! ```
//!
//! With `--overhead ROUNDS` it measures instead what telemetry costs (observability issue): the same
//! describeSessions throughput (one id, a page of 100; 100 sessions stored) and `/health/live`, against
//! `switchboard up` started three ways, interleaved over the rounds: telemetry off; metrics served
//! (`--metrics-listen`) and traces sampled at 1 %; metrics and traces at 100 % (`--otlp-endpoint`, to an
//! OTLP receiver this bench serves). Medians per configuration and their ratio to "off", of the requests
//! per second and of the broker process's CPU time per request (from `/proc/PID/stat`).
//! `--modes off,metrics,traces-1,both-1,both-100` picks the configurations (`off` first: the baseline;
//! `metrics` and `traces-1` separate the two halves of `both-1`), and `--pin-broker CPU` runs each broker on
//! that CPU alone (`taskset`), so that with the bench on another (`taskset -c 1 bench-api …`) the broker's
//! core is saturated and its rate follows its own cost. `--callgrind 1` runs each broker under valgrind's
//! callgrind instead and also reports the instructions the broker executed per request (counted only while
//! a measurement runs, less what the idle broker executes in as many seconds, counted just before): a
//! count that, unlike time on a shared virtual machine, hardly changes from round to round. Rates under valgrind are about 50 times lower,
//! so give it more `--seconds`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Connections of the throughput loops.
const CONNECTIONS: usize = 8;
/// Simulated hosts of the all-in-one; each takes `MAX_VIRTUAL` sessions.
const HOSTS: usize = 10;

struct Options {
    /// Rounds of the telemetry-overhead comparison; 0 for the normal run.
    overhead: usize,
    /// The telemetry configurations of the comparison, the baseline first.
    modes: Vec<Mode>,
    /// The CPU each broker of the comparison runs on alone (`taskset -c`), if any.
    pin_broker: Option<u64>,
    /// Each broker of the comparison runs under callgrind, which counts its instructions.
    callgrind: bool,
    concurrent: usize,
    bulk: usize,
    seconds: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        overhead: 0,
        modes: vec![Mode::Off, Mode::Both(0.01), Mode::Both(1.0)],
        pin_broker: None,
        callgrind: false,
        concurrent: 200,
        bulk: 10_000,
        seconds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every option takes a value")?;
        if flag == "--modes" {
            options.modes = value.split(',').map(Mode::parse).collect::<anyhow::Result<_>>()?;
            continue;
        }
        let value: u64 = value.parse().with_context(|| format!("{flag} takes a number"))?;
        match flag.as_str() {
            "--pin-broker" => options.pin_broker = Some(value),
            "--callgrind" => options.callgrind = value != 0,
            "--concurrent" => options.concurrent = usize::try_from(value)?,
            "--bulk" => options.bulk = usize::try_from(value)?,
            "--seconds" => options.seconds = value,
            "--overhead" => options.overhead = usize::try_from(value)?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

/// A telemetry configuration of `--overhead`.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Off,
    /// Metrics served, no traces.
    Metrics,
    /// Traces sampled at this ratio, no metrics.
    Traces(f64),
    /// Metrics served and traces sampled at this ratio.
    Both(f64),
}

impl Mode {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let ratio = |percent: &str| -> anyhow::Result<f64> { Ok(percent.parse::<f64>()? / 100.0) };
        Ok(match text.split_once('-') {
            None if text == "off" => Self::Off,
            None if text == "metrics" => Self::Metrics,
            Some(("traces", percent)) => Self::Traces(ratio(percent)?),
            Some(("both", percent)) => Self::Both(ratio(percent)?),
            _ => bail!("unknown mode {text}: off, metrics, traces-PERCENT or both-PERCENT"),
        })
    }

    fn label(self) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::Metrics => "metrics, no traces".to_owned(),
            Self::Traces(ratio) => format!("traces at {} %, no metrics", ratio * 100.0),
            Self::Both(ratio) => format!("metrics + traces at {} %", ratio * 100.0),
        }
    }

    /// `switchboard up`'s options for this configuration; spans go to `otlp`.
    fn options(self, otlp: &str) -> Vec<String> {
        let metrics = || format!("--metrics-listen=127.0.0.1:{}", switchboard_tests::cluster::free_port());
        let traces = |ratio: f64| [format!("--otlp-endpoint={otlp}"), format!("--otlp-sampling-ratio={ratio}")];
        match self {
            Self::Off => Vec::new(),
            Self::Metrics => vec![metrics()],
            Self::Traces(ratio) => traces(ratio).to_vec(),
            Self::Both(ratio) => [vec![metrics()], traces(ratio).to_vec()].concat(),
        }
    }
}

/// A running broker the bench drives: `switchboard up` as a child process, or a two-replica cluster over
/// Redis; what keeps it running is dropped with it.
struct Broker {
    /// Gateway base URLs; calls go round-robin over them.
    apis: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    token: String,
    /// How many hosts must be available before measuring.
    hosts: usize,
    /// The `switchboard up` process, whose CPU time [`Broker::cpu_seconds`] reads; none for a cluster.
    pid: Option<u32>,
    /// Where callgrind writes its counts, when the process runs under it.
    callgrind: Option<PathBuf>,
    _running: Box<dyn std::any::Any + Send + Sync>,
}

/// `switchboard up` as a child process, killed on drop.
struct UpProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting `ca_pem`, and an access token for the client `id`/`secret` from `api`.
async fn client_and_token(
    ca_pem: &[u8],
    api: &str,
    id: &str,
    secret: &str,
) -> anyhow::Result<(reqwest::Client, String)> {
    let ca = reqwest::Certificate::from_pem(ca_pem)?;
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    let token: Value = http
        .post(format!("{api}/oauth2/token?grant_type=client_credentials"))
        .basic_auth(id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("no token")?.to_owned();
    Ok((http, token))
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no parent dir")?.join(name);
    if !path.exists() {
        bail!("{} is missing: cargo build --release --workspace --bins", path.display());
    }
    Ok(path)
}

impl Broker {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[], &Launch::default()).await
    }

    /// `switchboard up` with `extra` flags.
    async fn start_with(extra: &[String], launch: &Launch) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = switchboard_tests::cluster::free_port();
        let agent_port = switchboard_tests::cluster::free_port();
        let bin = sibling("switchboard")?;
        let log = std::fs::File::create(dir.path().join("up.log"))?;
        let mut command = Command::new(if launch.pin.is_some() { "taskset".as_ref() } else { bin.as_os_str() });
        if let Some(cpu) = launch.pin {
            command.args(["-c", &cpu.to_string()]).arg(&bin);
        }
        let callgrind = launch.callgrind.then(|| dir.path().join("callgrind"));
        if let Some(out) = &callgrind {
            std::fs::create_dir_all(out)?;
            // Counting starts off (a fast start) and is switched on around each measurement.
            let program = command.get_program().to_owned();
            let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
            command = Command::new("valgrind");
            command
                .args(["--tool=callgrind", "--instr-atstart=no", "--dump-instr=no"])
                .arg(format!("--callgrind-out-file={}", out.join("counts").display()))
                .arg(program)
                .args(args);
        }
        let child = command
            .args(["up", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--sim-hosts", &HOSTS.to_string(), "--resolver-listen", "off", "--api-rate-per-minute", "0"])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--agent-listen", &format!("127.0.0.1:{agent_port}")])
            .args(["--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        // Killed when dropped, also when the start fails below.
        let process = UpProcess { child, dir };
        let data = process.dir.path().join("data");
        let ca_path = data.join("tls/ca.pem");
        let deadline = Instant::now() + Duration::from_secs(if launch.callgrind { 600 } else { 60 });
        while !data.join("admin.json").exists() || !ca_path.exists() {
            if Instant::now() > deadline {
                bail!("switchboard up did not start; see {}", process.dir.path().join("up.log").display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The admin port may answer a moment after its file appears (long under callgrind): try until then.
        let text = loop {
            let output = Command::new(&bin)
                .args(["register-api-client", "--client-name", "bench", "--data-dir"])
                .arg(&data)
                .output()?;
            if output.status.success() || Instant::now() > deadline {
                break String::from_utf8(output.stdout)?;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::to_owned);
        let (id, secret) = (field("client-id: ").context("client id")?, field("client-password: ").context("secret")?);
        let api = format!("https://localhost:{port}");
        let (http, token) = client_and_token(&std::fs::read(&ca_path)?, &api, &id, &secret).await?;
        let pid = Some(process.child.id());
        let running = Box::new(process);
        let up = Self {
            apis: vec![api],
            next: Default::default(),
            http,
            token,
            hosts: HOSTS,
            pid,
            callgrind,
            _running: running,
        };
        up.wait_hosts().await?;
        Ok(up)
    }

    /// Two replicas of every service over a `redis-server`, each a process (the release binaries beside
    /// this one), with `HOSTS` simulated agents spread over the session-store replicas.
    async fn start_cluster() -> anyhow::Result<Self> {
        use switchboard_tests::cluster::{ClusterSpec, ProcessCluster};
        let spec = ClusterSpec { replicas: 2, agents: HOSTS, max_virtual_sessions: 10_000, ..Default::default() };
        let cluster = ProcessCluster::start(spec).await?;
        let (id, secret) = cluster.register_client("bench").await?;
        let apis = cluster.gateway_urls();
        let (http, token) = client_and_token(cluster.ca_pem.as_bytes(), &apis[0], &id, &secret).await?;
        let running = Box::new(cluster);
        let target = Self {
            apis,
            next: Default::default(),
            http,
            token,
            hosts: HOSTS,
            pid: None,
            callgrind: None,
            _running: running,
        };
        target.wait_hosts().await?;
        Ok(target)
    }

    /// CPU time (user and system) the `switchboard up` process has used so far, from `/proc/PID/stat` (in
    /// clock ticks of 1/100 s, Linux's `USER_HZ`); none for a cluster or off Linux.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // Fields after the command name (which may hold spaces, so split after its closing parenthesis):
        // state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// Under callgrind: counts from now on (`on`), or stops counting and returns the instructions counted
    /// since it started (`off`). `None` when not under callgrind.
    fn count_instructions(&self, on: bool) -> anyhow::Result<Option<f64>> {
        let (Some(out), Some(pid)) = (&self.callgrind, self.pid) else { return Ok(None) };
        let control = |args: &[&str]| -> anyhow::Result<()> {
            let status =
                Command::new("callgrind_control").args(args).arg(pid.to_string()).stdout(Stdio::null()).status()?;
            anyhow::ensure!(status.success(), "callgrind_control {args:?} failed");
            Ok(())
        };
        if on {
            control(&["--zero"])?;
            control(&["--instr=on"])?;
            return Ok(None);
        }
        control(&["--instr=off"])?;
        control(&["--dump"])?;
        // The newest dump: `counts.N`, its `totals:` line the instructions (the only event counted).
        let newest = std::fs::read_dir(out)?
            .filter_map(Result::ok)
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .max()
            .context("no callgrind dump")?
            .1;
        let text = std::fs::read_to_string(&newest)?;
        let totals = text.lines().find_map(|line| line.strip_prefix("totals:")).context("no totals line")?;
        Ok(Some(totals.trim().parse()?))
    }

    /// The next gateway, round-robin.
    fn api(&self) -> &str {
        &self.apis[self.next.fetch_add(1, Ordering::Relaxed) % self.apis.len()]
    }

    async fn call(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response =
            self.http.post(format!("{}{path}", self.api())).bearer_auth(&self.token).json(body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {answer}");
        }
        Ok(answer)
    }

    async fn wait_hosts(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let servers = self.call("/describeServers", &json!({})).await?;
            let available = servers["Servers"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|s| s["Availability"] == "AVAILABLE").count());
            if available == self.hosts {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{available} of {} simulated hosts available", self.hosts);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates `items` sessions in one request; their ids.
    async fn create(&self, items: usize) -> anyhow::Result<Vec<String>> {
        let body: Vec<Value> = (0..items)
            .map(|i| json!({ "Name": "bench", "Owner": format!("user{}", i % 50), "Type": "VIRTUAL" }))
            .collect();
        let answer = self.call("/createSessions", &Value::Array(body)).await?;
        let ids: Vec<String> = answer["SuccessfulList"]
            .as_array()
            .map(|list| list.iter().filter_map(|s| s["Id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if ids.len() != items {
            bail!("created {} of {items}: {}", ids.len(), answer["UnsuccessfulList"]);
        }
        Ok(ids)
    }

    /// The ids among `ids` that are READY now (at most 100 per call), failing on any that ended otherwise.
    async fn ready_among(&self, ids: &[String]) -> anyhow::Result<Vec<String>> {
        let mut ready = Vec::new();
        for chunk in ids.chunks(100) {
            let answer = self.call("/describeSessions", &json!({ "SessionIds": chunk })).await?;
            for session in answer["Sessions"].as_array().into_iter().flatten() {
                match session["State"].as_str() {
                    Some("READY") => ready.push(session["Id"].as_str().unwrap_or_default().to_owned()),
                    Some("CREATING") => {}
                    other => bail!("session {} ended {other:?}: {}", session["Id"], session["StateReason"]),
                }
            }
        }
        Ok(ready)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// create→READY latencies of `count` single-item creates sent at once, in ms, sorted; and the time until
/// every create was answered. Each session is polled from the moment its create is answered, by one poller
/// that asks for every pending id in one `describeSessions` call every 2 ms.
async fn create_to_ready(up: &Arc<Broker>, count: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let started = Instant::now();
    let answered = Arc::new(std::sync::Mutex::new(Vec::<(String, Duration)>::new()));
    let creates: Vec<_> = (0..count)
        .map(|_| {
            let (up, answered) = (up.clone(), answered.clone());
            tokio::spawn(async move {
                let sent = started.elapsed();
                let ids = up.create(1).await?;
                answered.lock().expect("not poisoned").push((ids[0].clone(), sent));
                anyhow::Ok(started.elapsed())
            })
        })
        .collect();
    let mut pending: Vec<(String, Duration)> = Vec::new();
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() < count {
        pending.extend(answered.lock().expect("not poisoned").drain(..));
        if !pending.is_empty() {
            let ids: Vec<String> = pending.iter().map(|(id, _)| id.clone()).collect();
            let ready = up.ready_among(&ids).await?;
            let seen = started.elapsed();
            pending.retain(|(id, sent)| {
                let done = ready.contains(id);
                if done {
                    latencies.push((seen - *sent).as_secs_f64() * 1000.0);
                }
                !done
            });
        }
        if Instant::now() > deadline {
            bail!("{} sessions not READY after 120 s", count - latencies.len());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all_answered = Duration::ZERO;
    for create in creates {
        all_answered = all_answered.max(create.await??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, all_answered.as_secs_f64() * 1000.0))
}

/// `total` sessions in requests of 100, 8 in flight; seconds until every one is READY.
async fn bulk(up: &Arc<Broker>, total: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for batch in 0..total.div_ceil(100) {
        let items = 100.min(total - batch * 100);
        let (up, permit) = (up.clone(), semaphore.clone().acquire_owned().await?);
        tasks.push(tokio::spawn(async move {
            let ids = up.create(items).await;
            drop(permit);
            ids
        }));
    }
    let mut pending = Vec::new();
    for task in tasks {
        pending.extend(task.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() {
        let ready = up.ready_among(&pending).await?;
        pending.retain(|id| !ready.contains(id));
        if Instant::now() > deadline {
            bail!("{} sessions still CREATING after 600 s", pending.len());
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Requests/s of a closed loop of `CONNECTIONS` clients for `seconds`.
/// A closed-loop throughput measurement: requests per second and, for `switchboard up`, the broker's CPU
/// time per request in µs (a steadier measure of cost than the rate on a shared machine).
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    cpu_us: f64,
    /// Instructions the broker executed per request (under callgrind), else NaN.
    instructions: f64,
}

/// How [`Broker::start_with`] runs `switchboard up`.
#[derive(Debug, Default)]
struct Launch {
    /// On this CPU alone (`taskset -c`).
    pin: Option<u64>,
    /// Under callgrind.
    callgrind: bool,
}

async fn throughput(
    up: &Arc<Broker>,
    seconds: u64,
    request: Arc<dyn Fn(&Broker) -> reqwest::RequestBuilder + Send + Sync>,
) -> anyhow::Result<Rate> {
    // Under callgrind: what the broker executes with no request (its background loops and the simulated
    // hosts), per second, subtracted from the measurement below.
    let idle_per_second = match up.count_instructions(true)? {
        None if up.callgrind.is_some() => {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(seconds.min(5))).await;
            let idle = up.count_instructions(false)?.context("an idle count")?;
            idle / started.elapsed().as_secs_f64()
        }
        _ => 0.0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (up, stop, done, request) = (up.clone(), stop.clone(), done.clone(), request.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = request(&up).send().await?;
                    if !response.status().is_success() {
                        bail!("{}", response.status());
                    }
                    response.bytes().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    up.count_instructions(true)?;
    let (started, cpu_before, done_before) = (Instant::now(), up.cpu_seconds(), done.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (elapsed, cpu_after) = (started.elapsed(), up.cpu_seconds());
    let requests = (done.load(Ordering::Relaxed) - done_before) as f64;
    let background = idle_per_second * elapsed.as_secs_f64();
    let instructions = up.count_instructions(false)?.map_or(f64::NAN, |count| (count - background) / requests);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let cpu = cpu_before.zip(cpu_after).map(|(before, after)| after - before).unwrap_or(f64::NAN);
    Ok(Rate { per_second: requests / elapsed.as_secs_f64(), cpu_us: cpu * 1e6 / requests, instructions })
}

/// `/health/live`, describeSessions for one id and for a page of 100: requests/s each.
async fn describe_rates(up: &Arc<Broker>, seconds: u64) -> anyhow::Result<(Rate, Rate, Rate)> {
    let health =
        throughput(up, seconds, Arc::new(|up: &Broker| up.http.get(format!("{}/health/live", up.api())))).await?;
    let any = up.call("/describeSessions", &json!({ "MaxResults": 1 })).await?;
    let one_id = any["Sessions"][0]["Id"].as_str().context("a stored session")?.to_owned();
    let one = Arc::new(move |up: &Broker| {
        up.http
            .post(format!("{}/describeSessions", up.api()))
            .bearer_auth(&up.token)
            .json(&json!({ "SessionIds": [one_id] }))
    });
    let one = throughput(up, seconds, one).await?;
    let page = Arc::new(|up: &Broker| {
        up.http
            .post(format!("{}/describeSessions", up.api()))
            .bearer_auth(&up.token)
            .json(&json!({ "MaxResults": 100 }))
    });
    let page = throughput(up, seconds, page).await?;
    Ok((health, one, page))
}

async fn describe_table(up: &Arc<Broker>, seconds: u64, stored: usize) -> anyhow::Result<()> {
    let (health, one, page) = describe_rates(up, seconds).await?;
    let (health, one, page) = (health.per_second, one.per_second, page.per_second);
    println!("| {stored} | /health/live | {health:.0} | 1.00 |");
    println!("| {stored} | describeSessions, one id | {one:.0} | {:.3} |", one / health);
    println!("| {stored} | describeSessions, page of 100 | {page:.0} | {:.3} |", page / health);
    Ok(())
}

/// `--overhead`: see the module doc.
async fn overhead(options: &Options) -> anyhow::Result<()> {
    let sink = switchboard_testkit::OtlpSink::start().await?;
    let modes = &options.modes;
    // Per configuration, per request kind (/health/live, one id, page of 100): each round's measurement.
    let mut rates: Vec<[Vec<Rate>; 3]> = vec![Default::default(); modes.len()];
    for round in 0..options.overhead {
        for (index, mode) in modes.iter().enumerate() {
            let label = mode.label();
            let launch = Launch { pin: options.pin_broker, callgrind: options.callgrind };
            let up = Arc::new(Broker::start_with(&mode.options(&sink.url), &launch).await?);
            up.create(100).await?;
            let (health, one, page) = describe_rates(&up, options.seconds).await?;
            println!(
                "round {round}, {label}: /health/live {:.0}, one id {:.0}, page of 100 {:.0} requests/s; \
                 broker CPU per request {:.1} / {:.1} / {:.1} µs; instructions per request {:.0} / {:.0} / {:.0}",
                health.per_second,
                one.per_second,
                page.per_second,
                health.cpu_us,
                one.cpu_us,
                page.cpu_us,
                health.instructions,
                one.instructions,
                page.instructions
            );
            for (kind, rate) in [health, one, page].into_iter().enumerate() {
                rates[index][kind].push(rate);
            }
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(&values, 0.5)
    };
    // Medians per configuration and kind.
    let medians: Vec<Vec<Rate>> = rates
        .iter()
        .map(|kinds| {
            kinds
                .iter()
                .map(|r| Rate {
                    per_second: median(r.iter().map(|m| m.per_second).collect()),
                    cpu_us: median(r.iter().map(|m| m.cpu_us).collect()),
                    instructions: median(r.iter().map(|m| m.instructions).collect()),
                })
                .collect()
        })
        .collect();
    let off = medians[0].clone();
    println!("\n| telemetry | /health/live | describeSessions, one id | page of 100 |\n| --- | --- | --- | --- |");
    for (mode, kinds) in modes.iter().zip(&medians) {
        let label = mode.label();
        let cells: Vec<String> = kinds
            .iter()
            .zip(&off)
            .map(|(rate, base)| {
                let mut cell = format!(
                    "{:.0}/s ({:.3}); {:.1} µs CPU ({:.3})",
                    rate.per_second,
                    rate.per_second / base.per_second,
                    rate.cpu_us,
                    rate.cpu_us / base.cpu_us
                );
                if options.callgrind {
                    cell += &format!(
                        "; {:.0} instructions ({:.3})",
                        rate.instructions,
                        rate.instructions / base.instructions
                    );
                }
                cell
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
    println!(
        "(requests/s, the broker's CPU time{} per request, medians of {} rounds; in brackets the ratio to \
         {}) spans received: {}",
        if options.callgrind { " and instructions" } else { "" },
        options.overhead,
        modes[0].label(),
        sink.spans()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    switchboard_common::tls::install_crypto_provider();
    if options.overhead > 0 {
        return overhead(&options).await;
    }
    let up = Arc::new(Broker::start().await?);
    println!("all-in-one, {HOSTS} simulated hosts, {CONNECTIONS} connections for throughput\n");

    // A warm-up round opens the connections (TLS handshakes) the measured round reuses.
    create_to_ready(&up, options.concurrent).await?;
    let (latencies, answered) = create_to_ready(&up, options.concurrent).await?;
    println!(
        "create→READY, {} concurrent single-item creates: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (every create answered after {answered:.1} ms)",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );

    println!("\n| sessions stored | request | requests/s | ratio to /health/live |\n| --- | --- | --- | --- |");
    describe_table(&up, options.seconds, 2 * options.concurrent).await?;

    let seconds = bulk(&up, options.bulk).await?;
    let stored = 2 * options.concurrent + options.bulk;
    describe_table(&up, options.seconds, stored).await?;
    println!(
        "\nbulk: {} sessions in requests of 100, 8 in flight, all READY in {seconds:.2} s: {:.0} sessions/s",
        options.bulk,
        options.bulk as f64 / seconds
    );
    drop(up);

    // The same create→READY measurement against two replicas of every service over Redis, through both
    // gateways.
    let cluster = Arc::new(Broker::start_cluster().await?);
    create_to_ready(&cluster, options.concurrent).await?;
    let (latencies, answered) = create_to_ready(&cluster, options.concurrent).await?;
    println!(
        "\ntwo replicas of each service over Redis, {HOSTS} simulated agents: create→READY, {} concurrent \
         single-item creates: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (every create answered after {answered:.1} ms)",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}
