//! Host telemetry reported in the hello and every update.
//!
//! [`local_host`] reads the real machine minimally from `/proc` and `/etc/os-release` (small files: the
//! reads are cheap enough for the async workers); [`simulated_host`] gives simulated hosts plausible values.
//! Full telemetry (GPUs, logged-in users, EC2 metadata) is a later issue.

use switchboard_proto::{CpuInfo, CpuLoadAverage, HostInfo, MemoryUsage, Os};

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

/// Telemetry of the machine the agent runs on; missing files leave fields empty.
pub fn local_host() -> HostInfo {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let (memory, swap) = parse_meminfo(&read("/proc/meminfo"));
    let (name, version) = parse_os_release(&read("/etc/os-release"));
    let mut cpu_info = parse_cpuinfo(&read("/proc/cpuinfo"));
    cpu_info.architecture = std::env::consts::ARCH.into();
    HostInfo {
        os: Some(Os {
            family: std::env::consts::OS.into(),
            name,
            version,
            kernel_version: read("/proc/sys/kernel/osrelease").trim().into(),
            build_number: String::new(),
        }),
        memory: Some(memory),
        swap: Some(swap),
        aws: None,
        cpu_info: Some(cpu_info),
        cpu_load_average: Some(parse_loadavg(&read("/proc/loadavg"))),
        gpus: Vec::new(),
        logged_in_users: Vec::new(),
    }
}

/// The kernel's host name, if it can be read.
pub fn local_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_local_host_reports_its_cpus() {
        if cfg!(target_os = "linux") {
            let host = local_host();
            assert!(host.cpu_info.unwrap().number_of_cpus >= 1);
            assert!(host.memory.unwrap().total_bytes > 0);
        }
    }
}
