//! Prometheus metrics: the process-wide recorder and the plaintext `/metrics` endpoint.
//!
//! Code anywhere records with the `metrics` facade (`metrics::counter!`, `histogram!`, `gauge!`); nothing
//! is kept until a binary calls [`serve`] (setting `metrics_listen`), which installs the Prometheus
//! recorder once per process (the all-in-one's services share it) and answers `GET /metrics` in the
//! Prometheus text format, with the standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, open fds …, from `metrics-process`) and `switchboard_build_info`
//! collected at each scrape. Names follow the Prometheus conventions (`switchboard_` prefix, base units,
//! `_total`, `_seconds`); label values are bounded sets (operations, outcomes, reasons), never a session id,
//! an owner or a token. Every metric is listed in `docs/observability.md`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `_seconds` histogram: 0.5 ms to 30 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How often histograms are compacted (the exporter's upkeep).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn recorder() -> Result<PrometheusHandle, String> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .map_err(|error| error.to_string())?;
            let handle = builder.install_recorder().map_err(|error| error.to_string())?;
            metrics_process::Collector::default().describe();
            metrics::describe_gauge!("switchboard_build_info", "Always 1; the version in a label.");
            metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            metrics::describe_counter!(
                "switchboard_tls_reloads_total",
                "Changes seen in watched TLS files, by file and outcome (loaded, refused)."
            );
            metrics::describe_gauge!(
                "switchboard_tls_certificate_expiry_seconds",
                "When the certificate in a TLS file expires (notAfter, Unix seconds; a CA bundle's earliest)."
            );
            Ok(handle)
        })
        .clone()
}

/// The text exposition of every metric recorded in this process, process metrics collected now.
pub fn render(handle: &PrometheusHandle) -> String {
    metrics_process::Collector::default().collect();
    handle.render()
}

/// Serves `GET /metrics` (plaintext HTTP) on `listener` for the life of the process, after installing
/// the recorder. Call inside the tokio runtime.
pub fn serve(listener: std::net::TcpListener) -> std::io::Result<()> {
    let handle = recorder().map_err(std::io::Error::other)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(listen = %listener.local_addr()?, "metrics serving");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&handle)) }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "metrics endpoint failed");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_endpoint_answers_the_text_format_with_process_and_build_metrics() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener).unwrap();
        metrics::counter!("switchboard_test_events_total", "kind" => "a").increment(2);
        metrics::histogram!("switchboard_test_wait_seconds").record(0.003);
        let body = fetch(addr).await;
        assert!(body.contains("switchboard_test_events_total{kind=\"a\"} 2"), "{body}");
        assert!(body.contains("switchboard_test_wait_seconds_bucket{le=\"0.005\"} 1"), "a histogram: {body}");
        assert!(body.contains("switchboard_build_info{version="), "{body}");
        assert!(body.contains("process_resident_memory_bytes"), "{body}");
    }

    async fn fetch(addr: std::net::SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }
}
