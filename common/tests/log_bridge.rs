//! The `log` bridge keeps the log filter's level when trace export raises the subscriber's (its own process:
//! telemetry is set up once per process).

use switchboard_common::telemetry::{self, LogFormat, TraceExport};

#[tokio::test]
async fn trace_export_leaves_the_log_bridge_at_the_log_level() {
    let export = TraceExport {
        endpoint: "http://127.0.0.1:9".to_owned(),
        service_name: "log-bridge-test".to_owned(),
        sampling_ratio: 0.01,
    };
    telemetry::init_with_writer("warn", LogFormat::Pretty, false, std::io::sink, Some(&export)).unwrap();
    // The trace layer takes Switchboard's spans at debug and above, so the subscriber's level is debug …
    assert_eq!(tracing::level_filters::LevelFilter::current(), tracing::level_filters::LevelFilter::DEBUG);
    // … but `log` records reach only the log layer: the bridge stays at its level.
    assert_eq!(log::max_level(), log::LevelFilter::Warn);
    telemetry::shutdown().await;
}
