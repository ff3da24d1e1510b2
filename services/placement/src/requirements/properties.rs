//! The `server:` properties: names, aliases and the accessor that reads one
//! from a [`ServerRecord`] without allocating.
//!
//! Names are matched ASCII case-insensitively, so both the guide's
//! `Host.Aws.Ec2InstanceType` and the API's JSON spelling `EC2InstanceType`
//! resolve. The guide's `PhysicalCorePerCpu` is accepted as an alias of
//! `PhysicalCoresPerCpu`.

use switchboard_proto::{HostInfo, ServerRecord};

/// One server property a requirement may test (the guide's list of 25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// `Id`: the server id.
    Id,
    /// `Hostname`.
    Hostname,
    /// `Version`: the DCV server version.
    Version,
    /// `SessionManagerAgentVersion`.
    SessionManagerAgentVersion,
    /// `Host.Os.BuildNumber` (Windows).
    OsBuildNumber,
    /// `Host.Os.Family`: `linux` or `windows`.
    OsFamily,
    /// `Host.Os.KernelVersion` (Linux).
    OsKernelVersion,
    /// `Host.Os.Name`.
    OsName,
    /// `Host.Os.Version`.
    OsVersion,
    /// `Host.Memory.TotalBytes`.
    MemoryTotalBytes,
    /// `Host.Memory.UsedBytes`.
    MemoryUsedBytes,
    /// `Host.Swap.TotalBytes`.
    SwapTotalBytes,
    /// `Host.Swap.UsedBytes`.
    SwapUsedBytes,
    /// `Host.CpuLoadAverage.OneMinute`.
    LoadOneMinute,
    /// `Host.CpuLoadAverage.FiveMinutes`.
    LoadFiveMinutes,
    /// `Host.CpuLoadAverage.FifteenMinutes`.
    LoadFifteenMinutes,
    /// `Host.Aws.Ec2InstanceId`.
    AwsEc2InstanceId,
    /// `Host.Aws.Ec2InstanceType`.
    AwsEc2InstanceType,
    /// `Host.Aws.Region`.
    AwsRegion,
    /// `Host.Aws.Ec2ImageId`.
    AwsEc2ImageId,
    /// `Host.CpuInfo.Architecture`.
    CpuArchitecture,
    /// `Host.CpuInfo.ModelName`.
    CpuModelName,
    /// `Host.CpuInfo.NumberOfCpus`.
    CpuNumberOfCpus,
    /// `Host.CpuInfo.PhysicalCoresPerCpu`.
    CpuPhysicalCoresPerCpu,
    /// `Host.CpuInfo.Vendor`.
    CpuVendor,
}

/// A property's value on one server, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// A text value (never empty: empty means "not reported").
    Text(&'a str),
    /// An integer counter (bytes, CPU counts).
    Integer(u64),
    /// A load average.
    Float(f32),
}

impl Property {
    /// Every property, in the guide's order.
    pub const ALL: [Property; 25] = [
        Property::Id,
        Property::Hostname,
        Property::Version,
        Property::SessionManagerAgentVersion,
        Property::OsBuildNumber,
        Property::OsFamily,
        Property::OsKernelVersion,
        Property::OsName,
        Property::OsVersion,
        Property::MemoryTotalBytes,
        Property::MemoryUsedBytes,
        Property::SwapTotalBytes,
        Property::SwapUsedBytes,
        Property::LoadOneMinute,
        Property::LoadFiveMinutes,
        Property::LoadFifteenMinutes,
        Property::AwsEc2InstanceId,
        Property::AwsEc2InstanceType,
        Property::AwsRegion,
        Property::AwsEc2ImageId,
        Property::CpuArchitecture,
        Property::CpuModelName,
        Property::CpuNumberOfCpus,
        Property::CpuPhysicalCoresPerCpu,
        Property::CpuVendor,
    ];

