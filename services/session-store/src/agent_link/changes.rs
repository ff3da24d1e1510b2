//! Which agent updates are worth a store write.
//!
//! Store traffic should follow change, not the heartbeat: a host reporting
//! the same state every interval costs nothing. Fields that placement or the
//! API act on are written as soon as they change; volatile telemetry (load
//! average, memory and swap in use) only on the telemetry timer.

use switchboard_proto::ServerRecord;

/// The report without its volatile telemetry and bookkeeping fields.
fn significant(record: &ServerRecord) -> ServerRecord {
    let mut record = record.clone();
    record.last_seen_unix_ms = 0;
    record.revision = 0;
    if let Some(host) = record.host.as_mut() {
        host.cpu_load_average = None;
        if let Some(memory) = host.memory.as_mut() {
            memory.used_bytes = 0;
        }
        if let Some(swap) = host.swap.as_mut() {
            swap.used_bytes = 0;
        }
    }
    record
}

/// Whether `next` must be written given the last `written` report:
/// a significant field changed, or the telemetry changed and a refresh is due.
pub(crate) fn report_write_needed(written: &ServerRecord, next: &ServerRecord, refresh_due: bool) -> bool {
    if significant(written) != significant(next) {
        return true;
    }
    refresh_due && written.host != next.host
}

#[cfg(test)]
mod tests {
    use switchboard_proto::{CpuLoadAverage, HostInfo, KeyValue, MemoryUsage};

    use super::*;

    fn report(load: f32, used: u64) -> ServerRecord {
        ServerRecord {
            id: "h1".into(),
            reachable: true,
            dcv_healthy: true,
            host: Some(HostInfo {
                cpu_load_average: Some(CpuLoadAverage { one_minute: load, ..Default::default() }),
                memory: Some(MemoryUsage { total_bytes: 100, used_bytes: used }),
                ..Default::default()
            }),
            last_seen_unix_ms: 5,
            ..Default::default()
        }
    }

    #[test]
    fn an_identical_report_is_not_written() {
        assert!(!report_write_needed(&report(1.0, 10), &report(1.0, 10), true));
    }

    #[test]
    fn telemetry_waits_for_the_refresh() {
        assert!(!report_write_needed(&report(1.0, 10), &report(2.0, 20), false), "volatile fields wait");
        assert!(report_write_needed(&report(1.0, 10), &report(2.0, 20), true), "and are written when due");
    }

    #[test]
    fn significant_changes_are_written_at_once() {
        let written = report(1.0, 10);
        let tagged = ServerRecord { tags: vec![KeyValue { key: "gpu".into(), value: "1".into() }], ..written.clone() };
        assert!(report_write_needed(&written, &tagged, false), "tags");
        let sick = ServerRecord { dcv_healthy: false, ..written.clone() };
        assert!(report_write_needed(&written, &sick, false), "health");
        let mut resized = written.clone();
        resized.host.as_mut().unwrap().memory.as_mut().unwrap().total_bytes = 200;
        assert!(report_write_needed(&written, &resized, false), "total memory is not volatile");
    }
}
