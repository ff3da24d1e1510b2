//! `bench-fleet`: what one session-store replica costs per connected agent, and whether that cost stays
//! flat (BENCHMARKS.md, "Fleet"). Not a test: it prints a table and a summary, never asserts.
//!
//! Starts a `redis-server`, one `switchboard-auth` (only to issue the software statement) and **one
//! `switchboard-session-store` replica** (separate processes, the release binaries beside this one), then
//! `agents` simulated agents in one more process (`examples/sim_fleet`, beside them), each enrolling with the
//! statement and holding its own TLS stream to the replica's agent port, with `sessions` sessions each.
//! The replica sets the update interval. Every `sample` seconds it reads, for the replica and for the agents'
//! process, the resident memory (`VmRSS`), the CPU time (`/proc/PID/stat`, as % of one core over the
//! sample) and the open file descriptors, and prints a row; at the end a summary: RSS at `compare` minutes
//! against the last sample (the flatness goal: within 2 %), KB per agent, CPU per update cycle.
//!
//! ```text
//! cargo build --release -p switchboard-session-store -p switchboard-auth --bins
//! cargo build --release -p switchboard-agent --example sim_fleet
//! cargo build --release -p switchboard-tests --bin bench-fleet
//! target/release/bench-fleet [--agents 10000] [--interval 30] [--minutes 30] [--sample 60] [--compare 10]
//!     [--sessions 5] [--keep DIR] [--wrap-replica PROGRAM] [--wrap-agents PROGRAM] [--all-in-one true]
//! ```
//!
//! `--all-in-one true` measures `switchboard up --sim-hosts 0` (every service in one process, embedded
//! store; `cargo build --release -p switchboard --bin switchboard`) in the replica's place.
//!
//! `--keep DIR` keeps the logs and TLS files there; `--wrap-replica 'heaptrack -o DIR/replica'` (or
//! `--wrap-agents`) runs that process under a profiler, whose child is then the one measured.
//!
//! Both processes need a file descriptor per agent: the soft limit is raised to the hard one by the
//! binaries themselves; the hard limit (`ulimit -Hn`) must exceed `agents` plus a few hundred.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchboard_testkit::RedisServer;
use switchboard_tests::cluster::{binary, free_port, grpc_serving};

struct Options {
    agents: usize,
    interval: u64,
    minutes: u64,
    sample: u64,
    compare: u64,
    sessions: usize,
    keep: Option<PathBuf>,
    /// A program the replica runs under (`heaptrack`, `valgrind --tool=massif`), for profiling.
    wrap_replica: Vec<String>,
    /// A program the agents' process runs under.
    wrap_agents: Vec<String>,
    /// Measure `switchboard up` (every service in one process, embedded store) instead of a replica.
    all_in_one: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        agents: 10_000,
        interval: 30,
        minutes: 30,
        sample: 60,
        compare: 10,
        sessions: 5,
        keep: None,
        wrap_replica: Vec::new(),
        wrap_agents: Vec::new(),
        all_in_one: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("every option takes a value")?;
        match flag.as_str() {
            "--agents" => options.agents = value.parse()?,
            "--interval" => options.interval = value.parse()?,
            "--minutes" => options.minutes = value.parse()?,
            "--sample" => options.sample = value.parse()?,
            "--compare" => options.compare = value.parse()?,
            "--sessions" => options.sessions = value.parse()?,
            "--keep" => options.keep = Some(value.into()),
            "--all-in-one" => options.all_in_one = value.parse()?,
            "--wrap-replica" => options.wrap_replica = value.split_whitespace().map(str::to_owned).collect(),
            "--wrap-agents" => options.wrap_agents = value.split_whitespace().map(str::to_owned).collect(),
            other => bail!("unknown option {other}"),
        }
    }
    if options.sample == 0 || options.interval == 0 {
        bail!("--sample and --interval must be positive");
    }
    Ok(options)
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    /// The measured process: the child, or the program a wrapper started.
    measured: u32,
}

impl Proc {
    fn start(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        Self::start_wrapped(&[], program, args, log)
    }

    /// `program` under `wrapper` (its first word the wrapper's program, the rest its options), if any.
    fn start_wrapped(wrapper: &[String], program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let out = fs::File::create(log)?;
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let measured = child.id();
        Ok(Self { child, measured })
    }

