//! Conversions between the API's JSON shapes and the proto records.

use base64::Engine as _;
use switchboard_common::time::{now_ms, rfc3339_ms};
use switchboard_proto as pb;
use switchboard_proto::contract::{QUEUED_REASON_PREFIX, REAP_MAX_SECONDS};

use crate::model::{
    Aws, CpuInfo, CpuLoadAverage, CreateSessionRequestData, Endpoint, Gpu, Host, KeyValuePair, LoggedInUser, Memory,
    Os, Server, Session,
};

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The API name of a session type.
pub fn session_type_name(session_type: pb::SessionType) -> &'static str {
    match session_type {
        pb::SessionType::Console => "CONSOLE",
        pb::SessionType::Virtual => "VIRTUAL",
        pb::SessionType::Unspecified => "UNKNOWN",
    }
}

/// The API name of a session state (one mapping, shared with the event stream's JSON).
pub use switchboard_proto::event_json::session_state_name;

/// A session, with its server embedded when it is placed.
pub fn session(record: &pb::SessionRecord, server: Option<&pb::ServerRecord>) -> Session {
    Session {
        id: record.id.clone(),
        name: non_empty(&record.name),
        owner: record.owner.clone(),
        server: server.map(self::server),
        session_type: session_type_name(record.r#type()).to_owned(),
        max_concurrent_clients: (record.max_concurrent_clients != 0).then_some(record.max_concurrent_clients),
        state: session_state_name(record.state()).to_owned(),
        substate: non_empty(&record.substate),
        state_reason: non_empty(&record.state_reason),
        creation_time: rfc3339_ms(record.creation_time_unix_ms),
        last_disconnection_time: rfc3339_ms(record.last_disconnection_time_unix_ms),
        num_of_connections: record.num_of_connections,
        storage_root: non_empty(&record.storage_root),
        reap_at: rfc3339_ms(record.reap_at_unix_ms),
        reap_reason: rfc3339_ms(record.reap_at_unix_ms).and(non_empty(&record.reap_reason)),
        queue_position: None,
        queue_length: None,
        queue_estimated_start_time: None,
        queue_estimated_wait_seconds: None,
    }
}

/// Adds where a queued session stands (session-store's `QueuePlace`, read at `now_ms`): the additions
/// `QueuePosition`, `QueueLength` and, when a rate is known, the estimate (`QueueEstimatedStartTime`,
/// `QueueEstimatedWaitSeconds`); and the position to its `queued: <why>` StateReason.
pub fn queue_place(session: &mut Session, place: &pb::QueuePlace, now_ms: i64) {
    session.queue_position = Some(place.position);
    session.queue_length = Some(place.class_entries);
    if let Some(wait_ms) = place.estimated_wait_ms {
        let wait_ms = wait_ms.max(0);
        session.queue_estimated_start_time = rfc3339_ms(now_ms.saturating_add(wait_ms));
        session.queue_estimated_wait_seconds = Some(u64::try_from(wait_ms).unwrap_or_default().div_ceil(1000));
    }
    if let Some(reason) = session.state_reason.as_mut().filter(|reason| reason.starts_with(QUEUED_REASON_PREFIX)) {
        reason.push_str(&format!(" (position {} of {})", place.position, place.class_entries));
    }
}

/// `(Availability, UnavailabilityReason)` derived from the record, first
/// matching cause wins: `UNREACHABLE_AGENT`, `SERVER_CLOSED` (a draining
/// server too: it takes no new session; the additions say it drains),
/// `UNHEALTHY_DCV_SERVER`, `UNKNOWN` (no telemetry reported yet),
/// `SERVER_FULL` (virtual limit reached, or a Windows host whose one console
/// session exists), `EXISTING_LOGGED_IN_USER` (a Windows host with a user
/// logged in outside DCV and no DCV session).
pub fn availability(record: &pb::ServerRecord) -> (&'static str, Option<&'static str>) {
    let windows = record
        .host
        .as_ref()
        .and_then(|host| host.os.as_ref())
        .is_some_and(|os| os.family.eq_ignore_ascii_case("windows"));
    let virtual_full = record.max_virtual_sessions > 0 && record.virtual_session_count >= record.max_virtual_sessions;
    let console_full = windows && record.console_session_count > 0;
    let logged_in = windows
        && record.console_session_count == 0
        && record.host.as_ref().is_some_and(|host| !host.logged_in_users.is_empty());
    let reason = if !record.reachable {
        Some("UNREACHABLE_AGENT")
    } else if !record.open {
        Some("SERVER_CLOSED")
    } else if !record.dcv_healthy {
        Some("UNHEALTHY_DCV_SERVER")
    } else if record.host.is_none() {
        Some("UNKNOWN")
    } else if virtual_full || console_full {
        Some("SERVER_FULL")
    } else if logged_in {
        Some("EXISTING_LOGGED_IN_USER")
    } else {
        None
    };
    (if reason.is_some() { "UNAVAILABLE" } else { "AVAILABLE" }, reason)
}

/// A server as the API shows it.
pub fn server(record: &pb::ServerRecord) -> Server {
    let (availability, reason) = availability(record);
    let draining = record.drain_deadline_unix_ms > 0;
    let port = record.endpoints.iter().find(|e| e.protocol.eq_ignore_ascii_case("HTTP")).map(|e| e.port.to_string());
    Server {
        id: record.id.clone(),
        ip: record.ip.clone(),
        hostname: record.hostname.clone(),
        default_dns_name: non_empty(&record.default_dns_name),
        port,
        endpoints: record
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ip_address: e.ip_address.clone(),
                port: e.port,
                web_url_path: e.web_url_path.clone(),
                protocol: e.protocol.clone(),
            })
            .collect(),
        web_url_path: non_empty(&record.web_url_path),
        version: non_empty(&record.dcv_version),
        session_manager_agent_version: non_empty(&record.agent_version),
        availability: availability.to_owned(),
        unavailability_reason: reason.map(str::to_owned),
        console_session_count: record.console_session_count,
        virtual_session_count: record.virtual_session_count,
        host: record.host.as_ref().map(host),
        tags: record.tags.iter().map(|t| KeyValuePair { key: t.key.clone(), value: t.value.clone() }).collect(),
        draining: draining.then_some(true),
        drain_deadline: draining.then(|| rfc3339_ms(record.drain_deadline_unix_ms)).flatten(),
        drain_seconds_left: draining.then(|| drain_seconds_left(record.drain_deadline_unix_ms, now_ms())),
    }
}