    /// The name as the Developer Guide spells it (what `Display` prints).
    pub fn name(self) -> &'static str {
        match self {
            Property::Id => "Id",
            Property::Hostname => "Hostname",
            Property::Version => "Version",
            Property::SessionManagerAgentVersion => "SessionManagerAgentVersion",
            Property::OsBuildNumber => "Host.Os.BuildNumber",
            Property::OsFamily => "Host.Os.Family",
            Property::OsKernelVersion => "Host.Os.KernelVersion",
            Property::OsName => "Host.Os.Name",
            Property::OsVersion => "Host.Os.Version",
            Property::MemoryTotalBytes => "Host.Memory.TotalBytes",
            Property::MemoryUsedBytes => "Host.Memory.UsedBytes",
            Property::SwapTotalBytes => "Host.Swap.TotalBytes",
            Property::SwapUsedBytes => "Host.Swap.UsedBytes",
            Property::LoadOneMinute => "Host.CpuLoadAverage.OneMinute",
            Property::LoadFiveMinutes => "Host.CpuLoadAverage.FiveMinutes",
            Property::LoadFifteenMinutes => "Host.CpuLoadAverage.FifteenMinutes",
            Property::AwsEc2InstanceId => "Host.Aws.Ec2InstanceId",
            Property::AwsEc2InstanceType => "Host.Aws.Ec2InstanceType",
            Property::AwsRegion => "Host.Aws.Region",
            Property::AwsEc2ImageId => "Host.Aws.Ec2ImageId",
            Property::CpuArchitecture => "Host.CpuInfo.Architecture",
            Property::CpuModelName => "Host.CpuInfo.ModelName",
            Property::CpuNumberOfCpus => "Host.CpuInfo.NumberOfCpus",
            Property::CpuPhysicalCoresPerCpu => "Host.CpuInfo.PhysicalCoresPerCpu",
            Property::CpuVendor => "Host.CpuInfo.Vendor",
        }
    }

    /// Resolves a name written after `server:`, ignoring ASCII case and
    /// accepting the guide's `Host.CpuInfo.PhysicalCorePerCpu`.
    pub fn lookup(name: &str) -> Option<Property> {
        if name.eq_ignore_ascii_case("Host.CpuInfo.PhysicalCorePerCpu") {
            return Some(Property::CpuPhysicalCoresPerCpu);
        }
        Property::ALL.into_iter().find(|property| property.name().eq_ignore_ascii_case(name))
    }

    /// Reads the property from `server`; `None` when the server does not
    /// report it (no host telemetry, no EC2 metadata, an empty text field).
    pub(crate) fn value(self, server: &ServerRecord) -> Option<Value<'_>> {
        match self {
            Property::Id => text(&server.id),
            Property::Hostname => text(&server.hostname),
            Property::Version => text(&server.dcv_version),
            Property::SessionManagerAgentVersion => text(&server.agent_version),
            _ => self.host_value(server.host.as_ref()?),
        }
    }

    fn host_value(self, host: &HostInfo) -> Option<Value<'_>> {
        let os = || host.os.as_ref();
        let memory = || host.memory.as_ref();
        let swap = || host.swap.as_ref();
        let load = || host.cpu_load_average.as_ref();
        let aws = || host.aws.as_ref();
        let cpu = || host.cpu_info.as_ref();
        match self {
            Property::Id | Property::Hostname | Property::Version | Property::SessionManagerAgentVersion => None,
            Property::OsBuildNumber => text(&os()?.build_number),
            Property::OsFamily => text(&os()?.family),
            Property::OsKernelVersion => text(&os()?.kernel_version),
            Property::OsName => text(&os()?.name),
            Property::OsVersion => text(&os()?.version),
            Property::MemoryTotalBytes => Some(Value::Integer(memory()?.total_bytes)),
            Property::MemoryUsedBytes => Some(Value::Integer(memory()?.used_bytes)),
            Property::SwapTotalBytes => Some(Value::Integer(swap()?.total_bytes)),
            Property::SwapUsedBytes => Some(Value::Integer(swap()?.used_bytes)),
            Property::LoadOneMinute => Some(Value::Float(load()?.one_minute)),
            Property::LoadFiveMinutes => Some(Value::Float(load()?.five_minutes)),
            Property::LoadFifteenMinutes => Some(Value::Float(load()?.fifteen_minutes)),
            Property::AwsEc2InstanceId => text(&aws()?.ec2_instance_id),
            Property::AwsEc2InstanceType => text(&aws()?.ec2_instance_type),
            Property::AwsRegion => text(&aws()?.region),
            Property::AwsEc2ImageId => text(&aws()?.ec2_image_id),
            Property::CpuArchitecture => text(&cpu()?.architecture),
            Property::CpuModelName => text(&cpu()?.model_name),
            Property::CpuNumberOfCpus => Some(Value::Integer(cpu()?.number_of_cpus.into())),
            Property::CpuPhysicalCoresPerCpu => Some(Value::Integer(cpu()?.physical_cores_per_cpu.into())),
            Property::CpuVendor => text(&cpu()?.vendor),
        }
    }
}

/// Proto3 cannot tell "empty" from "unset": an empty text is not reported.
fn text(value: &str) -> Option<Value<'_>> {
    (!value.is_empty()).then_some(Value::Text(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ignore_case() {
        for property in Property::ALL {
            assert_eq!(Property::lookup(property.name()), Some(property));
            assert_eq!(Property::lookup(&property.name().to_ascii_uppercase()), Some(property));
        }
        assert_eq!(Property::lookup("Host.Aws.EC2InstanceType"), Some(Property::AwsEc2InstanceType));
        assert_eq!(Property::lookup("Host.CpuInfo.PhysicalCorePerCpu"), Some(Property::CpuPhysicalCoresPerCpu));
        assert_eq!(Property::lookup("Host.Gpus"), None);
    }

    #[test]
    fn the_list_has_no_duplicates() {
        let mut names: Vec<_> = Property::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 25);
    }
}