    fn pid(&self) -> u32 {
        self.measured
    }

    /// Under a wrapper, finds the descendant running `program` (waits for it up to 30 s).
    async fn find_measured(&mut self, program: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = descendant_running(self.child.id(), program) {
                self.measured = pid;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no process runs {} under pid {}", program.display(), self.child.id());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_alive(&mut self, label: &str, log: &Path) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let text = fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            bail!("{label} exited ({status}):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.measured != self.child.id() {
            // A wrapped program: SIGTERM lets a profiler write its last data; the wrapper then ends with it.
            let _ = Command::new("kill").arg(self.measured.to_string()).status();
            let _ = self.child.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `root` or the first of its descendants whose executable is `program`.
fn descendant_running(root: u32, program: &Path) -> Option<u32> {
    let program = fs::canonicalize(program).ok()?;
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let pids: Vec<u32> =
        fs::read_dir("/proc").ok()?.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.into_iter().find(|&pid| {
        let runs = fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program);
        let mut ancestor = Some(pid);
        while let Some(current) = ancestor {
            if current == root {
                return runs;
            }
            ancestor = parent_of(current).filter(|&parent| parent > 1);
        }
        false
    })
}

/// What `/proc` says of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kb: u64,
    cpu_ticks: u64,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // After the command name: state is field 0, utime 11, stime 12.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0);
    Usage { rss_kb, cpu_ticks: ticks(11) + ticks(12), fds }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// One row of the table: both processes at the end of a sample.
#[derive(Debug, Clone, Copy)]
struct Row {
    seconds: u64,
    replica: Usage,
    /// % of one core over the sample.
    replica_cpu: f64,
    agents: Usage,
    agents_cpu: f64,
    updating: usize,
}

/// The last `hosts_updating=N/M` sim_fleet printed.
fn hosts_updating(log: &Path) -> usize {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix("hosts_updating=")))
        .and_then(|value| value.split('/').next()?.parse().ok())
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchboard_common::tls::install_crypto_provider();
    let options = options()?;
    let temp = tempfile::tempdir()?;
    let dir = options.keep.clone().unwrap_or_else(|| temp.path().to_owned());
    fs::create_dir_all(&dir)?;
    let broker = if options.all_in_one {
        start_all_in_one(&options, &dir).await?
    } else {
        start_replica(&options, &dir).await?
    };
    let mut store = broker.process;
    let (store_log, agent_port, ca_path, statement_file) =
        (broker.log, broker.agent_port, broker.ca_path, broker.statement_file);

    let total = options.minutes * 60;
    let fleet_log = dir.join("sim_fleet.log");
    let fleet_program = binary("examples/sim_fleet")?;
    let mut fleet = Proc::start_wrapped(
        &options.wrap_agents,
        &fleet_program,
        &[
            format!("--broker=https://localhost:{agent_port}"),
            format!("--ca={}", ca_path.display()),
            format!("--hosts={}", options.agents),
            format!("--sessions={}", options.sessions),
            format!("--seconds={}", total + 2 * options.sample),
            format!("--window={}", options.interval),
            format!("--software-statement={}", statement_file.display()),
            format!("--credentials-dir={}", dir.join("credentials").display()),
        ],
        &fleet_log,
    )?;
    if !options.wrap_agents.is_empty() {
        fleet.find_measured(&fleet_program).await?;
    }
    println!(
        "bench-fleet: {} agents ({} sessions each) on {} (pid {}, TLS, enrolled), agents' process pid {}, \
         update interval {} s, {} min, a sample every {} s; logs in {}",
        options.agents,
        options.sessions,
        if options.all_in_one {
            "`switchboard up` (all-in-one, embedded store; 'replica' below)"
        } else {
            "one session-store replica (Redis backend)"
        },
        store.pid(),
        fleet.pid(),
        options.interval,
        options.minutes,
        options.sample,
        dir.display()
    );
    println!(
        "{:>6} | {:>11} {:>7} {:>6} | {:>11} {:>7} {:>6} | {:>8}",
        "t (s)", "replica MiB", "CPU %", "fds", "agents MiB", "CPU %", "fds", "updating"
    );
    let started = Instant::now();
    let mut last = (usage(store.pid()), usage(fleet.pid()), Instant::now());
    let mut rows: Vec<Row> = Vec::new();
    for n in 1..=total / options.sample {
        let due = started + Duration::from_secs(n * options.sample);
        tokio::time::sleep_until(due.into()).await;
        store.check_alive("session-store", &store_log)?;
        fleet.check_alive("sim_fleet", &fleet_log)?;
        let (replica, agents, now) = (usage(store.pid()), usage(fleet.pid()), Instant::now());
        let elapsed = now.duration_since(last.2).as_secs_f64();
        let cpu = |after: Usage, before: Usage| {
            (after.cpu_ticks - before.cpu_ticks) as f64 / TICKS_PER_SECOND / elapsed * 100.0
        };
        let row = Row {
            seconds: n * options.sample,
            replica,
            replica_cpu: cpu(replica, last.0),
            agents,
            agents_cpu: cpu(agents, last.1),
            updating: hosts_updating(&fleet_log),
        };
        println!(
            "{:>6} | {:>11.1} {:>7.2} {:>6} | {:>11.1} {:>7.2} {:>6} | {:>8}",
            row.seconds,
            row.replica.rss_kb as f64 / 1024.0,
            row.replica_cpu,
            row.replica.fds,
            row.agents.rss_kb as f64 / 1024.0,
            row.agents_cpu,
            row.agents.fds,
            row.updating
        );
        rows.push(row);
        last = (replica, agents, now);
    }
    summary(&options, &rows);
    drop(fleet);
    drop(store);
    drop(broker.redis);
    Ok(())
}

/// The broker under measurement, ready for agents.
struct Broker {
    process: Proc,
    log: PathBuf,
    agent_port: u16,
    ca_path: PathBuf,
    statement_file: PathBuf,
    /// The separate replica's Redis (stopped after it).
    redis: Option<RedisServer>,
}

/// One `switchboard-session-store` replica over a fresh `redis-server`, and a software statement from a
/// `switchboard-auth` stopped once it issued it.
async fn start_replica(options: &Options, dir: &Path) -> anyhow::Result<Broker> {
    let tls = switchboard_common::tls::DevCa::load_or_create(&dir.join("tls"), &[])?;
    let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
    let token_file = dir.join("admin-token");
    fs::write(&token_file, &admin_token)?;
    let redis = RedisServer::start();
    let (store_port, agent_port, auth_port) = (free_port(), free_port(), free_port());
    let cert = tls.ca_path.with_file_name("server.pem");
    let key = tls.ca_path.with_file_name("server-key.pem");

    let store_log = dir.join("session-store.log");
    let store_program = binary("switchboard-session-store")?;
    let mut store = Proc::start_wrapped(
        &options.wrap_replica,
        &store_program,
        &[
            format!("--listen=127.0.0.1:{store_port}"),
            format!("--agent-listen=127.0.0.1:{agent_port}"),
            "--replica-id=bench-store".into(),
            format!("--redis-url={}", redis.url()),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-key-file={}", key.display()),
            format!("--update-interval-seconds={}", options.interval),
            "--log-level=warn".into(),
        ],
        &store_log,
    )?;
    if !options.wrap_replica.is_empty() {
        store.find_measured(&store_program).await?;
    }
    let auth_log = dir.join("auth.log");
    let mut auth = Proc::start(
        &binary("switchboard-auth")?,
        &[
            format!("--listen=127.0.0.1:{auth_port}"),
            format!("--redis-url={}", redis.url()),
            format!("--admin-token-file={}", token_file.display()),
            "--log-level=warn".into(),
        ],
        &auth_log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(grpc_serving("http", store_port, "").await && grpc_serving("http", auth_port, "").await) {
        store.check_alive("session-store", &store_log)?;
        auth.check_alive("auth", &auth_log)?;
        if Instant::now() > deadline {
            bail!("session-store or auth not serving after 30 s (logs in {})", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statement = {
        let channel = switchboard_common::grpc::lazy_channel(&format!("http://127.0.0.1:{auth_port}"))?;
        let mut client = switchboard_proto::agent_admin_client::AgentAdminClient::new(channel);
        let mut request = tonic::Request::new(switchboard_proto::GenerateSoftwareStatementRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer {admin_token}").parse()?);
        client.generate_software_statement(request).await?.into_inner().software_statement
    };
    // Auth's part is done; the machine is quieter without it.
    drop(auth);
    let statement_file = dir.join("statement.txt");
    fs::write(&statement_file, statement)?;
    Ok(Broker { process: store, log: store_log, agent_port, ca_path: tls.ca_path, statement_file, redis: Some(redis) })
}

/// `switchboard up --sim-hosts 0` (every service in one process, embedded store) and a software statement
/// from `switchboard generate-software-statement`.
async fn start_all_in_one(options: &Options, dir: &Path) -> anyhow::Result<Broker> {
    let data = dir.join("data");
    let (listen, agent_port) = (free_port(), free_port());
    let log = dir.join("switchboard-up.log");
    let program = binary("switchboard")?;
    let args = [
        "up".to_owned(),
        format!("--data-dir={}", data.display()),
        "--sim-hosts=0".into(),
        format!("--update-interval-seconds={}", options.interval),
        format!("--listen=127.0.0.1:{listen}"),
        format!("--agent-listen=127.0.0.1:{agent_port}"),
        "--log-level=warn".into(),
    ];
    let mut process = Proc::start_wrapped(&options.wrap_replica, &program, &args, &log)?;
    if !options.wrap_replica.is_empty() {
        process.find_measured(&program).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("admin.json").exists() {
        process.check_alive("switchboard up", &log)?;
        if Instant::now() > deadline {
            bail!("switchboard up not ready after 60 s (log in {})", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let output = Command::new(&program)
        .args(["generate-software-statement".to_owned(), format!("--data-dir={}", data.display())])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let statement = text
        .lines()
        .find_map(|line| line.strip_prefix("software-statement: "))
        .with_context(|| format!("no statement printed: {text}{}", String::from_utf8_lossy(&output.stderr)))?;
    let statement_file = dir.join("statement.txt");
    fs::write(&statement_file, statement)?;
    Ok(Broker { process, log, agent_port, ca_path: data.join("tls/ca.pem"), statement_file, redis: None })
}

/// RSS at `compare` minutes against the last sample, KB per agent, CPU per cycle (median of the samples
/// after `compare`), most descriptors.
fn summary(options: &Options, rows: &[Row]) {
    let Some(end) = rows.last() else {
        println!("no samples");
        return;
    };
    let compare_at = options.compare * 60;
    let from = rows.iter().find(|row| row.seconds >= compare_at).unwrap_or(&rows[0]);
    let steady: Vec<&Row> = rows.iter().filter(|row| row.seconds > from.seconds).collect();
    let steady = if steady.is_empty() { vec![end] } else { steady };
    let side = |name: &str, pick: fn(&Row) -> (Usage, f64)| {
        let (first, _) = pick(from);
        let (last, _) = pick(end);
        let change = (last.rss_kb as f64 - first.rss_kb as f64) / first.rss_kb.max(1) as f64 * 100.0;
        let cpu = median(steady.iter().map(|row| pick(row).1).collect());
        let fds = rows.iter().map(|row| pick(row).0.fds).max().unwrap_or(0);
        println!(
            "{name}: RSS {:.1} MiB at {} s, {:.1} MiB at {} s: {change:+.2} % ({:+.1} KiB per minute); \
             {:.1} KB per agent; CPU median {cpu:.2} % of a core = {:.3} s per {} s update cycle; fds at most {fds}",
            first.rss_kb as f64 / 1024.0,
            from.seconds,
            last.rss_kb as f64 / 1024.0,
            end.seconds,
            (last.rss_kb as f64 - first.rss_kb as f64) / ((end.seconds - from.seconds).max(1) as f64 / 60.0),
            last.rss_kb as f64 * 1.024 / options.agents.max(1) as f64,
            cpu / 100.0 * options.interval as f64,
            options.interval,
        );
    };
    println!(
        "summary ({} agents, update interval {} s; medians over the samples after {} s):",
        options.agents, options.interval, from.seconds
    );
    side("replica", |row| (row.replica, row.replica_cpu));
    side("agents ", |row| (row.agents, row.agents_cpu));
    println!("hosts updating in the last window: {} / {}", end.updating, options.agents);
}
