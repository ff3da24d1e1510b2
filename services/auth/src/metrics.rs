//! auth's Prometheus metrics (listed in `docs/observability.md`).

/// `switchboard_tokens_issued_total{kind}`: `access` (an API client's `/oauth2/token`) or `connection` (a
/// DCV connection token for `getSessionConnectionData`).
pub fn issued(kind: &'static str) {
    metrics::counter!("switchboard_tokens_issued_total", "kind" => kind).increment(1);
}

/// Describes the metrics above and creates their series at 0.
pub fn describe() {
    metrics::describe_counter!("switchboard_tokens_issued_total", "Tokens issued, by kind (access, connection).");
    for kind in ["access", "connection"] {
        metrics::counter!("switchboard_tokens_issued_total", "kind" => kind).increment(0);
    }
}
