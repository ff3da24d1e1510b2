//! Host telemetry reported in the hello and every update.
//!
//! [`LocalHost`] describes the real machine. What cannot change while the agent runs is read once at start
//! ([`LocalHost::discover`]): the OS (sysinfo: `/etc/os-release` and the kernel), the CPUs (`/proc/cpuinfo`,
//! which alone tells the physical cores per socket), the GPUs ([`gpu`]: PCI display controllers, named by
//! `nvidia-smi` when present) and the EC2 metadata ([`aws`]: IMDSv2, only on EC2). What changes is read for
//! every report ([`LocalHost::snapshot`], a few small `/proc` reads): memory and swap (sysinfo), the load
//! averages and the logged-in users ([`utmp`]). [`simulated_host`] gives simulated hosts plausible values.
//! [`dcv_conf`] reads the DCV server's endpoints and [`interface_ip`] the address of a network interface.

pub mod aws;
pub mod dcv_conf;
pub mod gpu;
pub mod utmp;

use std::net::IpAddr;
use std::sync::Mutex;

use switchboard_proto::{AwsInfo, CpuInfo, CpuLoadAverage, Gpu, HostInfo, MemoryUsage, Os};
use sysinfo::{MemoryRefreshKind, RefreshKind, System};

const GIB: u64 = 1024 * 1024 * 1024;

/// Plausible telemetry for simulated host number `seed`: Linux, 8 to 64 CPUs, 16 to 256 GiB of memory.
pub fn simulated_host(seed: u64) -> HostInfo {
    let size = 1u64 << (seed % 4);
    let total = 16 * GIB * size;
    HostInfo {
        os: Some(Os {
            family: "linux".into(),
            name: "Ubuntu".into(),
            version: "22.04".into(),
            kernel_version: "6.8.0-simulated".into(),
            build_number: String::new(),
        }),
        memory: Some(MemoryUsage { total_bytes: total, used_bytes: total / 4 }),
        swap: Some(MemoryUsage { total_bytes: 2 * GIB, used_bytes: 0 }),
        aws: None,
        cpu_info: Some(CpuInfo {
            vendor: "GenuineIntel".into(),
            model_name: "Simulated CPU".into(),
            architecture: "x86_64".into(),
            number_of_cpus: 8 * size as u32,
            physical_cores_per_cpu: 4 * size as u32,
        }),
        cpu_load_average: Some(CpuLoadAverage { one_minute: 0.5, five_minutes: 0.4, fifteen_minutes: 0.3 }),
        gpus: Vec::new(),
        logged_in_users: Vec::new(),
    }
}

/// The machine the agent runs on.
#[derive(Debug)]
pub struct LocalHost {
    os: Os,
    cpu_info: CpuInfo,
    gpus: Vec<Gpu>,
    aws: Option<AwsInfo>,
    report_users: bool,
    /// Reused between snapshots (sysinfo keeps its buffers). A std mutex: never held across an await.
    system: Mutex<System>,
}

impl LocalHost {
    /// Reads what does not change: OS, CPUs, GPUs and (when `query_aws` and on EC2) the instance metadata.
    /// `report_users = false` leaves the logged-in users empty.
    pub async fn discover(query_aws: bool, report_users: bool) -> Self {
        let gpus = tokio::task::spawn_blocking(gpu::local_gpus).await.unwrap_or_default();
        let aws = aws::local_aws(query_aws).await;
        Self::with(gpus, aws, report_users)
    }