/// Whole seconds from `now_ms` to `deadline_ms`, rounded up; 0 once due.
pub fn drain_seconds_left(deadline_ms: i64, now_ms: i64) -> u64 {
    let left_ms = u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or_default();
    left_ms.div_ceil(1000)
}

fn host(info: &pb::HostInfo) -> Host {
    let memory = |m: &pb::MemoryUsage| Memory { total_bytes: m.total_bytes, used_bytes: m.used_bytes };
    Host {
        os: info.os.as_ref().map(|os| Os {
            family: non_empty(&os.family),
            name: non_empty(&os.name),
            version: non_empty(&os.version),
            kernel_version: non_empty(&os.kernel_version),
            build_number: non_empty(&os.build_number),
        }),
        memory: info.memory.as_ref().map(memory),
        swap: info.swap.as_ref().map(memory),
        aws: info.aws.as_ref().map(|aws| Aws {
            region: aws.region.clone(),
            ec2_instance_type: aws.ec2_instance_type.clone(),
            ec2_instance_id: aws.ec2_instance_id.clone(),
            ec2_image_id: aws.ec2_image_id.clone(),
        }),
        cpu_info: info.cpu_info.as_ref().map(|cpu| CpuInfo {
            vendor: cpu.vendor.clone(),
            model_name: cpu.model_name.clone(),
            architecture: cpu.architecture.clone(),
            number_of_cpus: cpu.number_of_cpus,
            physical_cores_per_cpu: cpu.physical_cores_per_cpu,
        }),
        cpu_load_average: info.cpu_load_average.as_ref().map(|load| CpuLoadAverage {
            one_minute: load.one_minute,
            five_minutes: load.five_minutes,
            fifteen_minutes: load.fifteen_minutes,
        }),
        gpus: info.gpus.iter().map(|g| Gpu { vendor: g.vendor.clone(), model_name: g.model_name.clone() }).collect(),
        logged_in_users: info.logged_in_users.iter().map(|u| LoggedInUser { username: u.clone() }).collect(),
    }
}

