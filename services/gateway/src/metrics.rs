//! The API's Prometheus metrics (listed in `docs/observability.md`): every request by operation and status
//! class with its latency, and the requests refused before a handler ran, by reason. Also each request's
//! trace span ([`trace`]), named by the same bounded operation.

use std::time::Instant;

use axum::{extract::Request, middleware::Next, response::Response};

use crate::routes::API_PATHS;

/// The operation label of a request path: one of the API's paths (with `{…}` parameters as in
/// [`API_PATHS`]), a fixed endpoint, or `other`, so the label set is bounded whatever clients send.
pub fn operation(path: &str) -> &'static str {
    const FIXED: &[&str] = &[
        "/oauth2/token",
        "/health",
        "/health/live",
        "/health/ready",
        "/.well-known/jwks.json",
        crate::routes::spec::PATH,
    ];
    if let Some(found) = API_PATHS.iter().chain(FIXED).find(|known| **known == path) {
        return found;
    }
    if path.starts_with("/sessionConnectionData/") {
        return "/sessionConnectionData/{session_id}/{user}";
    }
    "other"
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware: `switchboard_api_requests_total{operation, status_class}` and
/// `switchboard_api_request_duration_seconds{operation}`.
pub async fn record(request: Request, next: Next) -> Response {
    let operation = operation(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let status_class = status_class(response.status().as_u16());
    metrics::counter!("switchboard_api_requests_total", "operation" => operation, "status_class" => status_class)
        .increment(1);
    metrics::histogram!("switchboard_api_request_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Middleware: a traced request runs in a span named after its method and operation (`POST
/// /createSessions`), child of the client's `traceparent` header when it sends one; gRPC calls made for it
/// carry it on. A request is traced when it sends a `traceparent` (the client's sampled flag decides) or
/// when [`sample_new_trace`](switchboard_common::telemetry::sample_new_trace) draws it; the others open no
/// span.
pub async fn trace(request: Request, next: Next) -> Response {
    let traced = request.headers().contains_key(switchboard_common::trace_context::TRACEPARENT)
        || switchboard_common::telemetry::sample_new_trace();
    if !traced {
        return next.run(request).await;
    }
    let operation = operation(request.uri().path());
    let span = tracing::debug_span!(
        parent: None,
        "api",
        otel.name = format!("{} {operation}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = operation,
        http.response.status_code = tracing::field::Empty,
    );
    switchboard_common::trace_context::set_parent_from_headers(&span, request.headers());
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// `switchboard_api_refused_total{reason}`: a request refused before its handler ran (`unauthenticated`,
/// `forbidden`, `rate_limited`).
pub fn refused(reason: &'static str) {
    metrics::counter!("switchboard_api_refused_total", "reason" => reason).increment(1);
}

/// Describes the metrics above (their `# HELP` lines).
pub fn describe() {
    metrics::describe_counter!(
        "switchboard_api_requests_total",
        "API requests answered, by operation and status class."
    );
    metrics::describe_histogram!(
        "switchboard_api_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to its answer, by operation."
    );
    metrics::describe_counter!(
        "switchboard_api_refused_total",
        "API requests refused before their handler ran, by reason (unauthenticated, forbidden, rate_limited)."
    );
    for reason in ["unauthenticated", "forbidden", "rate_limited"] {
        metrics::counter!("switchboard_api_refused_total", "reason" => reason).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_a_bounded_set() {
        assert_eq!(operation("/createSessions"), "/createSessions");
        assert_eq!(operation("/sessionConnectionData/abc/alice"), "/sessionConnectionData/{session_id}/{user}");
        assert_eq!(operation("/oauth2/token"), "/oauth2/token");
        assert_eq!(operation("/createSessions/../../etc"), "other");
        assert_eq!(operation("/random-123"), "other");
    }
}