    /// A host with the given GPUs and EC2 metadata; the rest read from the machine.
    pub fn with(gpus: Vec<Gpu>, aws: Option<AwsInfo>, report_users: bool) -> Self {
        let mut cpu_info = parse_cpuinfo(&read("/proc/cpuinfo"));
        cpu_info.architecture = std::env::consts::ARCH.into();
        if cpu_info.number_of_cpus == 0 {
            cpu_info.number_of_cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as u32);
        }
        if cpu_info.physical_cores_per_cpu == 0 {
            cpu_info.physical_cores_per_cpu = System::physical_core_count().unwrap_or(0) as u32;
        }
        let os = Os {
            family: std::env::consts::OS.into(),
            name: System::name().unwrap_or_default(),
            version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            build_number: String::new(),
        };
        let system = System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()));
        Self { os, cpu_info, gpus, aws, report_users, system: Mutex::new(system) }
    }

    /// The host's telemetry now.
    pub fn snapshot(&self) -> HostInfo {
        let (memory, swap) = {
            let mut system = self.system.lock().expect("sysinfo lock poisoned");
            system.refresh_memory();
            (
                MemoryUsage { total_bytes: system.total_memory(), used_bytes: system.used_memory() },
                MemoryUsage { total_bytes: system.total_swap(), used_bytes: system.used_swap() },
            )
        };
        let load = System::load_average();
        HostInfo {
            os: Some(self.os.clone()),
            memory: Some(memory),
            swap: Some(swap),
            aws: self.aws.clone(),
            cpu_info: Some(self.cpu_info.clone()),
            cpu_load_average: Some(CpuLoadAverage {
                one_minute: load.one as f32,
                five_minutes: load.five as f32,
                fifteen_minutes: load.fifteen as f32,
            }),
            gpus: self.gpus.clone(),
            logged_in_users: if self.report_users { utmp::logged_in_users() } else { Vec::new() },
        }
    }
}

/// Telemetry of the machine the agent runs on, read once (no GPU or EC2 discovery).
pub fn local_host() -> HostInfo {
    LocalHost::with(Vec::new(), None, true).snapshot()
}

/// The kernel's host name, if it can be read.
pub fn local_hostname() -> Option<String> {
    System::host_name().map(|name| name.trim().to_owned()).filter(|name| !name.is_empty())
}

/// The address of network interface `name`: its first IPv4 address, else its first IPv6 address that is
/// not link-local; `None` when there is no such interface or it has no usable address.
pub fn interface_ip(name: &str) -> Option<String> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let (_, data) = networks.iter().find(|(interface, _)| interface.as_str() == name)?;
    let addresses: Vec<IpAddr> = data.ip_networks().iter().map(|network| network.addr).collect();
    let usable = |ip: &&IpAddr| match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    let v4 = addresses.iter().find(|ip| ip.is_ipv4());
    v4.or_else(|| addresses.iter().find(usable)).map(ToString::to_string)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Vendor, model and counts from `/proc/cpuinfo` (architecture is left to the caller).