/// The JSON-level checks of one createSessions item; `Err` is its
/// FailureReason. Field rules (owner, lengths, type/GL combination) are
/// placement's; here only what the proto cannot carry is checked: the type
/// string, a negative or oversized client count or reap limit, and base64.
pub fn create_spec(item: &CreateSessionRequestData) -> Result<pb::CreateSessionSpec, String> {
    let session_type = match item.session_type.as_deref() {
        None => pb::SessionType::Unspecified,
        Some(text) if text.eq_ignore_ascii_case("CONSOLE") => pb::SessionType::Console,
        Some(text) if text.eq_ignore_ascii_case("VIRTUAL") => pb::SessionType::Virtual,
        Some(text) => return Err(format!("Invalid session type \"{text}\": Type must be CONSOLE or VIRTUAL")),
    };
    let max_concurrent_clients = match item.max_concurrent_clients {
        None => 0,
        Some(n) if n < 0 => return Err("MaxConcurrentClients must be 0 or greater".into()),
        Some(n) => u32::try_from(n).map_err(|_| format!("MaxConcurrentClients must be at most {}", u32::MAX))?,
    };
    let permissions_file = match item.permissions_file.as_deref() {
        None | Some("") => Vec::new(),
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "PermissionsFile is not valid base64".to_owned())?,
    };
    let reap_limit = |name: &str, value: Option<i64>| match value {
        None => Ok(None),
        Some(seconds) => u32::try_from(seconds)
            .ok()
            .filter(|seconds| *seconds <= REAP_MAX_SECONDS)
            .map(Some)
            .ok_or_else(|| format!("{name} must be between 0 and {REAP_MAX_SECONDS}")),
    };
    let max_idle_seconds = reap_limit("MaxIdleSeconds", item.max_idle_seconds)?;
    let max_lifetime_seconds = reap_limit("MaxLifetimeSeconds", item.max_lifetime_seconds)?;
    Ok(pb::CreateSessionSpec {
        name: item.name.clone().unwrap_or_default(),
        owner: item.owner.clone().unwrap_or_default(),
        r#type: session_type as i32,
        dcv_gl_enabled: item.dcv_gl_enabled.unwrap_or(false),
        max_concurrent_clients,
        init_file: item.init_file.clone().or_else(|| item.init_file_path.clone()).unwrap_or_default(),
        autorun_file: item.autorun_file.clone().unwrap_or_default(),
        autorun_file_arguments: item.autorun_file_arguments.clone().unwrap_or_default(),
        permissions_file,
        requirements: item.requirements.clone().unwrap_or_default(),
        enqueue_request: item.enqueue_request.unwrap_or(false),
        disable_retry_on_failure: item.disable_retry_on_failure.unwrap_or(false),
        storage_root: item.storage_root.clone().unwrap_or_default(),
        max_idle_seconds,
        max_lifetime_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_seconds_left_rounds_up_and_stops_at_zero() {
        assert_eq!(drain_seconds_left(12_000, 10_000), 2);
        assert_eq!(drain_seconds_left(10_500, 10_000), 1, "a part of a second left counts as one");
        assert_eq!(drain_seconds_left(10_000, 10_000), 0);
        assert_eq!(drain_seconds_left(9_000, 10_000), 0, "past the deadline: 0 until the sweep closes it");
    }

    #[test]
    fn a_session_shows_an_announced_reap_only() {
        let plain = pb::SessionRecord { id: "s1".into(), state: pb::SessionState::Ready as i32, ..Default::default() };
        let json = serde_json::to_value(session(&plain, None)).unwrap();
        assert!(json.get("ReapAt").is_none() && json.get("ReapReason").is_none(), "the official shape: {json}");
        let warned = pb::SessionRecord { reap_at_unix_ms: 1_601_979_331_633, reap_reason: "IDLE".into(), ..plain };
        let json = serde_json::to_value(session(&warned, None)).unwrap();
        assert_eq!(
            (json["ReapAt"].as_str(), json["ReapReason"].as_str()),
            (Some("2020-10-06T10:15:31.633Z"), Some("IDLE"))
        );
    }

    #[test]
    fn a_queued_session_shows_its_place_and_the_estimate_when_known() {
        let queued = pb::SessionRecord {
            id: "s1".into(),
            state: pb::SessionState::Creating as i32,
            state_reason: "queued: no server matches: 1 server; 1 closed".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(session(&queued, None)).unwrap();
        assert!(json.get("QueuePosition").is_none() && json.get("QueueLength").is_none(), "the official shape: {json}");
        let place = pb::QueuePlace { session_id: "s1".into(), position: 3, class_entries: 7, estimated_wait_ms: None };
        let mut shown = session(&queued, None);
        queue_place(&mut shown, &place, 1_601_979_331_633);
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!((json["QueuePosition"].as_u64(), json["QueueLength"].as_u64()), (Some(3), Some(7)));
        assert_eq!(json["StateReason"], "queued: no server matches: 1 server; 1 closed (position 3 of 7)");
        assert!(json.get("QueueEstimatedStartTime").is_none(), "no rate, no estimate: {json}");
        let place = pb::QueuePlace { estimated_wait_ms: Some(90_500), ..place };
        let mut shown = session(&queued, None);
        queue_place(&mut shown, &place, 1_601_979_331_633);
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(
            (json["QueueEstimatedStartTime"].as_str(), json["QueueEstimatedWaitSeconds"].as_u64()),
            (Some("2020-10-06T10:17:02.133Z"), Some(91)),
            "the estimate as a time and as whole seconds, rounded up"
        );
    }

    #[test]
    fn create_spec_carries_the_reap_limits_within_bounds() {
        let item = |idle: Option<i64>, lifetime: Option<i64>| CreateSessionRequestData {
            max_idle_seconds: idle,
            max_lifetime_seconds: lifetime,
            ..Default::default()
        };
        let spec = create_spec(&item(Some(0), Some(31_536_000))).unwrap();
        assert_eq!((spec.max_idle_seconds, spec.max_lifetime_seconds), (Some(0), Some(31_536_000)));
        let spec = create_spec(&item(None, None)).unwrap();
        assert_eq!((spec.max_idle_seconds, spec.max_lifetime_seconds), (None, None), "absent: the settings");
        assert_eq!(create_spec(&item(Some(-1), None)).unwrap_err(), "MaxIdleSeconds must be between 0 and 31536000");
        assert_eq!(
            create_spec(&item(None, Some(31_536_001))).unwrap_err(),
            "MaxLifetimeSeconds must be between 0 and 31536000"
        );
    }

    #[test]
    fn server_port_is_the_first_http_endpoint_as_a_string() {
        let record = pb::ServerRecord {
            id: "s".into(),
            reachable: true,
            open: true,
            dcv_healthy: true,
            host: Some(pb::HostInfo::default()),
            endpoints: vec![
                pb::Endpoint { port: 8443, protocol: "QUIC".into(), ..Default::default() },
                pb::Endpoint { port: 9443, protocol: "HTTP".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        let json = serde_json::to_value(server(&record)).unwrap();
        assert_eq!(json["Port"], "9443");
        assert_eq!(json["Endpoints"][0]["Port"], 8443);
        assert_eq!(json["Availability"], "AVAILABLE");
        assert!(json.get("UnavailabilityReason").is_none());
        assert!(json["Host"].is_object());
    }

    #[test]
    fn unavailable_servers_say_why() {
        let record = pb::ServerRecord { reachable: true, open: false, dcv_healthy: true, ..Default::default() };
        let json = serde_json::to_value(server(&record)).unwrap();
        assert_eq!(
            (json["Availability"].as_str(), json["UnavailabilityReason"].as_str()),
            (Some("UNAVAILABLE"), Some("SERVER_CLOSED"))
        );
    }

    #[test]
    fn every_unavailability_reason_is_reachable() {
        let windows = |users: Vec<String>| pb::HostInfo {
            os: Some(pb::Os { family: "windows".into(), ..Default::default() }),
            logged_in_users: users,
            ..Default::default()
        };
        let ok = pb::ServerRecord {
            reachable: true,
            open: true,
            dcv_healthy: true,
            host: Some(pb::HostInfo::default()),
            ..Default::default()
        };
        let cases = [
            (pb::ServerRecord { reachable: false, ..ok.clone() }, Some("UNREACHABLE_AGENT")),
            (pb::ServerRecord { open: false, ..ok.clone() }, Some("SERVER_CLOSED")),
            (pb::ServerRecord { dcv_healthy: false, ..ok.clone() }, Some("UNHEALTHY_DCV_SERVER")),
            (pb::ServerRecord { host: None, ..ok.clone() }, Some("UNKNOWN")),
            (pb::ServerRecord { max_virtual_sessions: 2, virtual_session_count: 2, ..ok.clone() }, Some("SERVER_FULL")),
            (
                pb::ServerRecord { host: Some(windows(vec![])), console_session_count: 1, ..ok.clone() },
                Some("SERVER_FULL"),
            ),
            (
                pb::ServerRecord { host: Some(windows(vec!["bob".into()])), ..ok.clone() },
                Some("EXISTING_LOGGED_IN_USER"),
            ),
            (pb::ServerRecord { max_virtual_sessions: 2, virtual_session_count: 1, ..ok.clone() }, None),
            (ok, None),
        ];
        for (record, reason) in cases {
            let expected = if reason.is_some() { "UNAVAILABLE" } else { "AVAILABLE" };
            assert_eq!(availability(&record), (expected, reason), "{record:?}");
        }
    }

    #[test]
    fn aws_fields_keep_the_contract_capitalisation() {
        let info = pb::HostInfo {
            aws: Some(pb::AwsInfo { ec2_instance_type: "g4dn".into(), ..Default::default() }),
            ..Default::default()
        };
        let json = serde_json::to_value(host(&info)).unwrap();
        assert_eq!(json["Aws"]["EC2InstanceType"], "g4dn");
    }

    #[test]
    fn create_spec_maps_and_checks_json_level_fields() {
        let item = CreateSessionRequestData {
            owner: Some("alice".into()),
            session_type: Some("virtual".into()),
            init_file_path: Some("init.sh".into()),
            permissions_file: Some("aGVsbG8=".into()),
            max_concurrent_clients: Some(3),
            ..Default::default()
        };
        let spec = create_spec(&item).unwrap();
        assert_eq!(spec.r#type(), pb::SessionType::Virtual);
        assert_eq!(spec.init_file, "init.sh");
        assert_eq!(spec.permissions_file, b"hello");
        assert_eq!(spec.max_concurrent_clients, 3);

        let bad = |item: CreateSessionRequestData| create_spec(&item).unwrap_err();
        assert!(
            bad(CreateSessionRequestData { session_type: Some("X".into()), ..item.clone() })
                .starts_with("Invalid session type")
        );
        assert_eq!(
            bad(CreateSessionRequestData { max_concurrent_clients: Some(-1), ..item.clone() }),
            "MaxConcurrentClients must be 0 or greater"
        );
        assert_eq!(
            bad(CreateSessionRequestData { permissions_file: Some("%%%".into()), ..item }),
            "PermissionsFile is not valid base64"
        );
    }
}
