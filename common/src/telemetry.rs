//! Logging and tracing setup, once per process.
//!
//! Logs go to standard output (or a writer the caller gives, as the agent's rotating file), filtered by
//! `RUST_LOG` or the configured level, as pretty text or one JSON object per line; a JSON line written
//! inside a sampled or propagated trace carries its `trace_id`. Traces are exported over OTLP/gRPC only when
//! an endpoint is configured ([`TraceExport`]): then a `tracing-opentelemetry` layer turns this process's
//! spans into OpenTelemetry spans, batched and sent by a background thread. That layer has its own filter
//! (spans of Switchboard's crates at `debug` and above, no events), so the log level never decides what is
//! traced and log events are not copied into spans; nor does tracing raise the log level (the `log` crate's
//! bridge keeps the log filter's level). [`shutdown`] flushes what is still buffered; every
//! binary calls it before exiting. The W3C trace context crossing processes is in [`crate::trace_context`].
//!
//! **Sampling is decided before a trace's first span.** Code that starts a new trace (the gateway's API
//! request, the agent's connect) asks [`sample_new_trace`] first and opens no span at all when the answer is
//! no, so the requests `sampling_ratio` leaves out cost one random draw, not a span. The exporter's sampler
//! follows the parent's decision (parent-based, always on for a root that was opened): a span is recorded
//! when its trace's root was drawn here or when a caller's `traceparent` says sampled.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, prelude::*};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where and how much of this process's traces to export.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The OTLP/gRPC receiver, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// Share of new traces (those no caller sampled already) that are recorded, 0.0 to 1.0.
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute, e.g. `switchboard-gateway`.
    pub service_name: String,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a bad endpoint).
    #[error("otlp_endpoint: {0}")]
    Exporter(String),
}

/// How long an export may take before it is abandoned (a collector that does not answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracer provider of this process, kept to flush it at exit ([`shutdown`]). A std mutex: only taken
/// at start and at exit.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The share of new traces recorded ([`TraceExport::sampling_ratio`]) as `f64` bits; 0.0 (nothing) until an
/// exporter is installed.
static NEW_TRACE_RATIO: AtomicU64 = AtomicU64::new(0);

/// Whether a new trace (work no caller traced: an API request without `traceparent`, an agent's connect)
/// is recorded: `true` for the configured share of calls, always `false` without a trace exporter. Ask
/// before opening the trace's root span and open none when it says no.
pub fn sample_new_trace() -> bool {
    let ratio = f64::from_bits(NEW_TRACE_RATIO.load(Ordering::Relaxed));
    ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio)
}

/// Installs the global subscriber, logging to standard output. The filter comes from `RUST_LOG` when set,
/// else `default_filter` (e.g. `info`). With `export`, spans are exported over OTLP. Calling it twice is
/// harmless (tests): the first subscriber stays.
pub fn init(default_filter: &str, format: LogFormat, export: Option<&TraceExport>) -> Result<(), TelemetryError> {
    // Colours only on a terminal: redirected logs (files, journald, kubectl logs) stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    init_with_writer(default_filter, format, ansi, std::io::stdout, export)
}

/// [`init`] with logs written to `writer` (the agent's rotating file).
pub fn init_with_writer<W>(
    default_filter: &str,
    format: LogFormat,
    ansi: bool,
    writer: W,
    export: Option<&TraceExport>,
) -> Result<(), TelemetryError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let log_level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let logs = match format {
        LogFormat::Pretty => fmt::layer().with_target(true).with_ansi(ansi).with_writer(writer).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .event_format(JsonWithTraceId(fmt::format().json().flatten_event(true)))
            .with_writer(writer)
            .boxed(),
    };
    let provider = export.map(provider).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("switchboard");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(
                filter_fn(|metadata| {
                    metadata.is_span()
                        && metadata.target().starts_with("switchboard")
                        && *metadata.level() <= tracing::Level::DEBUG
                })
                .with_max_level_hint(LevelFilter::DEBUG),
            )
    });
    let installed = tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces).try_init().is_ok();
    if installed {
        // `try_init` bridged the `log` crate at the subscriber's level, which the trace layer raises to
        // `debug`; but `log` records only ever reach the log layer, so the bridge takes the log filter's
        // level. Otherwise each `log::debug!` of a dependency (rustls logs per TLS record) runs the
        // filters: about 25 µs per API request with traces on, sampled or not (BENCHMARKS.md).
        log::set_max_level(as_log(log_level));
    }
    if installed && let (Some(provider), Some(export)) = (provider, export) {
        *PROVIDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(provider);
        NEW_TRACE_RATIO.store(export.sampling_ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }
    Ok(())
}

/// `level` as the `log` crate's filter.
fn as_log(level: LevelFilter) -> log::LevelFilter {
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    }
}

/// The tracer provider exporting to `export.endpoint` in batches, following the parent's sampling decision
/// and recording every root opened (those [`sample_new_trace`] drew). Must be called inside the tokio
/// runtime (the exporter's channel lives on it).
fn provider(export: &TraceExport) -> Result<SdkTracerProvider, TelemetryError> {
    if !export.endpoint.starts_with("http://") {
        return Err(TelemetryError::Exporter(format!(
            "`{}`: must be an http:// URL (OTLP/gRPC without TLS, e.g. a collector in the cluster)",
            export.endpoint
        )));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(export.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

/// Exports the spans still buffered and stops the exporter; a no-op without one. Call once, at exit,
/// inside the runtime (the export runs on it while this waits on a blocking thread).
pub async fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some(provider) = provider {
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            eprintln!("trace export shutdown: {error}");
        }
    }
}

/// The trace id of the current span, when it belongs to a trace (sampled or propagated).
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// tracing-subscriber's JSON line, with `"trace_id"` first when the event is inside a trace.
struct JsonWithTraceId(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTraceId
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.0.format_event(context, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0.format_event(context, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// For tests: logs to the test writer only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let _ = tracing_subscriber::registry().with(filter).with(fmt::layer().with_test_writer()).try_init();
    }
}
