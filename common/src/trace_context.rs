//! The W3C trace context (`traceparent`, `tracestate`) across processes.
//!
//! - gRPC: every channel from [`crate::grpc`] ([`crate::grpc::GrpcChannel`]) injects the current span's
//!   context into each call's metadata ([`InjectTraceContext`]), and every server built with
//!   [`crate::grpc::server_builder`] runs each call in a span whose parent is the
//!   caller's context ([`TraceServerLayer`]). So no call site can forget either side.
//! - The agent stream carries it in its messages instead (`AgentHello.traceparent`,
//!   `HostCommand.traceparent`): [`current_traceparent`] and [`set_parent`].
//! - API requests: the gateway makes a client's `traceparent` header the parent of the operation's span
//!   ([`set_parent_from_headers`]).
//!
//! Without a trace exporter configured (see [`crate::telemetry`]) spans have no OpenTelemetry context:
//! nothing is injected and a received context is ignored.

use std::task::{Context as TaskContext, Poll};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::instrument::{Instrument, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The metadata key and HTTP header of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The current span's OpenTelemetry context, when it belongs to a sampled trace. An unsampled trace goes
/// no further: nothing is propagated for it and no child span is made, so the share of requests that
/// `otlp_sampling_ratio` leaves out costs (almost) nothing beyond their first span.
fn current_context() -> Option<opentelemetry::Context> {
    let current = tracing::Span::current();
    if current.is_none() {
        return None;
    }
    let context = current.context();
    context.span().span_context().is_sampled().then_some(context)
}

/// Whether the current span belongs to a sampled trace ([`child_span!`] makes spans only then).
pub fn in_sampled_trace() -> bool {
    current_context().is_some()
}

/// The current span's context as a `traceparent` value, for a message field; empty when there is none.
pub fn current_traceparent() -> String {
    let Some(context) = current_context() else { return String::new() };
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.traceparent.unwrap_or_default()
}

/// A span named `name` continuing the current trace, or a disabled one outside any sampled trace (work that
/// no traced request or handshake asked for makes no spans, nor does a request the sampler left out). For
/// work handed to another task.
#[macro_export]
macro_rules! child_span {
    ($($span:tt)*) => {
        if $crate::trace_context::in_sampled_trace() { tracing::debug_span!($($span)*) } else { tracing::Span::none() }
    };
}

/// Makes the context in `traceparent` the parent of `span` (which must not have been entered yet). An
/// empty or malformed value, or tracing being off, leaves `span` as it is.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = Carrier { traceparent: Some(traceparent.to_owned()), tracestate: None };
    adopt(span, TraceContextPropagator::new().extract(&carrier));
}

/// Makes the context in the `traceparent` (and `tracestate`) headers the parent of `span` (not entered
/// yet); nothing when there is none or tracing is off.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    adopt(span, TraceContextPropagator::new().extract(&HeaderCarrier(headers)));
}

fn adopt(span: &tracing::Span, parent: opentelemetry::Context) {
    if parent.span().span_context().is_valid() {
        // Fails only when tracing is off (no OpenTelemetry layer) or the span was already started.
        let _ = span.set_parent(parent);
    }
}

/// The two W3C fields, as a propagator reads and writes them.
#[derive(Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            "tracestate" => self.tracestate = Some(value).filter(|state| !state.is_empty()),
            _ => {}
        }
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, "tracestate"]
    }
}

struct HeaderCarrier<'headers>(&'headers http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Client side: puts the current span's context into each call's headers (gRPC metadata), around any
/// service such as a tonic `Channel`. [`crate::grpc::GrpcChannel`] is one; a generated client's
/// `with_interceptor` still fits on top (its response body is the channel's own).
#[derive(Debug, Clone)]
pub struct InjectTraceContext<S> {
    inner: S,
}

impl<S> InjectTraceContext<S> {
    /// `inner`, sending the caller's trace context with every request.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for InjectTraceContext<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        inject_headers(request.headers_mut());
        self.inner.call(request)
    }
}

/// Writes the current span's context as `traceparent` (and `tracestate`) headers; nothing outside a trace.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    let Some(context) = current_context() else { return };
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    for (key, value) in [(TRACEPARENT, carrier.traceparent), ("tracestate", carrier.tracestate)] {
        if let Some(value) = value.and_then(|value| http::HeaderValue::from_str(&value).ok()) {
            headers.insert(key, value);
        }
    }
}

/// Server side: each call that carries a trace context runs in a span named after its gRPC method
/// (`/switchboard.v1.Placement/…`), child of the caller's. Part of every server from
/// [`crate::grpc::server_builder`]. (The agent port has no such layer: its stream carries the context in
/// its messages.)
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceServerLayer;

impl<S> tower::Layer<S> for TraceServerLayer {
    type Service = TraceServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceServer { inner }
    }
}

/// The service [`TraceServerLayer`] wraps around a gRPC server's routes.
#[derive(Debug, Clone)]
pub struct TraceServer<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceServer<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Calls outside any trace (background polls such as the fleet sync, health checks) make no span.
        if !request.headers().contains_key(TRACEPARENT) {
            return self.inner.call(request).instrument(tracing::Span::none());
        }
        let span = tracing::debug_span!(
            parent: None,
            "grpc",
            otel.name = request.uri().path(),
            otel.kind = "server",
            rpc.system = "grpc"
        );
        set_parent_from_headers(&span, request.headers());
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tracing_nothing_is_propagated() {
        let span = tracing::debug_span!("x");
        set_parent(&span, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(span.in_scope(current_traceparent), "");
    }

    #[test]
    fn a_traceparent_round_trips_through_the_carrier() {
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier = Carrier { traceparent: Some(value.to_owned()), tracestate: None };
        let context = TraceContextPropagator::new().extract(&carrier);
        assert!(context.span().span_context().is_valid());
        let mut out = Carrier::default();
        TraceContextPropagator::new().inject_context(&context, &mut out);
        assert_eq!(out.traceparent.as_deref(), Some(value));
    }
}
