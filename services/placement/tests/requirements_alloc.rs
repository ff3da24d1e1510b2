//! `Requirements::matches` must not allocate: placement evaluates it for
//! every server on every attempt. A counting allocator checks that, counting
//! only the allocations made by this test's own thread.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use switchboard_placement::requirements::Requirements;
use switchboard_proto::{AwsInfo, CpuInfo, CpuLoadAverage, HostInfo, KeyValue, MemoryUsage, Os, ServerRecord};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn matching_does_not_allocate() {
    let server = ServerRecord {
        id: "server-1".into(),
        host: Some(HostInfo {
            os: Some(Os { family: "linux".into(), version: "22.04".into(), ..Default::default() }),
            memory: Some(MemoryUsage { total_bytes: 16_000_000_000, used_bytes: 1 }),
            aws: Some(AwsInfo { ec2_instance_type: "g4dn.xlarge".into(), ..Default::default() }),
            cpu_info: Some(CpuInfo { number_of_cpus: 4, ..Default::default() }),
            cpu_load_average: Some(CpuLoadAverage { one_minute: 0.1, ..Default::default() }),
            ..Default::default()
        }),
        tags: vec![KeyValue { key: "color".into(), value: "dark-red".into() }],
        ..Default::default()
    };
    let expressions = [
        "tag:color := 'red' and not (server:Host.Os.Family = 'windows' or tag:gpu = 'a100')",
        "server:Host.Aws.Ec2InstanceType := 'g4dn' and server:Host.CpuInfo.NumberOfCpus >= 2",
        "server:Host.Memory.TotalBytes > 1024E6 and server:Host.Memory.TotalBytes := '16'",
        "server:Host.CpuLoadAverage.OneMinute = 0.1 and server:Host.CpuLoadAverage.OneMinute := '0.1'",
        "server:Host.Os.Version >= 20.04 and server:Host.Memory.UsedBytes < 'x'",
    ];
    for text in expressions {
        let requirements = Requirements::parse(text).unwrap();
        let mut matched = false;
        let count = allocations_during(|| matched = requirements.matches(&server));
        assert!(matched, "{text}");
        assert_eq!(count, 0, "{text} allocated");
    }
    let parse_count = allocations_during(|| drop(Requirements::parse("tag:fresh = 'x'").unwrap()));
    assert!(parse_count > 0, "the counter works");
}
