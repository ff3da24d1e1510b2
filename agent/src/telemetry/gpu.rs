//! GPUs of the host: display controllers on the PCI bus, named by `nvidia-smi` when it is installed.
//!
//! Every device under `/sys/bus/pci/devices` whose class is `0x03xxxx` (display controller: VGA, 3D, other)
//! is a GPU. Its vendor is named from the PCI vendor id (a table of the vendors that make GPUs and virtual
//! displays) and its model from the system's `pci.ids` database when there is one, else the device id.
//! When `nvidia-smi` is present, the NVIDIA GPUs take the model names it reports. This runs once at start:
//! GPUs do not come and go while the agent runs.

use std::path::Path;
use std::process::{Command, Stdio};

use switchboard_proto::Gpu;

/// Where distributions install the PCI id database.
const PCI_IDS: [&str; 3] = ["/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids", "/usr/share/pci.ids"];
/// PCI vendor id of NVIDIA.
const NVIDIA: u16 = 0x10de;

/// The GPUs of this host.
pub fn local_gpus() -> Vec<Gpu> {
    let database = PCI_IDS.iter().find_map(|path| std::fs::read_to_string(path).ok());
    let mut gpus = pci_gpus(Path::new("/sys/bus/pci/devices"), database.as_deref());
    if gpus.iter().any(|g| g.vendor == vendor_name(NVIDIA).unwrap_or_default())
        && let Some(names) = nvidia_smi_names()
    {
        apply_nvidia_names(&mut gpus, &names);
    }
    gpus
}

/// Display controllers under `devices` (a `/sys/bus/pci/devices`-like folder), in address order.
pub fn pci_gpus(devices: &Path, database: Option<&str>) -> Vec<Gpu> {
    let Ok(entries) = std::fs::read_dir(devices) else { return Vec::new() };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let hex = |path: &Path, file: &str| {
        let text = std::fs::read_to_string(path.join(file)).ok()?;
        u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
    };
    paths
        .iter()
        .filter(|path| hex(path, "class").is_some_and(|class| class >> 16 == 0x03))
        .filter_map(|path| {
            let vendor = hex(path, "vendor")? as u16;
            let device = hex(path, "device")? as u16;
            let (vendor_db, model_db) = database.map_or((None, None), |db| lookup(db, vendor, device));
            Some(Gpu {
                vendor: vendor_name(vendor)
                    .map(str::to_owned)
                    .or(vendor_db)
                    .unwrap_or_else(|| format!("0x{vendor:04x}")),
                model_name: model_db.unwrap_or_else(|| format!("0x{device:04x}")),
            })
        })
        .collect()
}

/// Names of the vendors of GPUs and virtual displays.
fn vendor_name(vendor: u16) -> Option<&'static str> {
    Some(match vendor {
        0x10de => "NVIDIA Corporation",
        0x1002 => "Advanced Micro Devices, Inc. [AMD/ATI]",
        0x8086 => "Intel Corporation",
        0x1d0f => "Amazon.com, Inc.",
        0x1af4 => "Red Hat, Inc.",
        0x1234 => "QEMU",
        0x15ad => "VMware",
        0x1414 => "Microsoft Corporation",
        0x1013 => "Cirrus Logic",
        0x1a03 => "ASPEED Technology, Inc.",
        0x102b => "Matrox Electronics Systems Ltd.",
        _ => return None,
    })
}

/// Vendor and device names in `pci.ids` text: vendor lines are `vvvv  Name`, device lines `\tdddd  Name`.
fn lookup(database: &str, vendor: u16, device: u16) -> (Option<String>, Option<String>) {
    let vendor_key = format!("{vendor:04x}");
    let device_key = format!("{device:04x}");
    let mut vendor_name = None;
    for line in database.lines() {
        if vendor_name.is_none() {
            if let Some(name) = line.strip_prefix(&vendor_key).and_then(|rest| rest.strip_prefix("  ")) {
                vendor_name = Some(name.trim().to_owned());
            }
            continue;
        }
        if !line.starts_with('\t') && !line.starts_with('#') && !line.is_empty() {
            break; // the next vendor
        }
        if let Some(name) =
            line.strip_prefix('\t').and_then(|l| l.strip_prefix(&device_key)).and_then(|r| r.strip_prefix("  "))
        {
            return (vendor_name, Some(name.trim().to_owned()));
        }
    }
    (vendor_name, None)
}

/// GPU names from `nvidia-smi`, in its order, or `None` when it is absent or fails (bounded to 5 s).
fn nvidia_smi_names() -> Option<Vec<String>> {
    let mut child = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait().ok()? {
            Some(status) if status.success() => break,
            Some(_) => return None,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    Some(parse_nvidia_smi(&text))
}

fn parse_nvidia_smi(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Gives the NVIDIA GPUs (in PCI order, which is nvidia-smi's default order) the names nvidia-smi reported.
fn apply_nvidia_names(gpus: &mut [Gpu], names: &[String]) {
    let nvidia = vendor_name(NVIDIA).unwrap_or_default();
    for (gpu, name) in gpus.iter_mut().filter(|g| g.vendor == nvidia).zip(names) {
        gpu.model_name = name.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(root: &Path, address: &str, class: &str, vendor: &str, device: &str) {
        let dir = root.join(address);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("class"), format!("{class}\n")).unwrap();
        std::fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
        std::fs::write(dir.join("device"), format!("{device}\n")).unwrap();
    }

    const DATABASE: &str = "# comment\n10de  NVIDIA Corporation\n\t1eb8  TU104GL [Tesla T4]\n\t20b0  GA100 [A100]\n\
                            1d0f  Amazon.com, Inc.\n\t1111  Elastic VGA\n";

    #[test]
    fn display_controllers_are_gpus() {
        let dir = tempfile::tempdir().unwrap();
        device(dir.path(), "0000:00:03.0", "0x030000", "0x1d0f", "0x1111");
        device(dir.path(), "0000:00:1e.0", "0x030200", "0x10de", "0x1eb8");
        device(dir.path(), "0000:00:1f.0", "0x030200", "0x10de", "0x20b0");
        device(dir.path(), "0000:00:04.0", "0x020000", "0x1d0f", "0xec20"); // a network card
        device(dir.path(), "0000:00:05.0", "0x038000", "0xabcd", "0x0001"); // unknown vendor
        let gpus = pci_gpus(dir.path(), Some(DATABASE));
        let names: Vec<(&str, &str)> = gpus.iter().map(|g| (g.vendor.as_str(), g.model_name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("Amazon.com, Inc.", "Elastic VGA"),
                ("0xabcd", "0x0001"),
                ("NVIDIA Corporation", "TU104GL [Tesla T4]"),
                ("NVIDIA Corporation", "GA100 [A100]"),
            ]
        );
        let without_database = pci_gpus(dir.path(), None);
        assert_eq!(without_database[2].model_name, "0x1eb8");
    }

    #[test]
    fn nvidia_smi_names_the_nvidia_gpus() {
        let mut gpus = vec![
            Gpu { vendor: "Amazon.com, Inc.".into(), model_name: "Elastic VGA".into() },
            Gpu { vendor: "NVIDIA Corporation".into(), model_name: "0x1eb8".into() },
        ];
        apply_nvidia_names(&mut gpus, &parse_nvidia_smi("Tesla T4\n\n"));
        assert_eq!(gpus[1].model_name, "Tesla T4");
        assert_eq!(gpus[0].model_name, "Elastic VGA");
    }

    #[test]
    fn a_missing_bus_means_no_gpus() {
        assert!(pci_gpus(Path::new("/nonexistent/pci"), None).is_empty());
    }
}