fn parse_cpuinfo(text: &str) -> CpuInfo {
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let processors = text.lines().filter(|line| line.split(':').next().is_some_and(|k| k.trim() == "processor"));
    CpuInfo {
        vendor: value("vendor_id").unwrap_or_default(),
        model_name: value("model name").unwrap_or_default(),
        architecture: String::new(),
        number_of_cpus: processors.count() as u32,
        physical_cores_per_cpu: value("cpu cores").and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference readers of the kernel's files, independent of sysinfo, to check what the agent reports.

    /// Memory and swap from `/proc/meminfo` (values in kB); used memory is total minus available.
    fn parse_meminfo(text: &str) -> (MemoryUsage, MemoryUsage) {
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        let (total, available) = (field("MemTotal"), field("MemAvailable"));
        let (swap_total, swap_free) = (field("SwapTotal"), field("SwapFree"));
        (
            MemoryUsage { total_bytes: total, used_bytes: total.saturating_sub(available) },
            MemoryUsage { total_bytes: swap_total, used_bytes: swap_total.saturating_sub(swap_free) },
        )
    }

    /// The three load averages of `/proc/loadavg`.
    fn parse_loadavg(text: &str) -> CpuLoadAverage {
        let mut values = text.split_whitespace().map(|v| v.parse::<f32>().unwrap_or(0.0));
        let mut next = || values.next().unwrap_or(0.0);
        CpuLoadAverage { one_minute: next(), five_minutes: next(), fifteen_minutes: next() }
    }

    /// `NAME` and `VERSION_ID` of `/etc/os-release`, unquoted.
    fn parse_os_release(text: &str) -> (String, String) {
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
                .unwrap_or_default()
        };
        (value("NAME"), value("VERSION_ID"))
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       16000 kB\nMemFree: 1000 kB\nMemAvailable:   4000 kB\n\
                    SwapTotal: 2000 kB\nSwapFree: 500 kB\n";
        let (memory, swap) = parse_meminfo(text);
        assert_eq!((memory.total_bytes, memory.used_bytes), (16000 * 1024, 12000 * 1024));
        assert_eq!((swap.total_bytes, swap.used_bytes), (2000 * 1024, 1500 * 1024));
    }

    #[test]
    fn parses_loadavg() {
        let load = parse_loadavg("0.52 0.58 0.59 2/1024 12345\n");
        assert_eq!((load.one_minute, load.five_minutes, load.fifteen_minutes), (0.52, 0.58, 0.59));
    }

    #[test]
    fn parses_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\ncpu cores\t: 2\n\n\
                    processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\ncpu cores\t: 2\n";
        let cpu = parse_cpuinfo(text);
        assert_eq!((cpu.vendor.as_str(), cpu.model_name.as_str()), ("GenuineIntel", "Xeon"));
        assert_eq!((cpu.number_of_cpus, cpu.physical_cores_per_cpu), (2, 2));
    }

    #[test]
    fn parses_os_release() {
        let text = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n";
        assert_eq!(parse_os_release(text), ("Ubuntu".to_owned(), "22.04".to_owned()));
    }

    #[test]
    fn simulated_hosts_are_plausible_and_vary() {
        let small = simulated_host(0);
        let large = simulated_host(3);
        assert_eq!(small.os.as_ref().unwrap().family, "linux");
        assert!(small.memory.unwrap().total_bytes < large.memory.unwrap().total_bytes);
        assert!(small.cpu_info.unwrap().number_of_cpus >= 8);
    }

    /// What the agent reports equals what `/proc`, `/etc/os-release` and utmp say on this machine.
    /// Memory in use and load move between two reads, so they are compared within a margin.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_local_host_matches_proc() {
        let host = local_host();
        let (memory, swap) = parse_meminfo(&read("/proc/meminfo"));
        let reported = host.memory.unwrap();
        assert_eq!(reported.total_bytes, memory.total_bytes);
        let margin = memory.total_bytes / 20;
        assert!(reported.used_bytes.abs_diff(memory.used_bytes) <= margin, "{reported:?} vs {memory:?}");
        let reported_swap = host.swap.unwrap();
        assert_eq!(reported_swap.total_bytes, swap.total_bytes);
        assert!(reported_swap.used_bytes.abs_diff(swap.used_bytes) <= swap.total_bytes / 20 + 1);

        let load = parse_loadavg(&read("/proc/loadavg"));
        let reported_load = host.cpu_load_average.unwrap();
        assert!((reported_load.one_minute - load.one_minute).abs() <= 1.0, "{reported_load:?} vs {load:?}");
        assert!((reported_load.fifteen_minutes - load.fifteen_minutes).abs() <= 0.5);

        let cpuinfo = read("/proc/cpuinfo");
        let processors =
            cpuinfo.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
        let cpu = host.cpu_info.unwrap();
        assert_eq!(cpu.number_of_cpus as usize, processors);
        assert_eq!(cpu.architecture, std::env::consts::ARCH);
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_owned()))
        };
        if let Some(cores) = field("cpu cores") {
            assert_eq!(cpu.physical_cores_per_cpu.to_string(), cores);
        }
        assert!(cpu.physical_cores_per_cpu >= 1);
        assert_eq!(cpu.vendor, field("vendor_id").unwrap_or_default());
        assert_eq!(cpu.model_name, field("model name").unwrap_or_default());

        let os = host.os.unwrap();
        assert_eq!(os.family, "linux");
        assert_eq!(os.kernel_version, read("/proc/sys/kernel/osrelease").trim());
        let (name, version) = parse_os_release(&read("/etc/os-release"));
        assert_eq!((os.name, os.version), (name, version));
        assert_eq!(local_hostname().unwrap(), read("/proc/sys/kernel/hostname").trim());

        let utmp_users = utmp::UTMP_PATHS.iter().find_map(|p| utmp::read(std::path::Path::new(p))).unwrap_or_default();
        assert_eq!(host.logged_in_users, utmp_users);
        assert_eq!(host.aws, None);
    }

    #[test]
    fn users_can_be_left_out() {
        assert!(LocalHost::with(Vec::new(), None, false).snapshot().logged_in_users.is_empty());
    }

    #[test]
    fn the_loopback_interface_has_an_address() {
        assert_eq!(interface_ip("lo").as_deref(), Some("127.0.0.1"));
        assert_eq!(interface_ip("no-such-interface0"), None);
    }
}
