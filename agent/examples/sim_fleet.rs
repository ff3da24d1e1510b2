//! Many simulated agents in one process, to measure what one process can hold.
//!
//! ```text
//! cargo run --release -p switchboard-agent --example sim_fleet -- \
//!     --broker https://localhost:8445 --ca switchboard-data/tls/ca.pem --hosts 2000 --sessions 5 --seconds 120 \
//!     --software-statement statement.txt --credentials-dir /tmp/fleet-credentials
//! ```
//!
//! Each host is a full agent (its own stream, driver, telemetry) with `--sessions` simulated sessions. Every
//! `--window` seconds (10) it prints how many hosts sent an update in that window (a host is counted when the link listed its
//! sessions for a hello or an update), the process's resident memory and the CPU time used. The broker sets
//! the update interval (`switchboard up --update-interval`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard_agent::driver::Result;
use switchboard_agent::{DcvDriver, SimulatedDriver, simulated_host_options, telemetry::simulated_host};
use switchboard_common::Shutdown;
use switchboard_proto::{CreateSessionSpec, HostSession, ScreenshotImage, SessionType};

/// A simulated driver that records when its sessions were last listed.
struct Counted {
    inner: SimulatedDriver,
    listed_epoch: AtomicU64,
    clock: Arc<AtomicU64>,
}

#[async_trait]
impl DcvDriver for Counted {
    async fn health(&self) -> bool {
        self.inner.health().await
    }
    async fn version(&self) -> String {
        self.inner.version().await
    }
    async fn list_sessions(&self) -> Result<Vec<HostSession>> {
        self.listed_epoch.store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        self.inner.list_sessions().await
    }
    async fn create_session(&self, id: &str, spec: &CreateSessionSpec) -> Result<HostSession> {
        self.inner.create_session(id, spec).await
    }
    async fn close_session(&self, id: &str) -> Result<()> {
        self.inner.close_session(id).await
    }
    async fn set_permissions(&self, id: &str, permissions: &[u8]) -> Result<()> {
        self.inner.set_permissions(id, permissions).await
    }
    async fn screenshot(&self, id: &str, w: u32, h: u32, format: &str) -> Result<Vec<ScreenshotImage>> {
        self.inner.screenshot(id, w, h, format).await
    }
}

/// The value of `--name value` or `--name=value`.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let prefix = format!("{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_owned))
        .or_else(|| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()))
}

/// Resident memory (kB) and CPU time (s) of this process, from /proc.
fn usage() -> (u64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks per second on Linux.
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchboard_common::tls::install_crypto_provider();
    // A socket per host: the soft open-files limit up to the hard one.
    switchboard_common::process::raise_fd_limit();
    let broker = arg("--broker").unwrap_or_else(|| "https://localhost:8445".into());
    let ca = arg("--ca").map(std::fs::read_to_string).transpose()?;
    let ca = ca.map(|pem| switchboard_common::tls_reload::ReloadingCa::from_pem(&pem)).transpose()?;
    let hosts: usize = arg("--hosts").map_or(Ok(100), |v| v.parse())?;
    let sessions: usize = arg("--sessions").map_or(Ok(0), |v| v.parse())?;
    let seconds: u64 = arg("--seconds").map_or(Ok(60), |v| v.parse())?;
    // Match it to the broker's update interval to count every host once per window.
    let window: u64 = arg("--window").map_or(Ok(10), |v| v.parse())?;
    // Brokers that require agent credentials (the default): every host enrols with this statement and
    // keeps its credentials in `--credentials-dir`.
    let statement = arg("--software-statement").map(std::fs::read_to_string).transpose()?;
    let credentials_dir =
        std::path::PathBuf::from(arg("--credentials-dir").unwrap_or_else(|| "sim-fleet-credentials".into()));
    let (rss_start, _) = usage();
    let clock = Arc::new(AtomicU64::new(1));
    let shutdown = Shutdown::new();
    let mut drivers = Vec::with_capacity(hosts);
    for index in 0..hosts {
        let driver =
            Arc::new(Counted { inner: SimulatedDriver::new(0), listed_epoch: AtomicU64::new(0), clock: clock.clone() });
        for n in 0..sessions {
            let spec =
                CreateSessionSpec { owner: format!("u{n}"), r#type: SessionType::Virtual as i32, ..Default::default() };
            driver.create_session(&format!("fleet-{index}-{n}"), &spec).await?;
        }
        let mut options = simulated_host_options(10_000 + index, &broker, ca.clone());
        options.hostname = format!("fleet-host-{index}");
        options.server_id = switchboard_agent::identity::derive_server_id(&options.hostname, &options.ip);
        options.enrolment = statement.as_ref().map(|statement| {
            switchboard_agent::enrol::Enrolment::inline(
                switchboard_common::Secret::new(statement.trim()),
                credentials_dir.join(format!("{}.toml", options.hostname)),
            )
        });
        let seed = index as u64;
        tokio::spawn(switchboard_agent::run(
            options,
            driver.clone() as Arc<dyn DcvDriver>,
            move || simulated_host(seed),
            shutdown.clone(),
        ));
        drivers.push(driver);
    }
    println!("started {hosts} simulated agents with {sessions} sessions each; rss at start {} MiB", rss_start / 1024);
    let started = Instant::now();
    let mut last_cpu = usage().1;
    while started.elapsed() < Duration::from_secs(seconds) {
        // Lists from now on record the new epoch; a host counts when it listed during this window.
        let epoch = clock.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::time::sleep(Duration::from_secs(window.max(1))).await;
        let updating = drivers.iter().filter(|d| d.listed_epoch.load(Ordering::Relaxed) == epoch).count();
        let (rss, cpu) = usage();
        println!(
            "t={:>4}s hosts_updating={updating}/{hosts} rss={} MiB cpu_window={:.2}s cpu_total={cpu:.2}s",
            started.elapsed().as_secs(),
            rss / 1024,
            cpu - last_cpu,
        );
        last_cpu = cpu;
    }
    shutdown.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
